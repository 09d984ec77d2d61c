//! CUSTOM AuthorizationPolicies → an RBAC filter and an ext_authz filter per provider, as
//! istiod writes them.
//!
//! The RBAC filter holds the CUSTOM rules as shadow rules: it enforces nothing, and
//! leaves the policy its rules matched in its dynamic metadata (`istio_ext_authz_…`). The
//! ext_authz filter after it is enabled by that metadata, so only the requests a CUSTOM
//! rule matches are sent to the authorizer. A policy whose provider is unknown or whose
//! service is not in the registry makes its rules deny instead. A CUSTOM policy in dry
//! run is left out (and reported as not supported): a dry run must never refuse.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HeaderValue, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac, rbac};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings, ExtAuthz as HttpExtAuthz,
    HttpService, ext_authz,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, MetadataMatcher, StringMatcher, ValueMatcher, metadata_matcher,
    string_matcher, value_matcher,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use envoy_types::util::pack_any;

use bosun_model::{
    AuthorizationAction, AuthorizationPolicy, ExtAuthzApi, ExtAuthzProvider, HttpCheck, Snapshot,
};
use bosun_wire::metadata::{
    EXT_AUTHZ_POLICY_PREFIX, EXT_AUTHZ_SHADOW_PREFIX, RBAC_HTTP_FILTER, RBAC_NETWORK_FILTER,
    SHADOW_EFFECTIVE_POLICY_ID,
};

use super::authorization::policies_of;
use super::names::outbound_cluster_name;

const TCP_STAT_PREFIX: &str = "tcp.";
/// istiod's suffix for the rules of a CUSTOM policy that cannot ask its authorizer.
const BAD_CUSTOM_SUFFIX: &str = "-deny-due-to-bad-CUSTOM-action";

/// The CUSTOM policies of one provider, and where its authorizer is (`Err`: why not).
struct ProviderRules<'a> {
    enforced: HashMap<String, Policy>,
    target: Result<Target<'a>, String>,
}

/// The authorizer and the cluster that reaches it.
struct Target<'a> {
    provider: &'a ExtAuthzProvider,
    host: String,
    cluster: String,
}

/// The CUSTOM filters of a sidecar's inbound HTTP chains, before authentication.
pub(super) fn http_filters(
    snapshot: &Snapshot,
    policies: &[&Arc<AuthorizationPolicy>],
) -> Vec<HttpFilter> {
    let mut filters = Vec::new();
    for (provider, rules) in by_provider(snapshot, policies, false) {
        let target = match rules.target {
            Ok(target) => target,
            Err(_) => {
                filters.push(http_rbac(HttpRbac {
                    rules: Some(bad_custom(rules.enforced)),
                    ..Default::default()
                }));
                continue;
            }
        };
        filters.push(http_rbac(HttpRbac {
            shadow_rules: Some(deny(rules.enforced)),
            shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_PREFIX.to_string(),
            ..Default::default()
        }));
        filters.push(HttpFilter {
            name: bosun_wire::http_filters::EXT_AUTHZ.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                http_ext_authz(&target, &provider),
            ))),
            ..Default::default()
        });
    }
    filters
}

/// The CUSTOM filters of a sidecar's inbound TCP chains: gRPC authorizers only (an HTTP
/// one has nothing to ask about a connection, and istiod leaves it out).
pub(super) fn network_filters(
    snapshot: &Snapshot,
    policies: &[&Arc<AuthorizationPolicy>],
) -> Vec<Filter> {
    let mut filters = Vec::new();
    for (provider, rules) in by_provider(snapshot, policies, true) {
        let target = match rules.target {
            Ok(target) => target,
            Err(_) => {
                filters.push(network_rbac(NetworkRbac {
                    stat_prefix: TCP_STAT_PREFIX.to_string(),
                    rules: Some(bad_custom(rules.enforced)),
                    ..Default::default()
                }));
                continue;
            }
        };
        if !matches!(target.provider.api, ExtAuthzApi::Grpc) {
            continue;
        }
        filters.push(network_rbac(NetworkRbac {
            stat_prefix: TCP_STAT_PREFIX.to_string(),
            shadow_rules: Some(deny(rules.enforced)),
            shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_PREFIX.to_string(),
            ..Default::default()
        }));
        filters.push(Filter {
            name: bosun_wire::network_filters::EXT_AUTHZ.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(pack_any(NetworkExtAuthz {
                stat_prefix: TCP_STAT_PREFIX.to_string(),
                grpc_service: Some(grpc_service(&target)),
                failure_mode_allow: target.provider.fail_open,
                transport_api_version: ApiVersion::V3 as i32,
                filter_enabled_metadata: Some(enabled_by(RBAC_NETWORK_FILTER, &provider)),
                ..Default::default()
            }))),
        });
    }
    filters
}

