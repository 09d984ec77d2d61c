//! Config changes over time: rejections, live updates under load, the control
//! plane going away and coming back, listener removal and shutdown drain.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
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

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_in_flight_requests_finish() {
    let slow = Upstream::start_holding("slow").await;
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![static_cluster("slow", &[slow.address], false)],
    );
    ads.set(
        ResourceType::Listener,
        vec![inline_listener(
            "in",
            any_port(),
            route_config(
                "r",
                vec![vhost("all", &["*"], vec![prefix_route("/", "slow")])],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("in").await;
    let in_flight =
        tokio::spawn(async move { get(&http1_client(), listener, "x", "/", &[]).await });
    support::eventually(Duration::from_secs(5), || {
        (slow.held.load(SeqCst) == 1).then_some(())
    })
    .await;

    let shutdown = tokio::spawn(proxy.shutdown());
    // New connections are refused once draining starts...
    eventually_async(Duration::from_secs(5), || async move {
        tokio::net::TcpStream::connect(listener)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ...while the request already in flight completes.
    slow.release.notify_waiters();
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("drain finished")
        .expect("shutdown");
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
