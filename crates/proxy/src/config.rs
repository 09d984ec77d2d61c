//! The proxy's settings, named once.

use crate::connection_limits::ConnectionLimits;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

/// Which ADS protocol variant to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdsMode {
    /// `DeltaAggregatedResources` (incremental).
    #[default]
    Delta,
    /// `StreamAggregatedResources` (state of the world).
    Sotw,
}

#[derive(Debug, Error)]
#[error("unknown xDS mode {0:?} (expected delta or sotw)")]
pub struct UnknownXdsMode(String);

impl FromStr for XdsMode {
    type Err = UnknownXdsMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "delta" => Ok(XdsMode::Delta),
            "sotw" | "state-of-the-world" => Ok(XdsMode::Sotw),
            _ => Err(UnknownXdsMode(s.to_owned())),
        }
    }
}

/// Who this proxy is, as told to the control plane in the xDS `Node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The WorkloadEntry's name.
    pub workload: String,
    pub namespace: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub outbound_port: u16,
    /// Workload port → app port.
    pub app_ports: BTreeMap<u16, u16>,
}

impl NodeIdentity {
    /// Where the proxy's upstream connections leave from: its workload address when that
    /// is a loopback alias (one machine, where every workload has its own), so servers
    /// see callers by address as pods are seen; else the system's choice.
    pub fn upstream_source(&self) -> Option<IpAddr> {
        self.ip.is_loopback().then_some(self.ip)
    }
}

impl Default for NodeIdentity {
    fn default() -> Self {
        NodeIdentity {
            workload: "workload".into(),
            namespace: "default".into(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            labels: BTreeMap::new(),
            service_account: "default".into(),
            outbound_port: 15001,
            app_ports: BTreeMap::new(),
        }
    }
}

impl NodeIdentity {
    /// Istio's sidecar node id: `sidecar~<ip>~<workload>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{}~{}.svc.cluster.local",
            self.ip, self.workload, self.namespace, self.namespace
        )
    }

    pub fn cluster(&self) -> String {
        format!("{}.{}", self.workload, self.namespace)
    }

    /// The workload's SPIFFE identity in `trust_domain`.
    pub fn identity(&self, trust_domain: &str) -> bosun_ca::Identity {
        bosun_ca::Identity::new(trust_domain, &self.namespace, &self.service_account)
    }
}

/// How long to wait between control-plane connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The control plane's ADS endpoint: `https://127.0.0.1:15012` (TLS, checked against
    /// `root_cert`), or `http://...:15010` for plaintext xDS.
    pub xds_address: String,
    /// The mesh root, handed out of band (Istio's `istio-ca-root-cert`): the control plane
    /// and every peer are verified against it.
    pub root_cert: Option<PathBuf>,
    /// The workload's token, which proves to the control plane who this proxy runs for.
    pub token_file: Option<PathBuf>,
    /// Where the CA signs workload certificates (Istio's `CA_ADDR`); the control plane's
    /// address when unset.
    pub ca_address: Option<String>,
    /// The trust domain of the workload's SPIFFE identity.
    pub trust_domain: String,
    /// How long the workload certificate asked for lives (Istio's `SECRET_TTL`); it is
    /// renewed at half its life.
    pub certificate_ttl: Duration,
    pub xds_mode: XdsMode,
    pub node: NodeIdentity,
    /// Where the admin API listens; port 0 picks a free port.
    pub admin_address: SocketAddr,
    /// How long in-flight requests get to finish on shutdown or listener removal.
    pub drain_timeout: Duration,
    pub xds_backoff: Backoff,
    /// Caps on downstream connections, over all listeners and per listener.
    pub connection_limits: ConnectionLimits,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            xds_address: "http://127.0.0.1:15010".into(),
            root_cert: None,
            token_file: None,
            ca_address: None,
            trust_domain: "cluster.local".into(),
            certificate_ttl: crate::tls::CERTIFICATE_TTL,
            xds_mode: XdsMode::Delta,
            node: NodeIdentity::default(),
            admin_address: SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
            drain_timeout: Duration::from_secs(5),
            xds_backoff: Backoff::default(),
            connection_limits: ConnectionLimits::default(),
        }
    }
}
