//! The workload certificate: asked of a real CA (Istio's certificate service over gRPC),
//! shown on `/certs`, and renewed at half its life while the proxy keeps serving.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bosun_ca::{CertificateAuthority, CertificateService, TokenKey};
use bosun_proxy::XdsMode;
use bosun_proxy::config_dump::CertificatesDump;
use support::ads::FakeAds;
use support::{TestProxy, admin_get, eventually_async};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A CA on a free port that signs any identity a caller's token proves, and a file holding
/// the token of payments/ledger.
async fn start_ca() -> (String, tempfile::NamedTempFile) {
    let ca = Arc::new(CertificateAuthority::self_signed("cluster.local").expect("CA"));
    let key = TokenKey::generate().expect("key");
    let token = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(token.path(), key.mint("payments", "ledger")).expect("write the token");
    let service = CertificateService::new(ca, Arc::new(key), Arc::new(|_| true));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{address}"), token)
}

async fn certificate(proxy: &TestProxy) -> Option<(String, u64)> {
    let (_, body) = admin_get(proxy.admin, "/certs").await;
    let dump: CertificatesDump = serde_json::from_str(&body).ok()?;
    let workload = dump.workload?;
    assert_eq!(
        workload.identity,
        "spiffe://cluster.local/ns/payments/sa/ledger"
    );
    assert_eq!(workload.trust_anchors, 1);
    Some((workload.serial_number, workload.expiration_unix))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_certificate_is_renewed_at_half_its_life() {
    let ads = FakeAds::start().await;
    let (ca, token) = start_ca().await;
    let proxy = TestProxy::start_with(&ads.url(), XdsMode::Delta, |config| {
        config.ca_address = Some(ca.clone());
        config.token_file = Some(token.path().to_path_buf());
        config.node.namespace = "payments".into();
        config.node.service_account = "ledger".into();
        config.certificate_ttl = Duration::from_secs(4);
    })
    .await;
    let (first_serial, first_expiry) =
        eventually_async(Duration::from_secs(10), || certificate(&proxy)).await;
    // Renewed after ~2 s: a new certificate, expiring later.
    let (second_serial, second_expiry) = eventually_async(Duration::from_secs(10), || async {
        certificate(&proxy)
            .await
            .filter(|(serial, _)| *serial != first_serial)
    })
    .await;
    assert_ne!(second_serial, first_serial);
    assert!(
        second_expiry >= first_expiry,
        "{second_expiry} < {first_expiry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_certificate_is_shown_while_the_ca_is_unreachable() {
    let ads = FakeAds::start().await;
    let proxy = TestProxy::start_with(&ads.url(), XdsMode::Delta, |config| {
        // A port nothing listens on.
        config.ca_address = Some("http://127.0.0.1:9".into());
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = admin_get(proxy.admin, "/certs").await;
    assert_eq!(status, 200);
    let dump: CertificatesDump = serde_json::from_str(&body).expect("json");
    assert!(dump.workload.is_none(), "{body}");
}
