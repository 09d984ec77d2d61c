//! PeerAuthentications and AuthorizationPolicies → the model's security policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_api::Config;
use bosun_api::security::{
    Action, AuthorizationPolicy as ApiAuthorizationPolicy, DRY_RUN_ANNOTATION, MutualTlsMode,
    PeerAuthentication,
};
use bosun_api::validation::port_key;

use super::source;
use crate::security::{AuthorizationAction, AuthorizationPolicy, MtlsMode, PeerPolicy};

pub(super) fn peer_policy_of(config: &Config<PeerAuthentication>) -> PeerPolicy {
    let spec = &config.spec;
    PeerPolicy {
        source: source(config),
        namespace: config.meta.namespace.clone(),
        selector: spec
            .selector
            .as_ref()
            .map(|selector| selector.match_labels.clone()),
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
        selector: spec
            .selector
            .as_ref()
            .map(|selector| selector.match_labels.clone()),
        targeted: spec.target_ref.is_some() || !spec.target_refs.is_empty(),
        action: match spec.action {
            Action::Allow => AuthorizationAction::Allow,
            Action::Deny => AuthorizationAction::Deny,
            Action::Audit => AuthorizationAction::Audit,
            Action::Custom => AuthorizationAction::Custom,
        },
        rules: spec.rules().to_vec(),
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