/// CUSTOM policies grouped by provider, in the providers' name order (istiod's).
fn by_provider<'a>(
    snapshot: &'a Snapshot,
    policies: &[&Arc<AuthorizationPolicy>],
    tcp: bool,
) -> BTreeMap<String, ProviderRules<'a>> {
    let mut out: BTreeMap<String, ProviderRules<'a>> = BTreeMap::new();
    for policy in policies
        .iter()
        .filter(|policy| policy.action == AuthorizationAction::Custom && !policy.dry_run)
    {
        let provider = policy.provider.clone().unwrap_or_default();
        let rules = out
            .entry(provider.clone())
            .or_insert_with(|| ProviderRules {
                enforced: HashMap::new(),
                target: target(snapshot, &provider),
            });
        let prefix = format!("{EXT_AUTHZ_POLICY_PREFIX}-{provider}-");
        rules.enforced.extend(policies_of(
            policy,
            tcp,
            AuthorizationAction::Custom,
            &prefix,
        ));
    }
    out
}

fn target<'a>(snapshot: &'a Snapshot, provider: &str) -> Result<Target<'a>, String> {
    let (provider, service) = snapshot.ext_authz(provider)?;
    Ok(Target {
        provider,
        host: service.hostname.as_str().to_string(),
        cluster: outbound_cluster_name(provider.port, None, &service.hostname),
    })
}

fn deny(policies: HashMap<String, Policy>) -> Rbac {
    Rbac {
        action: rbac::Action::Deny as i32,
        policies,
        ..Default::default()
    }
}

/// istiod's answer to a CUSTOM policy that cannot ask: its rules deny.
fn bad_custom(policies: HashMap<String, Policy>) -> Rbac {
    deny(
        policies
            .into_iter()
            .map(|(name, policy)| (format!("{name}{BAD_CUSTOM_SUFFIX}"), policy))
            .collect(),
    )
}

fn http_rbac(config: HttpRbac) -> HttpFilter {
    HttpFilter {
        name: bosun_wire::http_filters::RBAC.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    }
}

