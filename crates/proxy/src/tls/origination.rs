//! TLS the sidecar originates to a destination of its own (a DestinationRule's SIMPLE or
//! MUTUAL): the client configs and the server check, as Envoy makes them.
//!
//! Envoy checks a server's names only when told to: against `subjectAltNames` when the
//! rule lists some, else against the request's host under auto SAN validation (istiod
//! turns it on when the rule names no `sni`). A fixed `sni` with no names checks the
//! chain alone.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::provider;
use super::verify::{chain_to, invalid};
use crate::compile::{OwnTls, SanName};

/// A client config for `own`. `check_host`: the server's certificate must be valid for
/// the name the connection is made to (auto SAN validation), when `own` lists no names.
pub fn client_config(
    own: &OwnTls,
    alpn: &[String],
    send_sni: bool,
    check_host: bool,
) -> Arc<ClientConfig> {
    let verifier = Arc::new(OwnServerVerifier {
        roots: own.roots.clone(),
        names: own.subject_alt_names.clone(),
        check_host: check_host && own.subject_alt_names.is_empty(),
        algorithms: provider().signature_verification_algorithms,
    });
    let builder = || {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
    };
    let mut config = match &own.client_certificate {
        // Compiling checked that the pair loads.
        Some((chain, key)) => builder()
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "the client certificate cannot be used; connecting without it");
                builder().with_no_client_auth()
            }),
        None => builder().with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.enable_sni = send_sni;
    Arc::new(config)
}

/// Whether a client certificate and key can be presented together.
pub fn usable_pair(
    chain: &[CertificateDer<'static>],
    key: &rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<(), Error> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(chain.to_vec(), key.clone_key())
        .map(|_| ())
}

/// Where the system's roots are looked for, after `SSL_CERT_FILE`: the bundles of
/// Debian / Ubuntu, Fedora / RHEL, openSUSE, Alpine and macOS.
const SYSTEM_ROOT_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

/// The system's root bundle: `SSL_CERT_FILE`, else the first well-known one there is.
pub(crate) fn system_bundle() -> Result<String, String> {
    if let Ok(file) = std::env::var("SSL_CERT_FILE")
        && !file.is_empty()
    {
        return Ok(file);
    }
    SYSTEM_ROOT_BUNDLES
        .iter()
        .find(|path| Path::new(path).is_file())
        .map(|path| path.to_string())
        .ok_or_else(|| {
            format!(
                "no system root bundle (looked in {}); set SSL_CERT_FILE, or the rule's caCertificates",
                SYSTEM_ROOT_BUNDLES.join(", ")
            )
        })
}

/// The server side of originated TLS: the chain ends in the rule's roots (unless it
/// skips verification), and the certificate carries a listed name or, under auto SAN
/// validation, is valid for the host.
#[derive(Debug)]
struct OwnServerVerifier {
    roots: Option<Arc<RootCertStore>>,
    names: Vec<SanName>,
    check_host: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for OwnServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let certificate = chain_to(
            &roots.roots,
            self.algorithms,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        if !self.names.is_empty() {
            return if carries_one_of(end_entity, &self.names) {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Error::General(format!(
                    "the server's certificate carries none of the names the rule accepts ({})",
                    self.names
                        .iter()
                        .map(|name| format!("{name:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            };
        }
        if self.check_host {
            certificate
                .verify_is_valid_for_subject_name(server_name)
                .map_err(invalid)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether the certificate's SANs include one of `names` (Envoy's exact SAN match: a
/// DNS name is covered by the certificate's wildcard of its parent).
fn carries_one_of(certificate: &CertificateDer<'_>, names: &[SanName]) -> bool {
    let Ok((_, parsed)) = X509Certificate::from_der(certificate.as_ref()) else {
        return false;
    };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else {
        return false;
    };
    sans.value.general_names.iter().any(|san| {
        names.iter().any(|name| match (name, san) {
            (SanName::Dns(name) | SanName::Any(name), GeneralName::DNSName(dns)) => {
                dns_name_match(name, dns)
            }
            (SanName::Uri(name) | SanName::Any(name), GeneralName::URI(uri)) => name == uri,
            (SanName::Ip(ip), GeneralName::IPAddress(bytes)) => ip_bytes(ip) == *bytes,
            (SanName::Any(name), GeneralName::IPAddress(bytes)) => name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip_bytes(&ip) == *bytes),
            _ => false,
        })
    })
}

fn ip_bytes(ip: &std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Envoy's DNS SAN match: equal ignoring case, or the certificate's `*.parent` covering
/// exactly one label of the wanted name.
fn dns_name_match(wanted: &str, presented: &str) -> bool {
    if wanted.eq_ignore_ascii_case(presented) {
        return true;
    }
    let Some(parent) = presented.strip_prefix("*.") else {
        return false;
    };
    wanted
        .split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent))
}

#[cfg(test)]
mod tests {
    use super::dns_name_match;

    #[test]
    fn wildcard_certificates_cover_one_label() {
        assert!(dns_name_match("api.example.com", "API.example.com"));
        assert!(dns_name_match("api.example.com", "*.example.com"));
        assert!(!dns_name_match("a.b.example.com", "*.example.com"));
        assert!(!dns_name_match("example.com", "*.example.com"));
        assert!(!dns_name_match("api.example.org", "*.example.com"));
    }
}
