//! Istio's standard metrics as a user scrapes them from `/stats/prometheus`: both
//! sidecars of a request report it, the client's as `source` and the server's as
//! `destination`, each naming both workloads, their identities and the service.
//! Real processes: the control plane, Bosun's proxies, the sample app, Envoy.

mod support;

use std::net::SocketAddr;

use bosun_xds::StreamKind;
use support::mesh::{ClientProxy, TestMesh};
use support::metrics::{scrape_until, series_value};

const REVIEWS: &str = "http://reviews:9080/reviews/1";
const CLIENT_IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/default";
const REVIEWS_IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";
const REQUESTS: usize = 5;

/// Sends [`REQUESTS`] requests to reviews through the client sidecar; each must succeed.
/// Returns the client, for more, and the bodies the app answered.
async fn send_requests(mesh: &TestMesh) -> (support::ProxyClient, Vec<String>) {
    let mut client = mesh.client().await;
    let mut bodies = Vec::new();
    for _ in 0..REQUESTS {
        let reply = client.request(REVIEWS, &[]).await.expect("request");
        assert_eq!(reply.status, 200, "{}\n{}", reply.body, mesh.logs());
        bodies.push(reply.body);
    }
    (client, bodies)
}

fn reviews_v1_admin(mesh: &TestMesh) -> SocketAddr {
    SocketAddr::new(mesh.reviews_inbound("v1").ip(), 15000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sidecars_report_a_request_with_istio_labels() {
    let Some(mesh) = TestMesh::start("virtual-service-all-v1.yaml", ClientProxy::Bosun).await
    else {
        return;
    };
    let (mut client, bodies) = send_requests(&mesh).await;
    for body in bodies {
        // The exchange headers are for the server's sidecar, not for the app.
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(
            json["headers"].get("x-envoy-peer-metadata").is_none()
                && json["headers"].get("x-envoy-peer-metadata-id").is_none(),
            "the app saw the metadata exchange: {body}"
        );
    }
    let count = REQUESTS as f64;

    let client_side = [
        ("reporter", "source"),
        ("source_workload", "client"),
        ("source_workload_namespace", "default"),
        ("source_principal", CLIENT_IDENTITY),
        ("source_app", "client"),
        ("source_canonical_service", "client"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", REVIEWS_IDENTITY),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ];
    let text = scrape_until(mesh.client_admin(), &client_side, count).await;
    let duration_count = series_value(
        &text,
        "istio_request_duration_milliseconds_count",
        &client_side,
    );
    assert_eq!(duration_count, Some(count), "{text}");
    // Every response carries the sample app's JSON: more than a few hundred bytes.
    let response_bytes =
        series_value(&text, "istio_response_bytes_sum", &client_side).expect("response sizes");
    assert!(response_bytes > 200.0 * count, "{response_bytes}\n{text}");

    let server_side = [
        ("reporter", "destination"),
        ("source_workload", "client"),
        ("source_workload_namespace", "default"),
        ("source_principal", CLIENT_IDENTITY),
        ("source_app", "client"),
        ("source_canonical_service", "client"),
        ("source_canonical_revision", "latest"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v1"),
        ("destination_principal", REVIEWS_IDENTITY),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("response_code", "200"),
        ("connection_security_policy", "mutual_tls"),
    ];
    scrape_until(reviews_v1_admin(&mesh), &server_side, count).await;

    // A host the mesh does not know goes to PassthroughCluster (Istio's ALLOW_ANY); a
    // name that is no `ip:port` has nowhere to go there, and the client's sidecar says so.
    let reply = client
        .request("http://nowhere:9080/", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 503);
    let no_destination = [
        ("reporter", "source"),
        ("destination_service", "nowhere"),
        ("destination_workload", "unknown"),
        ("response_code", "503"),
        ("response_flags", "UH"),
    ];
    scrape_until(mesh.client_admin(), &no_destination, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_metadata_exchange_is_known_by_its_certificate() {
    // Envoy (unmodified) speaks Istio mTLS but sends no exchange headers: the server's
    // sidecar still names the caller's identity and namespace, as Istio's does.
    let Some(mesh) = TestMesh::start(
        "virtual-service-all-v1.yaml",
        ClientProxy::Envoy(StreamKind::Delta),
    )
    .await
    else {
        return;
    };
    send_requests(&mesh).await;
    let server_side = [
        ("reporter", "destination"),
        ("source_workload", "unknown"),
        ("source_workload_namespace", "default"),
        ("source_principal", CLIENT_IDENTITY),
        ("destination_workload", "reviews-v1"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("connection_security_policy", "mutual_tls"),
    ];
    scrape_until(reviews_v1_admin(&mesh), &server_side, REQUESTS as f64).await;
}
