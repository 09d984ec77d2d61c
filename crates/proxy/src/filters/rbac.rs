//! `envoy.filters.http.rbac`: a request its rules refuse is answered 403
//! `RBAC: access denied`, as Envoy answers it. Shadow rules (Istio's dry-run policies)
//! are evaluated and counted, never enforced.

use http::StatusCode;

use super::LocalReply;
use crate::rbac::{Decision, Rbac, Subject};
use crate::telemetry::ResponseFlag;

pub const RBAC_FILTER: &str = bosun_wire::http_filters::RBAC;

/// The body of Envoy's denial.
pub const ACCESS_DENIED: &str = "RBAC: access denied";

/// One RBAC filter: its enforced rules (`None`: nothing is enforced) and shadow rules.
#[derive(Debug, Clone)]
pub struct RbacFilter {
    pub name: String,
    pub rules: Option<Rbac>,
    pub shadow: Option<Rbac>,
    /// The metadata keys the shadow rules' decision is left under.
    pub shadow_keys: ShadowKeys,
    /// The dynamic metadata namespace the filter writes to (its extension's name).
    pub metadata_namespace: &'static str,
}

/// `<shadow_rules_stat_prefix>shadow_effective_policy_id` and `..._engine_result`, made
/// once when the filter is compiled (istiod's prefixes: `istio_dry_run_allow_`,
/// `istio_ext_authz_`, ...).
#[derive(Debug, Clone, Default)]
pub struct ShadowKeys {
    pub policy: String,
    pub result: String,
}

impl ShadowKeys {
    pub fn with_prefix(prefix: &str) -> Self {
        use bosun_wire::metadata::{SHADOW_EFFECTIVE_POLICY_ID, SHADOW_ENGINE_RESULT};
        ShadowKeys {
            policy: format!("{prefix}{SHADOW_EFFECTIVE_POLICY_ID}"),
            result: format!("{prefix}{SHADOW_ENGINE_RESULT}"),
        }
    }
}

impl RbacFilter {
    /// Whether the subject may pass; `Err` is the denial. `Ok` carries the shadow
    /// rules' decision, for [`RbacFilter::record_shadow`].
    pub fn check(&self, subject: &Subject<'_>) -> Result<Option<Decision>, LocalReply> {
        let shadow = self.shadow.as_ref().map(|shadow| {
            let decision = shadow.decide(subject);
            tracing::debug!(
                filter = %self.name,
                allowed = decision.allowed,
                policy = decision.matched.as_deref().unwrap_or("none"),
                "rbac shadow rules"
            );
            decision
        });
        let Some(rules) = &self.rules else {
            return Ok(shadow);
        };
        let decision = rules.decide(subject);
        if decision.allowed {
            return Ok(shadow);
        }
        tracing::debug!(
            filter = %self.name,
            policy = decision.matched.as_deref().unwrap_or("none"),
            "rbac denied"
        );
        Err(LocalReply::new(
            StatusCode::FORBIDDEN,
            ACCESS_DENIED,
            ResponseFlag::None,
        ))
    }

    /// Leaves the shadow rules' decision in `metadata` for the filters after this one,
    /// as Envoy leaves it.
    pub fn record_shadow(
        &self,
        decision: &Decision,
        metadata: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        if !metadata.contains_key(self.metadata_namespace) {
            metadata.insert(
                self.metadata_namespace.to_owned(),
                serde_json::Value::Object(serde_json::Map::new()),
            );
        }
        let Some(entry) = metadata
            .get_mut(self.metadata_namespace)
            .and_then(serde_json::Value::as_object_mut)
        else {
            return;
        };
        if let Some(policy) = &decision.matched {
            entry.insert(self.shadow_keys.policy.clone(), policy.clone().into());
        }
        let result = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        entry.insert(self.shadow_keys.result.clone(), result.into());
    }
}
