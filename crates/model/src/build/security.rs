//! PeerAuthentications and AuthorizationPolicies → the model's security policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_api::Config;
use bosun_api::networking::MatchLabelsSelector;
use bosun_api::security::{
    Action, AuthorizationPolicy as ApiAuthorizationPolicy, DRY_RUN_ANNOTATION, MutualTlsMode,
    PeerAuthentication, RequestAuthentication,
};
use bosun_api::validation::port_key;

use super::source;
use crate::security::{
    AuthorizationAction, AuthorizationPolicy, JwksSource, JwtRule, MtlsMode, PeerPolicy,
    RequestAuthenticationPolicy,
};

/// How long fetching a `jwksUri` may take when the rule does not say (istiod's).
const JWKS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn request_authentication_of(
    config: &Config<RequestAuthentication>,
) -> Arc<RequestAuthenticationPolicy> {
    let spec = &config.spec;
    Arc::new(RequestAuthenticationPolicy {
        source: source(config),
        namespace: config.meta.namespace.clone(),
        selector: labels_of(spec.selector.as_ref()),
        targeted: spec.target_ref.is_some() || !spec.target_refs.is_empty(),
        rules: spec
            .rules()
            .map(|rule| JwtRule {
                issuer: rule.issuer.clone(),
                audiences: rule.audiences.clone(),
                keys: if rule.jwks.is_empty() {
                    JwksSource::Uri(rule.jwks_uri.clone())
                } else {
                    JwksSource::Inline(rule.jwks.clone())
                },
                from_headers: rule
                    .from_headers
                    .iter()
                    .map(|header| (header.name.clone(), header.prefix.clone()))
                    .collect(),
                from_params: rule.from_params.clone(),
                from_cookies: rule.from_cookies.clone(),
                forward_original_token: rule.forward_original_token,
                output_payload_to_header: Some(rule.output_payload_to_header.clone())
                    .filter(|header| !header.is_empty()),
                output_claim_to_headers: rule
                    .output_claim_to_headers
                    .iter()
                    .flatten()
                    .map(|claim| (claim.header.clone(), claim.claim.clone()))
                    .collect(),
                space_delimited_claims: rule.space_delimited_claims.clone(),
                timeout: rule
                    .timeout
                    .as_deref()
                    .and_then(|timeout| bosun_api::parse_duration(timeout).ok())
                    .unwrap_or(JWKS_TIMEOUT),
            })
            .collect(),
    })
}

pub(super) fn peer_policy_of(config: &Config<PeerAuthentication>) -> PeerPolicy {
    let spec = &config.spec;
    PeerPolicy {
        source: source(config),
        namespace: config.meta.namespace.clone(),
        selector: labels_of(spec.selector.as_ref()),
        mode: spec.mtls.and_then(|mtls| mode(mtls.mode)),
        ports: spec
            .port_level_mtls
            .iter()
            .flatten()
            .filter_map(|(key, mtls)| Some((port_key(key)?, mode(mtls.mode))))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn mode(mode: MutualTlsMode) -> Option<MtlsMode> {
    match mode {
        MutualTlsMode::Unset => None,
        MutualTlsMode::Disable => Some(MtlsMode::Disable),
        MutualTlsMode::Permissive => Some(MtlsMode::Permissive),
        MutualTlsMode::Strict => Some(MtlsMode::Strict),
    }
}

pub(super) fn authorization_policy_of(
    config: &Config<ApiAuthorizationPolicy>,
) -> Arc<AuthorizationPolicy> {
    let spec = &config.spec;
    Arc::new(AuthorizationPolicy {
        namespace: config.meta.namespace.clone(),
        name: config.meta.name.clone(),
        selector: labels_of(spec.selector.as_ref()),
        targeted: spec.target_ref.is_some() || !spec.target_refs.is_empty(),
        action: match spec.action {
            Action::Allow => AuthorizationAction::Allow,
            Action::Deny => AuthorizationAction::Deny,
            Action::Audit => AuthorizationAction::Audit,
            Action::Custom => AuthorizationAction::Custom,
        },
        provider: spec
            .provider
            .as_ref()
            .filter(|_| spec.action == Action::Custom)
            .map(|provider| provider.name.clone()),
        rules: spec.rules().to_vec(),
        origin: config.origin.to_string(),
        dry_run: config
            .meta
            .annotations
            .get(DRY_RUN_ANNOTATION)
            // Go's ParseBool, as istiod reads it.
            .is_some_and(|value| {
                matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True")
            }),
    })
}

fn labels_of(selector: Option<&MatchLabelsSelector>) -> Option<BTreeMap<String, String>> {
    selector.map(|selector| selector.match_labels.clone())
}
