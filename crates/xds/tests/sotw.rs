//! State-of-the-world ADS over real gRPC.

mod common;

use std::sync::Arc;

use bosun_xds::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL, ResourceType,
    StreamKind, SyncState,
};
use common::clients::{SotwClient, names, test_node};
use common::mesh::TestMesh;
use common::{start_server, type_status, wait_for_status};
use envoy_types::pb::envoy::config::core::v3::Node;

#[tokio::test]
async fn initial_fetch_returns_each_type_for_this_proxy() {
    let server = start_server(TestMesh::new()).await;
    let mut reviews = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;

    reviews.request(CLUSTER_TYPE_URL, &[], "", "");
    let clusters = reviews.recv().await;
    assert_eq!(clusters.type_url, CLUSTER_TYPE_URL);
    assert_eq!(names(&clusters), ["a", "b"]);
    assert!(!clusters.version_info.is_empty() && !clusters.nonce.is_empty());

    // Only names that exist are sent.
    reviews.request(ENDPOINT_TYPE_URL, &["a", "b", "missing"], "", "");
    assert_eq!(names(&reviews.recv().await), ["a", "b"]);

    reviews.request(LISTENER_TYPE_URL, &[], "", "");
    assert_eq!(
        names(&reviews.recv().await),
        ["inbound|9080", "outbound-reviews-v1"]
    );

    reviews.request(ROUTE_TYPE_URL, &["outbound"], "", "");
    assert_eq!(names(&reviews.recv().await), ["outbound"]);

    // Another proxy gets its own listeners.
    let mut ratings = SotwClient::connect(server.addr, test_node("ratings-v1", "ratings")).await;
    ratings.request(LISTENER_TYPE_URL, &[], "", "");
    assert_eq!(names(&ratings.recv().await), ["outbound-ratings-v1"]);
}

#[tokio::test]
async fn acks_are_not_answered_and_a_change_pushes_only_the_changed_type() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    let mut sent = Vec::new();
    for (type_url, names) in [
        (CLUSTER_TYPE_URL, vec![]),
        (ENDPOINT_TYPE_URL, vec!["a", "b"]),
        (LISTENER_TYPE_URL, vec![]),
        (ROUTE_TYPE_URL, vec!["outbound"]),
    ] {
        proxy.request(type_url, &names, "", "");
        let response = proxy.recv().await;
        proxy.ack(&response, &names);
        sent.push(response);
    }
    let status = wait_for_status(&server, |s| {
        s.len() == 1
            && s[0].types.len() == 4
            && s[0].types.iter().all(|t| t.state() == SyncState::Synced)
    })
    .await;
    assert_eq!(status[0].stream, StreamKind::Sotw);

    // Had an ACK been answered, that answer would arrive before this push.
    server.publish(Arc::new(
        TestMesh::new().with_endpoints("b", &["127.0.0.1:2002"]),
    ));
    let endpoints = proxy.recv().await;
    assert_eq!(endpoints.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(names(&endpoints), ["a", "b"], "the full subscribed set");
    assert_ne!(endpoints.version_info, sent[1].version_info);
    proxy.ack(&endpoints, &["a", "b"]);

    server.publish(Arc::new(
        TestMesh::new()
            .with_endpoints("b", &["127.0.0.1:2002"])
            .routing_to("b"),
    ));
    let routes = proxy.recv().await;
    assert_eq!(routes.type_url, ROUTE_TYPE_URL);
    assert_eq!(names(&routes), ["outbound"]);
}

#[tokio::test]
async fn a_nack_is_recorded_and_the_rejected_config_is_not_resent() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(CLUSTER_TYPE_URL, &[], "", "");
    let clusters = proxy.recv().await;
    proxy.request(ENDPOINT_TYPE_URL, &["a"], "", "");
    let endpoints = proxy.recv().await;
    proxy.ack(&endpoints, &["a"]);
    proxy.nack(&clusters, &[], "", "cluster b: unknown field");

    let status = wait_for_status(&server, |s| {
        type_status(s, ResourceType::Cluster).is_some_and(|t| t.last_nack.is_some())
    })
    .await;
    let cds = type_status(&status, ResourceType::Cluster).unwrap();
    assert_eq!(cds.state(), SyncState::Nacked);
    let nack = cds.last_nack.unwrap();
    assert_eq!(nack.message, "cluster b: unknown field");
    assert_eq!(nack.version, clusters.version_info);
    assert_eq!(cds.acked_version, None);

    // A change to endpoints alone: no CDS resend before it.
    server.publish(Arc::new(
        TestMesh::new().with_endpoints("a", &["127.0.0.1:2001"]),
    ));
    assert_eq!(proxy.recv().await.type_url, ENDPOINT_TYPE_URL);
}

