//! The wire contract between Bosun's control plane and its proxy: the names of the Envoy
//! filters and extensions the translation writes and the proxy compiles, written once so
//! the two cannot drift. Each is Envoy's own name, so a real Envoy reads the same config.

/// HTTP filters, as an HttpConnectionManager lists them.
pub mod http_filters {
    pub const FAULT: &str = "envoy.filters.http.fault";
    pub const CORS: &str = "envoy.filters.http.cors";
    pub const ROUTER: &str = "envoy.filters.http.router";
    pub const RBAC: &str = "envoy.filters.http.rbac";
    pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
    pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
}

/// The SDS secrets every mesh TLS context names (Istio's names): proxies answer them
/// themselves, or an agent beside Envoy serves them.
pub mod secrets {
    /// The workload's certificate chain and key.
    pub const WORKLOAD: &str = "default";
    /// The mesh's trust anchors.
    pub const ROOT: &str = "ROOTCA";

    /// Certificates a DestinationRule names by file (`tls` SIMPLE / MUTUAL), as istiod
    /// names them: `file-cert:<chain>~<key>` and `file-root:<bundle>`, `file-root:system`
    /// for the system's roots. Whoever answers SDS reads the files.
    const FILE_CERTIFICATE: &str = "file-cert:";
    const FILE_ROOT: &str = "file-root:";
    const SEPARATOR: char = '~';
    const SYSTEM: &str = "system";

    /// A secret named after files.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum FileSecret<'a> {
        Certificate { chain: &'a str, key: &'a str },
        Root { bundle: &'a str },
        SystemRoots,
    }

    impl<'a> FileSecret<'a> {
        /// What a secret name says, if it names files.
        pub fn parse(name: &'a str) -> Option<Self> {
            if let Some(files) = name.strip_prefix(FILE_CERTIFICATE) {
                let (chain, key) = files.split_once(SEPARATOR)?;
                return (!chain.is_empty() && !key.is_empty())
                    .then_some(FileSecret::Certificate { chain, key });
            }
            match name.strip_prefix(FILE_ROOT)? {
                SYSTEM => Some(FileSecret::SystemRoots),
                "" => None,
                bundle => Some(FileSecret::Root { bundle }),
            }
        }

        /// The secret's name.
        pub fn name(&self) -> String {
            match self {
                FileSecret::Certificate { chain, key } => {
                    format!("{FILE_CERTIFICATE}{chain}{SEPARATOR}{key}")
                }
                FileSecret::Root { bundle } => format!("{FILE_ROOT}{bundle}"),
                FileSecret::SystemRoots => format!("{FILE_ROOT}{SYSTEM}"),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::FileSecret;

        #[test]
        fn file_secret_names_read_back() {
            for secret in [
                FileSecret::Certificate {
                    chain: "/etc/certs/cert.pem",
                    key: "/etc/certs/key.pem",
                },
                FileSecret::Root {
                    bundle: "/etc/certs/ca.pem",
                },
                FileSecret::SystemRoots,
            ] {
                let name = secret.name();
                assert_eq!(FileSecret::parse(&name), Some(secret), "{name}");
            }
            assert_eq!(FileSecret::parse("file-cert:/only-a-chain"), None);
            assert_eq!(FileSecret::parse("default"), None);
        }
    }
}

/// Upgrade types an HttpConnectionManager's `upgrade_configs` name.
pub mod upgrades {
    /// `Upgrade: websocket`, which istiod lets through on every connection manager.
    pub const WEBSOCKET: &str = "websocket";
    /// A terminated `CONNECT`: the sidecar opens the tunnel to the route's cluster.
    pub const CONNECT: &str = "CONNECT";
}

/// Network filters, as a listener's filter chain lists them.
pub mod network_filters {
    pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    pub const RBAC: &str = "envoy.filters.network.rbac";
    pub const EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
}

/// The typed configs of those filters and of the extensions routes name.
pub mod type_urls {
    pub const HTTP_FAULT: &str =
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
    pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    pub const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
    pub const CORS_POLICY: &str =
        "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
    pub const JWT_AUTHN: &str =
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
    pub const HTTP_EXT_AUTHZ: &str =
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
    pub const NETWORK_EXT_AUTHZ: &str =
        "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";
    pub const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
    pub const NETWORK_RBAC: &str =
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
    pub const URI_TEMPLATE_MATCH: &str =
        "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig";
    pub const PREVIOUS_HOSTS_PREDICATE: &str =
        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
    pub const PREVIOUS_PRIORITIES: &str = "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig";
}

/// Retry extensions a route's retry policy names.
pub mod retry {
    /// A retry avoids the endpoints already tried.
    pub const PREVIOUS_HOSTS_PREDICATE: &str = "envoy.retry_host_predicates.previous_hosts";
    /// A retry prefers another priority (Istio's `retryRemoteLocalities`).
    pub const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";
}

/// Where the proxy's filters leave what they learned for the filters after them.
pub mod metadata {
    /// The dynamic metadata of the JWT filter; its `payload` key holds a valid token's claims.
    pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
    pub const JWT_PAYLOAD: &str = "payload";
    /// The RBAC filters' dynamic metadata (under the filter's extension name, HTTP or
    /// network): the policy their shadow rules matched and what those rules decided, each
    /// key after the filter's `shadow_rules_stat_prefix`.
    pub const RBAC_HTTP_FILTER: &str = "envoy.filters.http.rbac";
    pub const RBAC_NETWORK_FILTER: &str = "envoy.filters.network.rbac";
    pub const SHADOW_EFFECTIVE_POLICY_ID: &str = "shadow_effective_policy_id";
    pub const SHADOW_ENGINE_RESULT: &str = "shadow_engine_result";
    /// istiod's shadow-rule prefix for CUSTOM policies, and the prefix of their policy
    /// names (`istio-ext-authz-<provider>-ns[...]...`) an ext_authz filter is enabled by.
    pub const EXT_AUTHZ_SHADOW_PREFIX: &str = "istio_ext_authz_";
    pub const EXT_AUTHZ_POLICY_PREFIX: &str = "istio-ext-authz";
    /// The name istiod gives a URI template matcher in RBAC permissions.
    pub const URI_TEMPLATE: &str = "uri-template";
}

/// Caps on downstream connections a proxy is started with, the same for Bosun's proxy
/// (flags) and Envoy (its bootstrap), in Envoy's terms.
pub mod limits {
    use std::collections::BTreeMap;

    /// The overload manager's resource monitor for the global cap.
    pub const GLOBAL_CONNECTIONS_MONITOR: &str =
        "envoy.resource_monitors.global_downstream_max_connections";

    /// The runtime key of one listener's cap.
    pub fn listener_connection_limit_key(listener: &str) -> String {
        format!("envoy.resource_limits.listener.{listener}.connection_limit")
    }

    /// `None` and absent listeners: no cap.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct ConnectionLimits {
        /// Over every listener together.
        pub global: Option<u64>,
        /// Listener name -> its cap.
        pub per_listener: BTreeMap<String, u64>,
    }
}
