//! Envoy's ext_authz configs (the HTTP and the network filter's) → [`ExtAuthzFilter`].
//! Only the Envoy-gRPC and cluster-based HTTP services are supported; what the filter
//! cannot do (match trees, header mutation rules) is refused
//! by name, so a listener never half-applies an authorizer.

use envoy_types::pb::envoy::config::core::v3::{
    GrpcService as ProtoGrpcService, grpc_service, http_uri,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz as HttpExtAuthz, ext_authz,
};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::r#type::matcher::v3::{ListStringMatcher, MetadataMatcher};
use http::{HeaderName, HeaderValue, StatusCode};

use super::matchers::string_match;
use super::rbac::metadata_match;
use super::{Reason, duration};
use crate::filters::ExtAuthzFilter;
use crate::filters::ext_authz::{
    BodyLimit, CheckService, GrpcService, HeaderPatterns, HttpService,
};
use crate::rbac::MetadataMatch;

/// Envoy's default check timeout, for a service that sets none.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) fn compile_http_ext_authz(
    name: &str,
    config: &HttpExtAuthz,
) -> Result<ExtAuthzFilter, Reason> {
    let with_body = match &config.with_request_body {
        None => None,
        Some(buffer) if buffer.max_request_bytes == 0 => {
            return Err("with_request_body.max_request_bytes must be greater than 0".into());
        }
        Some(buffer) => Some(BodyLimit {
            max_bytes: usize::try_from(buffer.max_request_bytes).unwrap_or(usize::MAX),
            allow_partial: buffer.allow_partial_message,
            pack_as_bytes: buffer.pack_as_bytes,
        }),
    };
    if config.decoder_header_mutation_rules.is_some() || config.clear_route_cache {
        return Err(
            "decoder_header_mutation_rules / clear_route_cache are not supported yet".into(),
        );
    }
    if config.filter_enabled.is_some() || config.deny_at_disable.is_some() {
        return Err("filter_enabled / deny_at_disable are not supported yet".into());
    }
    let service = match &config.services {
        Some(ext_authz::Services::GrpcService(grpc)) => CheckService::Grpc(grpc_service(grpc)?),
        Some(ext_authz::Services::HttpService(http)) => {
            let uri = http
                .server_uri
                .as_ref()
                .ok_or("http_service needs server_uri")?;
            let Some(http_uri::HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
                return Err("http_service.server_uri needs a cluster".into());
            };
            if !http.path_override.is_empty() || http.retry_policy.is_some() {
                return Err(
                    "http_service path_override / retry_policy are not supported yet".into(),
                );
            }
            #[allow(deprecated)]
            let request = http.authorization_request.clone().unwrap_or_default();
            let response = http.authorization_response.clone().unwrap_or_default();
            CheckService::Http(HttpService {
                cluster: cluster.clone(),
                timeout: Some(uri.timeout.as_ref().map_or(DEFAULT_TIMEOUT, duration)),
                path_prefix: http.path_prefix.clone(),
                headers_to_add: request
                    .headers_to_add
                    .iter()
                    .map(|header| {
                        Ok((
                            HeaderName::from_bytes(header.key.as_bytes())
                                .map_err(|e| format!("headers_to_add {}: {e}", header.key))?,
                            HeaderValue::from_str(&header.value)
                                .map_err(|e| format!("headers_to_add {}: {e}", header.key))?,
                        ))
                    })
                    .collect::<Result<_, Reason>>()?,
                upstream_headers: patterns(response.allowed_upstream_headers.as_ref())?,
                client_headers: patterns(response.allowed_client_headers.as_ref())?,
                client_headers_on_success: patterns(
                    response.allowed_client_headers_on_success.as_ref(),
                )?,
            })
        }
        None => return Err("ext_authz needs grpc_service or http_service".into()),
    };
    Ok(ExtAuthzFilter {
        name: name.to_owned(),
        service,
        failure_mode_allow: config.failure_mode_allow,
        status_on_error: match &config.status_on_error {
            Some(status) => u16::try_from(status.code)
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or_else(|| format!("status_on_error {} is not an HTTP status", status.code))?,
            None => StatusCode::FORBIDDEN,
        },
        enabled_by: enabled_by(config.filter_enabled_metadata.as_ref())?,
        allowed_headers: patterns(config.allowed_headers.as_ref())?,
        with_body,
    })
}

pub(super) fn compile_network_ext_authz(
    name: &str,
    config: &NetworkExtAuthz,
) -> Result<ExtAuthzFilter, Reason> {
    let grpc = config
        .grpc_service
        .as_ref()
        .ok_or("the network ext_authz filter needs grpc_service")?;
    Ok(ExtAuthzFilter {
        name: name.to_owned(),
        service: CheckService::Grpc(grpc_service(grpc)?),
        failure_mode_allow: config.failure_mode_allow,
        status_on_error: StatusCode::FORBIDDEN,
        enabled_by: enabled_by(config.filter_enabled_metadata.as_ref())?,
        allowed_headers: None,
        with_body: None,
    })
}

fn enabled_by(matcher: Option<&MetadataMatcher>) -> Result<Option<MetadataMatch>, Reason> {
    matcher
        .map(metadata_match)
        .transpose()
        .map_err(|r| format!("filter_enabled_metadata: {r}"))
}

fn grpc_service(grpc: &ProtoGrpcService) -> Result<GrpcService, Reason> {
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy)) = &grpc.target_specifier else {
        return Err("grpc_service: only envoy_grpc (a cluster) is supported".into());
    };
    Ok(GrpcService {
        cluster: envoy.cluster_name.clone(),
        authority: if envoy.authority.is_empty() {
            envoy.cluster_name.clone()
        } else {
            envoy.authority.clone()
        },
        timeout: Some(grpc.timeout.as_ref().map_or(DEFAULT_TIMEOUT, duration)),
    })
}

fn patterns(list: Option<&ListStringMatcher>) -> Result<Option<HeaderPatterns>, Reason> {
    list.map(|list| {
        list.patterns
            .iter()
            .map(|pattern| string_match(pattern, "header pattern"))
            .collect::<Result<Vec<_>, _>>()
            .map(HeaderPatterns)
    })
    .transpose()
}
