use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn config(service: &str, version: &str, calls: Vec<Uri>) -> ServeConfig {
    ServeConfig {
        service: service.into(),
        version: version.into(),
        workload: format!("{service}-{version}"),
        calls,
        latency: Duration::ZERO,
        error_rate: 0.0,
        echo_headers: false,
        proxy: None,
        call_timeout: Duration::from_secs(5),
        call_attempts: 1,
    }
}

async fn start(config: ServeConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve_with(listener, config, Default::default(), None));
    address
}

async fn get(
    address: SocketAddr,
    path: &str,
    http2: bool,
    headers: &[(&'static str, &'static str)],
) -> (StatusCode, Version, EchoReport) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build::<_, Empty<Bytes>>(HttpConnector::new());
    let mut request = Request::get(format!("http://{address}{path}"))
        .body(Empty::new())
        .unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let version = response.version();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let report = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("not a report ({error}): {body:?}"));
    (status, version, report)
}

#[tokio::test]
async fn answers_http1_with_who_it_is_and_what_it_saw() {
    let address = start(config("details", "v1", vec![])).await;
    let (status, version, report) =
        get(address, "/details/0?x=1", false, &[("end-user", "jason")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(report.service, "details");
    assert_eq!(report.version, "v1");
    assert_eq!(report.workload, "details-v1");
    assert_eq!(report.method, "GET");
    assert_eq!(report.path, "/details/0?x=1");
    assert_eq!(report.host, address.to_string());
    assert_eq!(report.protocol, "HTTP/1.1");
    assert_eq!(
        report.headers.get("end-user").map(String::as_str),
        Some("jason")
    );
    assert!(report.calls.is_empty());
}

#[tokio::test]
async fn answers_h2c_with_prior_knowledge() {
    let address = start(config("ratings", "v1", vec![])).await;
    let (status, version, report) = get(address, "/ratings", true, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(report.protocol, "HTTP/2.0");
    assert_eq!(report.host, address.to_string());
}

#[tokio::test]
async fn health_check_answers_ok() {
    let mut failing = config("ratings", "v1", vec![]);
    failing.error_rate = 1.0;
    let address = start(failing).await;
    let response = raw_get(address, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// A bookinfo-shaped chain called directly (no proxy): the answer holds the whole tree.
#[tokio::test]
async fn calls_downstream_services_and_reports_the_tree() {
    let ratings = start(config("ratings", "v1", vec![])).await;
    let reviews = start(config(
        "reviews",
        "v2",
        vec![format!("http://{ratings}/ratings/0").parse().unwrap()],
    ))
    .await;
    let details = start(config("details", "v1", vec![])).await;
    let productpage = start(config(
        "productpage",
        "v1",
        vec![
            format!("http://{details}/details/0").parse().unwrap(),
            format!("http://{reviews}/reviews/0").parse().unwrap(),
        ],
    ))
    .await;

    let (status, _, report) = get(productpage, "/productpage", false, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let summary: Vec<_> = report
        .calls
        .iter()
        .map(|call| {
            (
                call.service.as_deref(),
                call.version.as_deref(),
                call.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("details"), Some("v1"), Some(200)),
            (Some("reviews"), Some("v2"), Some(200)),
        ]
    );
    let nested = &report.calls[1].calls;
    assert_eq!(nested.len(), 1);
    assert_eq!(nested[0].service.as_deref(), Some("ratings"));
    assert_eq!(nested[0].url, format!("http://{ratings}/ratings/0"));
    assert!(report.calls.iter().all(|call| call.error.is_none()));
    assert!(report.calls[1].duration_ms >= nested[0].duration_ms);
}

#[tokio::test]
async fn propagates_routing_and_tracing_headers_downstream() {
    let downstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let downstream_address = downstream.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut stream, _) = downstream.accept().await.unwrap();
        let head = read_head(&mut stream).await;
        let body = br#"{"not":"a report"}"#;
        let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        head.to_ascii_lowercase()
    });
    let address = start(config(
        "productpage",
        "v1",
        vec![
            format!("http://{downstream_address}/reviews")
                .parse()
                .unwrap(),
        ],
    ))
    .await;
    let (status, _, report) = get(
        address,
        "/productpage",
        false,
        &[
            ("end-user", "jason"),
            ("x-request-id", "abc"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-not-propagated", "1"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Not a sample workload's answer, but a success: no error, nothing known of it.
    assert_eq!(report.calls[0].status, Some(200));
    assert_eq!(report.calls[0].service, None);
    assert_eq!(report.calls[0].error, None);
    let head = seen.await.unwrap();
    assert!(head.starts_with("get /reviews http/1.1\r\n"), "{head}");
    for expected in [
        "end-user: jason",
        "x-request-id: abc",
        "x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ] {
        assert!(head.contains(expected), "{expected:?} missing from {head}");
    }
    assert!(!head.contains("x-not-propagated"), "{head}");
}

#[tokio::test]
async fn a_failing_downstream_is_noted_and_the_answer_is_still_200() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address = closed.local_addr().unwrap();
    drop(closed);
    let mut failing = config("ratings", "v1", vec![]);
    failing.error_rate = 1.0;
    let ratings = start(failing).await;
    let address = start(config(
        "reviews",
        "v3",
        vec![
            format!("http://{closed_address}/ratings").parse().unwrap(),
            format!("http://{ratings}/ratings").parse().unwrap(),
        ],
    ))
    .await;
    let (status, _, report) = get(address, "/reviews", false, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report.calls[0].status, None);
    assert!(report.calls[0].error.is_some());
    assert_eq!(report.calls[1].status, Some(503));
    assert_eq!(report.calls[1].service.as_deref(), Some("ratings"));
    assert!(
        report.calls[1]
            .error
            .as_deref()
            .is_some_and(|error| error.contains("--error-rate")),
        "{:?}",
        report.calls[1].error
    );
    assert!(!report.calls[1].succeeded());
}

#[tokio::test]
async fn error_rate_one_answers_503() {
    let mut failing = config("ratings", "v1", vec![]);
    failing.error_rate = 1.0;
    let address = start(failing).await;
    for http2 in [false, true] {
        let (status, _, report) = get(address, "/ratings", http2, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(report.service, "ratings");
        assert!(report.error.is_some());
    }
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let mut slow = config("ratings", "v1", vec![]);
    slow.latency = Duration::from_millis(150);
    let address = start(slow).await;
    let started = std::time::Instant::now();
    let (status, _, _) = get(address, "/ratings", false, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn headers_propagated_are_only_the_known_ones() {
    let mut incoming = HeaderMap::new();
    incoming.insert("end-user", HeaderValue::from_static("jason"));
    incoming.insert("cookie", HeaderValue::from_static("secret"));
    let propagated = propagated_headers(&incoming);
    assert_eq!(propagated.len(), 1);
    assert_eq!(propagated["end-user"], "jason");
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "connection closed before the request head ended");
        head.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8(head).unwrap()
}

/// A raw HTTP/1.1 GET, for answers that are not reports.
async fn raw_get(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
