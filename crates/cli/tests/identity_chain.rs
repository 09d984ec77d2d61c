//! The identity chain, attacked the way a compromised workload or a stranger on the
//! machine would: over the control plane's real TLS port, with real tokens, against a
//! real `bosun control-plane` whose mesh runs Bosun's proxies.

mod support;

use std::time::Duration;

use bosun_ca::{CaError, CertificateAuthority, Identity, TokenKey, certificate_request};
use bosun_proxy::control_plane::ControlPlaneLink;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::mesh::{ClientProxy, Credentials, TestMesh};
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

fn identity(service_account: &str) -> Identity {
    Identity::new("cluster.local", "default", service_account)
}

async fn mesh() -> TestMesh {
    TestMesh::start("virtual-service-all-v1.yaml", ClientProxy::Bosun)
        .await
        .expect("a mesh of Bosun's proxies needs no Envoy")
}

fn credentials(mesh: &TestMesh) -> Credentials<'_> {
    Credentials {
        xds: mesh.xds_address(),
        dir: mesh.logs.path(),
    }
}

/// A TLS channel to the control plane, checked against `root`, as a proxy opens it.
async fn channel(
    mesh: &TestMesh,
    root: &std::path::Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    ControlPlaneLink::new(Some(root), None)
        .expect("the root file")
        .endpoint(&format!("https://{}", mesh.xds_address()))
        .expect("an endpoint")
        .connect()
        .await
}

fn refusal(result: Result<Vec<String>, CaError>) -> Box<tonic::Status> {
    match result {
        Err(CaError::Rejected(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_gets_its_own_certificate_and_no_one_elses() {
    let mesh = mesh().await;
    let credentials = credentials(&mesh);
    let channel = channel(&mesh, &credentials.root_cert())
        .await
        .expect("TLS to the control plane");
    // The client sidecar's own token (default/default).
    let (token, _) = credentials.token("default", "default");

    let own = certificate_request(&identity("default")).unwrap();
    let chain = bosun_ca::request_certificate(channel.clone(), Some(&token), &own.csr_pem, HOUR)
        .await
        .expect("its own identity is signed");
    let root = std::fs::read_to_string(credentials.root_cert()).unwrap();
    assert_eq!(
        CertificateDer::from_pem_slice(chain.last().unwrap().as_bytes()).unwrap(),
        CertificateDer::from_pem_slice(root.as_bytes()).unwrap(),
        "the chain ends in the root published out of band"
    );

    // The same token asking for the reviews identity: a compromised client becoming reviews.
    let other = certificate_request(&identity("bookinfo-reviews")).unwrap();
    let status = refusal(
        bosun_ca::request_certificate(channel.clone(), Some(&token), &other.csr_pem, HOUR).await,
    );
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    let log = mesh.control_plane.as_ref().unwrap().log();
    assert!(
        log.contains("refused a certificate for another workload's identity")
            && log.contains("bookinfo-reviews"),
        "the refusal is logged with the identity asked for:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_token_there_is_no_certificate_and_no_config() {
    let mesh = mesh().await;
    let credentials = credentials(&mesh);
    let channel = channel(&mesh, &credentials.root_cert())
        .await
        .expect("TLS to the control plane");
    let csr = certificate_request(&identity("default")).unwrap().csr_pem;

    let status = refusal(bosun_ca::request_certificate(channel.clone(), None, &csr, HOUR).await);
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    // A token of the right shape from another key: what a process that guesses would make.
    let forged = TokenKey::generate().unwrap().mint("default", "default");
    let status =
        refusal(bosun_ca::request_certificate(channel.clone(), Some(&forged), &csr, HOUR).await);
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());

    // ADS without a token: refused before any config is sent.
    let mut ads = AggregatedDiscoveryServiceClient::new(channel);
    let request = DeltaDiscoveryRequest {
        node: Some(sidecar_node("client", "default")),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    let status = ads
        .delta_aggregated_resources(tokio_stream::iter(vec![request]))
        .await
        .expect_err("no config without a token");
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
}

fn sidecar_node(
    workload: &str,
    service_account: &str,
) -> envoy_types::pb::envoy::config::core::v3::Node {
    let mut node = bosun_xds::ProxyNode::sidecar("127.0.0.9".parse().unwrap(), workload, "default");
    node.service_account = service_account.to_string();
    node.to_node("test", "0")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_may_ask_only_for_its_own_workloads_config() {
    let mesh = mesh().await;
    let credentials = credentials(&mesh);
    let channel = channel(&mesh, &credentials.root_cert())
        .await
        .expect("TLS to the control plane");
    let (token, _) = credentials.token("default", "default");
    let open = |node| {
        let mut ads = AggregatedDiscoveryServiceClient::new(channel.clone());
        let bearer = format!("Bearer {token}").parse().unwrap();
        async move {
            let mut request =
                tonic::Request::new(tokio_stream::iter(vec![DeltaDiscoveryRequest {
                    node: Some(node),
                    type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                    ..Default::default()
                }]));
            request.metadata_mut().insert("authorization", bearer);
            let mut stream = ads.delta_aggregated_resources(request).await?.into_inner();
            stream.message().await.map(|reply| reply.is_some())
        }
    };
    // Its own node: config comes back.
    assert_eq!(
        open(sidecar_node("client", "default"))
            .await
            .map_err(|s| s.to_string()),
        Ok(true)
    );
    // The reviews node with the client's token: refused.
    let status = open(sidecar_node("reviews-v1", "bookinfo-reviews"))
        .await
        .expect_err("another workload's config");
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxies_trust_the_control_plane_only_through_the_root_handed_to_them() {
    let mesh = mesh().await;
    // Another mesh's root: the control plane's certificate does not chain to it.
    let foreign = CertificateAuthority::self_signed("cluster.local").unwrap();
    let foreign_root = mesh.logs.path().join("foreign-root.pem");
    std::fs::write(&foreign_root, foreign.root_pem()).unwrap();
    assert!(
        channel(&mesh, &foreign_root).await.is_err(),
        "a control plane that cannot show a certificate from the handed-over root is refused"
    );

    // The TLS port takes no plaintext, and no plaintext xDS port was asked for.
    let plaintext =
        tonic::transport::Endpoint::from_shared(format!("http://{}", mesh.xds_address()))
            .unwrap()
            .connect_timeout(Duration::from_secs(2));
    let refused = match plaintext.connect().await {
        Err(_) => true,
        Ok(channel) => {
            let csr = certificate_request(&identity("default")).unwrap().csr_pem;
            bosun_ca::request_certificate(channel, None, &csr, HOUR)
                .await
                .is_err()
        }
    };
    assert!(refused, "plaintext gRPC on the TLS port");
    let plaintext_port = std::net::SocketAddr::new(mesh.xds_address().ip(), 15010);
    assert!(
        tokio::net::TcpStream::connect(plaintext_port)
            .await
            .is_err(),
        "plaintext xDS is off unless asked for"
    );
}
