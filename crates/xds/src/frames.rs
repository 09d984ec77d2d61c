//! The ADS methods served by a gRPC service of our own: requests decoded and responses
//! framed here, so that a stream holds only what is in flight.
//!
//! tonic keeps, for the life of a stream, an encode buffer the size of the largest
//! response and a decode buffer the size of the largest request: after a full push every
//! connected proxy's stream held about as much as the proxy was sent (a heap profile at 1k
//! services and 200 proxies: 86 of 103 MiB live), and a subscription to every endpoint of
//! the mesh besides. Here a response is a [`Reply`](crate::reply::Reply) of shared
//! resources, turned into bytes a chunk at a time: HTTP/2 polls the body for the next
//! chunk once the previous one is on its way. A request's bytes are kept until they make
//! a whole message, then let go.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::SERVICE_NAME;
use futures::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderValue};
use http_body::{Body as _, Frame};
use http_body_util::StreamBody;
use tonic::Status;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use crate::connection::StreamProtocol;
use crate::delta::DeltaStream;
use crate::reply::{GRPC_PREFIX_LEN, GrpcChunks};
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

/// About how many bytes of a response are copied into one chunk: a few HTTP/2 frames.
const CHUNK_SIZE: usize = 64 * 1024;

/// The ADS gRPC service, both methods, responses written in chunks. Add it to a `tonic`
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
{
    let compressed = request
        .headers()
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding != "identity");
    if compressed {
        return Status::unimplemented("compressed ADS requests are not supported").into_http();
    }
    let caller = match server.caller(request.headers()) {
        Ok(caller) => caller,
        Err(status) => return status.into_http(),
    };
    let requests = GrpcRequests::<P::Request>::new(request.into_body());
    let mut replies = server.open_stream::<P>(caller, requests);
    let mut chunks: Option<GrpcChunks> = None;
    let mut finished = false;
    let frames = futures::stream::poll_fn(move |cx| {
        if finished {
            return Poll::Ready(None);
        }
        loop {
            if let Some(chunk) = chunks.as_mut().and_then(Iterator::next) {
                return Poll::Ready(Some(Ok::<_, Infallible>(Frame::data(chunk))));
            }
            chunks = None;
            let status = match futures::ready!(replies.poll_next_unpin(cx)) {
                Some(Ok(reply)) => match reply.into_grpc_chunks(CHUNK_SIZE) {
                    Ok(next) => {
                        chunks = Some(next);
                        continue;
                    }
                    Err(error) => Status::resource_exhausted(error.to_string()),
                },
                Some(Err(status)) => status,
                None => Status::ok(""),
            };
            finished = true;
            return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
        }
    });
    let mut response = http::Response::new(tonic::body::Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The requests of one stream, decoded from the request body's gRPC frames.
///
/// Bytes are kept only until they make a whole message: once one is decoded and nothing
/// of the next has arrived, the buffer is let go. (tonic's decoder keeps, for the life of
/// the stream, a buffer the size of the largest request: a subscription to every endpoint
/// of a large mesh.)
struct GrpcRequests<M> {
    body: tonic::body::Body,
    pending: BytesMut,
    ended: bool,
    message: PhantomData<fn() -> M>,
}

impl<M: prost::Message + Default> GrpcRequests<M> {
    fn new(body: tonic::body::Body) -> Self {
        Self {
            body,
            pending: BytesMut::new(),
            ended: false,
            message: PhantomData,
        }
    }

    /// The next whole message in `pending`, if there is one.
    fn decode_pending(&mut self) -> Option<Result<M, Status>> {
        let header = self.pending.get(..GRPC_PREFIX_LEN)?;
        if header[0] != 0 {
            return Some(Err(Status::unimplemented(
                "compressed ADS requests are not supported",
            )));
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_REQUEST_BYTES {
            return Some(Err(Status::resource_exhausted(format!(
                "a request of {len} bytes is over the limit of {MAX_REQUEST_BYTES}"
            ))));
        }
        if self.pending.len() < GRPC_PREFIX_LEN + len {
            self.pending
                .reserve(GRPC_PREFIX_LEN + len - self.pending.len());
            return None;
        }
        let frame = self.pending.split_to(GRPC_PREFIX_LEN + len);
        if self.pending.is_empty() {
            // Nothing of the next message yet: free the buffer instead of keeping its size.
            self.pending = BytesMut::new();
        }
        Some(
            M::decode(&frame[GRPC_PREFIX_LEN..])
                .map_err(|error| Status::internal(format!("cannot decode a request: {error}"))),
        )
    }
}

impl<M: prost::Message + Default> Stream for GrpcRequests<M> {
    type Item = Result<M, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(decoded) = this.decode_pending() {
                this.ended = decoded.is_err();
                return Poll::Ready(Some(decoded));
            }
            match futures::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.ended = true;
                    if !this.pending.is_empty() {
                        return Poll::Ready(Some(Err(Status::internal(
                            "the request stream ended inside a message",
                        ))));
                    }
                }
            }
        }
    }
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
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use prost::Message as _;

    fn framed(request: &DeltaDiscoveryRequest) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
        request.encode(&mut frame).expect("encode");
        frame
    }

    fn body(chunks: Vec<Vec<u8>>) -> tonic::body::Body {
        let frames = futures::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, Status>(Frame::data(bytes::Bytes::from(chunk)))),
        );
        tonic::body::Body::new(StreamBody::new(frames))
    }

    fn subscription(names: usize) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            resource_names_subscribe: (0..names).map(|i| format!("cluster-{i}")).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn requests_are_decoded_across_any_chunking_and_the_buffer_is_let_go() {
        let sent = [subscription(1), subscription(2000), subscription(0)];
        let wire: Vec<u8> = sent.iter().flat_map(framed).collect();
        for chunk_size in [1, 7, 4096, wire.len()] {
            let chunks = wire.chunks(chunk_size).map(<[u8]>::to_vec).collect();
            let mut requests = GrpcRequests::<DeltaDiscoveryRequest>::new(body(chunks));
            for expected in &sent {
                let received = requests.next().await.expect("a request").expect("decoded");
                assert_eq!(&received, expected, "chunks of {chunk_size}");
            }
            assert!(requests.next().await.is_none());
            assert_eq!(requests.pending.capacity(), 0, "chunks of {chunk_size}");
        }
    }

    /// The status a stream of `chunks` ends with; nothing comes after it.
    async fn error_of(chunks: Vec<Vec<u8>>) -> Status {
        let mut requests = GrpcRequests::<DeltaDiscoveryRequest>::new(body(chunks));
        let status = requests
            .next()
            .await
            .expect("an item")
            .expect_err("an error");
        assert!(requests.next().await.is_none(), "the stream ends");
        status
    }

    #[tokio::test]
    async fn a_compressed_request_ends_the_stream_with_unimplemented() {
        let mut frame = framed(&subscription(3));
        frame[0] = 1;
        let status = error_of(vec![frame]).await;
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_before_it_is_buffered() {
        let mut header = vec![0];
        header.extend_from_slice(&(MAX_REQUEST_BYTES as u32 + 1).to_be_bytes());
        let status = error_of(vec![header]).await;
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_body_that_ends_inside_a_message_is_an_error() {
        let mut frame = framed(&subscription(10));
        frame.truncate(frame.len() - 3);
        let status = error_of(vec![frame]).await;
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
