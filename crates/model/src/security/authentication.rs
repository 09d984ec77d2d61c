//! RequestAuthentication: which tokens a workload's sidecar checks, and the key sets it
//! checks them with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::service::selects;

/// One issuer's tokens, as a RequestAuthentication's `jwtRules` entry says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: JwksSource,
    /// Headers a token is read from, each with the prefix before it (none: Istio's
    /// default, `Authorization: Bearer <token>`, and the `access_token` parameter).
    pub from_headers: Vec<(String, String)>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// Keep the token on the request to the app.
    pub forward_original_token: bool,
    /// A header the verified payload is passed to the app in (base64url).
    pub output_payload_to_header: Option<String>,
    /// (header, claim): claims passed to the app as headers.
    pub output_claim_to_headers: Vec<(String, String)>,
    pub space_delimited_claims: Vec<String>,
    pub timeout: Duration,
}

/// Where a rule's keys are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum JwksSource {
    /// The JSON Web Key Set written in the rule.
    Inline(String),
    /// Fetched by the control plane from `jwksUri` and written into the config, as istiod
    /// does by default.
    Uri(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestAuthenticationPolicy {
    pub source: String,
    pub namespace: String,
    pub selector: Option<BTreeMap<String, String>>,
    /// Attached to gateways by reference, not to sidecars by selector.
    pub targeted: bool,
    pub rules: Vec<JwtRule>,
}

/// Every RequestAuthentication of the mesh, in load order, and the key sets fetched for
/// their `jwksUri`s.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RequestAuthentications {
    policies: Vec<Arc<RequestAuthenticationPolicy>>,
    /// `jwksUri` → the key set fetched, or why it could not be.
    fetched: BTreeMap<String, Result<String, String>>,
}

impl RequestAuthentications {
    pub fn new(policies: Vec<Arc<RequestAuthenticationPolicy>>) -> Self {
        Self {
            policies,
            fetched: BTreeMap::new(),
        }
    }

    /// The `jwksUri`s the rules name, for the control plane to fetch, each with how long
    /// fetching it may take (the longest any rule naming it allows).
    pub fn jwks_uris(&self) -> Vec<(String, Duration)> {
        let mut uris: BTreeMap<String, Duration> = BTreeMap::new();
        for rule in self.policies.iter().flat_map(|policy| &policy.rules) {
            if let JwksSource::Uri(uri) = &rule.keys {
                let timeout = uris.entry(uri.clone()).or_insert(rule.timeout);
                *timeout = (*timeout).max(rule.timeout);
            }
        }
        uris.into_iter().collect()
    }

    /// The set with the key sets fetched for its `jwksUri`s.
    pub fn with_fetched(mut self, fetched: BTreeMap<String, Result<String, String>>) -> Self {
        self.fetched = fetched;
        self
    }

    /// The key set a rule checks tokens with; `Err` says why there is none (then no token
    /// of the rule's issuer is accepted).
    pub fn keys_of<'a>(&'a self, rule: &'a JwtRule) -> Result<&'a str, String> {
        match &rule.keys {
            JwksSource::Inline(jwks) => Ok(jwks),
            JwksSource::Uri(uri) => match self.fetched.get(uri) {
                Some(Ok(jwks)) => Ok(jwks),
                Some(Err(why)) => Err(why.clone()),
                None => Err(format!("{uri} has not been fetched")),
            },
        }
    }

    /// The rules on the sidecar of a workload with `labels` in `namespace`: those of the
    /// root namespace's and the workload's namespace's policies that pick it, in order.
    pub fn rules_for(
        &self,
        root_namespace: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&JwtRule> {
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
            .flat_map(|policy| &policy.rules)
            .collect()
    }
}
