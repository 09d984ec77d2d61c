//! Service host names and Istio's short-name rule.

use std::fmt;
use std::sync::Arc;

/// A fully qualified service host, e.g. `reviews.default.svc.cluster.local`.
///
/// Cheap to clone: snapshots share host names across many indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Hostname(Arc<str>);

/// The DNS suffix of in-mesh services.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

impl Hostname {
    pub fn new(host: &str) -> Self {
        Self(Arc::from(host.to_ascii_lowercase()))
    }

    /// Resolves a host as written in a resource of `namespace`, as Istio does: a name
    /// without a dot (`reviews`) means `reviews.<namespace>.svc.cluster.local`; anything
    /// with a dot is taken as written.
    pub fn resolve(host: &str, namespace: &str) -> Self {
        if host.contains('.') || host.contains('*') {
            Self::new(host)
        } else {
            Self::new(&format!("{host}.{namespace}.{CLUSTER_DOMAIN}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names a client in `namespace` may use for this host besides the full name, as
    /// istiod lists them: `name.ns` and `name.ns.svc` for any in-mesh service, and the
    /// bare `name` too for a service of the client's own namespace.
    pub fn short_names(&self, namespace: &str) -> Vec<String> {
        let Some(name_and_namespace) = self
            .as_str()
            .strip_suffix(CLUSTER_DOMAIN)
            .and_then(|rest| rest.strip_suffix('.'))
        else {
            return Vec::new();
        };
        let Some((name, service_namespace)) = name_and_namespace.split_once('.') else {
            return Vec::new();
        };
        if name.is_empty() || service_namespace.is_empty() || service_namespace.contains('.') {
            return Vec::new();
        }
        let mut names = Vec::with_capacity(3);
        if service_namespace == namespace {
            names.push(name.to_string());
        }
        names.push(format!("{name}.{service_namespace}"));
        names.push(format!("{name}.{service_namespace}.svc"));
        names
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_resource_namespace() {
        assert_eq!(
            Hostname::resolve("reviews", "default").as_str(),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            Hostname::resolve("reviews.prod.svc.cluster.local", "default").as_str(),
            "reviews.prod.svc.cluster.local"
        );
        assert_eq!(
            Hostname::resolve("api.example.com", "x").as_str(),
            "api.example.com"
        );
    }

    #[test]
    fn short_names_as_istiod_lists_them() {
        let host = Hostname::new("reviews.default.svc.cluster.local");
        assert_eq!(
            host.short_names("default"),
            vec!["reviews", "reviews.default", "reviews.default.svc"]
        );
        // From another namespace: the namespace-qualified names only.
        assert_eq!(
            host.short_names("prod"),
            vec!["reviews.default", "reviews.default.svc"]
        );
        assert!(
            Hostname::new("api.example.com")
                .short_names("default")
                .is_empty()
        );
    }
}
