//! Peer verification the SPIFFE way: the chain must end in the mesh root, and the
//! identity is the certificate's URI SAN, not a DNS name.
//!
//! The roots are read from the current workload certificate at each handshake, so a
//! new root reaches every TLS context without rebuilding them.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certificates::WorkloadCertificates;

/// Whether a URI SAN is a SPIFFE identity.
pub(super) fn is_spiffe(uri: &str) -> bool {
    uri.starts_with("spiffe://")
}

/// The SPIFFE identity (URI SAN) a certificate carries, if any.
pub fn spiffe_identity(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(certificate.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) if is_spiffe(uri) => Some((*uri).to_string()),
            _ => None,
        })
}

/// A webpki failure as rustls reports a bad certificate.
pub(super) fn invalid(error: webpki::Error) -> Error {
    Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(error),
    )))
}

/// Checks that `end_entity` chains, through `intermediates`, to one of `roots` for
/// `usage`; returns the parsed certificate for further checks.
pub(super) fn chain_to<'c>(
    roots: &[rustls::pki_types::TrustAnchor<'_>],
    algorithms: WebPkiSupportedAlgorithms,
    end_entity: &'c CertificateDer<'c>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<webpki::EndEntityCert<'c>, Error> {
    let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(invalid)?;
    certificate
        .verify_for_usage(algorithms.all, roots, intermediates, now, usage, None, None)
        .map_err(invalid)?;
    Ok(certificate)
}

/// What both verifiers check: the chain ends in the current mesh root, and handshake
/// signatures verify with the provider's algorithms.
#[derive(Debug)]
struct MeshRoots {
    certificates: Arc<WorkloadCertificates>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl MeshRoots {
    fn new(certificates: Arc<WorkloadCertificates>) -> Self {
        Self {
            certificates,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }

    /// Checks `end_entity` chains to the current mesh root for `usage`.
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<(), Error> {
        let current = self
            .certificates
            .current()
            .ok_or_else(|| Error::General("no workload certificate yet, so no mesh root".into()))?;
        chain_to(
            &current.roots.roots,
            self.algorithms,
            end_entity,
            intermediates,
            now,
            usage,
        )
        .map(|_| ())
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Verifies the server side of an outbound connection: signed by the mesh root and,
/// when the cluster names identities, presenting one of them.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    mesh: MeshRoots,
    identities: Vec<String>,
}

impl SpiffeServerVerifier {
    pub fn new(certificates: Arc<WorkloadCertificates>, identities: Vec<String>) -> Self {
        Self {
            mesh: MeshRoots::new(certificates),
            identities,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.mesh.verify_chain(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        if self.identities.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        match spiffe_identity(end_entity) {
            Some(identity) if self.identities.contains(&identity) => {
                Ok(ServerCertVerified::assertion())
            }
            presented => Err(Error::General(format!(
                "the server presented {} but the cluster accepts only {}",
                presented.as_deref().unwrap_or("no SPIFFE identity"),
                self.identities.join(", ")
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.mesh.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.mesh.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.mesh.schemes()
    }
}

/// Verifies the client side of an inbound mTLS connection: any identity the mesh root
/// signed (who may call what is authorization's business, not the handshake's).
#[derive(Debug)]
pub struct MeshClientVerifier {
    mesh: MeshRoots,
}

impl MeshClientVerifier {
    pub fn new(certificates: Arc<WorkloadCertificates>) -> Self {
        Self {
            mesh: MeshRoots::new(certificates),
        }
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.mesh.verify_chain(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.mesh.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.mesh.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.mesh.schemes()
    }
}
