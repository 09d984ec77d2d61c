//! Requests in flight, counted for their whole life: from the request's arrival until its
//! response body has been sent (or dropped), so a streaming response counts for as long
//! as it streams. The listener's and the cluster's `rq_active` gauges read these counts,
//! and a draining listener waits for its count to reach zero.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use crate::stats::{ClusterStats, ListenerStats};

/// Statistics with an in-flight gauge.
pub trait InFlightGauge: Send + Sync + 'static {
    fn in_flight(&self) -> &AtomicI64;
}

impl InFlightGauge for ListenerStats {
    fn in_flight(&self) -> &AtomicI64 {
        &self.in_flight
    }
}

impl InFlightGauge for ClusterStats {
    fn in_flight(&self) -> &AtomicI64 {
        &self.in_flight
    }
}

/// One request in flight: the gauge goes up when made and down when dropped, however the
/// request ends.
#[derive(Debug)]
pub struct InFlight<S: InFlightGauge>(Arc<S>);

impl<S: InFlightGauge> InFlight<S> {
    pub fn enter(stats: &Arc<S>) -> Self {
        stats.in_flight().fetch_add(1, Relaxed);
        InFlight(Arc::clone(stats))
    }
}

impl<S: InFlightGauge> Drop for InFlight<S> {
    fn drop(&mut self) {
        self.0.in_flight().fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request counted in flight until it is done with.
#[derive(Debug)]
pub struct CountedBody<B> {
    body: B,
    _in_flight: InFlight<ListenerStats>,
}

impl<B> CountedBody<B> {
    pub fn new(body: B, in_flight: InFlight<ListenerStats>) -> Self {
        CountedBody {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_request_counts_until_its_response_body_is_done_with() {
        let stats = Arc::new(ListenerStats::default());
        let body = CountedBody::new(
            Full::new(Bytes::from_static(b"hi")),
            InFlight::enter(&stats),
        );
        assert_eq!(stats.in_flight.load(Relaxed), 1);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hi");
        assert_eq!(stats.in_flight.load(Relaxed), 0);

        let dropped = CountedBody::new(Full::new(Bytes::new()), InFlight::enter(&stats));
        assert_eq!(stats.in_flight.load(Relaxed), 1);
        drop(dropped);
        assert_eq!(stats.in_flight.load(Relaxed), 0);
    }
}
