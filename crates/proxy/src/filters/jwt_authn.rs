//! `envoy.filters.http.jwt_authn`: JSON Web Tokens checked against each provider's key
//! set, as Envoy checks them for Istio's RequestAuthentication.
//!
//! A provider's token is read from its locations (Istio's default: `Authorization:
//! Bearer`, or the `access_token` query parameter). A token is the provider's when its
//! issuer is; it must be signed by a key of the set (the JWT header's `kid`, else any
//! key of the header's algorithm), unexpired (60 s of clock skew, as Envoy allows) and,
//! when the provider names audiences, meant for one of them. The requirement decides
//! what passes: istiod's lets a request without a token through (authorization then
//! decides) and refuses one whose token is present but not valid, 401 (403 for a wrong
//! audience), with Envoy's messages. A valid token's claims become dynamic metadata
//! (`payload`) for access control, and may be passed to the app as headers.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::LocalReply;
use super::jwt_cache::VerifiedTokens;
use crate::routing::RequestView;
use crate::telemetry::ResponseFlag;

pub const JWT_AUTHN_FILTER: &str = bosun_wire::http_filters::JWT_AUTHN;

/// Envoy's allowance for clocks that disagree.
const CLOCK_SKEW_SECONDS: u64 = 60;

#[derive(Debug, Clone)]
pub struct JwtAuthnFilter {
    pub name: String,
    pub providers: Vec<Provider>,
    pub requirement: Requirement,
    /// CORS preflights pass without a token.
    pub bypass_cors_preflight: bool,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub locations: Vec<TokenLocation>,
    /// Keep the token on the request.
    pub forward: bool,
    pub forward_payload_header: Option<HeaderName>,
    /// The key of the dynamic metadata the claims go under.
    pub payload_in_metadata: Option<String>,
    pub claim_to_headers: Vec<(HeaderName, String)>,
    /// Claims turned from space-delimited strings into lists in the metadata.
    pub space_delimited_claims: Vec<String>,
    pub keys: Arc<JwkSet>,
    /// Tokens this provider verified already.
    pub verified: Arc<VerifiedTokens>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

/// Envoy's requirement tree, over provider indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Provider(usize),
    AllowMissing,
    AllowMissingOrFailed,
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
}

/// Why a token was not accepted, with Envoy's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    BadFormat,
    UnknownIssuer,
    NoMatchingKey,
    VerificationFails,
    Expired,
    NotYetValid,
    AudienceNotAllowed,
}

impl JwtError {
    fn message(&self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            JwtError::UnknownIssuer => "Jwt issuer is not configured",
            JwtError::NoMatchingKey => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtError::VerificationFails => "Jwt verification fails",
            JwtError::Expired => "Jwt is expired",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            JwtError::AudienceNotAllowed => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// One provider's outcome for a request.
#[derive(Debug, Clone)]
enum Outcome {
    Missing,
    Failed(JwtError),
    Verified(Verified),
}

#[derive(Debug, Clone)]
struct Verified {
    /// The header the token came in, when it came in one.
    header: Option<HeaderName>,
    /// The payload segment as sent (base64url).
    encoded_payload: String,
    claims: Value,
}

/// What a request that passed leaves for the filters after it and for the request.
#[derive(Debug, Default)]
pub struct Accepted {
    /// Dynamic metadata of the filter: payload key → claims.
    pub metadata: serde_json::Map<String, Value>,
    pub remove_headers: Vec<HeaderName>,
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
}

impl JwtAuthnFilter {
    pub fn on_request(&self, request: &RequestView<'_>) -> Result<Accepted, LocalReply> {
        if self.bypass_cors_preflight && is_preflight(request) {
            return Ok(Accepted::default());
        }
        let outcomes: Vec<Outcome> = self
            .providers
            .iter()
            .map(|provider| provider.check(request))
            .collect();
        if let Err(error) = evaluate(&self.requirement, &outcomes) {
            return Err(
                LocalReply::new(error.status(), error.message(), ResponseFlag::None).with_header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"jwt\", error=\"invalid_token\""),
                ),
            );
        }
        let mut accepted = Accepted::default();
        for (provider, outcome) in self.providers.iter().zip(&outcomes) {
            let Outcome::Verified(verified) = outcome else {
                continue;
            };
            provider.pass_on(verified, &mut accepted);
        }
        Ok(accepted)
    }
}

