//! The control plane's TLS port (Istio's 15012): a serving certificate from the mesh CA for
//! [`CONTROL_PLANE_NAME`], renewed at half its life without a restart, and the accepted
//! connections handed to the gRPC server once their handshake is done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bosun_ca::{CONTROL_PLANE_NAME, CertificateAuthority};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a serving certificate lives (the CA may cap it).
const SERVING_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server.
const ACCEPT_BACKLOG: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot issue the control plane's serving certificate: {0}")]
    Issue(#[from] bosun_ca::CaError),
    #[error("the control plane's serving certificate is unusable: {0}")]
    Unusable(String),
}

/// The serving certificate, reissued by the CA once half of its life has passed.
#[derive(Debug)]
struct ServingCertificate {
    ca: Arc<CertificateAuthority>,
    current: Mutex<(Arc<CertifiedKey>, SystemTime)>,
}

impl ServingCertificate {
    fn new(ca: Arc<CertificateAuthority>) -> Result<Self, ServingError> {
        let first = issue(&ca)?;
        Ok(Self {
            ca,
            current: Mutex::new(first),
        })
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if SystemTime::now() >= current.1 {
            match issue(&self.ca) {
                Ok(renewed) => *current = renewed,
                Err(error) => tracing::error!(%error, "cannot renew the serving certificate"),
            }
        }
        Some(Arc::clone(&current.0))
    }
}

/// A fresh key and certificate, and when to renew them.
fn issue(ca: &CertificateAuthority) -> Result<(Arc<CertifiedKey>, SystemTime), ServingError> {
    let issued = ca.issue_server(&[CONTROL_PLANE_NAME, "localhost"], SERVING_TTL)?;
    let unusable = |error: &dyn std::fmt::Display| ServingError::Unusable(error.to_string());
    let chain = issued
        .chain_pem
        .iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| unusable(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| unusable(&e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| unusable(&e))?;
    let renew_at = SystemTime::now() + bosun_ca::renewal_delay(SystemTime::now(), issued.not_after);
    Ok((Arc::new(certified), renew_at))
}

/// The TLS side of the control plane's port.
pub(crate) fn acceptor(ca: Arc<CertificateAuthority>) -> Result<TlsAcceptor, ServingError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServingError::Unusable(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ServingCertificate::new(ca)?));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts on `listener` and yields each connection once its handshake is done; handshakes
/// run side by side, so a slow client holds up no other. A failed handshake is logged and
/// dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (ready, incoming) = mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept on the xDS port");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if ready.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = ready.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(%peer, %error, "refused a TLS handshake on the xDS port")
                    }
                    Err(_) => tracing::info!(%peer, "a TLS handshake on the xDS port timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}
