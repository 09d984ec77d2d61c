//! AuthorizationPolicy: which policies apply to a workload's sidecar. The rules stay as
//! Istio writes them; translation turns them into each proxy's access control.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_api::security::Rule;

use crate::service::selects;

/// What a policy does with a request its rules match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AuthorizationAction {
    Allow,
    Deny,
    /// Matched requests are marked for the access log; nothing is refused.
    Audit,
    /// Asks the external authorizer `provider` names about the requests its rules match.
    Custom,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthorizationPolicy {
    pub namespace: String,
    pub name: String,
    /// `None` or empty: the namespace (the mesh, in the root namespace).
    pub selector: Option<BTreeMap<String, String>>,
    /// Attached to gateways or services by reference, not to sidecars by selector.
    pub targeted: bool,
    pub action: AuthorizationAction,
    /// CUSTOM: the extension provider (external authorizer) asked.
    pub provider: Option<String>,
    #[serde(skip)]
    pub rules: Vec<Rule>,
    /// `istio.io/dry-run: "true"`: evaluated and reported, never enforced.
    pub dry_run: bool,
    /// Where it was read (`file:line`), for messages about it.
    pub origin: String,
}

/// Every AuthorizationPolicy of the mesh, in load order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuthorizationPolicies {
    policies: Vec<Arc<AuthorizationPolicy>>,
}

impl AuthorizationPolicies {
    pub fn new(policies: Vec<Arc<AuthorizationPolicy>>) -> Self {
        Self { policies }
    }

    /// Every policy, in load order.
    pub fn all(&self) -> &[Arc<AuthorizationPolicy>] {
        &self.policies
    }

    /// The policies on the sidecar of a workload with `labels` in `namespace`: the root
    /// namespace's and the workload's namespace's, whose selector picks it (no selector
    /// picks all), in the order they were loaded.
    pub fn for_workload(
        &self,
        root_namespace: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&Arc<AuthorizationPolicy>> {
        self.policies
            .iter()
            .filter(|policy| policy.namespace == root_namespace || policy.namespace == namespace)
            .filter(|policy| !policy.targeted)
            .filter(|policy| {
                policy
                    .selector
                    .as_ref()
                    .is_none_or(|selector| selects(selector, labels))
            })
            .collect()
    }
}
