//! Incremental (delta) ADS over real gRPC.

mod common;

use std::sync::Arc;

use bosun_xds::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL, ResourceType,
    StreamKind, SyncState,
};
use common::clients::{DeltaClient, delta_names, test_node, versions};
use common::mesh::TestMesh;
use common::{start_server, type_status, wait_for_status, wait_until_synced};

#[tokio::test]
async fn initial_fetch_is_wildcard_for_listeners_and_clusters_and_named_for_the_rest() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;

    proxy.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let clusters = proxy.recv().await;
    assert_eq!(delta_names(&clusters), ["a", "b"]);
    assert!(clusters.removed_resources.is_empty());

    proxy.subscribe(ENDPOINT_TYPE_URL, &["a", "missing"], &[]);
    assert_eq!(delta_names(&proxy.recv().await), ["a"]);

    proxy.subscribe(LISTENER_TYPE_URL, &["*"], &[]);
    assert_eq!(
        delta_names(&proxy.recv().await),
        ["inbound|9080", "outbound-reviews-v1"]
    );

    proxy.subscribe(ROUTE_TYPE_URL, &["outbound"], &[]);
    assert_eq!(delta_names(&proxy.recv().await), ["outbound"]);

    let status = wait_for_status(&server, |s| s.len() == 1 && s[0].types.len() == 4).await;
    assert_eq!(status[0].stream, StreamKind::Delta);
}

#[tokio::test]
async fn a_change_sends_only_changed_resources_and_removals() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let clusters = proxy.recv().await;
    proxy.ack(&clusters);
    proxy.subscribe(ENDPOINT_TYPE_URL, &["a", "b"], &[]);
    let endpoints = proxy.recv().await;
    proxy.ack(&endpoints);
    wait_until_synced(&server, &[ResourceType::Cluster, ResourceType::Endpoint]).await;

    // Only b's endpoints changed; an answered ACK would arrive before this.
    server.publish(Arc::new(
        TestMesh::new().with_endpoints("b", &["127.0.0.1:2002"]),
    ));
    let pushed = proxy.recv().await;
    assert_eq!(pushed.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(delta_names(&pushed), ["b"]);
    assert_ne!(versions(&pushed)["b"], versions(&endpoints)["b"]);
    assert!(pushed.removed_resources.is_empty());
    proxy.ack(&pushed);

    // Cluster b goes away: clusters first, then its endpoints.
    server.publish(Arc::new(TestMesh::new().without_cluster("b")));
    let clusters = proxy.recv().await;
    assert_eq!(clusters.type_url, CLUSTER_TYPE_URL);
    assert!(clusters.resources.is_empty());
    assert_eq!(clusters.removed_resources, ["b"]);
    let endpoints = proxy.recv().await;
    assert_eq!(endpoints.type_url, ENDPOINT_TYPE_URL);
    assert!(endpoints.resources.is_empty());
    assert_eq!(endpoints.removed_resources, ["b"]);
}

#[tokio::test]
async fn a_nack_is_recorded_and_not_answered() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.subscribe(LISTENER_TYPE_URL, &[], &[]);
    let listeners = proxy.recv().await;
    proxy.nack(&listeners, "listener inbound|9080: address in use");

    let status = wait_for_status(&server, |s| {
        type_status(s, ResourceType::Listener).is_some_and(|t| t.last_nack.is_some())
    })
    .await;
    let lds = type_status(&status, ResourceType::Listener).unwrap();
    assert_eq!(lds.state(), SyncState::Nacked);
    assert_eq!(
        lds.last_nack.unwrap().message,
        "listener inbound|9080: address in use"
    );

    // Nothing is resent: the next thing the proxy hears is the answer to a new request.
    proxy.subscribe(ROUTE_TYPE_URL, &["outbound"], &[]);
    assert_eq!(proxy.recv().await.type_url, ROUTE_TYPE_URL);
}

#[tokio::test]
async fn an_answer_to_an_old_nonce_is_not_recorded() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.subscribe(ROUTE_TYPE_URL, &["outbound"], &[]);
    let first = proxy.recv().await;
    server.publish(Arc::new(TestMesh::new().routing_to("b")));
    let second = proxy.recv().await;
    assert_eq!(second.type_url, ROUTE_TYPE_URL);

    proxy.nack(&first, "too late");
    // A subscription change in a later request is the sync point: requests are handled in order.
    proxy.subscribe(ROUTE_TYPE_URL, &["inbound|9080"], &[]);
    assert_eq!(delta_names(&proxy.recv().await), ["inbound|9080"]);
    let status = server.server.status();
    let rds = type_status(&status, ResourceType::Route).unwrap();
    assert_eq!(rds.last_nack, None);
}

