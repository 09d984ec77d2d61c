//! Istio's MeshConfig: the mesh-wide settings istiod reads from its `mesh` config
//! (here, `mesh.yaml` in the config folder). The fields Bosun acts on are typed; every
//! other field that is set is reported as not supported yet.

use serde::Deserialize;

use crate::duration::Duration;
pub use crate::extension_providers::{
    ExtAuthzGrpcProvider, ExtAuthzHttpProvider, ExtensionProvider, RequestBodyInCheck, status_code,
};

/// The file of the config folder that holds the MeshConfig.
pub const MESH_CONFIG_FILE: &str = "mesh.yaml";

/// `path` is the config folder's MeshConfig, not a file of resources.
pub fn is_mesh_config(path: &std::path::Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == MESH_CONFIG_FILE)
}

/// The MeshConfig fields Bosun reads.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Sidecars use mutual TLS with endpoints that have one (Istio: true).
    pub enable_auto_mtls: Option<bool>,
    /// Where mesh-wide resources live (Istio: `istio-system`).
    pub root_namespace: Option<String>,
    /// The connect timeout of every cluster a DestinationRule does not set (Istio: 10 s).
    pub connect_timeout: Option<Duration>,
    /// How often DNS-resolved clusters look their names up again when the answer
    /// carries no TTL (Istio: 60 s).
    pub dns_refresh_rate: Option<Duration>,
    /// How sidecars make request paths canonical before matching them (Istio: BASE).
    pub path_normalization: Option<PathNormalizationConfig>,
    /// External services policies name (the authorizers of CUSTOM policies).
    #[serde(default)]
    pub extension_providers: Vec<ExtensionProvider>,
}

/// `pathNormalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathNormalizationConfig {
    #[serde(default)]
    pub normalization: PathNormalizationType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalizationType {
    /// BASE.
    #[default]
    Default,
    /// Paths as received.
    None,
    /// RFC 3986: dot segments, unreserved escapes, backslashes.
    Base,
    /// BASE, then runs of slashes merged.
    MergeSlashes,
    /// MERGE_SLASHES after `%2F` and `%5C` are decoded.
    DecodeAndMergeSlashes,
}

/// How sidecars treat a host the mesh does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    #[serde(default)]
    pub mode: OutboundMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// To the address the request names (Istio's default).
    #[default]
    AllowAny,
    /// Only to services of the registry; others are answered 502.
    RegistryOnly,
}

/// The MeshConfig's top-level fields Bosun acts on.
pub(crate) const KNOWN_FIELDS: [&str; 7] = [
    "outboundTrafficPolicy",
    "enableAutoMtls",
    "rootNamespace",
    "connectTimeout",
    "dnsRefreshRate",
    "pathNormalization",
    "extensionProviders",
];
