//! `envoy.filters.http.cors`: cross-origin resource sharing, as Istio's VirtualService
//! `corsPolicy` asks (istiod writes the policy per route for this filter).
//!
//! A request with an `Origin` the route's policy allows is a CORS request: a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered here, and the answer to
//! any other gets `Access-Control-Allow-Origin` (and the credentials and exposed headers
//! the policy names). A request whose origin is not allowed goes on untouched, as in
//! Envoy, unless it is a preflight and the policy says not to forward those.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::routing::{Fraction, Override, Route, ValueMatch};

pub const CORS_FILTER: &str = bosun_wire::http_filters::CORS;

/// A route's CORS policy (Envoy's `CorsPolicy`).
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    pub allow_origins: Vec<ValueMatch>,
    pub allow_methods: Option<HeaderValue>,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    pub enabled: Fraction,
    /// Whether a preflight from an origin the policy does not allow goes upstream.
    pub forward_not_matching_preflights: bool,
}

impl CorsPolicy {
    fn allows(&self, origin: &str) -> bool {
        // Envoy's wildcard: a matcher that takes "*" takes every origin.
        self.allow_origins
            .iter()
            .any(|allowed| allowed.matches(origin) || allowed.matches("*"))
    }
}

/// The CORS filter in a listener's chain; its policies come from the routes.
#[derive(Debug)]
pub struct CorsFilter {
    pub name: String,
}

/// A CORS request on its way: what its answer must carry.
#[derive(Debug)]
pub struct CorsResponse<'r> {
    origin: HeaderValue,
    policy: &'r CorsPolicy,
}

impl CorsResponse<'_> {
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin.clone());
        if self.policy.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.policy.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// What the filter decided for a request.
pub enum CorsOutcome<'r> {
    /// Not a CORS request for this route: nothing to do.
    Untouched,
    /// A CORS request: its answer gets these headers.
    Answer(CorsResponse<'r>),
    /// A preflight, answered here.
    Preflight(Response<ProxyBody>),
}

impl CorsFilter {
    pub fn on_request<'r>(
        &self,
        method: &Method,
        headers: &HeaderMap,
        route: &'r Route,
    ) -> CorsOutcome<'r> {
        let Some(Override::Config(policy)) = route.filter_configs.get::<CorsPolicy>(&self.name)
        else {
            return CorsOutcome::Untouched;
        };
        let Some(origin) = headers.get(ORIGIN).filter(|origin| !origin.is_empty()) else {
            return CorsOutcome::Untouched;
        };
        if !policy.enabled.roll() {
            return CorsOutcome::Untouched;
        }
        let preflight =
            method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = origin.to_str().is_ok_and(|origin| policy.allows(origin));
        if !allowed {
            if preflight && !policy.forward_not_matching_preflights {
                return CorsOutcome::Preflight(empty(StatusCode::OK));
            }
            return CorsOutcome::Untouched;
        }
        let answer = CorsResponse {
            origin: origin.clone(),
            policy,
        };
        if !preflight {
            return CorsOutcome::Answer(answer);
        }
        let mut response = empty(StatusCode::OK);
        let out = response.headers_mut();
        answer.apply(out);
        // A preflight's answer does not list what the real answer exposes.
        out.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
        for (name, value) in [
            (ACCESS_CONTROL_ALLOW_METHODS, &policy.allow_methods),
            (ACCESS_CONTROL_ALLOW_HEADERS, &policy.allow_headers),
            (ACCESS_CONTROL_MAX_AGE, &policy.max_age),
        ] {
            if let Some(value) = value {
                out.insert(name, value.clone());
            }
        }
        CorsOutcome::Preflight(response)
    }
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(bytes::Bytes::new())));
    *response.status_mut() = status;
    response
}