#[tokio::test]
async fn a_reconnecting_proxy_gets_only_what_differs_from_what_it_has() {
    let server = start_server(TestMesh::new()).await;
    let node = test_node("reviews-v1", "reviews");
    let mut first = DeltaClient::connect(server.addr, node.clone()).await;
    first.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let mut had = versions(&first.recv().await);
    first.subscribe(ENDPOINT_TYPE_URL, &["a", "b"], &[]);
    let had_endpoints = versions(&first.recv().await);
    drop(first);

    server.publish(Arc::new(
        TestMesh::new()
            .with_endpoints("c", &["127.0.0.1:1003"])
            .with_endpoints("b", &["127.0.0.1:2002"]),
    ));
    had.insert("gone".into(), "1".into());

    let mut second = DeltaClient::connect(server.addr, node).await;
    second.resume(CLUSTER_TYPE_URL, &[], had);
    let clusters = second.recv().await;
    assert_eq!(delta_names(&clusters), ["c"], "a and b are unchanged");
    assert_eq!(clusters.removed_resources, ["gone"]);

    second.resume(ENDPOINT_TYPE_URL, &["a", "b", "c"], had_endpoints);
    let endpoints = second.recv().await;
    assert_eq!(delta_names(&endpoints), ["b", "c"]);
}

#[tokio::test]
async fn reconnecting_with_everything_current_gets_an_empty_answer() {
    let server = start_server(TestMesh::new()).await;
    let node = test_node("reviews-v1", "reviews");
    let mut first = DeltaClient::connect(server.addr, node.clone()).await;
    first.subscribe(LISTENER_TYPE_URL, &[], &[]);
    let had = versions(&first.recv().await);
    drop(first);

    let mut second = DeltaClient::connect(server.addr, node).await;
    second.resume(LISTENER_TYPE_URL, &[], had);
    let listeners = second.recv().await;
    assert!(listeners.resources.is_empty() && listeners.removed_resources.is_empty());
}

#[tokio::test]
async fn unsubscribed_resources_are_sent_again_on_resubscribe() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.subscribe(ENDPOINT_TYPE_URL, &["a", "c"], &[]);
    assert_eq!(delta_names(&proxy.recv().await), ["a"]);

    // c appears later: it is pushed alone.
    server.publish(Arc::new(
        TestMesh::new().with_endpoints("c", &["127.0.0.1:1003"]),
    ));
    let pushed = proxy.recv().await;
    assert_eq!(delta_names(&pushed), ["c"]);

    proxy.subscribe(ENDPOINT_TYPE_URL, &[], &["a"]);
    proxy.subscribe(ENDPOINT_TYPE_URL, &["a"], &[]);
    let resent = proxy.recv().await;
    assert_eq!(delta_names(&resent), ["a"]);
    assert!(resent.removed_resources.is_empty());
}

#[tokio::test]
async fn updated_clusters_are_followed_by_their_endpoints() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let clusters = proxy.recv().await;
    proxy.ack(&clusters);
    proxy.subscribe(ENDPOINT_TYPE_URL, &["a"], &[]);
    let endpoints = proxy.recv().await;
    proxy.ack(&endpoints);

    // Envoy re-warms an updated EDS cluster and waits for its endpoints, changed or not.
    server.publish(Arc::new(TestMesh::new().with_connect_timeout(5)));
    let clusters = proxy.recv().await;
    assert_eq!(delta_names(&clusters), ["a", "b"]);
    let resent = proxy.recv().await;
    assert_eq!(resent.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(delta_names(&resent), ["a"], "only the subscribed endpoints");
    assert_eq!(versions(&resent), versions(&endpoints));
}

#[tokio::test]
async fn a_stream_with_an_invalid_node_is_refused_with_a_status_and_others_carry_on() {
    let server = start_server(TestMesh::new()).await;
    let mut invalid = DeltaClient::connect(
        server.addr,
        envoy_types::pb::envoy::config::core::v3::Node::default(),
    )
    .await;
    invalid.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let error = invalid.recv_error().await;
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("node id is empty"), "{error:?}");

    let mut valid = DeltaClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    valid.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    assert_eq!(delta_names(&valid.recv().await), ["a", "b"]);
}
