//! End-to-end routing through the proxy: a fake control plane configures it over
//! ADS, real upstream servers answer, real HTTP clients assert what users see.

mod support;

use std::net::SocketAddr;

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

/// reviews v1/v2/v3 behind one outbound listener, routed by header and path.
async fn reviews_mesh(mode: XdsMode) -> (FakeAds, TestProxy, [Upstream; 3]) {
    let ups = [
        Upstream::start("v1").await,
        Upstream::start("v2").await,
        Upstream::start("v3").await,
    ];
    let ads = FakeAds::start().await;
    let clusters: Vec<_> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| {
            eds_cluster(
                &format!("outbound|9080|{v}|reviews"),
                LbPolicy::RoundRobin,
                false,
            )
        })
        .collect();
    ads.set(ResourceType::Cluster, clusters);
    ads.set(
        ResourceType::Endpoints,
        ["v1", "v2", "v3"]
            .iter()
            .zip(&ups)
            .map(|(v, up)| endpoints(&format!("outbound|9080|{v}|reviews"), &[up.address]))
            .collect(),
    );
    ads.set(
        ResourceType::Listener,
        vec![rds_listener("virtualOutbound", any_port(), "outbound")],
    );
    ads.set(
        ResourceType::Route,
        vec![route_resource(&route_config(
            "outbound",
            vec![vhost(
                "reviews:9080",
                &[
                    "reviews",
                    "reviews:9080",
                    "reviews.default.svc.cluster.local:9080",
                ],
                vec![
                    header_route("end-user", "jason", "outbound|9080|v2|reviews"),
                    path_route("/exact", "outbound|9080|v3|reviews"),
                    prefix_route("/", "outbound|9080|v1|reviews"),
                ],
            )],
        ))],
    );
    let proxy = TestProxy::start(&ads.url(), mode).await;
    proxy.ready().await;
    (ads, proxy, ups)
}

