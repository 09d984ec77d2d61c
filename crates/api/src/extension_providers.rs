//! MeshConfig `extensionProviders`: the external services policies delegate to by name.
//! Bosun acts on the external authorizers (`envoyExtAuthzHttp`, `envoyExtAuthzGrpc`) that
//! CUSTOM AuthorizationPolicies name; a provider of another kind (tracing, access logs) is
//! reported as not supported yet.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::duration::Duration;

/// One entry of `extensionProviders`: a name and one kind of provider.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
    pub envoy_ext_authz_http: Option<ExtAuthzHttpProvider>,
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpcProvider>,
    /// The other kinds Istio has (`zipkin`, `envoyFileAccessLog`, ...), kept to be reported.
    #[serde(flatten)]
    pub other_kinds: BTreeMap<String, serde_json::Value>,
}

/// `envoyExtAuthzHttp`: an authorizer asked with a copy of the request's head.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttpProvider {
    /// The authorizer's service in the registry (`ext-authz.foo.svc.cluster.local`).
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    /// How long a check may take (Istio: 600 s).
    pub timeout: Option<Duration>,
    /// Put before the request's path in the check (`/check` → `/check/orders/7`).
    #[serde(default)]
    pub path_prefix: String,
    /// Let the request through when the authorizer cannot be reached or fails.
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub clear_route_cache: bool,
    /// The status of a request refused because the check failed (Envoy: 403).
    #[serde(default)]
    pub status_on_error: String,
    /// Request headers sent to the authorizer, besides Host, Method, Path,
    /// Content-Length and Authorization (exact, `prefix*` or `*suffix`, any case).
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Deprecated name of `includeRequestHeadersInCheck`, read when that is unset.
    #[serde(default)]
    pub include_headers_in_check: Vec<String>,
    /// Headers added to (or replacing those of) every check.
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    pub include_request_body_in_check: Option<RequestBodyInCheck>,
    /// The authorizer's headers that go on to the app when it allows.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// The authorizer's headers that go back to the caller when it denies (all, unset).
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// The authorizer's headers that go back to the caller when it allows.
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// `envoyExtAuthzGrpc`: an authorizer asked over Envoy's ext_authz v3 gRPC API.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzGrpcProvider {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub clear_route_cache: bool,
    #[serde(default)]
    pub status_on_error: String,
    pub include_request_body_in_check: Option<RequestBodyInCheck>,
}

/// `includeRequestBodyInCheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestBodyInCheck {
    #[serde(default)]
    pub max_request_bytes: u32,
    #[serde(default)]
    pub allow_partial_message: bool,
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// The HTTP statuses Envoy's `HttpStatus` can carry (its `StatusCode` enum).
const ENVOY_STATUS_CODES: [u16; 56] = [
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// Istio's checks of the providers, as `(field, reason)`; empty when they hold.
pub fn provider_errors(providers: &[ExtensionProvider]) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, provider) in providers.iter().enumerate() {
        let field = format!("extensionProviders[{index}]");
        let mut error = |path: &str, reason: String| {
            errors.push((format!("{field}{path}"), reason));
        };
        if provider.name.is_empty() {
            error(".name", "an extension provider needs a name".into());
        } else if !seen.insert(provider.name.as_str()) {
            error(
                ".name",
                format!(
                    "the name {:?} is used by an earlier provider",
                    provider.name
                ),
            );
        } else if let Err(reason) = valid_name(&provider.name) {
            error(".name", reason);
        }
        let kinds = usize::from(provider.envoy_ext_authz_http.is_some())
            + usize::from(provider.envoy_ext_authz_grpc.is_some())
            + provider.other_kinds.len();
        if kinds > 1 {
            error("", "a provider is of one kind only".into());
        }
        if let Some(http) = &provider.envoy_ext_authz_http {
            let mut error = |path: &str, reason: String| {
                errors.push((format!("{field}.envoyExtAuthzHttp{path}"), reason));
            };
            common_errors(&mut error, &http.service, http.port, &http.status_on_error);
            if !http.path_prefix.is_empty() && !http.path_prefix.starts_with('/') {
                error(
                    ".pathPrefix",
                    format!("must begin with `/`, found {:?}", http.path_prefix),
                );
            }
            for (name, headers) in [
                (
                    "includeRequestHeadersInCheck",
                    &http.include_request_headers_in_check,
                ),
                ("includeHeadersInCheck", &http.include_headers_in_check),
                (
                    "headersToUpstreamOnAllow",
                    &http.headers_to_upstream_on_allow,
                ),
                (
                    "headersToDownstreamOnDeny",
                    &http.headers_to_downstream_on_deny,
                ),
                (
                    "headersToDownstreamOnAllow",
                    &http.headers_to_downstream_on_allow,
                ),
            ] {
                if headers.iter().any(|header| header == "*") {
                    error(
                        &format!(".{name}"),
                        "a single wildcard (\"*\") is not supported, change it to either prefix or suffix match".into(),
                    );
                }
            }
        }
        if let Some(grpc) = &provider.envoy_ext_authz_grpc {
            let mut error = |path: &str, reason: String| {
                errors.push((format!("{field}.envoyExtAuthzGrpc{path}"), reason));
            };
            common_errors(&mut error, &grpc.service, grpc.port, &grpc.status_on_error);
        }
    }
    errors
}

