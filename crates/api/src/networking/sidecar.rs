//! The `Sidecar` resource: what a workload's sidecar is sent (egress hosts), how it
//! accepts traffic (ingress), and what it does with hosts the mesh does not know.

use serde::Deserialize;

use super::common::WorkloadSelector;
use super::destination_rule::ConnectionPoolSettings;
use crate::mesh::OutboundMode;

/// The `spec` of a Sidecar.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sidecar {
    /// The workloads it applies to; none: every workload of its namespace without a
    /// Sidecar of its own (or, in the root namespace, of the mesh).
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub ingress: Vec<IstioIngressListener>,
    #[serde(default)]
    pub egress: Vec<IstioEgressListener>,
    pub outbound_traffic_policy: Option<SidecarOutboundTrafficPolicy>,
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
}

/// A port the sidecar accepts traffic on, and where it sends it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioIngressListener {
    pub port: Option<SidecarPort>,
    pub bind: Option<String>,
    pub capture_mode: Option<CaptureMode>,
    pub default_endpoint: Option<String>,
    pub tls: Option<ServerTlsSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// What the sidecar may reach: `hosts` as `namespace/dnsName`, on one port or all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioEgressListener {
    pub port: Option<SidecarPort>,
    pub bind: Option<String>,
    pub capture_mode: Option<CaptureMode>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarPort {
    pub number: Option<u32>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    #[default]
    Default,
    Iptables,
    None,
}

/// `outboundTrafficPolicy` of a Sidecar: the MeshConfig's, per workload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarOutboundTrafficPolicy {
    #[serde(default)]
    pub mode: OutboundMode,
    pub egress_proxy: Option<EgressProxy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressProxy {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<super::common::PortSelector>,
}

/// TLS on an ingress listener (Istio's `ServerTLSSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTlsSettings {
    pub https_redirect: Option<bool>,
    pub mode: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub ca_crl: Option<String>,
    pub credential_name: Option<String>,
    #[serde(default)]
    pub credential_names: Vec<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    #[serde(default)]
    pub verify_certificate_spki: Vec<String>,
    #[serde(default)]
    pub verify_certificate_hash: Vec<String>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub ecdh_curves: Vec<String>,
    pub insecure_skip_verify: Option<bool>,
    pub ca_cert_credential_name: Option<String>,
    #[serde(default)]
    pub tls_certificates: Vec<TlsCertificate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsCertificate {
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}
