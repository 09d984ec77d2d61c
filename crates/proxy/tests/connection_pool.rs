//! A cluster's connection pool as its HttpProtocolOptions say: connections retired after
//! `max_requests_per_connection`, and reused otherwise.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;

use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::ads::FakeAds;
use support::resources::*;
use support::upstream::Upstream;
use support::*;

fn retiring_after(
    requests: u32,
) -> impl FnOnce(&mut envoy_types::pb::envoy::config::cluster::v3::Cluster) {
    move |cluster| {
        let options = HttpProtocolOptions {
            common_http_protocol_options: Some(CommonHttpProtocolOptions {
                max_requests_per_connection: Some(UInt32Value { value: requests }),
                ..Default::default()
            }),
            upstream_protocol_options: Some(
                http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(
                            http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                                Http1ProtocolOptions::default(),
                            ),
                        ),
                    },
                ),
            ),
            ..Default::default()
        };
        cluster.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            any(&options),
        );
    }
}

async fn proxy(
    upstream: SocketAddr,
    retire_after: Option<u32>,
) -> (FakeAds, TestProxy, SocketAddr) {
    let cluster = match retire_after {
        Some(requests) => static_cluster_with("app", &[upstream], false, retiring_after(requests)),
        None => static_cluster("app", &[upstream], false),
    };
    proxy_with(
        cluster,
        inline_listener(
            "outbound",
            "127.0.0.1:0".parse().expect("addr"),
            route_config(
                "inline",
                vec![vhost("app", &["*"], vec![prefix_route("/", "app")])],
            ),
        ),
    )
    .await
}

async fn send(listener: SocketAddr, n: usize) {
    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..n {
        let request = http::Request::get(format!("http://{listener}/"))
            .header("host", "app")
            .body(http_body_util::Empty::new())
            .expect("request");
        let response = client.request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    }
}

#[tokio::test]
async fn connections_are_retired_after_their_share_of_requests() {
    let upstream = Upstream::start("app").await;
    let (_ads, _proxy, listener) = proxy(upstream.address, Some(2)).await;
    send(listener, 6).await;
    assert_eq!(upstream.requests.load(SeqCst), 6);
    assert_eq!(
        upstream.connections.load(SeqCst),
        3,
        "two requests per connection"
    );
}

#[tokio::test]
async fn without_a_limit_one_connection_serves_every_request() {
    let upstream = Upstream::start("app").await;
    let (_ads, _proxy, listener) = proxy(upstream.address, None).await;
    send(listener, 6).await;
    assert_eq!(upstream.connections.load(SeqCst), 1);
}
