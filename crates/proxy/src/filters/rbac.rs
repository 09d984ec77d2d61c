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
    /// Put before the shadow rules' metadata keys (istiod: `istio_dry_run_allow_`,
    /// `istio_ext_authz_`, ...).
    pub shadow_prefix: String,
    /// The dynamic metadata namespace the filter writes to (its extension's name).
    pub metadata_namespace: &'static str,
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
        use bosun_wire::metadata::{SHADOW_EFFECTIVE_POLICY_ID, SHADOW_ENGINE_RESULT};
        let entry = metadata
            .entry(self.metadata_namespace.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        let Some(entry) = entry.as_object_mut() else {
            return;
        };
        if let Some(policy) = &decision.matched {
            entry.insert(
                format!("{}{SHADOW_EFFECTIVE_POLICY_ID}", self.shadow_prefix),
                policy.clone().into(),
            );
        }
        let result = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        entry.insert(
            format!("{}{SHADOW_ENGINE_RESULT}", self.shadow_prefix),
            result.into(),
        );
    }
}
