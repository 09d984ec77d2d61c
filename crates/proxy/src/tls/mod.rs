//! Istio mutual TLS in the proxy: the workload certificate, SPIFFE verification, and the
//! rustls configs the listeners and upstream connections use.
//!
//! xDS names two SDS secrets in every TLS context, `default` and `ROOTCA`. Bosun's proxy
//! answers both from [`WorkloadCertificates`], as Istio's agent does for Envoy.

pub(crate) mod certificates;
pub(crate) mod origination;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::compile::CertDetails;

pub use certificates::{CERTIFICATE_TTL, WorkloadCertificate, WorkloadCertificates};
use verify::is_spiffe;
pub use verify::spiffe_identity;

use certificates::{ClientCertificate, ServerCertificate};
use verify::{MeshClientVerifier, SpiffeServerVerifier};

/// The SDS secret names the proxy answers itself.
pub use bosun_wire::secrets::{ROOT as ROOT_SECRET, WORKLOAD as WORKLOAD_SECRET};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("workload certificate: {0}")]
    Certificate(String),
    #[error("cannot reach the CA: {0}")]
    CaUnreachable(#[source] tonic::transport::Error),
    #[error(transparent)]
    Ca(#[from] bosun_ca::CaError),
}

/// A client config is made per (accepted identities, ALPN list).
type ClientKey = (Vec<String>, Vec<String>);

/// Builds the TLS configs of listeners and clusters. Client configs are shared by the
/// clusters that verify the same identities, so a mesh of many services does not hold a
/// config (and a session cache) per cluster.
#[derive(Debug, Default)]
pub struct TlsContexts {
    certificates: Arc<WorkloadCertificates>,
    clients: Mutex<HashMap<ClientKey, Arc<ClientConfig>>>,
}

impl TlsContexts {
    pub fn new(certificates: Arc<WorkloadCertificates>) -> Self {
        Self {
            certificates,
            clients: Mutex::default(),
        }
    }

    pub fn certificates(&self) -> &Arc<WorkloadCertificates> {
        &self.certificates
    }

    /// The inbound side: present the workload certificate, require one from the mesh.
    pub fn server(&self, alpn: &[String]) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .with_client_cert_verifier(Arc::new(MeshClientVerifier::new(Arc::clone(
                &self.certificates,
            ))))
            .with_cert_resolver(Arc::new(ServerCertificate(Arc::clone(&self.certificates))));
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// The outbound side: present the workload certificate, accept a server whose
    /// identity is one of `identities` (any mesh identity when empty).
    pub fn client(&self, identities: &[String], alpn: &[String]) -> Arc<ClientConfig> {
        let key = (identities.to_vec(), alpn.to_vec());
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = clients.get(&key) {
            return Arc::clone(config);
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                Arc::clone(&self.certificates),
                identities.to_vec(),
            )))
            .with_client_cert_resolver(Arc::new(ClientCertificate(Arc::clone(&self.certificates))));
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let config = Arc::new(config);
        clients.insert(key, Arc::clone(&config));
        config
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the inbound side learned of an mTLS peer, as Envoy puts it in
/// `x-forwarded-client-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the peer's certificate, lowercase hex.
    pub hash: String,
    pub subject: String,
    pub uri: Option<String>,
    pub dns: Vec<String>,
}

impl PeerCertificate {
    pub fn of(certificate: &CertificateDer<'_>) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate.as_ref());
        let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let mut peer = Self {
            hash,
            subject: String::new(),
            uri: None,
            dns: Vec::new(),
        };
        // One parse per handshake: the subject and both kinds of SAN from it.
        if let Ok((_, parsed)) = X509Certificate::from_der(certificate.as_ref()) {
            peer.subject = parsed.subject().to_string();
            if let Ok(Some(names)) = parsed.subject_alternative_name() {
                for name in &names.value.general_names {
                    match name {
                        GeneralName::URI(uri) if peer.uri.is_none() && is_spiffe(uri) => {
                            peer.uri = Some((*uri).to_string());
                        }
                        GeneralName::DNSName(dns) => peer.dns.push((*dns).to_string()),
                        _ => {}
                    }
                }
            }
        }
        peer
    }

    /// One `x-forwarded-client-cert` element in Envoy's format:
    /// `By=<own identity>;Hash=<hex>;Subject="...";URI=<peer identity>;DNS=...`, with the
    /// fields `details` asks for.
    pub fn forwarded_element(&self, by: Option<&str>, details: CertDetails) -> String {
        let mut element = String::new();
        if let Some(by) = by {
            element.push_str("By=");
            element.push_str(by);
            element.push(';');
        }
        element.push_str("Hash=");
        element.push_str(&self.hash);
        if details.subject {
            element.push_str(";Subject=\"");
            element.push_str(&self.subject.replace('"', "\\\""));
            element.push('"');
        }
        if details.uri
            && let Some(uri) = &self.uri
        {
            element.push_str(";URI=");
            element.push_str(uri);
        }
        if details.dns {
            for dns in &self.dns {
                element.push_str(";DNS=");
                element.push_str(dns);
            }
        }
        element
    }
}
