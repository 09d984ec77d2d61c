//! RequestAuthentication → Envoy's `envoy.filters.http.jwt_authn`, as istiod writes it.
//!
//! One provider per rule (`origins-<i>`), its key set inline (istiod fetches `jwksUri`
//! itself by default; so does the control plane here). A request without a token passes
//! (authorization decides); a token that is present must be valid for its issuer. With
//! several providers the requirement is istiod's: any one provider, or every provider
//! either satisfied or missing. Valid claims go to dynamic metadata under `payload`, where
//! authorization's `requestPrincipals` and `request.auth.*` look.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementAndList, JwtRequirementOrList, RequirementRule, jwt_provider, jwt_requirement,
    requirement_rule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Empty;
use envoy_types::util::pack_any;

use bosun_model::{JwtRule, RequestAuthentications};
use bosun_wire::metadata;

/// Claims istiod always splits on spaces into lists, besides a rule's own.
const SPACE_DELIMITED_CLAIMS: [&str; 2] = ["permission", "scope"];

/// A key set no token is signed with: what a rule whose `jwksUri` could not be fetched
/// checks tokens against, so that its issuer's tokens are refused (istiod's fake JWKS).
/// The public half of a key pair whose private half was thrown away.
pub const UNUSABLE_JWKS: &str = concat!(
    r#"{"keys":[{"kty":"RSA","kid":"bosun-unavailable","alg":"RS256","e":"AQAB","n":""#,
    "mDl5RaiLggXVc5D6r9utHfJNehmK0HHt-TTEGOb6ZNd4UlCNXysDkLBpq5TufwNawZ3lNG_0TDeXz67glFMQz-CY4iAY0_tQIGxMSnmWUJacICnwDPYncMahRu9WwBwF7iiSiATo7SEEW1C1d8_B83QRjxN_aJ-lQp3T-VEqEDawBHowViQ1P8LhPCZCMJeoleo3274qqaj_zEb9Au_uhBBtuNqnAC9PMDw72kO4VlTcuWZvZxPZJ3w8mIQneWhmTJdeomckXO0mV4BIXbQZVux6_V90_K-PJJvrqu3PxX8fo3DwtBonSGAcBc37f5kNHBng5Q7GC9NzjWoKXJFpRQ",
    r#""}]}"#
);

/// The JWT filter for a sidecar whose workload has `rules`; `None` without rules.
pub(super) fn http_filter(
    rules: &[&JwtRule],
    authentications: &RequestAuthentications,
) -> Option<HttpFilter> {
    if rules.is_empty() {
        return None;
    }
    let mut providers = HashMap::new();
    let mut each_or_missing = Vec::new();
    let mut any_provider = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let name = format!("origins-{index}");
        providers.insert(name.clone(), provider(rule, authentications));
        each_or_missing.push(requires_any(vec![
            provider_name(&name),
            JwtRequirement {
                requires_type: Some(jwt_requirement::RequiresType::AllowMissing(Empty {})),
            },
        ]));
        any_provider.push(provider_name(&name));
    }
    let requires = if each_or_missing.len() == 1 {
        each_or_missing.remove(0)
    } else {
        // Any provider satisfied, or each either satisfied or missing.
        any_provider.push(JwtRequirement {
            requires_type: Some(jwt_requirement::RequiresType::RequiresAll(
                JwtRequirementAndList {
                    requirements: each_or_missing,
                },
            )),
        });
        requires_any(any_provider)
    };
    let config = JwtAuthentication {
        providers,
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requires)),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    Some(HttpFilter {
        name: bosun_wire::http_filters::JWT_AUTHN.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    })
}

fn provider(rule: &JwtRule, authentications: &RequestAuthentications) -> JwtProvider {
    let jwks = authentications
        .keys_of(rule)
        .map(str::to_owned)
        .unwrap_or_else(|_| UNUSABLE_JWKS.to_owned());
    let mut space_delimited: Vec<String> = rule.space_delimited_claims.clone();
    space_delimited.extend(SPACE_DELIMITED_CLAIMS.map(str::to_owned));
    space_delimited.sort();
    space_delimited.dedup();
    JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        from_headers: rule
            .from_headers
            .iter()
            .map(|(name, prefix)| JwtHeader {
                name: name.clone(),
                value_prefix: prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: metadata::JWT_PAYLOAD.to_string(),
        normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
            space_delimited_claims: space_delimited,
        }),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|(header, claim)| JwtClaimToHeader {
                header_name: header.clone(),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn provider_name(name: &str) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::ProviderName(
            name.to_string(),
        )),
    }
}

fn requires_any(requirements: Vec<JwtRequirement>) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAny(
            JwtRequirementOrList { requirements },
        )),
    }
}
