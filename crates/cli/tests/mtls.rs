//! Istio mutual TLS between sidecars, as a user sees it: the app learns who called, a
//! sidecar that is not who the config says is refused, and a PERMISSIVE port still takes
//! plaintext. Real processes: the control plane (and its CA), Bosun's proxies, Envoy.

mod support;

use std::time::Duration;

use bosun_xds::StreamKind;
use support::ProxyClient;
use support::mesh::{ClientProxy, TestMesh, services_yaml_with_account};

const REVIEWS: &str = "http://reviews:9080/reviews/1";
const CLIENT_IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/default";
const REVIEWS_IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";

fn forwarded_client_cert(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["headers"]["x-forwarded-client-cert"]
        .as_str()
        .map(str::to_owned)
}

async fn the_app_learns_who_called(proxy: ClientProxy, backends: ClientProxy) {
    let Some(mesh) =
        TestMesh::start_with_backends("virtual-service-all-v1.yaml", proxy, backends).await
    else {
        return;
    };
    let mut client = mesh.client().await;
    // A header the app sent itself is dropped on the way out (Envoy's SANITIZE).
    let reply = client
        .request(
            REVIEWS,
            &[("x-forwarded-client-cert", "By=forged;URI=spiffe://forged")],
        )
        .await
        .expect("request through the client sidecar");
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, mesh.logs());
    let header = forwarded_client_cert(&reply.body)
        .unwrap_or_else(|| panic!("the app saw no x-forwarded-client-cert: {}", reply.body));
    assert!(
        header.starts_with(&format!("By={REVIEWS_IDENTITY};Hash=")),
        "{header}"
    );
    assert!(
        header.ends_with(&format!("URI={CLIENT_IDENTITY}")),
        "{header}"
    );
    assert!(!header.contains("forged"), "{header}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_learns_who_called_through_bosun() {
    the_app_learns_who_called(ClientProxy::Bosun, ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_learns_who_called_through_envoy() {
    // Envoy gets its certificate from the control plane over SDS.
    the_app_learns_who_called(ClientProxy::Envoy(StreamKind::Delta), ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_sidecar_terminates_mutual_tls_from_bosun() {
    // Envoy's inbound side: its PERMISSIVE chains, its certificate and the mesh root from
    // SDS, and the header it writes for the app.
    the_app_learns_who_called(ClientProxy::Bosun, ClientProxy::Envoy(StreamKind::Delta)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_is_not_who_the_config_says_is_refused() {
    let Some(mesh) = TestMesh::start("virtual-service-all-v1.yaml", ClientProxy::Bosun).await
    else {
        return;
    };
    let mut client = mesh.client().await;
    let reply = client.request(REVIEWS, &[]).await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The config now says reviews runs as another account; its sidecars still hold
    // certificates for bookinfo-reviews, so the client must refuse them.
    mesh.write_config(
        "services.yaml",
        &services_yaml_with_account(&mesh.subnet, "someone-else"),
    );
    let refused = wait_for_status(&mut client, 503).await;
    assert!(refused, "requests still succeed\n{}", mesh.logs());

    // Back to the identity the sidecars really have: traffic flows again.
    mesh.write_config(
        "services.yaml",
        &services_yaml_with_account(&mesh.subnet, "bookinfo-reviews"),
    );
    assert!(
        wait_for_status(&mut client, 200).await,
        "requests do not recover\n{}",
        mesh.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissive_port_still_takes_plaintext_and_drops_a_forged_identity() {
    let Some(mesh) = TestMesh::start("virtual-service-all-v1.yaml", ClientProxy::Bosun).await
    else {
        return;
    };
    // Straight to the reviews sidecar's inbound port, without TLS, as a caller with no
    // sidecar would.
    let mut direct = ProxyClient::connect(mesh.reviews_inbound("v1"))
        .await
        .expect("connect to the inbound port");
    let reply = direct
        .send(
            "/reviews/1",
            "reviews:9080",
            &[(
                "x-forwarded-client-cert",
                "URI=spiffe://cluster.local/ns/default/sa/admin",
            )],
        )
        .await
        .expect("plaintext request");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.version().as_deref(), Some("v1"));
    assert_eq!(forwarded_client_cert(&reply.body), None, "{}", reply.body);
}

/// Polls until a request answers `status`; `false` after 10 s.
async fn wait_for_status(client: &mut ProxyClient, status: u16) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if client
            .request(REVIEWS, &[])
            .await
            .is_ok_and(|reply| reply.status == status)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
