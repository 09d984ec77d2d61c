//! External authorizers (MeshConfig `extensionProviders` of kind `envoyExtAuthzHttp` and
//! `envoyExtAuthzGrpc`), with Istio's defaults, as CUSTOM AuthorizationPolicies name them.

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_api::mesh::ExtensionProvider;

/// istiod's check timeout when the provider sets none.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// One external authorizer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExtAuthzProvider {
    pub name: String,
    /// Its service as written (`ext-authz.foo.svc.cluster.local`, or `foo/ext-authz...`).
    pub service: String,
    pub port: u16,
    pub timeout: Duration,
    pub fail_open: bool,
    /// The status of a request refused because the check failed (`None`: 403).
    pub status_on_error: Option<u16>,
    /// `includeRequestBodyInCheck`: the request body goes to the check, buffered.
    pub request_body: Option<RequestBodyInCheck>,
    pub api: ExtAuthzApi,
}

/// How much of the request body a check gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RequestBodyInCheck {
    pub max_request_bytes: u32,
    /// A longer body is cut to `max_request_bytes` for the check, rather than refused
    /// with 413.
    pub allow_partial_message: bool,
    /// gRPC checks: the body as bytes (`raw_body`) rather than text (`body`).
    pub pack_as_bytes: bool,
}

impl From<bosun_api::mesh::RequestBodyInCheck> for RequestBodyInCheck {
    fn from(body: bosun_api::mesh::RequestBodyInCheck) -> Self {
        RequestBodyInCheck {
            max_request_bytes: body.max_request_bytes,
            allow_partial_message: body.allow_partial_message,
            pack_as_bytes: body.pack_as_bytes,
        }
    }
}

/// How the authorizer is asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ExtAuthzApi {
    /// A copy of the request's head; 200 allows, any other status denies.
    Http(HttpCheck),
    /// Envoy's `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
}

/// What an HTTP authorizer gets and what it may send back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct HttpCheck {
    pub path_prefix: String,
    /// Request headers sent along (patterns: exact, `prefix*`, `*suffix`).
    pub request_headers: Vec<String>,
    pub additional_headers: BTreeMap<String, String>,
    pub to_upstream_on_allow: Vec<String>,
    pub to_downstream_on_deny: Vec<String>,
    pub to_downstream_on_allow: Vec<String>,
}

impl ExtAuthzProvider {
    /// The authorizer a provider entry describes; `None` for other kinds of provider
    /// (and for entries the loader refused, which never get here).
    pub fn from_config(provider: &ExtensionProvider) -> Option<Self> {
        let port = |port: u32| u16::try_from(port).unwrap_or(0);
        let status = |text: &str| bosun_api::mesh::status_code(text);
        if let Some(http) = &provider.envoy_ext_authz_http {
            let request_headers = if http.include_request_headers_in_check.is_empty() {
                http.include_headers_in_check.clone()
            } else {
                http.include_request_headers_in_check.clone()
            };
            return Some(ExtAuthzProvider {
                name: provider.name.clone(),
                service: http.service.clone(),
                port: port(http.port),
                timeout: http.timeout.map_or(DEFAULT_CHECK_TIMEOUT, |t| t.as_std()),
                fail_open: http.fail_open,
                status_on_error: status(&http.status_on_error),
                request_body: http.include_request_body_in_check.map(Into::into),
                api: ExtAuthzApi::Http(HttpCheck {
                    path_prefix: http.path_prefix.clone(),
                    request_headers,
                    additional_headers: http.include_additional_headers_in_check.clone(),
                    to_upstream_on_allow: http.headers_to_upstream_on_allow.clone(),
                    to_downstream_on_deny: http.headers_to_downstream_on_deny.clone(),
                    to_downstream_on_allow: http.headers_to_downstream_on_allow.clone(),
                }),
            });
        }
        let grpc = provider.envoy_ext_authz_grpc.as_ref()?;
        Some(ExtAuthzProvider {
            name: provider.name.clone(),
            service: grpc.service.clone(),
            port: port(grpc.port),
            timeout: grpc.timeout.map_or(DEFAULT_CHECK_TIMEOUT, |t| t.as_std()),
            fail_open: grpc.fail_open,
            status_on_error: status(&grpc.status_on_error),
            request_body: grpc.include_request_body_in_check.map(Into::into),
            api: ExtAuthzApi::Grpc,
        })
    }

    /// The service's host name without istiod's optional `namespace/` in front.
    pub fn host(&self) -> &str {
        self.service
            .split_once('/')
            .map_or(self.service.as_str(), |(_, host)| host)
    }
}
