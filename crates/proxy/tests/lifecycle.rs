//! Config changes over time: rejections, live updates under load, the control
//! plane going away and coming back, listener removal and shutdown drain.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

use bosun_proxy::XdsMode;
use bosun_proxy::resource::ResourceType;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use http::StatusCode;
use support::ads::FakeAds;
use support::resources::*;
use support::upstream::Upstream;
use support::*;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn split_routes(a: u32, b: u32) -> Vec<(String, envoy_types::pb::google::protobuf::Any)> {
    vec![route_resource(&route_config(
        "outbound",
        vec![vhost(
            "svc",
            &["svc"],
            vec![weighted_route("/", &[("a", a), ("b", b)])],
        )],
    ))]
}

async fn two_cluster_mesh(mode: XdsMode) -> (FakeAds, TestProxy, Upstream, Upstream) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![
            eds_cluster("a", LbPolicy::RoundRobin, false),
            eds_cluster("b", LbPolicy::RoundRobin, false),
        ],
    );
    ads.set(
        ResourceType::Endpoints,
        vec![endpoints("a", &[a.address]), endpoints("b", &[b.address])],
    );
    ads.set(
        ResourceType::Listener,
        vec![rds_listener("virtualOutbound", any_port(), "outbound")],
    );
    ads.set(ResourceType::Route, split_routes(100, 0));
    let proxy = TestProxy::start(&ads.url(), mode).await;
    proxy.ready().await;
    (ads, proxy, a, b)
}