fn is_preflight(request: &RequestView<'_>) -> bool {
    *request.method == http::Method::OPTIONS
        && request.headers.contains_key(http::header::ORIGIN)
        && request
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Envoy's evaluation: `allow_missing` holds when its siblings found no token.
fn evaluate(requirement: &Requirement, outcomes: &[Outcome]) -> Result<(), JwtError> {
    match requirement {
        Requirement::Provider(index) => match outcomes.get(*index) {
            Some(Outcome::Verified(_)) => Ok(()),
            Some(Outcome::Failed(error)) => Err(error.clone()),
            Some(Outcome::Missing) | None => Err(JwtError::Missing),
        },
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => Ok(()),
        Requirement::All(all) => all.iter().try_for_each(|r| evaluate(r, outcomes)),
        Requirement::Any(any) => {
            let mut first_error: Option<JwtError> = None;
            let mut all_missing = true;
            for child in any {
                match child {
                    Requirement::AllowMissing | Requirement::AllowMissingOrFailed => continue,
                    _ => {}
                }
                match evaluate(child, outcomes) {
                    Ok(()) => return Ok(()),
                    Err(JwtError::Missing) => {}
                    Err(error) => {
                        all_missing = false;
                        first_error.get_or_insert(error);
                    }
                }
            }
            let allows_missing = any.contains(&Requirement::AllowMissing);
            let allows_failed = any.contains(&Requirement::AllowMissingOrFailed);
            if allows_failed || (allows_missing && all_missing) {
                return Ok(());
            }
            Err(first_error.unwrap_or(JwtError::Missing))
        }
    }
}

impl Provider {
    /// Every token at the provider's locations must be valid, as Envoy checks them.
    fn check(&self, request: &RequestView<'_>) -> Outcome {
        let tokens = self.find_tokens(request);
        let mut verified = None;
        for (token, header) in tokens {
            match self.verify(&token) {
                Ok((encoded_payload, claims)) => {
                    verified.get_or_insert(Verified {
                        header,
                        encoded_payload,
                        claims,
                    });
                }
                Err(error) => return Outcome::Failed(error),
            }
        }
        verified.map_or(Outcome::Missing, Outcome::Verified)
    }

    /// The tokens at the provider's locations, each with the header it came in.
    fn find_tokens(&self, request: &RequestView<'_>) -> Vec<(String, Option<HeaderName>)> {
        let mut found = Vec::new();
        for location in &self.locations {
            match location {
                TokenLocation::Header { name, prefix } => {
                    for value in request.headers.get_all(name) {
                        let Ok(value) = value.to_str() else { continue };
                        if let Some(token) = strip_prefix_ignoring_case(value, prefix) {
                            let token = token.trim();
                            if !token.is_empty() {
                                found.push((token.to_owned(), Some(name.clone())));
                            }
                        }
                    }
                }
                TokenLocation::Param(name) => {
                    found.extend(query_param(request.query, name).map(|token| (token, None)));
                }
                TokenLocation::Cookie(name) => {
                    found.extend(cookie(request.headers, name).map(|token| (token, None)));
                }
            }
        }
        found
    }

    /// Checks the token (once: a token verified before is taken from the cache while its
    /// time limits hold); its payload segment and claims when it is valid.
    fn verify(&self, token: &str) -> Result<(String, Value), JwtError> {
        if let Some(claims) = self.verified.get(token, CLOCK_SKEW_SECONDS) {
            let payload = token.split('.').nth(1).unwrap_or_default().to_owned();
            return Ok((payload, Value::clone(&claims)));
        }
        let (payload, claims) = self.verify_signature(token)?;
        self.verified.insert(token, Arc::new(claims.clone()));
        Ok((payload, claims))
    }

    fn verify_signature(&self, token: &str) -> Result<(String, Value), JwtError> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        let unverified: Value = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(JwtError::BadFormat)?;
        if !self.issuer.is_empty() && unverified["iss"].as_str() != Some(self.issuer.as_str()) {
            return Err(JwtError::UnknownIssuer);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::BadFormat)?;
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => self.keys.find(kid).into_iter().collect(),
            None => self.keys.keys.iter().collect(),
        };
        let mut last_error = JwtError::NoMatchingKey;
        for jwk in candidates {
            if !key_fits(jwk, header.alg) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let mut validation = Validation::new(header.alg);
            validation.leeway = CLOCK_SKEW_SECONDS;
            validation.validate_nbf = true;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => {
                    self.check_audience(&data.claims)?;
                    return Ok((payload.to_owned(), data.claims));
                }
                Err(error) => {
                    last_error = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
                        jsonwebtoken::errors::ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                        _ => JwtError::VerificationFails,
                    };
                }
            }
        }
        Err(last_error)
    }

    fn check_audience(&self, claims: &Value) -> Result<(), JwtError> {
        if self.audiences.is_empty() {
            return Ok(());
        }
        let allowed = |aud: &str| self.audiences.iter().any(|a| a == aud);
        let ok = match &claims["aud"] {
            Value::String(aud) => allowed(aud),
            Value::Array(auds) => auds.iter().filter_map(Value::as_str).any(allowed),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::AudienceNotAllowed)
        }
    }

    /// What a verified token leaves: its claims in the metadata, its headers.
    fn pass_on(&self, verified: &Verified, accepted: &mut Accepted) {
        if let Some(key) = &self.payload_in_metadata {
            accepted
                .metadata
                .insert(key.clone(), self.normalized(&verified.claims));
        }
        if !self.forward
            && let Some(header) = &verified.header
        {
            accepted.remove_headers.push(header.clone());
        }
        if let Some(header) = &self.forward_payload_header
            && let Ok(value) = HeaderValue::from_str(&verified.encoded_payload)
        {
            accepted.add_headers.push((header.clone(), value));
        }
        for (header, claim) in &self.claim_to_headers {
            let value = match &verified.claims[claim.as_str()] {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                _ => None,
            };
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                accepted.add_headers.push((header.clone(), value));
            }
        }
    }

    /// The claims with each space-delimited claim made a list, as Envoy normalizes them.
    fn normalized(&self, claims: &Value) -> Value {
        let mut claims = claims.clone();
        if let Value::Object(map) = &mut claims {
            for name in &self.space_delimited_claims {
                if let Some(Value::String(text)) = map.get(name) {
                    let items = text
                        .split(' ')
                        .filter(|item| !item.is_empty())
                        .map(|item| Value::String(item.to_owned()))
                        .collect();
                    map.insert(name.clone(), Value::Array(items));
                }
            }
        }
        claims
    }
}

