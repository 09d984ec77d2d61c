//! The ADS methods served by a gRPC service of our own, which writes each response in
//! chunks as the stream can take them.
//!
//! tonic encodes all of a stream's responses into one buffer that keeps, for the life of
//! the stream, the capacity it grew to: after a full push every connected proxy's stream
//! holds about as much as the proxy was sent (a heap profile at 1k services and 200
//! proxies: 86 of 103 MiB live). Here a response is a [`Reply`](crate::reply::Reply) of shared resources,
//! turned into bytes a chunk at a time: HTTP/2 polls the body for the next chunk once the
//! previous one is on its way, so a stream holds a few chunks, not its proxy's whole config.

use std::convert::Infallible;
use std::task::{Context, Poll};

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
use crate::reply::GrpcChunks;
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
{
    let compressed = request
        .headers()
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding != "identity");
    if compressed {
        return Status::unimplemented("compressed ADS requests are not supported").into_http();
    }
    // The encoder half is unused: responses are framed here, not by tonic.
    let decoder = tonic_prost::ProstCodec::<(), P::Request>::default().decoder();
    let requests =
        Streaming::new_request(decoder, request.into_body(), None, Some(MAX_REQUEST_BYTES));
    let mut replies = server.open_stream::<P>(requests);
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

/// The trailers that end a gRPC response with `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
    }
    trailers
}
