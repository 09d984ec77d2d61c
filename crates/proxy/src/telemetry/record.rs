//! One request's report, filled in as the request goes (route, endpoint, response) and
//! recorded when the response body ends or is dropped: Istio counts a request, and
//! times it, at the end of its stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use http_body::{Body, Frame, SizeHint};

use super::labels::{PeerWorkload, Principal, ServiceLabels, Shared};
use super::metrics::{
    IstioMetrics, Reporter, RequestLabels, RequestProtocol, RequestSample, ResponseFlag,
};

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A request on its way, with the labels known so far.
#[derive(Debug)]
pub struct RequestRecord {
    metrics: Arc<IstioMetrics>,
    labels: RequestLabels,
    started: Instant,
    request_bytes: u64,
    response_bytes: u64,
}

impl RequestRecord {
    pub(super) fn new(
        metrics: Arc<IstioMetrics>,
        labels: RequestLabels,
        headers: &HeaderMap,
        started: Instant,
    ) -> Self {
        Self {
            metrics,
            labels,
            started,
            request_bytes: header_bytes(headers),
            response_bytes: 0,
        }
    }

    /// The request line and the body's declared length join the headers' size.
    pub fn request_size(&mut self, request_line: usize, body: &SizeHint) {
        self.request_bytes += request_line as u64 + body.exact().unwrap_or(body.lower());
    }

    pub fn set_service(&mut self, service: Shared<ServiceLabels>) {
        self.labels.service = service;
    }

    /// The service of a request whose route or cluster names none: the client's sidecar
    /// reports the host asked for; the server's keeps its own service, as Istio's do.
    pub fn set_requested_service(&mut self, host: &str) {
        if self.labels.reporter == Reporter::Source {
            self.labels.service = ServiceLabels::of_host(host);
        }
    }

    /// The endpoint the client's sidecar picked: its workload, from endpoint metadata.
    pub fn set_destination(&mut self, workload: Option<&Shared<PeerWorkload>>) {
        if let Some(workload) = workload {
            self.labels.destination = workload.clone();
        }
    }

    /// The identities at both ends of an upstream mutual TLS connection.
    pub fn set_upstream_principals(&mut self, own: &Principal, peer: Option<&Principal>) {
        self.labels.source_principal = Some(own.clone());
        self.labels.destination_principal = peer.cloned();
    }

    pub fn set_flag(&mut self, flag: ResponseFlag) {
        self.labels.flag = flag;
    }

    /// The response's status and headers are known; its body is counted as it goes.
    pub fn respond<B: Body>(mut self, status: u16, headers: &HeaderMap, body: B) -> MeteredBody<B> {
        self.labels.response_code = status;
        // Status line: "HTTP/1.1 200 OK\r\n" and the blank line after the headers.
        self.response_bytes = header_bytes(headers) + 19;
        if self.labels.protocol == RequestProtocol::Grpc {
            // A trailers-only gRPC response carries its status in the headers.
            self.grpc_status(headers);
        }
        MeteredBody {
            inner: body,
            record: Some(self),
        }
    }

    fn grpc_status(&mut self, headers: &HeaderMap) {
        if let Some(status) = headers
            .get(&GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.labels.grpc_status = Some(status);
        }
    }

    fn finish(mut self, flag: ResponseFlag) {
        if self.labels.flag == ResponseFlag::None {
            self.labels.flag = flag;
        }
        let sample = RequestSample {
            duration: self.started.elapsed(),
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
        };
        self.metrics.record(self.labels, sample);
    }
}

/// Header bytes as they travel in HTTP/1.1: `name: value\r\n` each.
fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64)
        .sum()
}

/// A response body that reports its request when it ends, or when it is dropped
/// unfinished (the caller went away: Envoy's `DC`).
#[derive(Debug)]
pub struct MeteredBody<B: Body> {
    inner: B,
    record: Option<RequestRecord>,
}

impl<B: Body> MeteredBody<B> {
    /// A body with nothing to report.
    pub fn unmetered(inner: B) -> Self {
        Self {
            inner,
            record: None,
        }
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some(record) = this.record.as_mut() else {
            return polled;
        };
        let ended = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    record.response_bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    record.response_bytes += header_bytes(trailers);
                    record.grpc_status(trailers);
                }
                this.inner.is_end_stream().then_some(ResponseFlag::None)
            }
            Poll::Ready(None) => Some(ResponseFlag::None),
            // The upstream stopped mid-body.
            Poll::Ready(Some(Err(_))) => Some(ResponseFlag::UpstreamReset),
        };
        if let Some(flag) = ended
            && let Some(record) = this.record.take()
        {
            record.finish(flag);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            // A body hyper never had to poll (it knew it was empty) ends here whole.
            let flag = if self.inner.is_end_stream() {
                ResponseFlag::None
            } else {
                ResponseFlag::DownstreamDisconnect
            };
            record.finish(flag);
        }
    }
}
