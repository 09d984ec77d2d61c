//! `envoy.extensions.filters.http.cors.v3.CorsPolicy` → [`CorsPolicy`].

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as ProtoCorsPolicy;
use http::HeaderValue;

use super::Reason;
use super::matchers::string_match;
use super::percent::fraction;
use crate::filters::cors::CorsPolicy;
use crate::routing::Fraction;

pub fn compile_cors(policy: &ProtoCorsPolicy) -> Result<CorsPolicy, Reason> {
    if policy.shadow_enabled.is_some() {
        return Err("shadow_enabled is not supported yet".into());
    }
    if policy.allow_private_network_access.is_some_and(|v| v.value) {
        return Err("allow_private_network_access is not supported yet".into());
    }
    let allow_origins = policy
        .allow_origin_string_match
        .iter()
        .map(|matcher| string_match(matcher, "allow_origin_string_match"))
        .collect::<Result<Vec<_>, _>>()?;
    let value = |text: &str, field: &str| -> Result<Option<HeaderValue>, Reason> {
        if text.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(text)
            .map(Some)
            .map_err(|_| format!("{field} {text:?} is not a header value"))
    };
    let enabled = match &policy.filter_enabled {
        None => Fraction::ALL,
        Some(runtime) => {
            if !runtime.runtime_key.is_empty() {
                return Err(
                    "filter_enabled.runtime_key is not supported (the proxy has no runtime)".into(),
                );
            }
            fraction(
                runtime.default_value.as_ref(),
                "filter_enabled.default_value",
            )?
        }
    };
    Ok(CorsPolicy {
        allow_origins,
        allow_methods: value(&policy.allow_methods, "allow_methods")?,
        allow_headers: value(&policy.allow_headers, "allow_headers")?,
        expose_headers: value(&policy.expose_headers, "expose_headers")?,
        max_age: value(&policy.max_age, "max_age")?,
        allow_credentials: policy.allow_credentials.is_some_and(|v| v.value),
        enabled,
        // Envoy's default: forward them.
        forward_not_matching_preflights: policy
            .forward_not_matching_preflights
            .is_none_or(|v| v.value),
    })
}
