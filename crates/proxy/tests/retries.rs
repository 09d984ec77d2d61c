//! Retried requests carry their whole body: an upstream that fails the first attempts
//! of every request sees the same bytes on the attempt it answers, whether the body has
//! a length or streams in chunks; a body too large to keep is not retried.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, Route, route};
use envoy_types::pb::google::protobuf::UInt32Value;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use support::ads::FakeAds;
use support::resources::*;
use support::*;

/// An upstream that, of every `failures + 1` requests it gets, answers the first
/// `failures` with 503 and the last by echoing the body.
struct Flaky {
    address: SocketAddr,
    attempts: Arc<AtomicUsize>,
}

async fn flaky(failures: usize) -> Flaky {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let attempt = counter.fetch_add(1, SeqCst);
                        // Read the whole body, as a real server does before it fails.
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = if attempt % (failures + 1) < failures {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(body))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Flaky { address, attempts }
}

fn retrying_route(cluster: &str, retries: u32) -> Route {
    let mut route = prefix_route("/", cluster);
    if let Some(route::Action::Route(action)) = route.action.as_mut() {
        action.retry_policy = Some(RetryPolicy {
            retry_on: "5xx".into(),
            num_retries: Some(UInt32Value { value: retries }),
            ..Default::default()
        });
    }
    route
}

async fn proxy_to(upstream: SocketAddr, retries: u32) -> (FakeAds, TestProxy, SocketAddr) {
    proxy_with(
        static_cluster("flaky", &[upstream], false),
        inline_listener(
            "outbound",
            "127.0.0.1:0".parse().expect("addr"),
            route_config(
                "inline",
                vec![vhost(
                    "flaky",
                    &["*"],
                    vec![retrying_route("flaky", retries)],
                )],
            ),
        ),
    )
    .await
}

async fn post<B>(proxy: SocketAddr, body: B) -> (StatusCode, Bytes)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client: Client<_, B> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{proxy}/echo"))
        .header("host", "flaky")
        .body(body)
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_a_length_is_sent_again_whole() {
    let upstream = flaky(2).await;
    let (_ads, _proxy, listener) = proxy_to(upstream.address, 3).await;
    let sent = payload(64 * 1024);
    let (status, echoed) = post(listener, Full::new(sent.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        upstream.attempts.load(SeqCst),
        3,
        "two failures, then success"
    );
    assert_eq!(echoed, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_body_is_sent_again_whole() {
    let upstream = flaky(1).await;
    let (_ads, _proxy, listener) = proxy_to(upstream.address, 3).await;
    let chunks: Vec<Bytes> = (0..8).map(|i| payload(1000 + i)).collect();
    let sent: Bytes = chunks.concat().into();
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
    );
    let (status, echoed) = post(listener, StreamBody::new(stream)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.attempts.load(SeqCst), 2);
    assert_eq!(echoed.len(), sent.len());
    assert_eq!(echoed, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_too_large_to_keep_is_not_retried() {
    let upstream = flaky(1).await;
    let (_ads, _proxy, listener) = proxy_to(upstream.address, 3).await;
    let sent = payload(bosun_proxy::upstream::REPLAY_LIMIT + 1);
    let (status, _) = post(listener, Full::new(sent)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the upstream's own 503"
    );
    assert_eq!(upstream.attempts.load(SeqCst), 1);
}
