//! `RequestAuthentication`: which JSON Web Tokens a workload's sidecar accepts.

use serde::Deserialize;

use super::PolicyTargetReference;
use crate::networking::MatchLabelsSelector;

/// The `spec` of a RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestAuthentication {
    pub selector: Option<MatchLabelsSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `None` entries are YAML nulls, which validation refuses by position.
    #[serde(default)]
    pub jwt_rules: Vec<Option<JwtRule>>,
}

impl RequestAuthentication {
    pub fn rules(&self) -> impl Iterator<Item = &JwtRule> {
        self.jwt_rules.iter().flatten()
    }
}

/// One issuer's tokens: where they are found, how they are checked, what is passed on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtRule {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks_uri: String,
    /// An inline JSON Web Key Set; wins over `jwks_uri`.
    #[serde(default)]
    pub jwks: String,
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    #[serde(default)]
    pub output_payload_to_header: String,
    #[serde(default)]
    pub forward_original_token: bool,
    #[serde(default)]
    pub output_claim_to_headers: Vec<Option<ClaimToHeader>>,
    /// How long fetching `jwks_uri` may take (5 s when unset); validated as a duration.
    pub timeout: Option<String>,
    #[serde(default)]
    pub space_delimited_claims: Vec<String>,
    #[serde(default)]
    pub presence: Option<Presence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    pub name: String,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub claim: String,
}

/// Whether a request without a token is refused by authentication itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Presence {
    #[default]
    Optional,
    Required,
}

impl TryFrom<String> for Presence {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "OPTIONAL" => Ok(Presence::Optional),
            "REQUIRED" => Ok(Presence::Required),
            _ => Err(format!(
                "Unsupported value: {value:?}: supported values: \"OPTIONAL\", \"REQUIRED\""
            )),
        }
    }
}
