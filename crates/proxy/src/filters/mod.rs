//! The HTTP filter chain: an HttpConnectionManager's `http_filters`, compiled in the order
//! xDS lists them, each a stage of its own. Every request goes through the stages before
//! the router; a stage may let it go on or answer it in the upstream's place. The router,
//! always last, forwards what reaches it.
//!
//! Filters are named and configured as Envoy's are, so one listener runs the same on
//! this proxy and on Envoy; a filter the proxy does not have is refused when compiled.

pub mod cors;
pub mod fault;
mod local_reply;
pub mod rbac;
pub mod router;

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};

pub use cors::{CORS_FILTER, CorsFilter, CorsOutcome, CorsResponse};
pub use fault::{FAULT_FILTER, FaultFilter};
pub use local_reply::{LocalReply, is_grpc, text_reply};
pub use rbac::{ACCESS_DENIED, RBAC_FILTER, RbacFilter};
pub use router::ROUTER_FILTER;

use crate::rbac::Subject;
use crate::routing::{RequestView, Route};
use crate::telemetry::{RequestRecord, ResponseFlag};
use crate::upstream::UpstreamResponseBody;

/// A response body: the upstream's, or one the proxy wrote.
pub type ProxyBody = Either<UpstreamResponseBody, Full<Bytes>>;

/// One stage before the router.
#[derive(Debug)]
pub enum HttpFilter {
    Rbac(RbacFilter),
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
}

impl ResponseWork<'_> {
    /// The stages' changes to the response, in reverse order of the stages.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if let Some(cors) = &self.cors {
            cors.apply(headers);
        }
    }
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
            .any(|filter| matches!(filter, HttpFilter::Rbac(_)))
    }

    /// Runs the request through every stage. `Err` is the answer a stage gave instead;
    /// `Ok` says what the stages will do to the response.
    pub async fn on_request<'r>(
        &self,
        request: &RequestView<'_>,
        subject: &Subject<'_>,
        route: &'r Route,
        cluster: Option<&str>,
        mut record: Option<&mut RequestRecord>,
    ) -> Result<ResponseWork<'r>, Answer> {
        let mut work = ResponseWork::default();
        for filter in &self.filters {
            match filter {
                HttpFilter::Rbac(rbac) => rbac.check(subject)?,
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
