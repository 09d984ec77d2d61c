//! Mesh-wide settings (Istio's MeshConfig), with Istio's defaults.

use std::time::Duration;

/// How sidecars treat a host the mesh does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum OutboundPolicy {
    /// On to the address the request names (PassthroughCluster), Istio's default.
    #[default]
    AllowAny,
    /// Answered 502 by the sidecar (the `block_all` virtual host).
    RegistryOnly,
}

/// How sidecars make request paths canonical (Istio's `pathNormalization`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PathNormalization {
    None,
    /// RFC 3986 (Istio's default).
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeshSettings {
    pub outbound: OutboundPolicy,
    /// Sidecars use mutual TLS to endpoints that have a sidecar.
    pub auto_mtls: bool,
    pub root_namespace: String,
    pub connect_timeout: Duration,
    /// How often DNS-resolved clusters resolve again (Envoy honours a shorter TTL).
    pub dns_refresh_rate: Duration,
    pub path_normalization: PathNormalization,
    /// The external authorizers CUSTOM policies may name (`extensionProviders`).
    pub ext_authz: Vec<crate::security::ExtAuthzProvider>,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            outbound: OutboundPolicy::AllowAny,
            auto_mtls: true,
            root_namespace: "istio-system".to_owned(),
            connect_timeout: Duration::from_secs(10),
            dns_refresh_rate: Duration::from_secs(60),
            path_normalization: PathNormalization::Base,
            ext_authz: Vec::new(),
        }
    }
}

impl MeshSettings {
    /// The settings a MeshConfig gives, Istio's defaults for what it leaves out.
    pub fn from_config(config: &bosun_api::mesh::MeshConfig) -> Self {
        let defaults = MeshSettings::default();
        MeshSettings {
            outbound: match config.outbound_traffic_policy.map(|policy| policy.mode) {
                Some(bosun_api::mesh::OutboundMode::RegistryOnly) => OutboundPolicy::RegistryOnly,
                _ => OutboundPolicy::AllowAny,
            },
            auto_mtls: config.enable_auto_mtls.unwrap_or(defaults.auto_mtls),
            root_namespace: config
                .root_namespace
                .clone()
                .unwrap_or(defaults.root_namespace),
            connect_timeout: config
                .connect_timeout
                .map_or(defaults.connect_timeout, |d| d.as_std()),
            dns_refresh_rate: config
                .dns_refresh_rate
                .map_or(defaults.dns_refresh_rate, |d| d.as_std()),
            path_normalization: {
                use bosun_api::mesh::PathNormalizationType as Type;
                match config.path_normalization.map(|p| p.normalization) {
                    Some(Type::None) => PathNormalization::None,
                    Some(Type::MergeSlashes) => PathNormalization::MergeSlashes,
                    Some(Type::DecodeAndMergeSlashes) => PathNormalization::DecodeAndMergeSlashes,
                    Some(Type::Base | Type::Default) | None => PathNormalization::Base,
                }
            },
            ext_authz: config
                .extension_providers
                .iter()
                .filter_map(crate::security::ExtAuthzProvider::from_config)
                .collect(),
        }
    }
}