/// Whether a key of the set can check a token signed with `alg`.
fn key_fits(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as Params;
    let family_fits = match (&jwk.algorithm, alg) {
        (Params::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)
        | (Params::RSA(_), Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)
        | (Params::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
        | (Params::OctetKeyPair(_), Algorithm::EdDSA) => true,
        // A key set of public keys: a token signed with a shared secret is refused.
        _ => false,
    };
    let declared_fits = jwk
        .common
        .key_algorithm
        .is_none_or(|declared| declared.to_string() == format!("{alg:?}"));
    family_fits && declared_fits
}

fn strip_prefix_ignoring_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_missing_holds_only_without_a_token() {
        let any = Requirement::Any(vec![Requirement::Provider(0), Requirement::AllowMissing]);
        assert_eq!(evaluate(&any, &[Outcome::Missing]), Ok(()));
        assert_eq!(
            evaluate(&any, &[Outcome::Failed(JwtError::Expired)]),
            Err(JwtError::Expired)
        );
        let two = Requirement::Any(vec![
            Requirement::Provider(0),
            Requirement::Provider(1),
            Requirement::All(vec![
                Requirement::Any(vec![Requirement::Provider(0), Requirement::AllowMissing]),
                Requirement::Any(vec![Requirement::Provider(1), Requirement::AllowMissing]),
            ]),
        ]);
        // The other issuer's provider fails on the token; the right one verifies it.
        let verified = Outcome::Verified(Verified {
            header: None,
            encoded_payload: String::new(),
            claims: Value::Null,
        });
        assert_eq!(
            evaluate(&two, &[Outcome::Failed(JwtError::UnknownIssuer), verified]),
            Ok(())
        );
        assert_eq!(
            evaluate(&two, &[Outcome::Missing, Outcome::Missing]),
            Ok(())
        );
    }

    #[test]
    fn tokens_are_found_where_the_provider_looks() {
        assert_eq!(
            strip_prefix_ignoring_case("bearer abc", "Bearer "),
            Some("abc")
        );
        assert_eq!(
            query_param(Some("a=1&access_token=t"), "access_token").as_deref(),
            Some("t")
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("x=1; jwt=tok"),
        );
        assert_eq!(cookie(&headers, "jwt").as_deref(), Some("tok"));
    }
}
