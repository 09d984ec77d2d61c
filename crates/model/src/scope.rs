//! Sidecar resources: which services a proxy is sent (its egress hosts) and what it does
//! with hosts the mesh does not know, chosen per proxy as istiod chooses them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::host::Hostname;
use crate::mesh::OutboundPolicy;
use crate::service::Service;

/// One Sidecar resource, as the control plane applies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SidecarScope {
    /// `namespace/name`, for messages and as the proxies' scope name.
    pub source: String,
    pub namespace: String,
    /// `workloadSelector` labels; `None`: the default of its namespace (or, in the root
    /// namespace, of the mesh).
    pub selector: Option<BTreeMap<String, String>>,
    /// The egress listeners; none means every service, as with no Sidecar.
    pub egress: Vec<EgressScope>,
    /// `outboundTrafficPolicy.mode`, over the mesh's.
    pub outbound: Option<OutboundPolicy>,
}

/// One egress listener: its `hosts`, on one service port or (`None`) on all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EgressScope {
    pub port: Option<u16>,
    pub hosts: Vec<EgressHost>,
}

/// `namespace/dnsName` of an egress host, the namespace resolved (`.` is the Sidecar's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EgressHost {
    /// `None`: any namespace (`*`); `~` is kept as a namespace no service has.
    pub namespace: Option<String>,
    /// `*`, `*.suffix` or an exact name.
    pub name: String,
}

/// The namespace `~` of an egress host: no namespace at all.
const NO_NAMESPACE: &str = "~";

impl EgressHost {
    /// Reads `namespace/dnsName` written in a Sidecar of `sidecar_namespace`.
    pub fn parse(host: &str, sidecar_namespace: &str) -> Option<Self> {
        let (namespace, name) = host.split_once('/')?;
        let namespace = match namespace {
            "*" => None,
            "." => Some(sidecar_namespace.to_string()),
            other => Some(other.to_string()),
        };
        Some(EgressHost {
            namespace,
            name: name.to_ascii_lowercase(),
        })
    }

    fn admits(&self, service: &Service) -> bool {
        let namespace_fits = match &self.namespace {
            None => true,
            Some(namespace) => namespace != NO_NAMESPACE && *namespace == service.namespace,
        };
        namespace_fits && host_matches(&self.name, &service.hostname)
    }
}

fn host_matches(pattern: &str, host: &Hostname) -> bool {
    let host = host.as_str();
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

impl SidecarScope {
    /// Whether the Sidecar applies to a proxy with `labels` in its namespace.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_none_or(|selector| {
            selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
        })
    }

    /// Whether a proxy under this Sidecar is sent `port` of `service`.
    pub fn admits(&self, service: &Service, port: u16) -> bool {
        self.egress.is_empty()
            || self.egress.iter().any(|listener| {
                listener.port.is_none_or(|wanted| wanted == port)
                    && listener.hosts.iter().any(|host| host.admits(service))
            })
    }

    /// Whether the Sidecar limits what its proxies are sent.
    pub fn scopes_egress(&self) -> bool {
        !self.egress.is_empty()
    }
}

/// The Sidecar for a proxy with `labels` in `namespace`, chosen as istiod chooses: one
/// selecting the workload in its own namespace, else its namespace's default, else the
/// root namespace's default.
pub fn choose<'s>(
    scopes: &'s [Arc<SidecarScope>],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
) -> Option<&'s Arc<SidecarScope>> {
    let in_namespace = |ns: &str| {
        let ns = ns.to_string();
        scopes.iter().filter(move |scope| scope.namespace == ns)
    };
    in_namespace(namespace)
        .find(|scope| scope.selector.is_some() && scope.selects(labels))
        .or_else(|| in_namespace(namespace).find(|scope| scope.selector.is_none()))
        .or_else(|| in_namespace(root_namespace).find(|scope| scope.selector.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(host: &str, namespace: &str) -> Service {
        Service {
            hostname: Hostname::new(host),
            namespace: namespace.to_string(),
            ports: Vec::new(),
            workload_selector: None,
            inline_endpoints: Vec::new(),
            resolution: Default::default(),
            origin: "test".into(),
        }
    }

    fn scope(namespace: &str, selector: Option<(&str, &str)>, hosts: &[&str]) -> SidecarScope {
        SidecarScope {
            source: format!("{namespace}/s"),
            namespace: namespace.to_string(),
            selector: selector.map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
            egress: vec![EgressScope {
                port: None,
                hosts: hosts
                    .iter()
                    .filter_map(|host| EgressHost::parse(host, namespace))
                    .collect(),
            }],
            outbound: None,
        }
    }

    #[test]
    fn egress_hosts_read_namespace_and_name() {
        let own = scope("prod", None, &["./*", "istio-system/*", "*/*.example.com"]);
        assert!(own.admits(&service("reviews.prod.svc.cluster.local", "prod"), 9080));
        assert!(!own.admits(&service("reviews.test.svc.cluster.local", "test"), 9080));
        assert!(own.admits(&service("api.example.com", "test"), 443));
        assert!(!own.admits(&service("example.com", "test"), 443));
        let none = scope("prod", None, &["~/*"]);
        assert!(!none.admits(&service("reviews.prod.svc.cluster.local", "prod"), 9080));
    }

    #[test]
    fn a_selecting_sidecar_wins_over_the_namespace_default_and_the_root() {
        let sidecars = vec![
            Arc::new(scope("istio-system", None, &["*/*"])),
            Arc::new(scope("prod", None, &["./*"])),
            Arc::new(scope(
                "prod",
                Some(("app", "reviews")),
                &["./ratings.prod.svc.cluster.local"],
            )),
        ];
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        let chosen = |namespace: &str, app: &str| {
            choose(&sidecars, namespace, &labels(app), "istio-system")
                .map(|scope| (scope.namespace.clone(), scope.selector.is_some()))
        };
        assert_eq!(chosen("prod", "reviews"), Some(("prod".into(), true)));
        assert_eq!(chosen("prod", "ratings"), Some(("prod".into(), false)));
        assert_eq!(
            chosen("test", "ratings"),
            Some(("istio-system".into(), false))
        );
    }
}
