//! Certificate signing requests, both ends: a workload makes a key and a CSR naming its
//! identity ([`certificate_request`]); the CA reads one back, checking its signature and
//! taking the identity from its one URI SAN.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, SubjectPublicKeyInfo};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::error::CaError;
use crate::identity::Identity;

/// A fresh private key and a CSR for it, both PEM.
pub struct CertificateRequest {
    /// PKCS#8 `PRIVATE KEY`: keep it, it goes with the certificate the CA returns.
    pub key_pem: String,
    /// `CERTIFICATE REQUEST`, to send to the CA.
    pub csr_pem: String,
}

impl std::fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("key_pem", &"<redacted>")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// A fresh ECDSA P-256 key and a CSR for `identity`: its URI as the only SAN, an empty
/// subject (as Istio's agent sends).
pub fn certificate_request(identity: &Identity) -> Result<CertificateRequest, CaError> {
    identity.validate()?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(CaError::crypto("generate a key"))?;
    let csr = request_params(identity)?
        .serialize_request(&key)
        .map_err(CaError::crypto("make a certificate signing request"))?;
    Ok(CertificateRequest {
        key_pem: key.serialize_pem(),
        csr_pem: csr
            .pem()
            .map_err(CaError::crypto("encode a certificate signing request"))?,
    })
}

/// The parameters of a request naming only `identity`.
pub(crate) fn request_params(identity: &Identity) -> Result<CertificateParams, CaError> {
    let uri = identity
        .uri()
        .try_into()
        .map_err(|_| CaError::InvalidIdentity {
            uri: identity.uri(),
            reason: "it is not ASCII".to_string(),
        })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    Ok(params)
}

/// What a CSR asks for, once read and checked.
pub(crate) struct ReadRequest {
    pub identity: Identity,
    pub public_key: SubjectPublicKeyInfo,
}

/// Reads a PEM CSR: its signature must verify with the key it carries, and it must name
/// exactly one URI SAN, a SPIFFE identity. Other SANs and the subject are not looked at:
/// they are never copied into a certificate.
pub(crate) fn read_request(csr_pem: &str) -> Result<ReadRequest, CaError> {
    let der =
        CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).map_err(|error| {
            CaError::InvalidCsr(format!(
                "no PEM CERTIFICATE REQUEST block could be read ({error}); send the CSR in PEM"
            ))
        })?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|error| CaError::InvalidCsr(format!("it is not a PKCS#10 request ({error})")))?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCsr(
            "there are bytes after the request; send one request".to_string(),
        ));
    }
    csr.verify_signature().map_err(|error| {
        CaError::InvalidCsr(format!(
            "its signature does not verify ({error}); sign it with the key it carries"
        ))
    })?;

    let mut uris = Vec::new();
    for extension in csr.requested_extensions().into_iter().flatten() {
        match extension {
            ParsedExtension::SubjectAlternativeName(names) => {
                uris.extend(names.general_names.iter().filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                }));
            }
            ParsedExtension::ParseError { error } => {
                return Err(CaError::InvalidCsr(format!(
                    "a requested extension does not parse ({error})"
                )));
            }
            _ => {}
        }
    }
    let uri = match uris.as_slice() {
        [uri] => *uri,
        [] => {
            return Err(CaError::InvalidCsr(
                "it has no URI SAN; request the workload's identity \
                 (spiffe://<trust domain>/ns/<namespace>/sa/<service account>) as a URI SAN"
                    .to_string(),
            ));
        }
        more => {
            return Err(CaError::InvalidCsr(format!(
                "it has {} URI SANs ({}); request exactly one identity",
                more.len(),
                more.join(", ")
            )));
        }
    };
    let identity = uri.parse::<Identity>()?;

    let public_key = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|error| {
            CaError::InvalidCsr(format!(
                "its key type is not supported ({error}); use ECDSA P-256, P-384 or RSA"
            ))
        })?;
    Ok(ReadRequest {
        identity,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_makes() {
        let identity = Identity::new("cluster.local", "default", "web");
        let request = certificate_request(&identity).unwrap();
        assert!(
            request
                .csr_pem
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        assert!(request.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let read = read_request(&request.csr_pem).unwrap();
        assert_eq!(read.identity, identity);
        let key = KeyPair::from_pem(&request.key_pem).unwrap();
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&read.public_key),
            key.public_key_raw()
        );
    }

    #[test]
    fn refuses_invalid_identities() {
        let bad = Identity::new("cluster.local", "", "web");
        assert!(matches!(
            certificate_request(&bad),
            Err(CaError::InvalidIdentity { .. })
        ));
    }

    #[test]
    fn rejects_a_tampered_request() {
        let identity = Identity::new("cluster.local", "default", "web-frontend");
        let request = certificate_request(&identity).unwrap();
        let mut der = CertificateSigningRequestDer::from_pem_slice(request.csr_pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // Change one byte of the URI: the signature no longer covers what is sent.
        let at = der
            .windows(b"web-frontend".len())
            .position(|window| window == b"web-frontend")
            .unwrap();
        der[at] = b'x';
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64(&der)
        );
        match read_request(&pem) {
            Err(CaError::InvalidCsr(message)) => {
                assert!(message.contains("signature"), "{message}")
            }
            other => panic!("expected InvalidCsr, got {:?}", other.map(|r| r.identity)),
        }
    }

    /// Standard base64, enough to write a test PEM.
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