#[tokio::test]
async fn a_request_with_a_stale_nonce_is_ignored() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(ROUTE_TYPE_URL, &["outbound"], "", "");
    let first = proxy.recv().await;

    server.publish(Arc::new(TestMesh::new().routing_to("b")));
    let pushed = proxy.recv().await;
    assert_ne!(pushed.nonce, first.nonce);

    // Answers the old response with a new subscription: stale, so ignored.
    proxy.request(
        ROUTE_TYPE_URL,
        &["outbound", "inbound|9080"],
        &first.version_info,
        &first.nonce,
    );
    server.publish(Arc::new(TestMesh::new().routing_to("a")));
    let next = proxy.recv().await;
    assert_eq!(names(&next), ["outbound"], "subscription unchanged");
    let status = server.server.status();
    assert_eq!(
        type_status(&status, ResourceType::Route)
            .unwrap()
            .acked_version,
        None
    );

    // The latest nonce is honoured.
    proxy.request(
        ROUTE_TYPE_URL,
        &["outbound", "inbound|9080"],
        &next.version_info,
        &next.nonce,
    );
    assert_eq!(names(&proxy.recv().await), ["inbound|9080", "outbound"]);
}

#[tokio::test]
async fn endpoints_requested_before_they_exist_arrive_when_they_do() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(ENDPOINT_TYPE_URL, &["a", "c"], "", "");
    let response = proxy.recv().await;
    assert_eq!(names(&response), ["a"]);
    proxy.ack(&response, &["a", "c"]);

    server.publish(Arc::new(
        TestMesh::new().with_endpoints("c", &["127.0.0.1:1003"]),
    ));
    assert_eq!(names(&proxy.recv().await), ["a", "c"]);
}

#[tokio::test]
async fn removed_clusters_disappear_from_the_next_full_set() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(CLUSTER_TYPE_URL, &[], "", "");
    let clusters = proxy.recv().await;
    proxy.ack(&clusters, &[]);

    server.publish(Arc::new(TestMesh::new().without_cluster("b")));
    let pushed = proxy.recv().await;
    assert_eq!(pushed.type_url, CLUSTER_TYPE_URL);
    assert_eq!(names(&pushed), ["a"]);
}

#[tokio::test]
async fn a_stream_with_an_invalid_node_is_refused_and_others_carry_on() {
    let server = start_server(TestMesh::new()).await;
    let mut invalid = SotwClient::connect(server.addr, Node::default()).await;
    invalid.request(CLUSTER_TYPE_URL, &[], "", "");
    let error = invalid.recv_error().await;
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("node id is empty"), "{error:?}");

    let mut valid = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    valid.request(CLUSTER_TYPE_URL, &[], "", "");
    assert_eq!(names(&valid.recv().await), ["a", "b"]);
}

#[tokio::test]
async fn status_lists_connected_proxies_until_they_leave() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(LISTENER_TYPE_URL, &[], "", "");
    let listeners = proxy.recv().await;

    let status = wait_for_status(&server, |s| s.len() == 1).await;
    assert_eq!(status[0].proxy.workload_name, "reviews-v1");
    assert_eq!(status[0].proxy.user_agent, "bosun-test 0.1.0");
    let lds = type_status(&status, ResourceType::Listener).unwrap();
    assert_eq!(lds.sent_nonce.as_deref(), Some(listeners.nonce.as_str()));
    assert_eq!(lds.state(), SyncState::Stale);
    assert_eq!(lds.resource_count, 2);

    drop(proxy);
    wait_for_status(&server, |s| s.is_empty()).await;
}

#[tokio::test]
async fn updated_clusters_are_followed_by_their_endpoints() {
    let server = start_server(TestMesh::new()).await;
    let mut proxy = SotwClient::connect(server.addr, test_node("reviews-v1", "reviews")).await;
    proxy.request(CLUSTER_TYPE_URL, &[], "", "");
    let clusters = proxy.recv().await;
    proxy.ack(&clusters, &[]);
    proxy.request(ENDPOINT_TYPE_URL, &["a", "b"], "", "");
    let endpoints = proxy.recv().await;
    proxy.ack(&endpoints, &["a", "b"]);

    // Envoy re-warms an updated EDS cluster and waits for its endpoints, changed or not.
    server.publish(Arc::new(TestMesh::new().with_connect_timeout(5)));
    assert_eq!(proxy.recv().await.type_url, CLUSTER_TYPE_URL);
    let resent = proxy.recv().await;
    assert_eq!(resent.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(names(&resent), ["a", "b"]);
    assert_eq!(resent.version_info, endpoints.version_info);
}
