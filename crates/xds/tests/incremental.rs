//! Incremental pushes from the mesh translation: a small change in a large mesh reaches a
//! delta proxy as just the resources it changed.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bosun_model::{Hostname, Protocol, Service, ServicePort, Snapshot, Workload};
use bosun_xds::testing::AdsTestServer;
use bosun_xds::translate::MeshGenerator;
use bosun_xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, ResourceType, SyncState};
use common::clients::{DeltaClient, delta_names, test_node};
use common::{type_status, wait_for_status};

const SERVICES: usize = 200;

/// `SERVICES` services of two endpoints each; `moved` shifts service 7's first endpoint.
fn mesh(moved: bool) -> Snapshot {
    let mut services = BTreeMap::new();
    let mut workloads = Vec::new();
    for index in 0..SERVICES {
        let host = Hostname::new(&format!("svc-{index}.default.svc.cluster.local"));
        let selector = BTreeMap::from([("app".to_string(), format!("svc-{index}"))]);
        services.insert(
            host.clone(),
            Arc::new(Service {
                hostname: host,
                namespace: "default".to_string(),
                ports: vec![ServicePort {
                    number: 8080,
                    name: "http".to_string(),
                    protocol: Protocol::Http,
                    target_port: None,
                }],
                workload_selector: Some(selector.clone()),
                inline_endpoints: Vec::new(),
                origin: "mesh.yaml:1".to_string(),
            }),
        );
        for replica in 0..2u8 {
            let last = if moved && index == 7 && replica == 0 {
                250
            } else {
                replica
            };
            workloads.push(Arc::new(Workload {
                name: format!("svc-{index}-{replica}"),
                namespace: "default".to_string(),
                address: IpAddr::V4(Ipv4Addr::new(
                    10,
                    (index / 256) as u8,
                    (index % 256) as u8,
                    last,
                )),
                ports: BTreeMap::from([("http".to_string(), 8080)]),
                labels: selector.clone(),
                service_account: "default".to_string(),
                weight: 1,
            }));
        }
    }
    Snapshot::new(services, workloads, BTreeMap::new(), BTreeMap::new())
}

#[tokio::test]
async fn moving_one_endpoint_pushes_only_that_service_s_endpoints() {
    let first = Arc::new(MeshGenerator::new(Arc::new(mesh(false))));
    let server = AdsTestServer::start(first.clone()).await.expect("start");
    let mut proxy = DeltaClient::connect(server.addr, test_node("client", "client")).await;

    proxy.subscribe(CLUSTER_TYPE_URL, &[], &[]);
    let clusters = proxy.recv().await;
    assert_eq!(clusters.resources.len(), SERVICES);
    proxy.ack(&clusters);
    let names = delta_names(&clusters);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    proxy.subscribe(ENDPOINT_TYPE_URL, &names, &[]);
    let endpoints = proxy.recv().await;
    assert_eq!(endpoints.resources.len(), SERVICES);
    proxy.ack(&endpoints);
    wait_for_status(&server, |s| {
        [ResourceType::Cluster, ResourceType::Endpoint]
            .iter()
            .all(|t| type_status(s, *t).is_some_and(|t| t.state() == SyncState::Synced))
    })
    .await;

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
}
