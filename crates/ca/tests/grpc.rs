//! Istio's certificate service end to end: a tonic server on a real socket, mounted
//! beside another service as the control plane mounts it beside xDS, and the client.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bosun_ca::service::{
    CREATE_CERTIFICATE_PATH, IstioCertificateRequest, IstioCertificateResponse,
};
use bosun_ca::{
    CaError, CertificateAuthority, CertificateService, DEFAULT_TRUST_DOMAIN, DEFAULT_TTL, Identity,
    TokenKey, certificate_request, request_certificate,
};
use common::{assert_workload_leaf, verify_both};
use http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;

const HOUR: Duration = Duration::from_secs(3600);

/// Stands in for the ADS service the certificate service is mounted beside.
#[derive(Clone)]
struct OtherService;

impl NamedService for OtherService {
    const NAME: &'static str = "test.OtherService";
}

impl Service<http::Request<tonic::body::Body>> for OtherService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async { Ok(Status::unavailable("the other service").into_http()) })
    }
}

struct Running {
    ca: Arc<CertificateAuthority>,
    key: TokenKey,
    channel: Channel,
}

impl Running {
    /// The token of the workloads of namespace `default` running as `service_account`.
    fn token(&self, service_account: &str) -> String {
        self.key.mint("default", service_account)
    }
}

/// A CA whose service allows every identity of namespace `default` but `sa/denied`.
async fn start() -> Running {
    let ca = Arc::new(CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap());
    let key = TokenKey::generate().unwrap();
    let service = CertificateService::new(
        ca.clone(),
        Arc::new(key.clone()),
        Arc::new(|identity: &Identity| {
            identity.namespace == "default" && identity.service_account != "denied"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        Server::builder()
            .add_service(OtherService)
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    Running { ca, key, channel }
}

fn identity(service_account: &str) -> Identity {
    Identity::new(DEFAULT_TRUST_DOMAIN, "default", service_account)
}

/// A call with a hand-made request, at any path.
async fn call(
    channel: Channel,
    token: Option<&str>,
    path: &'static str,
    request: IstioCertificateRequest,
) -> Result<IstioCertificateResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = Request::new(request);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

fn rejected(result: Result<Vec<String>, CaError>) -> Box<Status> {
    match result {
        Err(CaError::Rejected(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn issues_a_certificate_over_grpc() {
    let running = start().await;
    let request = certificate_request(&identity("web")).unwrap();
    let chain = request_certificate(
        running.channel.clone(),
        Some(&running.token("web")),
        &request.csr_pem,
        HOUR,
    )
    .await
    .unwrap();
    assert_eq!(chain.len(), 2, "leaf, root");
    assert_eq!(chain[1], running.ca.root_pem());
    assert_workload_leaf(&chain[0], &identity("web"), HOUR);
    verify_both(&chain, running.ca.root_pem());

    // The other service is still reachable on the same port.
    let status = call(
        running.channel,
        None,
        "/test.OtherService/Anything",
        IstioCertificateRequest::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "the other service");
}

#[tokio::test]
async fn zero_lifetime_means_the_default() {
    let running = start().await;
    let request = certificate_request(&identity("web")).unwrap();
    let chain = request_certificate(
        running.channel.clone(),
        Some(&running.token("web")),
        &request.csr_pem,
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_workload_leaf(&chain[0], &identity("web"), DEFAULT_TTL);
}

#[tokio::test]
async fn an_unauthorized_identity_is_permission_denied() {
    let running = start().await;
    let request = certificate_request(&identity("denied")).unwrap();
    let status = rejected(
        request_certificate(
            running.channel.clone(),
            Some(&running.token("denied")),
            &request.csr_pem,
            HOUR,
        )
        .await,
    );
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("spiffe://cluster.local/ns/default/sa/denied"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_bad_request_is_invalid_argument() {
    let running = start().await;
    let status = rejected(
        request_certificate(
            running.channel.clone(),
            Some(&running.token("web")),
            "not a csr",
            HOUR,
        )
        .await,
    );
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("certificate signing request"),
        "{}",
        status.message()
    );

    let other_domain =
        certificate_request(&Identity::new("other.domain", "default", "web")).unwrap();
    let status = rejected(
        request_certificate(
            running.channel.clone(),
            Some(&running.token("web")),
            &other_domain.csr_pem,
            HOUR,
        )
        .await,
    );
    assert_eq!(status.code(), Code::InvalidArgument);

    let negative = IstioCertificateRequest {
        csr: certificate_request(&identity("web")).unwrap().csr_pem,
        validity_duration: -1,
        metadata: None,
    };
    let status = call(
        running.channel.clone(),
        Some(&running.token("web")),
        CREATE_CERTIFICATE_PATH,
        negative,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("validity_duration"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn requests_with_metadata_are_served() {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

    let running = start().await;
    let mut metadata = Struct::default();
    metadata.fields.insert(
        "ImpersonatedIdentity".to_string(),
        Value {
            kind: Some(Kind::StringValue(identity("web").uri())),
        },
    );
    let request = IstioCertificateRequest {
        csr: certificate_request(&identity("web")).unwrap().csr_pem,
        validity_duration: 600,
        metadata: Some(metadata),
    };
    let response = call(
        running.channel.clone(),
        Some(&running.token("web")),
        CREATE_CERTIFICATE_PATH,
        request,
    )
    .await
    .unwrap();
    assert_eq!(response.cert_chain.len(), 2);
    assert_workload_leaf(
        &response.cert_chain[0],
        &identity("web"),
        Duration::from_secs(600),
    );
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let running = start().await;
    let status = call(
        running.channel.clone(),
        Some(&running.token("web")),
        "/istio.v1.auth.IstioCertificateService/SignEverything",
        IstioCertificateRequest::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn a_caller_without_a_valid_token_is_unauthenticated() {
    let running = start().await;
    let csr = certificate_request(&identity("web")).unwrap().csr_pem;
    let request = IstioCertificateRequest {
        csr: csr.clone(),
        validity_duration: 600,
        metadata: None,
    };
    let status = call(
        running.channel.clone(),
        None,
        CREATE_CERTIFICATE_PATH,
        request.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    // A token signed with another key, as a process that guesses the format would make.
    let forged = TokenKey::generate().unwrap().mint("default", "web");
    let status =
        rejected(request_certificate(running.channel.clone(), Some(&forged), &csr, HOUR).await);
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    let status =
        rejected(request_certificate(running.channel, Some("not-a-jwt"), &csr, HOUR).await);
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
}

#[tokio::test]
async fn a_csr_for_another_workloads_identity_is_refused() {
    let running = start().await;
    // web's own token, asking for cart's identity: a compromised web becoming cart.
    let csr = certificate_request(&identity("cart")).unwrap().csr_pem;
    let status = rejected(
        request_certificate(
            running.channel.clone(),
            Some(&running.token("web")),
            &csr,
            HOUR,
        )
        .await,
    );
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    // The same CSR with cart's token is signed.
    let chain = request_certificate(
        running.channel.clone(),
        Some(&running.token("cart")),
        &csr,
        HOUR,
    )
    .await
    .unwrap();
    assert_workload_leaf(&chain[0], &identity("cart"), HOUR);
}
