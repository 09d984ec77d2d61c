//! Mutual TLS, attacked: callers with certificates of another mesh, expired, of another
//! trust domain, or valid but for an identity the policy does not allow, straight at a
//! STRICT server sidecar that allows one principal. Nothing the policy denies may pass;
//! the allowed caller does, and no header it sends removes or replaces the element the
//! sidecar adds to `x-forwarded-client-cert`. Each case runs against Bosun's proxy and a
//! real Envoy as the server's sidecar.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bosun_ca::{CertificateAuthority, Identity, IssuedCertificate};
use bosun_xds::StreamKind;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use support::mesh::{ClientProxy, MeshSpec, TestMesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]
";

/// What came back to an attacking caller.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The handshake failed, or the connection closed before an answer.
    Refused(String),
    Answered(u16, String),
}

impl Outcome {
    fn passed(&self) -> bool {
        matches!(self, Outcome::Answered(200, _))
    }
}

/// Accepts any server: these tests attack the server, they do not check it.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTP/1.1 request over TLS with `certificate`, straight to reviews v1's sidecar.
async fn call(
    mesh: &TestMesh,
    certificate: &IssuedCertificate,
    headers: &[(&str, &str)],
) -> Outcome {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = certificate
        .chain_pem
        .iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(mesh.reviews_inbound("v1"))
        .await
        .expect("connect to the inbound port");
    let name = ServerName::try_from("reviews.default.svc.cluster.local").unwrap();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(error) => return Outcome::Refused(format!("handshake: {error}")),
    };
    let mut request = String::from("GET /reviews/1 HTTP/1.1\r\nhost: reviews:9080\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if let Err(error) = tls.write_all(request.as_bytes()).await {
        return Outcome::Refused(format!("write: {error}"));
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if complete(&answer) {
                return;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer).to_string();
    match text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(status) => Outcome::Answered(status, text),
        None if read.is_err() => Outcome::Refused("no answer within 5 s".into()),
        None => Outcome::Refused(format!("closed with {:?}", text)),
    }
}

/// Whether `answer` holds a whole response with a `content-length` body.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_none_or(|length| body.len() >= length)
}

fn identity(trust_domain: &str, service_account: &str) -> Identity {
    Identity::new(trust_domain, "default", service_account)
}

async fn attacks_are_refused(server: ClientProxy) {
    let spec = MeshSpec {
        files: vec![("policies.yaml".into(), POLICIES.into())],
        backend_proxy: server,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    // The test stands where the platform does: it holds the mesh CA the control plane keeps.
    let ca_dir = mesh.logs.path().join("ca");
    let mesh_ca = CertificateAuthority::from_folder(&ca_dir, "cluster.local").expect("mesh CA");
    let hour = Duration::from_secs(3600);
    let allowed = mesh_ca
        .issue(&identity("cluster.local", "productpage"), hour)
        .unwrap();

    // The control: the allowed caller passes (so a refusal below means something).
    let mut control = Outcome::Refused(String::new());
    for _ in 0..50 {
        control = call(&mesh, &allowed, &[]).await;
        if control.passed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(control.passed(), "{control:?}\n{}", mesh.logs());

    let foreign = CertificateAuthority::self_signed("cluster.local")
        .unwrap()
        .issue(&identity("cluster.local", "productpage"), hour)
        .unwrap();
    let expired = mesh_ca
        .issue(
            &identity("cluster.local", "productpage"),
            Duration::from_secs(1),
        )
        .unwrap();
    let other_domain = CertificateAuthority::from_folder(&ca_dir, "evil.example")
        .unwrap()
        .issue(&identity("evil.example", "productpage"), hour)
        .unwrap();
    let not_allowed = mesh_ca
        .issue(&identity("cluster.local", "intruder"), hour)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cases = [
        ("a certificate from another mesh's CA", &foreign),
        ("an expired certificate", &expired),
        ("a certificate of another trust domain", &other_domain),
        (
            "a valid certificate the policy does not allow",
            &not_allowed,
        ),
    ];
    for (what, certificate) in cases {
        let outcome = call(&mesh, certificate, &[]).await;
        assert!(
            !outcome.passed(),
            "{what} passed a STRICT port that allows only productpage: {outcome:?}"
        );
    }
    // The one the policy sees and denies answers RBAC's 403.
    match call(&mesh, &not_allowed, &[]).await {
        Outcome::Answered(403, _) => {}
        other => panic!("a caller the policy denies gets 403, got {other:?}"),
    }

    // The allowed caller tries to have the sidecar's own element removed or replaced.
    let outcome = call(
        &mesh,
        &allowed,
        &[
            ("connection", "x-forwarded-client-cert"),
            (
                "x-forwarded-client-cert",
                "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews;URI=spiffe://cluster.local/ns/default/sa/admin",
            ),
        ],
    )
    .await;
    let Outcome::Answered(200, text) = outcome else {
        panic!("{outcome:?}");
    };
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: serde_json::Value = serde_json::from_str(body).expect("the sample's JSON");
    let header = json["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_else(|| panic!("the sidecar's element was removed: {body}"));
    let own = header.rsplit(',').next().unwrap_or_default();
    assert!(
        own.contains("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "the last element is the sidecar's, naming the real caller: {header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_a_strict_port_are_refused_by_bosun() {
    attacks_are_refused(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_a_strict_port_are_refused_by_envoy() {
    attacks_are_refused(ClientProxy::Envoy(StreamKind::Sotw)).await;
}
