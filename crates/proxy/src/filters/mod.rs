//! The HTTP filter chain: an HttpConnectionManager's `http_filters`, compiled in the order
//! xDS lists them, each a stage of its own. Every request goes through the stages before
//! the router; a stage may let it go on or answer it in the upstream's place. The router,
//! always last, forwards what reaches it.
//!
//! Filters are named and configured as Envoy's are, so one listener runs the same on
//! this proxy and on Envoy; a filter the proxy does not have is refused when compiled.

pub mod connection;
pub mod cors;
pub mod ext_authz;
pub mod fault;
pub mod jwt_authn;
mod jwt_cache;
mod local_reply;
pub mod rbac;
pub mod router;

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};

pub use cors::{CORS_FILTER, CorsFilter, CorsOutcome, CorsResponse};
pub use ext_authz::{EXT_AUTHZ_FILTER, ExtAuthzFilter};
pub use fault::{FAULT_FILTER, FaultFilter};
pub use local_reply::{LocalReply, is_grpc, text_reply};
pub use rbac::{ACCESS_DENIED, RBAC_FILTER, RbacFilter};
pub use router::ROUTER_FILTER;

use crate::rbac::Subject;
use crate::routing::{RequestView, Route};
use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;
use crate::telemetry::{RequestRecord, ResponseFlag};
use crate::upstream::{BodyPrefix, ReadAheadError, RequestBody, UpstreamResponseBody};

/// A response body: the upstream's, or one the proxy wrote.
pub type ProxyBody = Either<UpstreamResponseBody, Full<Bytes>>;

/// One stage before the router.
#[derive(Debug)]
pub enum HttpFilter {
    JwtAuthn(jwt_authn::JwtAuthnFilter),
    Rbac(RbacFilter),
    ExtAuthz(ExtAuthzFilter),
    Fault(FaultFilter),
    Cors(CorsFilter),
}

/// How a stage answered a request in the upstream's place.
pub enum Answer {
    /// The proxy's own reply (text, or gRPC for a gRPC caller).
    Local(LocalReply),
    /// A whole response (a CORS preflight's).
    Response(Response<ProxyBody>),
}

impl From<LocalReply> for Answer {
    fn from(reply: LocalReply) -> Self {
        Answer::Local(reply)
    }
}