async fn routes_by_host_path_and_header(mode: XdsMode) {
    let (_ads, proxy, _ups) = reviews_mesh(mode).await;
    let outbound = proxy.listener("virtualOutbound").await;
    let client = http1_client();

    let reply = get(&client, outbound, "reviews:9080", "/reviews/1", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.upstream(), "v1");
    assert_eq!(
        get(&client, outbound, "reviews", "/", &[("end-user", "jason")])
            .await
            .upstream(),
        "v2"
    );
    assert_eq!(
        get(&client, outbound, "reviews:9080", "/exact", &[])
            .await
            .upstream(),
        "v3"
    );
    assert_eq!(
        get(&client, outbound, "reviews:9080", "/exact/more", &[])
            .await
            .upstream(),
        "v1"
    );
    assert_eq!(
        get(
            &client,
            outbound,
            "REVIEWS.default.svc.cluster.local:9080",
            "/",
            &[]
        )
        .await
        .upstream(),
        "v1"
    );

    let unknown = get(&client, outbound, "ratings:9080", "/", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let stats = proxy.handle.stats();
    assert_eq!(stats.listeners["virtualOutbound"].no_route, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_routes_by_host_path_and_header() {
    routes_by_host_path_and_header(XdsMode::Delta).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_routes_by_host_path_and_header() {
    routes_by_host_path_and_header(XdsMode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_are_set_and_hop_by_hop_removed() {
    let (_ads, proxy, _ups) = reviews_mesh(XdsMode::Delta).await;
    let outbound = proxy.listener("virtualOutbound").await;
    let reply = get(
        &http1_client(),
        outbound,
        "reviews:9080",
        "/",
        &[("connection", "x-secret"), ("x-secret", "hidden")],
    )
    .await;
    assert_eq!(reply.headers["x-upstream-authority"], "reviews:9080");
    assert_eq!(reply.headers["x-echo-x-forwarded-proto"], "http");
    assert_eq!(reply.headers["x-echo-x-request-id"].len(), 36);
    assert!(
        !reply.headers.contains_key("x-echo-x-secret"),
        "headers named by Connection are removed"
    );
    assert!(reply.headers.contains_key("x-envoy-upstream-service-time"));

    let kept = get(
        &http1_client(),
        outbound,
        "reviews:9080",
        "/",
        &[("x-request-id", "abc")],
    )
    .await;
    assert_eq!(kept.headers["x-echo-x-request-id"], "abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_requests_route_on_the_uri_authority() {
    let (_ads, proxy, _ups) = reviews_mesh(XdsMode::Delta).await;
    let outbound = proxy.listener("virtualOutbound").await;
    // The Host header disagrees on purpose: the URI's authority wins.
    let response = absolute_form_get(outbound, "http://reviews:9080/exact", "elsewhere").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-upstream: v3"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reports_readiness_config_and_stats() {
    let ads = FakeAds::start().await;
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    let (status, _) = admin_get(proxy.admin, "/ready").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before the first config"
    );
    drop(proxy);
    drop(ads);

    let (_ads, proxy, _ups) = reviews_mesh(XdsMode::Delta).await;
    let (status, body) = admin_get(proxy.admin, "/ready").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "LIVE"));

    let (status, body) = admin_get(proxy.admin, "/config_dump").await;
    assert_eq!(status, StatusCode::OK);
    let dump: bosun_proxy::config_dump::ConfigDump =
        serde_json::from_str(&body).expect("config dump json");
    assert!(dump.ready);
    assert_eq!(dump.listeners[0].name, "virtualOutbound");
    assert_eq!(
        dump.listeners[0].route_config_name.as_deref(),
        Some("outbound")
    );
    assert_eq!(dump.routes[0].virtual_hosts[0].routes.len(), 3);
    assert_eq!(dump.clusters.len(), 3);
    assert!(
        dump.clusters
            .iter()
            .all(|c| c.discovery == "EDS" && c.lb_policy == "ROUND_ROBIN")
    );
    assert_eq!(dump.endpoints.len(), 3);

    let outbound = proxy.listener("virtualOutbound").await;
    get(&http1_client(), outbound, "reviews", "/", &[]).await;
    let (_, body) = admin_get(proxy.admin, "/stats").await;
    let stats: bosun_proxy::stats::StatsSnapshot = serde_json::from_str(&body).expect("stats json");
    let v1 = &stats.clusters["outbound|9080|v1|reviews"];
    assert_eq!(v1.requests, 1);
    assert_eq!(v1.responses.rq_2xx, 1);
    assert!(v1.latency_ms.p50.is_some());
    let (_, prom) = admin_get(proxy.admin, "/stats/prometheus").await;
    assert!(
        prom.contains("bosun_cluster_requests_total{cluster=\"outbound|9080|v1|reviews\"} 1"),
        "{prom}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_clusters_split_traffic_90_10() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![
            static_cluster("a", &[a.address], false),
            static_cluster("b", &[b.address], false),
        ],
    );
    ads.set(
        ResourceType::Listener,
        vec![inline_listener(
            "inbound|9080",
            any_port(),
            route_config(
                "inbound",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![weighted_route("/", &[("a", 90), ("b", 10)])],
                )],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("inbound|9080").await;
    let client = http1_client();
    let total = 2000;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut to_a = 0;
                for _ in 0..total / 8 {
                    if get(&client, listener, "anything", "/", &[])
                        .await
                        .upstream()
                        == "a"
                    {
                        to_a += 1;
                    }
                }
                to_a
            })
        })
        .collect();
    let mut to_a = 0;
    for t in tasks {
        to_a += t.await.expect("task");
    }
    let share = f64::from(to_a) / f64::from(total);
    assert!((0.87..=0.93).contains(&share), "share to a was {share}");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_alternates_evenly() {
    let ups = [
        Upstream::start("e0").await,
        Upstream::start("e1").await,
        Upstream::start("e2").await,
    ];
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![eds_cluster("svc", LbPolicy::RoundRobin, false)],
    );
    ads.set(
        ResourceType::Endpoints,
        vec![endpoints(
            "svc",
            &ups.iter().map(|u| u.address).collect::<Vec<_>>(),
        )],
    );
    ads.set(
        ResourceType::Listener,
        vec![inline_listener(
            "in",
            any_port(),
            route_config(
                "r",
                vec![vhost("all", &["*"], vec![prefix_route("/", "svc")])],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("in").await;
    let client = http1_client();
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(
            get(&client, listener, "svc", "/", &[])
                .await
                .upstream()
                .to_owned(),
        );
    }
    for up in &ups {
        assert_eq!(
            seen.iter().filter(|s| **s == up.name).count(),
            10,
            "{seen:?}"
        );
    }
    // Consecutive requests never hit the same endpoint twice in a row.
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn least_request_prefers_the_idle_endpoint() {
    let busy = Upstream::start_holding("busy").await;
    let idle = Upstream::start("idle").await;
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![eds_cluster("svc", LbPolicy::LeastRequest, false)],
    );
    ads.set(
        ResourceType::Endpoints,
        vec![endpoints("svc", &[busy.address, idle.address])],
    );
    ads.set(
        ResourceType::Listener,
        vec![inline_listener(
            "in",
            any_port(),
            route_config(
                "r",
                vec![vhost("all", &["*"], vec![prefix_route("/", "svc")])],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("in").await;
    let client = http1_client();

    // Send requests until one is stuck on the busy endpoint.
    let mut stuck = Vec::new();
    while busy.held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            stuck.len() < 50,
            "no request ever reached the busy endpoint"
        );
        let client = client.clone();
        stuck.push(tokio::spawn(async move {
            get(&client, listener, "svc", "/", &[]).await
        }));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..40 {
        assert_eq!(
            get(&client, listener, "svc", "/", &[]).await.upstream(),
            "idle"
        );
    }
    busy.release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_end_to_end() {
    let grpc = Upstream::start("grpc").await;
    let ads = FakeAds::start().await;
    ads.set(
        ResourceType::Cluster,
        vec![eds_cluster(
            "outbound|9090||grpc",
            LbPolicy::RoundRobin,
            true,
        )],
    );
    ads.set(
        ResourceType::Endpoints,
        vec![endpoints("outbound|9090||grpc", &[grpc.address])],
    );
    ads.set(
        ResourceType::Listener,
        vec![rds_listener("virtualOutbound", any_port(), "outbound")],
    );
    ads.set(
        ResourceType::Route,
        vec![route_resource(&route_config(
            "outbound",
            vec![vhost(
                "grpc:9090",
                &["grpc:9090"],
                vec![prefix_route("/", "outbound|9090||grpc")],
            )],
        ))],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let outbound = proxy.listener("virtualOutbound").await;

    let reply = h2_get(outbound, "grpc:9090", "/helloworld.Greeter/SayHello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.upstream(), "grpc");
    assert_eq!(reply.headers["x-upstream-version"], "HTTP/2.0");
    assert_eq!(reply.headers["x-upstream-authority"], "grpc:9090");

    // An HTTP/1.1 client reaches the same h2 upstream.
    let reply = get(&http1_client(), outbound, "grpc:9090", "/x", &[]).await;
    assert_eq!(reply.headers["x-upstream-version"], "HTTP/2.0");
    // Several requests share one upstream connection.
    for _ in 0..5 {
        h2_get(outbound, "grpc:9090", "/x").await;
    }
    assert_eq!(
        grpc.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_healthy_upstream_and_connect_failures_are_503() {
    let ads = FakeAds::start().await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    ads.set(
        ResourceType::Cluster,
        vec![
            eds_cluster("empty", LbPolicy::RoundRobin, false),
            static_cluster("dead", &[dead], false),
        ],
    );
    ads.set(ResourceType::Endpoints, vec![endpoints("empty", &[])]);
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
                        prefix_route("/empty", "empty"),
                        prefix_route("/dead", "dead"),
                        prefix_route("/missing", "nope"),
                    ],
                )],
            ),
        )],
    );
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let listener = proxy.listener("in").await;
    let client = http1_client();
    let empty = get(&client, listener, "x", "/empty", &[]).await;
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
    );
    let dead_reply = get(&client, listener, "x", "/dead", &[]).await;
    assert_eq!(dead_reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        dead_reply.body.contains("connection failure"),
        "{}",
        dead_reply.body
    );
    assert_eq!(
        get(&client, listener, "x", "/missing", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let stats = proxy.handle.stats();
    assert_eq!(stats.clusters["dead"].connect_failures, 1);
    assert_eq!(stats.clusters["empty"].no_healthy_upstream, 1);
    assert_eq!(stats.listeners["in"].responses.rq_5xx, 3);
}
