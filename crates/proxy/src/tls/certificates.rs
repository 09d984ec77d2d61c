//! The workload's own certificate (SDS `default`) and the mesh root (`ROOTCA`), kept
//! current: the proxy makes its key, sends only a CSR to the control plane's CA (Istio's
//! certificate service), and rotates at half the certificate's life.
//!
//! Handshakes read the current certificate through rustls' resolver traits, so a
//! rotation never rebuilds a TLS config or drops a connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bosun_ca::Identity;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tonic::transport::Endpoint;
use x509_parser::prelude::FromDer;

use super::TlsError;
use crate::control_plane::{ControlPlaneLink, TrustedRoot};

/// How long a certificate is asked for: the CA's default (Istio's workload TTL).
pub const CERTIFICATE_TTL: Duration = bosun_ca::DEFAULT_TTL;
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long one certificate request may take, connection included, before it is given up
/// and retried: a hung CA must not stall renewal.
const REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// One issued certificate with what verifying peers needs beside it.
#[derive(Debug)]
pub struct WorkloadCertificate {
    pub identity: Identity,
    pub certified: Arc<CertifiedKey>,
    /// The trust anchors peers' chains must end in.
    pub roots: Arc<RootCertStore>,
    /// The leaf's serial number, lowercase hex.
    pub serial_number: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl WorkloadCertificate {
    /// Builds from the key this proxy made and the chain the CA returned (leaf first,
    /// root last, as Istio's CreateCertificate answers). With a `trusted` root (handed out
    /// of band) the chain must end in it, and peers are verified against it alone; the
    /// reply's root is used only where none was handed over (plaintext setups).
    pub fn from_pem(
        identity: Identity,
        key_pem: &str,
        chain_pem: &[String],
        trusted: Option<&TrustedRoot>,
    ) -> Result<Self, TlsError> {
        let mut chain = Vec::with_capacity(chain_pem.len());
        for pem in chain_pem {
            chain.push(
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .map_err(|error| TlsError::Certificate(format!("bad PEM: {error}")))?,
            );
        }
        let Some(root) = chain.pop() else {
            return Err(TlsError::Certificate("the CA returned no chain".into()));
        };
        if chain.is_empty() {
            return Err(TlsError::Certificate(
                "the CA returned only a root, no workload certificate".into(),
            ));
        }
        let leaf = Leaf::read(&chain[0])?;
        let anchors = match trusted {
            Some(trusted) if !trusted.contains(&root) => {
                return Err(TlsError::Certificate(
                    "the CA's chain does not end in the mesh root this proxy trusts \
                     (--root-cert); refusing the certificate"
                        .into(),
                ));
            }
            Some(trusted) => trusted.certificates.to_vec(),
            None => vec![root],
        };
        let mut roots = RootCertStore::empty();
        for anchor in anchors {
            roots
                .add(anchor)
                .map_err(|error| TlsError::Certificate(format!("bad root: {error}")))?;
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|error| TlsError::Certificate(format!("bad key: {error}")))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|error| TlsError::Certificate(format!("key and certificate: {error}")))?;
        Ok(Self {
            identity,
            certified: Arc::new(certified),
            roots: Arc::new(roots),
            serial_number: leaf.serial_number,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }
}

/// The workload's current certificate, shared by every TLS context of the proxy.
#[derive(Debug)]
pub struct WorkloadCertificates {
    current: ArcSwapOption<WorkloadCertificate>,
    ready: watch::Sender<bool>,
}

impl Default for WorkloadCertificates {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            ready: watch::channel(false).0,
        }
    }
}

impl WorkloadCertificates {
    pub fn current(&self) -> Option<Arc<WorkloadCertificate>> {
        self.current.load_full()
    }

    pub fn install(&self, certificate: WorkloadCertificate) {
        tracing::info!(
            identity = %certificate.identity,
            expires_in_s = certificate
                .not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs(),
            "workload certificate installed"
        );
        self.current.store(Some(Arc::new(certificate)));
        self.ready.send_replace(true);
    }

    /// Resolves once a certificate is installed.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Asks the CA at `ca` for a certificate for `identity`, again at half of each
    /// certificate's life, retrying with backoff while the CA cannot be reached. Runs
    /// until the task is dropped; the last certificate keeps serving meanwhile.
    pub async fn keep_current(
        self: Arc<Self>,
        ca: Endpoint,
        link: ControlPlaneLink,
        identity: Identity,
        ttl: Duration,
    ) {
        let mut retry = RETRY_INITIAL;
        loop {
            match fetch(&ca, &link, &identity, ttl).await {
                Ok(certificate) => {
                    retry = RETRY_INITIAL;
                    let renew_in =
                        bosun_ca::renewal_delay(SystemTime::now(), certificate.not_after);
                    self.install(certificate);
                    tokio::time::sleep(renew_in).await;
                }
                Err(error) => {
                    tracing::warn!(%identity, %error, retry_in = ?retry, "cannot get a workload certificate");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn certified(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .load()
            .as_ref()
            .map(|certificate| Arc::clone(&certificate.certified))
    }
}

/// A new key, and its certificate from the CA at `ca`.
async fn fetch(
    ca: &Endpoint,
    link: &ControlPlaneLink,
    identity: &Identity,
    ttl: Duration,
) -> Result<WorkloadCertificate, TlsError> {
    let (key_pem, chain) = fetch_chain(ca, link, identity, ttl).await?;
    WorkloadCertificate::from_pem(identity.clone(), &key_pem, &chain, link.root())
}

/// A new key for `identity` (PEM) and the chain the CA at `ca` signs for it, the workload's
/// token proving the identity is the caller's.
pub async fn fetch_chain(
    ca: &Endpoint,
    link: &ControlPlaneLink,
    identity: &Identity,
    ttl: Duration,
) -> Result<(String, Vec<String>), TlsError> {
    let request = bosun_ca::certificate_request(identity)?;
    let token = link
        .token()
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    let signed = async {
        let channel = ca.connect().await.map_err(TlsError::CaUnreachable)?;
        Ok::<_, TlsError>(
            bosun_ca::request_certificate(channel, token.as_deref(), &request.csr_pem, ttl).await?,
        )
    };
    let chain = tokio::time::timeout(REQUEST_DEADLINE, signed)
        .await
        .map_err(|_| {
            TlsError::Certificate(format!("the CA did not answer within {REQUEST_DEADLINE:?}"))
        })??;
    Ok((request.key_pem, chain))
}

/// What the proxy shows of its own certificate.
struct Leaf {
    serial_number: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Leaf {
    fn read(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, leaf) = x509_parser::prelude::X509Certificate::from_der(der.as_ref())
            .map_err(|error| TlsError::Certificate(format!("bad certificate: {error}")))?;
        let time = |at: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0))
        };
        Ok(Self {
            serial_number: leaf.raw_serial_as_string().replace(':', ""),
            not_before: time(leaf.validity().not_before),
            not_after: time(leaf.validity().not_after),
        })
    }
}

/// Serves the workload certificate on every inbound handshake.
#[derive(Debug)]
pub struct ServerCertificate(pub Arc<WorkloadCertificates>);

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certified()
    }
}

/// Presents the workload certificate on every outbound handshake.
#[derive(Debug)]
pub struct ClientCertificate(pub Arc<WorkloadCertificates>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.certified()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