fn common_errors(error: &mut impl FnMut(&str, String), service: &str, port: u32, status: &str) {
    if service.is_empty() {
        error(".service", "the authorizer's service is required".into());
    }
    if !(1..=65535).contains(&port) {
        error(
            ".port",
            format!("port must be in the range [1, 65535], found: {port}"),
        );
    }
    if !status.is_empty() && status_code(status).is_none() {
        error(
            ".statusOnError",
            format!(
                "unsupported statusOnError {status:?}: an HTTP status such as \"403\" or \"503\""
            ),
        );
    }
}

/// `statusOnError` as a status Envoy can send; `None` when it cannot.
pub fn status_code(text: &str) -> Option<u16> {
    let code: u16 = text.parse().ok()?;
    ENVOY_STATUS_CODES.contains(&code).then_some(code)
}

/// Istio's rule: a DNS-1123 label (the name is part of metadata keys and policy names).
fn valid_name(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!(
            "a provider name has at most 63 characters, found {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "invalid character {c:?} in {name:?}: only lowercase letters, digits and hyphens"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{name:?} may not start or end with a hyphen"));
    }
    Ok(())
}

/// The provider fields Bosun does not act on yet, as dotted paths.
pub fn unsupported_provider_fields(providers: &[ExtensionProvider]) -> Vec<String> {
    let mut fields = Vec::new();
    for (index, provider) in providers.iter().enumerate() {
        let field = format!("extensionProviders[{index}]");
        for kind in provider.other_kinds.keys() {
            fields.push(format!("{field}.{kind}"));
        }
        let settings = [
            provider
                .envoy_ext_authz_http
                .as_ref()
                .map(|http| ("envoyExtAuthzHttp", http.clear_route_cache)),
            provider
                .envoy_ext_authz_grpc
                .as_ref()
                .map(|grpc| ("envoyExtAuthzGrpc", grpc.clear_route_cache)),
        ];
        for (kind, clear_route_cache) in settings.into_iter().flatten() {
            if clear_route_cache {
                fields.push(format!("{field}.{kind}.clearRouteCache"));
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers(yaml: &str) -> Vec<ExtensionProvider> {
        serde_saphyr::from_str(yaml).expect("providers")
    }

    #[test]
    fn istios_test_providers_hold() {
        let providers = providers(
            "- name: ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.servers.svc.cluster.local
    port: 8000
    headersToUpstreamOnAllow: [\"x-ext-authz-*\"]
    includeRequestHeadersInCheck: [x-ext-authz]
    includeAdditionalHeadersInCheck: {x-ext-authz-additional-header-new: value}
- name: ext-authz-grpc
  envoyExtAuthzGrpc: {service: ext-authz.servers.svc.cluster.local, port: 9000}
",
        );
        assert_eq!(provider_errors(&providers), Vec::new());
        let http = providers[0].envoy_ext_authz_http.as_ref().expect("http");
        assert_eq!(http.headers_to_upstream_on_allow, ["x-ext-authz-*"]);
        assert!(unsupported_provider_fields(&providers).is_empty());
    }

    #[test]
    fn istios_checks_refuse_bad_providers() {
        let providers = providers(
            "- name: Bad_Name
  envoyExtAuthzHttp: {service: a, port: 0, statusOnError: \"42\", pathPrefix: check, headersToUpstreamOnAllow: [\"*\"]}
- name: dup
  envoyExtAuthzGrpc: {service: a, port: 9000}
- name: dup
  envoyExtAuthzGrpc: {port: 9000}
",
        );
        let fields: Vec<String> = provider_errors(&providers)
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            [
                "extensionProviders[0].name",
                "extensionProviders[0].envoyExtAuthzHttp.port",
                "extensionProviders[0].envoyExtAuthzHttp.statusOnError",
                "extensionProviders[0].envoyExtAuthzHttp.pathPrefix",
                "extensionProviders[0].envoyExtAuthzHttp.headersToUpstreamOnAllow",
                "extensionProviders[2].name",
                "extensionProviders[2].envoyExtAuthzGrpc.service",
            ]
        );
    }

    #[test]
    fn other_kinds_are_reported() {
        let providers =
            providers("- name: zipkin\n  zipkin: {service: zipkin.istio-system, port: 9411}\n");
        assert_eq!(
            unsupported_provider_fields(&providers),
            ["extensionProviders[0].zipkin"]
        );
        assert_eq!(status_code("503"), Some(503));
        assert_eq!(status_code("299"), None);
    }
}
