//! What access control and end-user authentication cost per request, measured alone:
//! an ALLOW decision over 10 and over 100 AuthorizationPolicy rules (the request matches
//! the last, the worst case), and checking a request's JWT (ES256, the provider shaped as
//! istiod writes it) with the key set already in memory: a token seen for the first time
//! (its signature checked) and one seen before (from the verified-token cache).

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bosun_proxy::filters::jwt_authn::{JwtAuthnFilter, Provider, Requirement, TokenLocation};
use bosun_proxy::rbac::{Permission, Policy, Principal, Rbac, RbacAction, Subject};
use bosun_proxy::routing::{HeaderMatch, HeaderSource, RequestView, ValueMatch};
use bosun_proxy::tls::PeerCertificate;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// istiod's shape for `from.principals` + `to.paths` (prefix) + `to.methods`.
/// `count` policies; each names its own caller, or all the same one (`one_caller`).
fn policies(count: usize, one_caller: bool) -> Rbac {
    let exact = |value: String| ValueMatch::Exact {
        value,
        ignore_case: false,
    };
    let policies = (0..count)
        .map(|index| {
            let permission = Permission::And(vec![
                Permission::Or(vec![Permission::UrlPath(ValueMatch::Prefix {
                    value: format!("/api/{index}/"),
                    ignore_case: false,
                })]),
                Permission::Or(vec![Permission::Header(HeaderMatch {
                    source: HeaderSource::Method,
                    value: exact("GET".into()),
                    expect_absent: false,
                    invert: false,
                    treat_missing_as_empty: false,
                })]),
            ]);
            let principal = Principal::And(vec![Principal::Or(vec![Principal::Authenticated(
                Some(exact(format!(
                    "spiffe://cluster.local/ns/default/sa/caller-{}",
                    if one_caller { count - 1 } else { index }
                ))),
            )])]);
            (
                format!("ns[default]-policy[p{index}]-rule[0]"),
                Policy {
                    permissions: vec![permission],
                    principals: vec![principal],
                },
            )
        })
        .collect();
    Rbac::new(RbacAction::Allow, policies)
}

fn authorization(c: &mut Criterion) {
    let headers = HeaderMap::new();
    // A caller per policy (the index finds its own), and one caller named by every
    // policy (each is evaluated until the last matches: the worst case).
    for (count, one_caller) in [(10, false), (100, false), (100, true)] {
        let rbac = policies(count, one_caller);
        let last = count - 1;
        let path = format!("/api/{last}/orders");
        let view = RequestView {
            authority: "reviews:9080",
            path: &path,
            query: None,
            method: &Method::GET,
            scheme: "http",
            headers: &headers,
        };
        let peer = PeerCertificate {
            hash: String::new(),
            subject: String::new(),
            uri: Some(format!(
                "spiffe://cluster.local/ns/default/sa/caller-{last}"
            )),
            dns: Vec::new(),
        };
        let subject = Subject {
            peer: Some(&peer),
            addresses: None,
            remote: None,
            sni: "",
            request: Some(&view),
            metadata: None,
        };
        assert!(rbac.decide(&subject).allowed);
        let name = if one_caller {
            format!("rbac allow, {count} policies naming one caller")
        } else {
            format!("rbac allow, {count} policies")
        };
        c.bench_function(&name, |b| {
            b.iter(|| black_box(rbac.decide(black_box(&subject))))
        });
    }
}

/// A provider for `issuer` whose key set holds `jwk`.
fn provider(jwk: serde_json::Value) -> JwtAuthnFilter {
    let keys = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).expect("a key set");
    JwtAuthnFilter {
        name: "envoy.filters.http.jwt_authn".into(),
        providers: vec![Provider {
            name: "origins-0".into(),
            issuer: "https://auth.example.com".into(),
            audiences: Vec::new(),
            locations: vec![TokenLocation::Header {
                name: HeaderName::from_static("authorization"),
                prefix: "Bearer ".into(),
            }],
            forward: false,
            forward_payload_header: None,
            payload_in_metadata: Some("payload".into()),
            claim_to_headers: Vec::new(),
            space_delimited_claims: vec!["scope".into()],
            keys: Arc::new(keys),
            verified: Arc::default(),
        }],
        requirement: Requirement::Any(vec![Requirement::Provider(0), Requirement::AllowMissing]),
        bypass_cors_preflight: true,
    }
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://auth.example.com",
        "sub": "user-1",
        "exp": 4_102_444_800u64,
        "scope": "read write",
    })
}

fn bench_token(c: &mut Criterion, name: &str, filter: &JwtAuthnFilter, token: &str) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a header"),
    );
    let view = RequestView {
        authority: "reviews:9080",
        path: "/reviews/1",
        query: None,
        method: &Method::GET,
        scheme: "http",
        headers: &headers,
    };
    let accepted = filter.on_request(&view).expect("a valid token");
    assert!(!accepted.metadata.is_empty());
    // First sight: a provider that has not verified the token yet checks its signature.
    c.bench_function(&format!("{name}, first sight"), |b| {
        b.iter_batched(
            || {
                let mut fresh = filter.clone();
                for provider in &mut fresh.providers {
                    provider.verified = Arc::default();
                }
                fresh
            },
            |fresh| black_box(fresh.on_request(black_box(&view)).is_ok()),
            criterion::BatchSize::SmallInput,
        )
    });
    // Seen before: the same caller's next request.
    c.bench_function(&format!("{name}, seen before"), |b| {
        b.iter(|| black_box(filter.on_request(black_box(&view)).is_ok()))
    });
}

fn jwt(c: &mut Criterion) {
    // ES256: a fresh P-256 key, its public half as a JWK.
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let point = pair.public_key_raw();
    let (x, y) = point[1..].split_at(32);
    let filter = provider(serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let token = jsonwebtoken::encode(&header, &claims(), &key).expect("sign");
    bench_token(c, "jwt ES256", &filter, &token);
}

criterion_group!(benches, authorization, jwt);
criterion_main!(benches);
