//! Services (what clients call) and workloads (the instances that answer).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::host::Hostname;

/// The application protocol of a service port, which decides how a proxy speaks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    Http,
    /// HTTP/2, including gRPC: upstream connections use h2c.
    Http2,
    Https,
    Tcp,
    Tls,
    Unknown,
}

impl Protocol {
    /// Whether the sidecars route this port as HTTP.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2)
    }

    /// Whether the sidecars carry this port's bytes as they are: TCP, and TLS they do
    /// not terminate (reached through a `CONNECT` tunnel on one machine).
    pub fn is_tunnelled(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Tls | Protocol::Https)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePort {
    pub number: u16,
    pub name: String,
    pub protocol: Protocol,
    /// The port on the workloads when their entry does not name one.
    pub target_port: Option<u16>,
}

/// How a sidecar finds the addresses behind a service (ServiceEntry `resolution`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Resolution {
    /// The control plane sends the endpoints (`STATIC`, and every WorkloadEntry).
    #[default]
    Static,
    /// The request's own destination (`NONE`: an original-destination cluster).
    Passthrough,
    /// The sidecar resolves each endpoint's name and balances across every address
    /// (`DNS`: Envoy's STRICT_DNS).
    Dns,
    /// The sidecar resolves the one endpoint's name and connects to the first address
    /// (`DNS_ROUND_ROBIN`: Envoy's LOGICAL_DNS).
    DnsRoundRobin,
}

impl Resolution {
    /// The sidecar resolves names itself: the endpoints travel with the cluster.
    pub fn is_dns(self) -> bool {
        matches!(self, Resolution::Dns | Resolution::DnsRoundRobin)
    }
}

/// One service: a host with ports, answered by the workloads it selects.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Service {
    pub hostname: Hostname,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Labels a workload of the same namespace must carry to be an endpoint;
    /// `None` when the service lists its endpoints itself.
    pub workload_selector: Option<BTreeMap<String, String>>,
    /// Endpoints written in the service itself (ServiceEntry `endpoints`).
    pub inline_endpoints: Vec<Endpoint>,
    pub resolution: Resolution,
    /// Where the service was declared, for messages.
    pub origin: String,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.number == number)
    }

    /// The port a request without an explicit port goes to: the first HTTP port.
    pub fn default_http_port(&self) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.protocol.is_http())
    }
}

/// One instance of a workload (a WorkloadEntry on one machine).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub address: IpAddr,
    /// Port name -> port number on this workload.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// Whether a sidecar beside it takes Istio mutual TLS ([`mutual_tls`]).
    pub mutual_tls: bool,
    pub weight: u32,
}

impl Workload {
    /// Istio's canonical service of the workload, which its metrics name: the
    /// `service.istio.io/canonical-name` label, else `app.kubernetes.io/name`, else
    /// `app`, else the workload's own name.
    pub fn canonical_service(&self) -> &str {
        self.first_label(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or(&self.name)
    }

    /// Its canonical revision: `service.istio.io/canonical-revision`, else
    /// `app.kubernetes.io/version`, else `version`; `None` means Istio's `latest`.
    pub fn canonical_revision(&self) -> Option<&str> {
        self.first_label(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
    }

    fn first_label(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|key| self.labels.get(*key))
            .map(String::as_str)
    }
}

/// Where an endpoint is: an IP, or a name the sidecar resolves (DNS resolution only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(untagged)]
pub enum Address {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Name(name) => f.write_str(name),
        }
    }
}

/// An address that serves one service port, with its labels (for subsets) and weight.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub address: Address,
    /// Port name -> port number, as in a WorkloadEntry.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    /// The service account it runs as, when its entry names one.
    pub service_account: Option<String>,
    /// Whether a sidecar beside it takes Istio mutual TLS ([`mutual_tls`]).
    pub mutual_tls: bool,
    pub weight: u32,
}

/// The label that says whether a workload's sidecar takes Istio mutual TLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Istio's rule for a WorkloadEntry: the `security.istio.io/tlsMode` label decides
/// (`istio` or `disabled`); without it, an entry that names a service account is taken
/// to run a sidecar, and one that does not, not.
pub fn mutual_tls(labels: &BTreeMap<String, String>, service_account: Option<&str>) -> bool {
    match labels.get(TLS_MODE_LABEL) {
        Some(mode) => mode == "istio",
        None => service_account.is_some_and(|account| !account.is_empty()),
    }
}

/// The port an endpoint with `ports` serves `service_port` on: the port named like the
/// service port, else the service port's target port, else its number (Istio's rule).
pub fn port_on(ports: &BTreeMap<String, u16>, service_port: &ServicePort) -> u16 {
    ports
        .get(&service_port.name)
        .copied()
        .or(service_port.target_port)
        .unwrap_or(service_port.number)
}

/// Whether `labels` carries every label of `selector` (an empty selector selects all).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

#[cfg(test)]
mod mutual_tls_tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_service_account_means_a_sidecar_unless_the_label_says_otherwise() {
        assert!(mutual_tls(&labels(&[]), Some("reviews")));
        assert!(!mutual_tls(&labels(&[]), None));
        assert!(!mutual_tls(&labels(&[]), Some("")));
        assert!(!mutual_tls(
            &labels(&[(TLS_MODE_LABEL, "disabled")]),
            Some("reviews")
        ));
        assert!(mutual_tls(&labels(&[(TLS_MODE_LABEL, "istio")]), None));
    }
}
