//! The structured view of applied config served at `GET /config_dump` and read
//! back by `bosun proxy-config`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::ResourceType;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigDump {
    pub ready: bool,
    pub listeners: Vec<ListenerDump>,
    pub routes: Vec<RouteConfigDump>,
    pub clusters: Vec<ClusterDump>,
    pub endpoints: Vec<EndpointsDump>,
    /// The last rejected update per resource type.
    #[serde(default)]
    pub last_nacks: BTreeMap<ResourceType, NackDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerDump {
    pub name: String,
    pub version: String,
    /// As configured (port 0 means "any free port").
    pub address: String,
    /// Where the socket is actually bound.
    pub bound_address: Option<String>,
    pub stat_prefix: String,
    /// RDS route configuration name, when routes come over ADS.
    pub route_config_name: Option<String>,
    pub inline_route_config: Option<RouteConfigDump>,
    /// The cluster a TCP proxy chain sends connections to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_proxy_cluster: Option<String>,
    /// What connections it takes: `plaintext`, `mTLS`, or `mTLS and plaintext`.
    #[serde(default)]
    pub transport: String,
}

/// A listener's `transport`, from whether it has a TLS chain and a plaintext chain.
pub fn transport_label(tls: bool, plaintext: bool) -> &'static str {
    match (tls, plaintext) {
        (true, true) => "mTLS and plaintext",
        (true, false) => "mTLS",
        _ => "plaintext",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteConfigDump {
    pub name: String,
    pub version: String,
    pub virtual_hosts: Vec<VirtualHostDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualHostDump {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<RouteDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteDump {
    pub name: String,
    /// `prefix /api`, `path /login` or `regex /users/[0-9]+`.
    #[serde(rename = "match")]
    pub path_match: String,
    #[serde(default)]
    pub headers: Vec<String>,
    pub action: RouteActionDump,
    /// `None` means no timeout.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteActionDump {
    Cluster(String),
    WeightedClusters(Vec<WeightedClusterDump>),
    DirectResponse { status: u16 },
    Redirect { status: u16 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightedClusterDump {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterDump {
    pub name: String,
    pub version: String,
    /// `STATIC` or `EDS`.
    #[serde(rename = "type")]
    pub discovery: String,
    pub eds_service_name: Option<String>,
    pub lb_policy: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    pub connect_timeout_ms: u64,
    pub healthy_endpoints: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointsDump {
    pub cluster_name: String,
    pub version: String,
    pub endpoints: Vec<EndpointDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointDump {
    pub address: String,
    pub weight: u32,
    pub health: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NackDump {
    pub message: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// The workload certificate, as `/certs` shows it (`istioctl proxy-config secret`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertificatesDump {
    /// `None` until the CA has signed one.
    pub workload: Option<WorkloadCertificateDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadCertificateDump {
    pub identity: String,
    pub serial_number: String,
    pub valid_from_unix: u64,
    pub expiration_unix: u64,
    pub seconds_until_expiration: u64,
    /// How many trust anchors peers are verified against.
    pub trust_anchors: usize,
}

impl CertificatesDump {
    pub fn of(certificates: &crate::tls::WorkloadCertificates) -> Self {
        let unix = |at: std::time::SystemTime| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        Self {
            workload: certificates
                .current()
                .map(|current| WorkloadCertificateDump {
                    identity: current.identity.uri(),
                    serial_number: current.serial_number.clone(),
                    valid_from_unix: unix(current.not_before),
                    expiration_unix: unix(current.not_after),
                    seconds_until_expiration: current
                        .not_after
                        .duration_since(std::time::SystemTime::now())
                        .map_or(0, |d| d.as_secs()),
                    trust_anchors: current.roots.len(),
                }),
        }
    }
}
