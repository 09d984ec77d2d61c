//! The HTTP filter chain: an HttpConnectionManager's `http_filters`, compiled in the order
//! xDS lists them, each a stage of its own. Every request goes through the stages before
//! the router; a stage may let it go on or answer it in the upstream's place. The router,
//! always last, forwards what reaches it.
//!
//! Filters are named and configured as Envoy's are, so one listener runs the same on
//! this proxy and on Envoy; a filter the proxy does not have is refused when compiled.

pub mod fault;
mod local_reply;
pub mod router;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use fault::{FAULT_FILTER, FaultFilter};
pub use local_reply::{LocalReply, is_grpc, text_reply};
pub use router::ROUTER_FILTER;

use crate::routing::{RequestView, Route};
use crate::telemetry::{RequestRecord, ResponseFlag};

/// A response body: the upstream's, or one the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// One stage before the router.
#[derive(Debug)]
pub enum HttpFilter {
    Fault(FaultFilter),
}

impl HttpFilter {
    pub fn name(&self) -> &str {
        match self {
            HttpFilter::Fault(filter) => &filter.name,
        }
    }
}

/// The stages of one connection manager, in order; the router comes after them.
#[derive(Debug, Default)]
pub struct HttpFilterChain {
    pub filters: Vec<HttpFilter>,
}

impl HttpFilterChain {
    /// Runs the request through every stage. `Err` is the answer a stage gave instead.
    pub async fn on_request(
        &self,
        request: &RequestView<'_>,
        route: &Route,
        cluster: Option<&str>,
        mut record: Option<&mut RequestRecord>,
    ) -> Result<(), LocalReply> {
        for filter in &self.filters {
            match filter {
                HttpFilter::Fault(fault) => {
                    let outcome = fault.on_request(request, route, cluster).await?;
                    if outcome == fault::FaultOutcome::Delayed
                        && let Some(record) = record.as_deref_mut()
                    {
                        record.set_flag(ResponseFlag::DelayInjected);
                    }
                }
            }
        }
        Ok(())
    }

    /// The names of the stages, router last, as a config dump shows them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.filters
            .iter()
            .map(HttpFilter::name)
            .chain(std::iter::once(ROUTER_FILTER))
    }
}
