//! Mutual TLS between two workloads with certificates from the CA, over real sockets:
//! the server requires a client certificate chaining to the root, the client checks the
//! server's chain and its SPIFFE identity (there is no DNS name to check).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bosun_ca::{CertificateAuthority, DEFAULT_TRUST_DOMAIN, Identity, IssuedCertificate};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

const HOUR: Duration = Duration::from_secs(3600);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Checks a server's chain against the mesh roots and its URI SAN against the identity
/// the client expects; the server name the client dials is not looked at.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Vec<CertificateDer<'static>>,
    expected: Identity,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchors = self
            .roots
            .iter()
            .map(|root| webpki::anchor_from_trusted_cert(root))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        leaf.verify_for_usage(
            self.algorithms.all,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|error| rustls::Error::General(format!("chain: {error}")))?;

        let (_, cert) = X509Certificate::from_der(end_entity)
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        let (uris, _) = common::uri_sans(&cert);
        if uris != [self.expected.uri()] {
            return Err(rustls::Error::General(format!(
                "server is {uris:?}, expected {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn chain_and_key(
    issued: &IssuedCertificate,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        common::ders(&issued.chain_pem),
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
    )
}

fn server_config(ca: &CertificateAuthority, issued: &IssuedCertificate) -> ServerConfig {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for root in common::bundle(ca.root_pem()) {
        roots.add(root).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let (chain, key) = chain_and_key(issued);
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap()
}

fn client_config(
    ca: &CertificateAuthority,
    issued: &IssuedCertificate,
    expected: Identity,
) -> ClientConfig {
    let provider = provider();
    let verifier = SpiffeServerVerifier {
        roots: common::bundle(ca.root_pem()),
        expected,
        algorithms: provider.signature_verification_algorithms,
    };
    let (chain, key) = chain_and_key(issued);
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// What the server saw: the client's identity and the bytes it sent, or why it failed.
type ServerOutcome = Result<(Vec<String>, Vec<u8>), String>;

/// One connection: the server reads "ping", answers "pong"; returns both sides' outcomes.
async fn exchange(
    server: ServerConfig,
    client: ClientConfig,
) -> (ServerOutcome, Result<Vec<u8>, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first().cloned())
            .ok_or("no client certificate")?;
        let (_, cert) = X509Certificate::from_der(&peer).map_err(|e| e.to_string())?;
        let (uris, _) = common::uri_sans(&cert);
        let mut received = [0u8; 4];
        tls.read_exact(&mut received)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((uris, received.to_vec()))
    });

    let client = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("server.default.svc").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    };
    let client = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .unwrap_or_else(|_| Err("client timed out".to_string()));
    let server = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .map(|joined| joined.unwrap())
        .unwrap_or_else(|_| Err("server timed out".to_string()));
    (server, client)
}

fn identity(service_account: &str) -> Identity {
    Identity::new(DEFAULT_TRUST_DOMAIN, "default", service_account)
}

#[tokio::test]
async fn workloads_complete_mutual_tls() {
    let ca = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let server_cert = ca.issue(&identity("server"), HOUR).unwrap();
    let client_cert = ca.issue(&identity("client"), HOUR).unwrap();

    let (server, client) = exchange(
        server_config(&ca, &server_cert),
        client_config(&ca, &client_cert, identity("server")),
    )
    .await;
    assert_eq!(client.unwrap(), b"pong");
    let (client_identity, received) = server.unwrap();
    assert_eq!(client_identity, vec![identity("client").uri()]);
    assert_eq!(received, b"ping");
}

#[tokio::test]
async fn the_client_refuses_a_server_with_another_identity() {
    let ca = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let server_cert = ca.issue(&identity("impostor"), HOUR).unwrap();
    let client_cert = ca.issue(&identity("client"), HOUR).unwrap();

    let (_, client) = exchange(
        server_config(&ca, &server_cert),
        client_config(&ca, &client_cert, identity("server")),
    )
    .await;
    let error = client.expect_err("the server is not who the client expects");
    assert!(
        error.contains("expected spiffe://cluster.local/ns/default/sa/server"),
        "{error}"
    );
}

#[tokio::test]
async fn the_server_refuses_a_client_of_another_mesh() {
    let ca = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let other = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let server_cert = ca.issue(&identity("server"), HOUR).unwrap();
    // Same identity, issued by a root the server does not trust.
    let client_cert = other.issue(&identity("client"), HOUR).unwrap();

    let (server, client) = exchange(
        server_config(&ca, &server_cert),
        client_config(&ca, &client_cert, identity("server")),
    )
    .await;
    let error = server.expect_err("the client's root is not trusted");
    // Both roots are named alike: the signature is what tells them apart.
    assert!(
        error.contains("invalid peer certificate: BadSignature"),
        "{error}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn the_client_refuses_a_server_of_another_mesh() {
    let ca = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let other = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let server_cert = other.issue(&identity("server"), HOUR).unwrap();
    let client_cert = ca.issue(&identity("client"), HOUR).unwrap();

    let (_, client) = exchange(
        server_config(&other, &server_cert),
        client_config(&ca, &client_cert, identity("server")),
    )
    .await;
    let error = client.expect_err("the server's root is not trusted");
    assert!(error.contains("chain"), "{error}");
}
