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

    /// The names a client in `namespace` may use for this host: for a service of that
    /// namespace, `name`, `name.ns` and `name.ns.svc` besides the full name.
    pub fn short_names(&self, namespace: &str) -> Vec<String> {
        let full = self.as_str();
        let suffix = format!(".{namespace}.{CLUSTER_DOMAIN}");
        match full.strip_suffix(&suffix) {
            Some(name) if !name.contains('.') => vec![
                name.to_string(),
                format!("{name}.{namespace}"),
                format!("{name}.{namespace}.svc"),
            ],
            _ => Vec::new(),
        }
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
    fn short_names_only_within_the_namespace() {
        let host = Hostname::new("reviews.default.svc.cluster.local");
        assert_eq!(
            host.short_names("default"),
            vec!["reviews", "reviews.default", "reviews.default.svc"]
        );
        assert!(host.short_names("prod").is_empty());
        assert!(
            Hostname::new("api.example.com")
                .short_names("default")
                .is_empty()
        );
    }
}
