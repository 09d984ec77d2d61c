//! `envoy.filters.http.rbac`: a request its rules refuse is answered 403
//! `RBAC: access denied`, as Envoy answers it. Shadow rules (Istio's dry-run policies)
//! are evaluated and counted, never enforced.

use http::StatusCode;

use super::LocalReply;
use crate::rbac::{Rbac, Subject};
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
}

impl RbacFilter {
    /// Whether the subject may pass; `Err` is the denial.
    pub fn check(&self, subject: &Subject<'_>) -> Result<(), LocalReply> {
        if let Some(shadow) = &self.shadow {
            let decision = shadow.decide(subject);
            tracing::debug!(
                filter = %self.name,
                allowed = decision.allowed,
                policy = decision.matched.as_deref().unwrap_or("none"),
                "rbac shadow rules (dry run)"
            );
        }
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        let decision = rules.decide(subject);
        if decision.allowed {
            return Ok(());
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
}
