//! RequestAuthentication validation, with Istio's messages (its CRD rules where they
//! differ from `pkg/config/validation`).

use super::findings::Findings;
use super::rules::{validate_selector_labels, validate_target};
use crate::duration::parse_duration;
use crate::meta::Config;
use crate::security::{JwtRule, RequestAuthentication};

pub(super) fn validate(config: &Config<RequestAuthentication>, findings: &mut Findings) {
    let spec = &config.spec;
    let attachments = usize::from(spec.selector.is_some())
        + usize::from(spec.target_ref.is_some())
        + usize::from(!spec.target_refs.is_empty());
    if attachments > 1 {
        findings.error("spec", "only one of targetRefs or selector can be set");
    }
    if let Some(selector) = &spec.selector {
        validate_selector_labels(
            findings,
            "spec.selector.matchLabels",
            &selector.match_labels,
        );
    }
    let namespace = config.meta.namespace.clone();
    if let Some(target) = &spec.target_ref {
        validate_target(findings, "spec.targetRef", target, &namespace);
    }
    for (index, target) in spec.target_refs.iter().enumerate() {
        validate_target(
            findings,
            &format!("spec.targetRefs[{index}]"),
            target,
            &namespace,
        );
    }
    for (index, rule) in spec.jwt_rules.iter().enumerate() {
        let field = format!("spec.jwtRules[{index}]");
        match rule {
            None => findings.error(&field, format!("{field} in body must be of type object")),
            Some(rule) => validate_rule(findings, &field, rule),
        }
    }
}

fn validate_rule(findings: &mut Findings, field: &str, rule: &JwtRule) {
    if rule.issuer.is_empty() && rule.jwks_uri.is_empty() {
        findings.error(field, "issuer or jwksUri must be non-empty string");
    }
    for (index, audience) in rule.audiences.iter().enumerate() {
        if audience.is_empty() {
            findings.error(
                format!("{field}.audiences[{index}]"),
                format!("{field}.audiences[{index}] in body should be at least 1 chars long"),
            );
        }
    }
    if !rule.jwks_uri.is_empty()
        && let Err(reason) = check_jwks_uri(&rule.jwks_uri)
    {
        findings.error(format!("{field}.jwksUri"), reason);
    }
    if !rule.jwks.is_empty()
        && serde_json::from_str::<serde_json::Value>(&rule.jwks)
            .ok()
            .and_then(|set| set.get("keys").cloned())
            .is_none_or(|keys| !keys.is_array())
    {
        findings.error(
            format!("{field}.jwks"),
            "jwks parse error: not a JSON Web Key Set (an object with a \"keys\" array)",
        );
    }
    for (index, header) in rule.from_headers.iter().enumerate() {
        if header.name.is_empty() {
            let path = format!("{field}.fromHeaders[{index}].name");
            findings.error(
                &path,
                format!("{path} in body should be at least 1 chars long"),
            );
        }
    }
    for (name, values) in [
        ("fromParams", &rule.from_params),
        ("fromCookies", &rule.from_cookies),
        ("spaceDelimitedClaims", &rule.space_delimited_claims),
    ] {
        for (index, value) in values.iter().enumerate() {
            if value.is_empty() {
                let path = format!("{field}.{name}[{index}]");
                findings.error(
                    &path,
                    format!("{path} in body should be at least 1 chars long"),
                );
            }
        }
    }
    for (index, claim) in rule.output_claim_to_headers.iter().enumerate() {
        let path = format!("{field}.outputClaimToHeaders[{index}]");
        let Some(claim) = claim else {
            findings.error(&path, format!("{path} in body must be of type object"));
            continue;
        };
        if claim.claim.is_empty() {
            findings.error(
                format!("{path}.claim"),
                format!("{path}.claim in body should be at least 1 chars long"),
            );
        }
        if claim.header.is_empty() {
            findings.error(
                format!("{path}.header"),
                format!("{path}.header in body should be at least 1 chars long"),
            );
        } else if !claim
            .header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            findings.error(
                format!("{path}.header"),
                format!("{path}.header in body should match '^[-_A-Za-z0-9]+$'"),
            );
        }
    }
    if let Some(timeout) = &rule.timeout {
        let valid = parse_duration(timeout).is_ok_and(|d| d >= std::time::Duration::from_millis(1));
        if !valid {
            findings.error(
                format!("{field}.timeout"),
                "must be a valid duration greater than 1ms",
            );
        }
    }
}

/// `http(s)://host[:port]/path`, or (Bosun, one machine) `file:///path`.
fn check_jwks_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("url must have scheme".to_owned());
    };
    match scheme {
        "http" | "https" if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        "http" | "https" => Err(format!("jwksUri {uri:?} has no host")),
        "file" => Ok(()),
        _ => Err(format!("URI scheme {scheme:?} is not supported")),
    }
}