async fn nack_names_the_resource_and_the_rest_applies(mode: XdsMode) {
    let (ads, proxy, _a, _b) = two_cluster_mesh(mode).await;
    // A filter the proxy does not have.
    let lua = http_filter(
        "envoy.filters.http.lua",
        Some(envoy_types::pb::google::protobuf::Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua".into(),
            value: Vec::new(),
        }),
    );
    ads.set(
        ResourceType::Listener,
        vec![
            rds_listener("virtualOutbound", any_port(), "outbound"),
            rds_listener_with_filters("faulty", any_port(), "outbound", vec![lua, router()]),
            rds_listener("second", any_port(), "outbound"),
        ],
    );
    let nack = ads
        .wait_for_nack(
            "listener faulty: filter_chains[0]: http filter envoy.filters.http.lua (type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua) is not supported yet",
        )
        .await;
    assert_eq!(nack.kind, Some(ResourceType::Listener));
    // The good listener in the same update was applied and serves.
    let second = proxy.listener("second").await;
    assert_eq!(
        get(&http1_client(), second, "svc", "/", &[])
            .await
            .upstream(),
        "a"
    );
    assert!(proxy.handle.listener_address("faulty").await.is_none());
    let dump = proxy.handle.config_dump().await;
    let recorded = &dump.last_nacks[&ResourceType::Listener];
    assert!(
        recorded.message.contains("envoy.filters.http.lua"),
        "{}",
        recorded.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_nack_names_the_resource_and_the_rest_applies() {
    nack_names_the_resource_and_the_rest_applies(XdsMode::Delta).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_nack_names_the_resource_and_the_rest_applies() {
    nack_names_the_resource_and_the_rest_applies(XdsMode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_nack_keeps_the_last_accepted_version() {
    let (ads, _proxy, _a, _b) = two_cluster_mesh(XdsMode::Sotw).await;
    let accepted = support::eventually(Duration::from_secs(5), || {
        ads.acks()
            .into_iter()
            .rev()
            .find(|a| a.kind == Some(ResourceType::Cluster) && a.nack.is_none())
    })
    .await;
    // An EDS cluster cannot have its endpoints named by requests.
    let mut bad = eds_cluster("provided", LbPolicy::ClusterProvided, false);
    bad.0 = "provided".into();
    ads.set(
        ResourceType::Cluster,
        vec![
            eds_cluster("a", LbPolicy::RoundRobin, false),
            eds_cluster("b", LbPolicy::RoundRobin, false),
            bad,
        ],
    );
    let nack = ads
        .wait_for_nack("cluster provided: lb_policy CLUSTER_PROVIDED is not supported yet")
        .await;
    assert_eq!(
        nack.version_info, accepted.version_info,
        "a NACK echoes the previous accepted version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_config_swaps_under_load_drop_nothing_and_keep_pools() {
    config_swaps_under_load(XdsMode::Delta).await;
}

/// State of the world re-sends every cluster and listener with each change: the
/// identical ones must keep their sockets and pools.
#[tokio::test(flavor = "multi_thread")]
async fn sotw_config_swaps_under_load_drop_nothing_and_keep_pools() {
    config_swaps_under_load(XdsMode::Sotw).await;
}

async fn config_swaps_under_load(mode: XdsMode) {
    let (ads, proxy, a, b) = two_cluster_mesh(mode).await;
    let outbound = proxy.listener("virtualOutbound").await;
    let client = http1_client();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop, failures, served) = (
                client.clone(),
                stop.clone(),
                failures.clone(),
                served.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    match try_get(&client, outbound, "svc", "/", &[]).await {
                        Ok(reply) if reply.status == StatusCode::OK => served.fetch_add(1, SeqCst),
                        _ => failures.fetch_add(1, SeqCst),
                    };
                }
            })
        })
        .collect();
    const SWAPS: usize = 20;
    for step in 0..SWAPS {
        let a_weight = if step % 2 == 0 { 30 } else { 70 };
        ads.set(ResourceType::Route, split_routes(a_weight, 100 - a_weight));
        // State of the world re-sends the same clusters with every change; delta
        // sends only the routes. Neither may rebuild the clusters' pools.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        failures.load(SeqCst),
        0,
        "requests failed during config swaps"
    );
    assert!(
        served.load(SeqCst) > 50,
        "too little traffic: {}",
        served.load(SeqCst)
    );
    // Four workers share two pools. A pool may open a connection beyond one per
    // worker when a checkout races a connection being returned, so the count is not
    // exact; rebuilt pools would open at least one per cluster per swap (2 x SWAPS).
    let conns = a.connections.load(SeqCst) + b.connections.load(SeqCst);
    assert!(
        conns < SWAPS,
        "{conns} upstream connections over {SWAPS} swaps: pools were rebuilt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_gone_traffic_continues_and_resyncs_on_return() {
    let (mut ads, proxy, _a, _b) = two_cluster_mesh(XdsMode::Delta).await;
    let outbound = proxy.listener("virtualOutbound").await;
    let client = http1_client();
    ads.stop().await;
    for _ in 0..20 {
        assert_eq!(
            get(&client, outbound, "svc", "/", &[]).await.upstream(),
            "a"
        );
    }
    // While away, the config changes; on return the proxy catches up.
    ads.set(ResourceType::Route, split_routes(0, 100));
    let streams_before = ads.streams_opened();
    ads.restart().await;
    eventually_async(Duration::from_secs(10), || {
        let client = client.clone();
        async move { (get(&client, outbound, "svc", "/", &[]).await.upstream() == "b").then_some(()) }
    })
    .await;
    assert!(ads.streams_opened() > streams_before);
    // The listener kept its socket through the resync.
    assert_eq!(
        proxy.handle.listener_address("virtualOutbound").await,
        Some(outbound)
    );
}

async fn removed_listener_stops_accepting(mode: XdsMode) {
    let (ads, proxy, _a, _b) = two_cluster_mesh(mode).await;
    ads.set(
        ResourceType::Listener,
        vec![
            rds_listener("virtualOutbound", any_port(), "outbound"),
            rds_listener("extra", any_port(), "outbound"),
        ],
    );
    let extra = proxy.listener("extra").await;
    assert_eq!(
        get(&http1_client(), extra, "svc", "/", &[]).await.status,
        StatusCode::OK
    );
    ads.set(
        ResourceType::Listener,
        vec![rds_listener("virtualOutbound", any_port(), "outbound")],
    );
    eventually_async(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(extra)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let outbound = proxy.listener("virtualOutbound").await;
    assert_eq!(
        get(&http1_client(), outbound, "svc", "/", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_removed_listener_stops_accepting() {
    removed_listener_stops_accepting(XdsMode::Delta).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_missing_listener_is_removed() {
    removed_listener_stops_accepting(XdsMode::Sotw).await;
}

/// An upstream whose answers to `/stream` stream: the head and a first chunk at once,
/// the rest once `finish` is notified. Counts the requests it got.
async fn streaming_upstream() -> (SocketAddr, Arc<tokio::sync::Notify>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let finish = Arc::new(tokio::sync::Notify::new());
    let requests = Arc::new(AtomicUsize::new(0));
    let (finish_for_server, requests_for_server) = (Arc::clone(&finish), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let finish = Arc::clone(&finish_for_server);
            let requests = Arc::clone(&requests_for_server);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                requests.fetch_add(1, SeqCst);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                    )
                    .await;
                finish.notified().await;
                let _ = stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
                let mut rest = [0u8; 64];
                let _ = stream.read(&mut rest).await;
            });
        }
    });
    (address, finish, requests)
}

/// One HTTP/1.1 request on `stream`: the response's head (lower-cased) and body, read by
/// its content-length.
async fn raw_exchange(stream: &mut tokio::net::TcpStream, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: svc\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.expect("read");
        assert!(
            read > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&received).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = text[..end].to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().expect("content-length"));
        if text.len() >= end + 4 + length {
            return (head, text[end + 4..end + 4 + length].to_owned());
        }
    }
}

