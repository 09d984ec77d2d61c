//! The ADS methods served with response frames of exactly their size.
//!
//! tonic encodes all of a stream's responses into one buffer that keeps, for the life of
//! the stream, the capacity it grew to: after a full push every connected proxy's stream
//! holds about as much as the proxy was sent (a heap profile at 1k services and 200
//! proxies: 86 of 103 MiB live). Here each response is framed (gRPC's 5-byte prefix, then
//! the message) into a buffer of its own size, freed as soon as it is written.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::SERVICE_NAME;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::StreamBody;
use tonic::Status;
use tonic::codec::{Codec as _, Streaming};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use crate::connection::StreamProtocol;
use crate::delta::DeltaStream;
use crate::server::AdsServer;
use crate::sotw::SotwStream;

/// The path of `StreamAggregatedResources` (state of the world).
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// The path of `DeltaAggregatedResources`.
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The largest request accepted: a subscription naming every cluster of a large mesh.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// gRPC's length prefix: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// The ADS gRPC service, both methods with exactly-sized frames. Add it to a `tonic`
/// server.
#[derive(Clone)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsServer {
    /// The gRPC service, to add to a `tonic` server.
    pub fn service(&self) -> AdsService {
        AdsService {
            server: self.clone(),
        }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = match request.uri().path() {
            SOTW_PATH => serve::<SotwStream>(&self.server, request),
            DELTA_PATH => serve::<DeltaStream>(&self.server, request),
            other => Status::unimplemented(format!("no ADS method at {other}")).into_http(),
        };
        Box::pin(async move { Ok(response) })
    }
}

/// One ADS stream of protocol `P`: requests decoded as they come, responses framed.
fn serve<P>(
    server: &AdsServer,
    request: http::Request<tonic::body::Body>,
) -> http::Response<tonic::body::Body>
where
    P: StreamProtocol,
    P::Request: prost::Message + Default,
    P::Response: prost::Message,
{
    let compressed = request
        .headers()
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding != "identity");
    if compressed {
        return Status::unimplemented("compressed ADS requests are not supported").into_http();
    }
    let decoder = tonic_prost::ProstCodec::<P::Response, P::Request>::default().decoder();
    let requests =
        Streaming::new_request(decoder, request.into_body(), None, Some(MAX_REQUEST_BYTES));
    let mut responses = server.open_stream::<P>(requests);
    let mut finished = false;
    let frames = futures::stream::poll_fn(move |cx| {
        if finished {
            return Poll::Ready(None);
        }
        let frame = match futures::ready!(responses.poll_next_unpin(cx)) {
            Some(Ok(response)) => framed(&response).map(Frame::data).unwrap_or_else(|status| {
                finished = true;
                Frame::trailers(trailers(&status))
            }),
            Some(Err(status)) => {
                finished = true;
                Frame::trailers(trailers(&status))
            }
            None => {
                finished = true;
                Frame::trailers(trailers(&Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok::<_, Infallible>(frame)))
    });
    let mut response = http::Response::new(tonic::body::Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// `message` with gRPC's prefix, in a buffer of exactly that size.
fn framed(message: &impl prost::Message) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let prefix = u32::try_from(len)
        .map_err(|_| Status::resource_exhausted(format!("a {len}-byte response")))?;
    let mut buf = Vec::with_capacity(PREFIX_LEN + len);
    buf.push(0);
    buf.extend_from_slice(&prefix.to_be_bytes());
    message.encode_raw(&mut buf);
    Ok(Bytes::from(buf))
}

/// The trailers that end a gRPC response with `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
    use prost::Message as _;

    #[test]
    fn a_frame_is_the_prefix_and_the_message_in_a_buffer_of_exactly_that_size() {
        let response = DeltaDiscoveryResponse {
            nonce: "7".into(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..Default::default()
        };
        let frame = framed(&response).expect("frame");
        let len = response.encoded_len();
        assert_eq!(frame.len(), PREFIX_LEN + len);
        assert_eq!(frame[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize,
            len
        );
        let decoded = DeltaDiscoveryResponse::decode(&frame[PREFIX_LEN..]).expect("decode");
        assert_eq!(decoded, response);
    }
}
