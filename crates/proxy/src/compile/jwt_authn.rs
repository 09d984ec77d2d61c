//! `envoy.filters.http.jwt_authn`'s `JwtAuthentication` → [`JwtAuthnFilter`]: providers
//! with inline key sets and one requirement for every path, as istiod writes it; other
//! shapes are refused by name.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::data_source;
use envoy_types::pb::envoy::config::route::v3::route_match;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtProvider, JwtRequirement, jwt_provider, jwt_requirement, requirement_rule,
};
use http::HeaderName;
use jsonwebtoken::jwk::JwkSet;

use super::Reason;
use crate::filters::jwt_authn::{JwtAuthnFilter, Provider, Requirement, TokenLocation};

/// Where Envoy looks for a token when the provider names no location.
const DEFAULT_HEADER: &str = "authorization";
const DEFAULT_PREFIX: &str = "Bearer ";
const DEFAULT_PARAM: &str = "access_token";

pub(super) fn compile_jwt_authn(
    name: &str,
    config: &JwtAuthentication,
) -> Result<JwtAuthnFilter, Reason> {
    if config.filter_state_rules.is_some() || !config.requirement_map.is_empty() {
        return Err(
            "filter_state_rules / requirement_map / per-route requirements are not supported yet"
                .into(),
        );
    }
    // Sorted, so provider indexes (and errors) are the same every time.
    let mut names: Vec<&String> = config.providers.keys().collect();
    names.sort();
    let providers = names
        .iter()
        .map(|name| {
            provider(name, &config.providers[*name]).map_err(|r| format!("provider {name}: {r}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requirement = match config.rules.as_slice() {
        [] => Requirement::AllowMissingOrFailed,
        [rule] => {
            let prefix_all = matches!(
                rule.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()),
                Some(route_match::PathSpecifier::Prefix(prefix)) if prefix == "/"
            );
            if !prefix_all {
                return Err("rules: only one rule matching prefix \"/\" is supported yet".into());
            }
            match &rule.requirement_type {
                Some(requirement_rule::RequirementType::Requires(requires)) => {
                    requirement(requires, &names)?
                }
                _ => return Err("rules[0]: a `requires` requirement is needed".into()),
            }
        }
        _ => return Err("rules: only one rule matching prefix \"/\" is supported yet".into()),
    };
    Ok(JwtAuthnFilter {
        name: name.to_owned(),
        providers,
        requirement,
        bypass_cors_preflight: config.bypass_cors_preflight,
    })
}

fn provider(name: &str, provider: &JwtProvider) -> Result<Provider, Reason> {
    let unsupported = [
        (provider.subjects.is_some(), "subjects"),
        (provider.require_expiration, "require_expiration"),
        (provider.max_lifetime.is_some(), "max_lifetime"),
        (
            provider.pad_forward_payload_header,
            "pad_forward_payload_header",
        ),
        (
            !provider.header_in_metadata.is_empty(),
            "header_in_metadata",
        ),
        (
            !provider.failed_status_in_metadata.is_empty(),
            "failed_status_in_metadata",
        ),
        (
            provider.clock_skew_seconds != 0 && provider.clock_skew_seconds != 60,
            "clock_skew_seconds",
        ),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("{field} is not supported yet"));
    }
    let jwks = match &provider.jwks_source_specifier {
        Some(jwt_provider::JwksSourceSpecifier::LocalJwks(source)) => match &source.specifier {
            Some(data_source::Specifier::InlineString(text)) => text.clone(),
            Some(data_source::Specifier::InlineBytes(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| "local_jwks is not UTF-8")?
            }
            _ => {
                return Err(
                    "local_jwks must be inline (a file or variable is not supported yet)".into(),
                );
            }
        },
        Some(jwt_provider::JwksSourceSpecifier::RemoteJwks(_)) => {
            return Err(
                "remote_jwks is not supported yet (the control plane inlines key sets)".into(),
            );
        }
        None => return Err("a key set (local_jwks) is required".into()),
    };
    let keys: JwkSet = serde_json::from_str(&jwks).map_err(|e| format!("local_jwks: {e}"))?;
    let header = |text: &str, field: &str| {
        HeaderName::from_bytes(text.as_bytes())
            .map_err(|_| format!("{field} {text:?} is not a header name"))
    };
    let mut locations = Vec::new();
    for location in &provider.from_headers {
        locations.push(TokenLocation::Header {
            name: header(&location.name, "from_headers name")?,
            prefix: location.value_prefix.clone(),
        });
    }
    locations.extend(
        provider
            .from_params
            .iter()
            .cloned()
            .map(TokenLocation::Param),
    );
    locations.extend(
        provider
            .from_cookies
            .iter()
            .cloned()
            .map(TokenLocation::Cookie),
    );
    if locations.is_empty() {
        locations.push(TokenLocation::Header {
            name: HeaderName::from_static(DEFAULT_HEADER),
            prefix: DEFAULT_PREFIX.to_owned(),
        });
        locations.push(TokenLocation::Param(DEFAULT_PARAM.to_owned()));
    }
    Ok(Provider {
        name: name.to_owned(),
        issuer: provider.issuer.clone(),
        audiences: provider.audiences.clone(),
        locations,
        forward: provider.forward,
        forward_payload_header: Some(provider.forward_payload_header.as_str())
            .filter(|h| !h.is_empty())
            .map(|h| header(h, "forward_payload_header"))
            .transpose()?,
        payload_in_metadata: Some(provider.payload_in_metadata.clone()).filter(|k| !k.is_empty()),
        claim_to_headers: provider
            .claim_to_headers
            .iter()
            .map(|claim| {
                Ok((
                    header(&claim.header_name, "claim_to_headers header_name")?,
                    claim.claim_name.clone(),
                ))
            })
            .collect::<Result<_, Reason>>()?,
        space_delimited_claims: provider
            .normalize_payload_in_metadata
            .as_ref()
            .map(|normalize| normalize.space_delimited_claims.clone())
            .unwrap_or_default(),
        keys: Arc::new(keys),
        verified: Arc::default(),
    })
}

fn requirement(required: &JwtRequirement, providers: &[&String]) -> Result<Requirement, Reason> {
    use jwt_requirement::RequiresType;
    Ok(match &required.requires_type {
        Some(RequiresType::ProviderName(name)) => {
            Requirement::Provider(providers.iter().position(|p| *p == name).ok_or_else(|| {
                format!("requirement names provider {name:?}, which is not configured")
            })?)
        }
        Some(RequiresType::AllowMissing(_)) => Requirement::AllowMissing,
        Some(RequiresType::AllowMissingOrFailed(_)) => Requirement::AllowMissingOrFailed,
        Some(RequiresType::RequiresAny(any)) => Requirement::Any(
            any.requirements
                .iter()
                .map(|r| requirement(r, providers))
                .collect::<Result<_, _>>()?,
        ),
        Some(RequiresType::RequiresAll(all)) => Requirement::All(
            all.requirements
                .iter()
                .map(|r| requirement(r, providers))
                .collect::<Result<_, _>>()?,
        ),
        Some(RequiresType::ProviderAndAudiences(_)) => {
            return Err("provider_and_audiences is not supported yet".into());
        }
        Some(RequiresType::ExtractOnlyWithoutValidation(_)) => {
            return Err("extract_only_without_validation is not supported yet".into());
        }
        None => return Err("an empty requirement".into()),
    })
}