/// What the stages left for the response on its way back.
#[derive(Default)]
pub struct ResponseWork<'r> {
    cors: Option<CorsResponse<'r>>,
    /// Headers the stages take off the request before it goes on (a verified token).
    remove_request_headers: Vec<http::HeaderName>,
    /// Headers the stages set on the request (a token's claims, an authorizer's).
    add_request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Headers the stages append to the request's.
    append_request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Headers the stages add to the response (an authorizer's).
    add_response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl ResponseWork<'_> {
    /// The stages' changes to the request, before it goes on.
    pub fn edit_request(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove_request_headers {
            headers.remove(name);
        }
        for (name, value) in &self.add_request_headers {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.append_request_headers {
            headers.append(name.clone(), value.clone());
        }
    }

    /// The stages' changes to the response, in reverse order of the stages.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if let Some(cors) = &self.cors {
            cors.apply(headers);
        }
        for (name, value) in &self.add_response_headers {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// The request as the stages see it: its head, and its body apart (read ahead only by
/// a stage that needs it).
pub struct StagedRequest<'v, 'b> {
    pub head: &'v RequestView<'v>,
    pub body: &'b mut RequestBody,
}

/// The stages of one connection manager, in order; the router comes after them.
#[derive(Debug, Default)]
pub struct HttpFilterChain {
    pub filters: Vec<HttpFilter>,
}

impl HttpFilterChain {
    /// Whether a stage needs to know who calls (access control does).
    pub fn needs_subject(&self) -> bool {
        self.filters
            .iter()
            .any(|filter| matches!(filter, HttpFilter::Rbac(_) | HttpFilter::ExtAuthz(_)))
    }

    /// Runs the request through every stage. `Err` is the answer a stage gave instead;
    /// `Ok` says what the stages will do to the response.
    pub async fn on_request<'r>(
        &self,
        request: StagedRequest<'_, '_>,
        subject: &Subject<'_>,
        route: &'r Route,
        cluster: Option<&str>,
        upstream: &ArcSwap<Snapshot>,
        mut record: Option<&mut RequestRecord>,
    ) -> Result<ResponseWork<'r>, Answer> {
        let StagedRequest {
            head: request,
            body,
        } = request;
        let mut work = ResponseWork::default();
        // What the stages learned, for the stages after them (Envoy's dynamic metadata).
        let mut metadata = serde_json::Map::new();
        for filter in &self.filters {
            match filter {
                HttpFilter::JwtAuthn(jwt) => {
                    let accepted = jwt.on_request(request)?;
                    if !accepted.metadata.is_empty() {
                        metadata.insert(
                            jwt.name.clone(),
                            serde_json::Value::Object(accepted.metadata),
                        );
                    }
                    work.remove_request_headers.extend(accepted.remove_headers);
                    work.add_request_headers.extend(accepted.add_headers);
                }
                HttpFilter::Rbac(rbac) => {
                    let shadow = rbac.check(&Subject {
                        metadata: Some(&metadata),
                        ..*subject
                    })?;
                    if let Some(decision) = shadow {
                        rbac.record_shadow(&decision, &mut metadata);
                    }
                }
                HttpFilter::ExtAuthz(ext_authz) => {
                    if !ext_authz.enabled(&metadata) {
                        continue;
                    }
                    let subject = Subject {
                        metadata: Some(&metadata),
                        ..*subject
                    };
                    let checked_body = match &ext_authz.with_body {
                        Some(limit) => Some(read_body_ahead(body, limit).await?),
                        None => None,
                    };
                    let allowed = ext_authz
                        .on_request(&subject, checked_body.as_ref(), upstream)
                        .await
                        .inspect_err(|_| {
                            if let Some(record) = record.as_deref_mut() {
                                record.set_flag(ResponseFlag::UnauthorizedExternalService);
                            }
                        })?;
                    work.remove_request_headers
                        .extend(allowed.remove_request_headers);
                    for (name, value, append) in allowed.request_headers {
                        if append {
                            work.append_request_headers.push((name, value));
                        } else {
                            work.add_request_headers.push((name, value));
                        }
                    }
                    work.add_response_headers.extend(allowed.response_headers);
                }
                HttpFilter::Fault(fault) => {
                    let outcome = fault.on_request(request, route, cluster).await?;
                    if outcome == fault::FaultOutcome::Delayed
                        && let Some(record) = record.as_deref_mut()
                    {
                        record.set_flag(ResponseFlag::DelayInjected);
                    }
                }
                HttpFilter::Cors(cors) => {
                    match cors.on_request(request.method, request.headers, route) {
                        CorsOutcome::Untouched => {}
                        CorsOutcome::Answer(answer) => work.cors = Some(answer),
                        CorsOutcome::Preflight(response) => return Err(Answer::Response(response)),
                    }
                }
            }
        }
        Ok(work)
    }
}

/// The body a stage checks, read ahead of the router: a body over the stage's limit is
/// answered 413 unless the stage takes part of it, as Envoy's buffer limit does.
async fn read_body_ahead(
    body: &mut RequestBody,
    limit: &ext_authz::BodyLimit,
) -> Result<BodyPrefix, Answer> {
    body.read_ahead(limit.max_bytes, limit.allow_partial)
        .await
        .map_err(|error| {
            let reply = match error {
                ReadAheadError::TooLarge(_) => LocalReply::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "Payload Too Large",
                    ResponseFlag::None,
                ),
                ReadAheadError::Failed(error) => {
                    tracing::debug!(%error, "the request body could not be read");
                    LocalReply::new(http::StatusCode::BAD_REQUEST, "", ResponseFlag::None)
                }
            };
            Answer::Local(reply)
        })
}
