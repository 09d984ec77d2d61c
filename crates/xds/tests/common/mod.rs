//! Shared pieces of the ADS tests: hand-built Envoy resources, a test mesh generator and
//! gRPC clients driving both ADS flavours.
#![allow(dead_code)] // each test binary uses its own subset

pub mod clients;
pub mod mesh;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_xds::testing::AdsTestServer;
use bosun_xds::{ProxySyncStatus, ResourceType, SyncState, TypeSyncStatus};

/// Starts an ADS server serving `mesh`.
pub async fn start_server(mesh: mesh::TestMesh) -> AdsTestServer {
    AdsTestServer::start(Arc::new(mesh))
        .await
        .expect("start the ADS server")
}

/// Waits until the server's status satisfies `condition`, and returns it.
pub async fn wait_for_status(
    server: &AdsTestServer,
    mut condition: impl FnMut(&[ProxySyncStatus]) -> bool,
) -> Vec<ProxySyncStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = server.server.status();
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never reached the expected state: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the only connected proxy has acknowledged the latest response of each of
/// `types`.
pub async fn wait_until_synced(server: &AdsTestServer, types: &[ResourceType]) {
    wait_for_status(server, |s| {
        types
            .iter()
            .all(|t| type_status(s, *t).is_some_and(|t| t.state() == SyncState::Synced))
    })
    .await;
}

/// One type's status on the only connected proxy.
pub fn type_status(
    status: &[ProxySyncStatus],
    resource_type: ResourceType,
) -> Option<TypeSyncStatus> {
    let [proxy] = status else { return None };
    proxy
        .types
        .iter()
        .find(|t| t.resource_type == resource_type)
        .cloned()
}