fn network_rbac(config: NetworkRbac) -> Filter {
    Filter {
        name: bosun_wire::network_filters::RBAC.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

/// Enabled when the RBAC filter's CUSTOM shadow rules matched a policy of `provider`.
fn enabled_by(rbac_filter: &str, provider: &str) -> MetadataMatcher {
    MetadataMatcher {
        filter: rbac_filter.to_string(),
        path: vec![metadata_matcher::PathSegment {
            segment: Some(metadata_matcher::path_segment::Segment::Key(format!(
                "{EXT_AUTHZ_SHADOW_PREFIX}{SHADOW_EFFECTIVE_POLICY_ID}"
            ))),
        }],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(format!(
                    "{EXT_AUTHZ_POLICY_PREFIX}-{provider}"
                ))),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

fn timeout(provider: &ExtAuthzProvider) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(provider.timeout.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(provider.timeout.subsec_nanos()).unwrap_or(0),
    }
}

fn grpc_service(target: &Target<'_>) -> GrpcService {
    GrpcService {
        timeout: Some(timeout(target.provider)),
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: target.cluster.clone(),
                authority: target.host.clone(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn http_ext_authz(target: &Target<'_>, provider: &str) -> HttpExtAuthz {
    let config = target.provider;
    let (services, allowed_headers) = match &config.api {
        ExtAuthzApi::Grpc => (ext_authz::Services::GrpcService(grpc_service(target)), None),
        ExtAuthzApi::Http(check) => (
            ext_authz::Services::HttpService(http_service(target, check)),
            header_patterns(&check.request_headers),
        ),
    };
    HttpExtAuthz {
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: config.fail_open,
        status_on_error: config.status_on_error.map(|code| HttpStatus {
            code: i32::from(code),
        }),
        with_request_body: config.request_body.map(|body| BufferSettings {
            max_request_bytes: body.max_request_bytes,
            allow_partial_message: body.allow_partial_message,
            pack_as_bytes: body.pack_as_bytes,
        }),
        filter_enabled_metadata: Some(enabled_by(RBAC_HTTP_FILTER, provider)),
        allowed_headers,
        services: Some(services),
        ..Default::default()
    }
}

fn http_service(target: &Target<'_>, check: &HttpCheck) -> HttpService {
    let headers_to_add: Vec<HeaderValue> = check
        .additional_headers
        .iter()
        .map(|(key, value)| HeaderValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        })
        .collect();
    let responds = !check.to_upstream_on_allow.is_empty()
        || !check.to_downstream_on_deny.is_empty()
        || !check.to_downstream_on_allow.is_empty();
    #[allow(deprecated)] // istiod writes the response settings here.
    HttpService {
        server_uri: Some(HttpUri {
            // Required, not used: the cluster is what is called.
            uri: format!("http://{}", target.host),
            timeout: Some(timeout(target.provider)),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(target.cluster.clone())),
        }),
        path_prefix: check.path_prefix.clone(),
        authorization_request: (!headers_to_add.is_empty()).then(|| AuthorizationRequest {
            headers_to_add,
            ..Default::default()
        }),
        authorization_response: responds.then(|| AuthorizationResponse {
            allowed_upstream_headers: header_patterns(&check.to_upstream_on_allow),
            allowed_client_headers: header_patterns(&check.to_downstream_on_deny),
            allowed_client_headers_on_success: header_patterns(&check.to_downstream_on_allow),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// istiod's header patterns: `*suffix`, `prefix*` or exact, any case.
fn header_patterns(headers: &[String]) -> Option<ListStringMatcher> {
    if headers.is_empty() {
        return None;
    }
    let patterns = headers
        .iter()
        .map(|header| {
            let pattern = if let Some(suffix) = header.strip_prefix('*') {
                string_matcher::MatchPattern::Suffix(suffix.to_string())
            } else if let Some(prefix) = header.strip_suffix('*') {
                string_matcher::MatchPattern::Prefix(prefix.to_string())
            } else {
                string_matcher::MatchPattern::Exact(header.clone())
            };
            StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: true,
            }
        })
        .collect();
    Some(ListStringMatcher { patterns })
}

#[cfg(test)]
mod tests {
    use bosun_model::MeshSettings;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use prost::Message;

    use super::*;
    use crate::translate::test_mesh::{node, snapshot};
    use crate::translate::{DEFAULT_TRUST_DOMAIN, generate};

    const AUTHORIZER: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-authz, namespace: foo}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.10.9}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: PROVIDER}
  rules: [{to: [{operation: {paths: [/admin]}}]}]
";

    /// The names and typed configs of the inbound HTTP chain's filters.
    fn inbound_filters(provider: &str) -> Vec<HttpFilter> {
        let mesh = bosun_api::load_mesh_config(
            "extensionProviders:
- name: authz
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000, timeout: 1s}
",
            std::path::Path::new("mesh.yaml"),
        )
        .expect("mesh config")
        .config;
        let snapshot = snapshot(&AUTHORIZER.replace("PROVIDER", provider))
            .with_mesh(MeshSettings::from_config(&mesh));
        let node = node([127, 0, 10, 3], "reviews-v1");
        let set = generate(&snapshot, &node, DEFAULT_TRUST_DOMAIN);
        let listener = set
            .listeners
            .iter()
            .find(|l| l.name == "inbound|9080")
            .expect("the inbound listener");
        let Some(filter::ConfigType::TypedConfig(any)) =
            &listener.filter_chains[0].filters[0].config_type
        else {
            panic!("a typed HCM");
        };
        HttpConnectionManager::decode(any.value.as_slice())
            .expect("an HCM")
            .http_filters
    }

    #[test]
    fn a_custom_policy_asks_its_authorizer_only_about_what_its_rules_match() {
        let filters = inbound_filters("authz");
        let names: Vec<&str> = filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names[..2],
            [
                bosun_wire::http_filters::RBAC,
                bosun_wire::http_filters::EXT_AUTHZ
            ]
        );
        let Some(http_filter::ConfigType::TypedConfig(rbac)) = &filters[0].config_type else {
            panic!("typed");
        };
        let rbac = HttpRbac::decode(rbac.value.as_slice()).expect("rbac");
        assert!(
            rbac.rules.is_none(),
            "CUSTOM rules enforce nothing themselves"
        );
        assert_eq!(rbac.shadow_rules_stat_prefix, EXT_AUTHZ_SHADOW_PREFIX);
        let shadow = rbac.shadow_rules.expect("shadow rules");
        assert_eq!(
            shadow.policies.keys().collect::<Vec<_>>(),
            ["istio-ext-authz-authz-ns[default]-policy[custom]-rule[0]"]
        );
        let Some(http_filter::ConfigType::TypedConfig(authz)) = &filters[1].config_type else {
            panic!("typed");
        };
        let authz = HttpExtAuthz::decode(authz.value.as_slice()).expect("ext_authz");
        let Some(ext_authz::Services::GrpcService(grpc)) = authz.services else {
            panic!("a gRPC service");
        };
        let Some(grpc_service::TargetSpecifier::EnvoyGrpc(target)) = grpc.target_specifier else {
            panic!("envoy_grpc");
        };
        assert_eq!(
            target.cluster_name,
            "outbound|9000||ext-authz.foo.svc.cluster.local"
        );
        assert_eq!(grpc.timeout.map(|t| t.seconds), Some(1));
        let enabled = authz.filter_enabled_metadata.expect("enabled by metadata");
        assert_eq!(enabled.filter, RBAC_HTTP_FILTER);
    }

    #[test]
    fn a_custom_policy_without_its_authorizer_denies_what_it_matches() {
        let filters = inbound_filters("nobody");
        assert_eq!(filters[0].name, bosun_wire::http_filters::RBAC);
        assert!(
            filters
                .iter()
                .all(|f| f.name != bosun_wire::http_filters::EXT_AUTHZ)
        );
        let Some(http_filter::ConfigType::TypedConfig(rbac)) = &filters[0].config_type else {
            panic!("typed");
        };
        let rules = HttpRbac::decode(rbac.value.as_slice())
            .expect("rbac")
            .rules
            .expect("enforced rules");
        assert_eq!(rules.action, rbac::Action::Deny as i32);
        assert!(
            rules
                .policies
                .keys()
                .all(|name| name.ends_with(BAD_CUSTOM_SUFFIX))
        );
    }
}
