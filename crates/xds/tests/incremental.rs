//! Incremental pushes from the mesh translation: a small change in a large mesh reaches a
//! delta proxy as just the resources it changed.

mod common;

use std::sync::Arc;

use bosun_xds::testing::{AdsTestServer, generated_mesh};
use bosun_xds::translate::MeshGenerator;
use bosun_xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, ResourceType};
use common::clients::{DeltaClient, delta_names, test_node};
use common::wait_until_synced;

const SERVICES: usize = 200;

fn mesh(moved: bool) -> bosun_model::Snapshot {
    generated_mesh(SERVICES, 2, moved.then_some(7))
}

#[tokio::test]
async fn moving_one_endpoint_pushes_only_that_service_s_endpoints() {
    let first = Arc::new(MeshGenerator::new(Arc::new(mesh(false))));
    let server = AdsTestServer::start(first.clone()).await.expect("start");
    let mut proxy = DeltaClient::connect(server.addr, test_node("client", "client")).await;

    proxy.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let clusters = proxy.recv().await;
    // One per service, and PassthroughCluster (Istio's ALLOW_ANY default).
    assert_eq!(clusters.resources.len(), SERVICES + 1);
    proxy.ack(&clusters);
    let names = delta_names(&clusters);
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| *name != "PassthroughCluster")
        .collect();
    proxy.subscribe(ENDPOINT_TYPE_URL, &names, &[]);
    let endpoints = proxy.recv().await;
    assert_eq!(endpoints.resources.len(), SERVICES);
    proxy.ack(&endpoints);
    wait_until_synced(&server, &[ResourceType::Cluster, ResourceType::Endpoint]).await;

    server.publish(Arc::new(MeshGenerator::with_previous(
        Arc::new(mesh(true)),
        Some(&first),
    )));
    let pushed = proxy.recv().await;
    assert_eq!(pushed.type_url, ENDPOINT_TYPE_URL, "no cluster changed");
    assert_eq!(
        delta_names(&pushed),
        ["outbound|8080||svc-7.default.svc.cluster.local"]
    );
    assert!(pushed.removed_resources.is_empty());
    // The stream moved on: nothing but this test still holds the first config (with its
    // whole snapshot), so a change frees it.
    assert_eq!(
        Arc::strong_count(&first),
        1,
        "a stream keeps the old config alive"
    );
}
