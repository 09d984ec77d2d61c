//! Slow clients (slowloris): a connection that starts a request and sends its headers a
//! byte at a time is closed once the request headers timeout has passed, and a thousand
//! of them do not keep normal requests from being served. A keep-alive connection that
//! is merely idle is not closed.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::ads::FakeAds;
use support::resources::*;
use support::upstream::Upstream;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 1000;
const HEADERS_TIMEOUT: Duration = Duration::from_secs(2);

async fn proxy(upstream: SocketAddr) -> (FakeAds, TestProxy, SocketAddr) {
    proxy_with(
        static_cluster("app", &[upstream], false),
        inline_listener_with(
            "outbound",
            "127.0.0.1:0".parse().expect("addr"),
            route_config(
                "inline",
                vec![vhost("app", &["*"], vec![prefix_route("/", "app")])],
            ),
            |hcm| {
                hcm.request_headers_timeout = Some(ProtoDuration {
                    seconds: HEADERS_TIMEOUT.as_secs() as i64,
                    nanos: 0,
                })
            },
        ),
    )
    .await
}

/// A normal request on a connection of its own; the status.
async fn get(proxy: SocketAddr) -> u16 {
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("host", "app")
        .body(Empty::<bytes::Bytes>::new());
    let response = sender
        .send_request(request.expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Opens a connection and sends a request line and headers a byte every 250 ms; how long
/// until the proxy closed it (`None`: still open after `give_up`).
async fn slow_client(proxy: SocketAddr, give_up: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(proxy).await.ok()?;
    let started = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nHost: app\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head.iter().cycle() {
        if started.elapsed() > give_up {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut answer = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut answer)).await {
            // Closed (or answered, which a slow client never should be).
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => return Some(started.elapsed()),
            Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_and_do_not_stop_others() {
    let upstream = Upstream::start("app").await;
    let (_ads, _proxy, listener) = proxy(upstream.address).await;

    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(slow_client(listener, HEADERS_TIMEOUT * 4)))
        .collect();
    // While they trickle, everyone else is served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..50 {
        assert_eq!(get(listener).await, 200);
    }
    let mut closed_after = Vec::new();
    for client in slow {
        closed_after.push(client.await.expect("task"));
    }
    let still_open = closed_after.iter().filter(|c| c.is_none()).count();
    assert_eq!(still_open, 0, "slow connections the proxy kept open");
    let latest = closed_after.iter().flatten().max().expect("closed");
    let earliest = closed_after.iter().flatten().min().expect("closed");
    assert!(
        *earliest >= HEADERS_TIMEOUT - Duration::from_millis(300),
        "closed before the timeout: {earliest:?}"
    );
    // Between one and one and a quarter timeouts, plus the client's own 250 ms read wait
    // and a loaded machine's slack.
    assert!(*latest < HEADERS_TIMEOUT * 2, "closed too late: {latest:?}");
    assert_eq!(get(listener).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_stays_open() {
    let upstream = Upstream::start("app").await;
    let (_ads, _proxy, listener) = proxy(upstream.address).await;
    let stream = TcpStream::connect(listener).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for round in 0..2 {
        let request = http::Request::get("/")
            .header("host", "app")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("same connection");
        assert_eq!(response.status(), 200, "round {round}");
        let _ = response.into_body().collect().await;
        // Idle for longer than the headers timeout.
        tokio::time::sleep(HEADERS_TIMEOUT + Duration::from_secs(1)).await;
    }
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}
