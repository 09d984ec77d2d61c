//! How the proxy reaches the control plane, for ADS and for its certificate: over TLS
//! checked against the mesh root handed to it out of band (a file, as Istio's
//! `istio-ca-root-cert`) and the control plane's name, with the workload's token on every
//! call. Plaintext (`http://`) is used only where the address asks for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bosun_ca::CONTROL_PLANE_NAME;
use bosun_ca::credential::AUTHORIZATION_HEADER;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 PINGs on the control plane connection, idle or not, so a control plane that is
/// gone without a word (a half-open connection, a frozen process) is noticed within
/// interval + timeout and the proxy reconnects, as Envoy's xds-grpc keepalive does.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("invalid control plane address {address:?}: {source}")]
    Address {
        address: String,
        source: tonic::transport::Error,
    },
    #[error(
        "{address} is reached over TLS, which needs the mesh root: pass --root-cert (bosun up \
         writes it as root-cert.pem in its run folder), or use an http:// address for \
         plaintext xDS"
    )]
    NoRoot { address: String },
    #[error("cannot read the mesh root {path}: {reason}")]
    Root { path: PathBuf, reason: String },
    #[error("cannot read the workload token {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The mesh root this proxy trusts, from its file.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pem: String,
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
}

impl TrustedRoot {
    pub fn read(path: &Path) -> Result<Self, ControlPlaneError> {
        let failed = |reason: String| ControlPlaneError::Root {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| failed(error.to_string()))?;
        if certificates.is_empty() {
            return Err(failed("it holds no PEM CERTIFICATE".to_string()));
        }
        Ok(Self {
            pem,
            certificates: Arc::new(certificates),
        })
    }

    /// The roots as PEM, as they were handed over.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Whether `certificate` is one of the trusted roots.
    pub fn contains(&self, certificate: &CertificateDer<'_>) -> bool {
        self.certificates
            .iter()
            .any(|root| root.as_ref() == certificate.as_ref())
    }
}

/// The proxy's way to the control plane: the root it checks the control plane against and
/// the token it proves its workload with.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneLink {
    root: Option<TrustedRoot>,
    token_file: Option<PathBuf>,
}

impl ControlPlaneLink {
    pub fn new(
        root_cert: Option<&Path>,
        token_file: Option<PathBuf>,
    ) -> Result<Self, ControlPlaneError> {
        let root = root_cert.map(TrustedRoot::read).transpose()?;
        let link = Self { root, token_file };
        // A missing token file is an error now, not at the first call.
        link.token()?;
        Ok(link)
    }

    /// The mesh root, when one was handed to the proxy.
    pub fn root(&self) -> Option<&TrustedRoot> {
        self.root.as_ref()
    }

    /// An endpoint for `address`: TLS to the control plane's name for `https://`.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ControlPlaneError> {
        let invalid = |source| ControlPlaneError::Address {
            address: address.to_string(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(address.to_string())
            .map_err(invalid)?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if address.starts_with("https://") {
            let root = self
                .root
                .as_ref()
                .ok_or_else(|| ControlPlaneError::NoRoot {
                    address: address.to_string(),
                })?;
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&root.pem))
                .domain_name(CONTROL_PLANE_NAME);
            endpoint = endpoint.tls_config(tls).map_err(invalid)?;
        }
        Ok(endpoint)
    }

    /// The workload's token, read afresh (a platform may rotate it), if it has one.
    pub fn token(&self) -> Result<Option<String>, ControlPlaneError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        std::fs::read_to_string(path)
            .map(|token| Some(token.trim().to_string()))
            .map_err(|source| ControlPlaneError::Token {
                path: path.clone(),
                source,
            })
    }

    /// Puts the workload's token on a call.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) -> Result<(), ControlPlaneError> {
        if let Some(token) = self.token()?
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert(AUTHORIZATION_HEADER, value);
        }
        Ok(())
    }
}
