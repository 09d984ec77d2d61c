//! An upstream response's body, which holds the request's place until it ends: its count
//! at the endpoint (least request reads it), in the cluster's `max_requests`, and its
//! HTTP/1.1 connection slot, and its count in the cluster's requests in flight. A streaming response counts for as long as it streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::endpoint::ActiveRequest;
use super::limits::{Admitted, ConnectionSlot};
use crate::in_flight::InFlight;
use crate::stats::ClusterStats;

/// What a request holds while it runs.
#[derive(Debug, Default)]
pub struct Held {
    pub active: Option<ActiveRequest>,
    pub admitted: Option<Admitted>,
    pub slot: Option<ConnectionSlot>,
    /// The cluster's count of requests in flight.
    pub in_flight: Option<InFlight<ClusterStats>>,
}

#[derive(Debug)]
pub struct UpstreamResponseBody {
    body: Incoming,
    _held: Held,
}

impl UpstreamResponseBody {
    pub fn new(body: Incoming, held: Held) -> Self {
        UpstreamResponseBody { body, _held: held }
    }
}

impl Body for UpstreamResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