async fn closed_by_peer(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut rest = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Envoy's drain on shutdown, with Istio's immediate strategy: the listener keeps
/// accepting, HTTP/1.1 answers carry `Connection: close`, HTTP/2 connections get GOAWAY,
/// `/ready` says DRAINING, and a response still streaming keeps the drain going (it is a
/// request in flight until its body ends). Once nothing has arrived for a second the
/// listener closes, well before the drain period.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_like_envoy_and_waits_for_streaming_bodies() {
    let plain = Upstream::start("plain").await;
    let (streaming, finish, streamed) = streaming_upstream().await;
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![
            static_cluster("plain", &[plain.address], false),
            static_cluster("streaming", &[streaming], false),
        ],
    );
    ads.set(
        ResourceType::Listener,
        vec![inline_listener(
            "in",
            any_port(),
            route_config(
                "r",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![
                        path_route("/stream", "streaming"),
                        prefix_route("/", "plain"),
                    ],
                )],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("in").await;
    let admin = proxy.admin;

    // Before the drain: a response streaming, an idle keep-alive connection, and an h2 one.
    let in_flight =
        tokio::spawn(async move { get(&http1_client(), listener, "svc", "/stream", &[]).await });
    support::eventually(Duration::from_secs(5), || {
        (streamed.load(SeqCst) == 1).then_some(())
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect");
    let (head, body) = raw_exchange(&mut idle, "/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "plain");
    assert!(!head.contains("connection: close"), "{head}");
    let h2 = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect");
    let (mut h2_sender, h2_connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .expect("h2 handshake");
    let h2_connection = tokio::spawn(h2_connection);
    let request = http::Request::builder()
        .uri("http://svc/")
        .version(http::Version::HTTP_2)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let answer = h2_sender.send_request(request).await.expect("h2 request");
    assert_eq!(answer.status(), StatusCode::OK);

    let shutdown = tokio::spawn(proxy.shutdown());
    eventually_async(Duration::from_secs(5), || async move {
        let (status, body) = admin_get(admin, "/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body == "DRAINING\n").then_some(())
    })
    .await;
    // The h2 connection is sent GOAWAY and, with no stream open, ends.
    tokio::time::timeout(Duration::from_secs(3), h2_connection)
        .await
        .expect("GOAWAY ends the idle h2 connection")
        .expect("h2 connection task")
        .expect("h2 connection ends cleanly");
    // The idle connection is still served, once, and closed after the answer.
    let (head, body) = raw_exchange(&mut idle, "/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "plain");
    assert!(closed_by_peer(&mut idle).await);

    // Past the quiet second, the streaming response keeps the listener accepting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!shutdown.is_finished());
    let mut late = tokio::net::TcpStream::connect(listener)
        .await
        .expect("a draining listener still accepts");
    let (head, _) = raw_exchange(&mut late, "/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    finish.notify_waiters();
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    // Its head went out before the drain, so it could not say `Connection: close`; its
    // connection closes with the listener.
    assert_eq!(reply.body, "firstlast");
    // Nothing in flight any more: it closes after the quiet second, not at the 5 s deadline.
    tokio::time::timeout(Duration::from_millis(3500), shutdown)
        .await
        .expect("the drain ended once quiet")
        .expect("shutdown");
    assert!(tokio::net::TcpStream::connect(listener).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn node_identity_reaches_the_control_plane() {
    let ads = FakeAds::start().await;
    let _proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    let node = support::eventually(Duration::from_secs(5), || ads.first_node()).await;
    assert_eq!(
        node.id,
        "sidecar~127.0.0.1~workload.default~default.svc.cluster.local"
    );
    assert_eq!(node.cluster, "workload.default");
    let fields = node.metadata.expect("metadata").fields;
    for key in [
        "NAMESPACE",
        "WORKLOAD_NAME",
        "LABELS",
        "SERVICE_ACCOUNT",
        "INSTANCE_IPS",
        "BOSUN_OUTBOUND_PORT",
        "BOSUN_APP_PORTS",
    ] {
        assert!(fields.contains_key(key), "node metadata lacks {key}");
    }
}
