//! TLS of the destination's own (a DestinationRule's SIMPLE or MUTUAL), as istiod writes
//! it: the client certificate as SDS `file-cert:<chain>~<key>`, the roots as
//! `file-root:<bundle>` or `file-root:system`, or a validation context that checks
//! nothing (`insecureSkipVerify`). The proxy answers these secrets itself, reading the
//! files when the cluster arrives, so a file it cannot read or parse rejects the cluster
//! with its path rather than failing each connection later.

use std::net::IpAddr;
use std::sync::Arc;

use bosun_wire::secrets::FileSecret;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, common_tls_context,
    subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Reason;

/// A name the server's certificate must carry, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanName {
    /// A DNS name (a certificate's wildcard name covers it, as in Envoy).
    Dns(String),
    Uri(String),
    Ip(IpAddr),
    /// The deprecated untyped matcher istiod writes: a name of any of the kinds above.
    Any(String),
}

/// The certificates and checks of one originated TLS context.
#[derive(Debug, Clone)]
pub struct OwnTls {
    /// What was read, by path: contexts that read the same bytes are the same TLS.
    read: Vec<(String, Arc<[u8]>)>,
    /// MUTUAL: the chain and key presented to the server.
    pub client_certificate: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    /// The roots the server's chain must end in; `None`: the server is not verified.
    pub roots: Option<Arc<RootCertStore>>,
    pub subject_alt_names: Vec<SanName>,
}

impl PartialEq for OwnTls {
    fn eq(&self, other: &Self) -> bool {
        self.read == other.read && self.subject_alt_names == other.subject_alt_names
    }
}

impl Eq for OwnTls {}

pub(super) fn compile(common: &CommonTlsContext) -> Result<OwnTls, Reason> {
    if !common.tls_certificates.is_empty() || common.tls_certificate_provider_instance.is_some() {
        return Err(
            "inline certificates are not supported: name files as SDS secrets \
             (file-cert:<chain>~<key>)"
                .into(),
        );
    }
    let mut own = OwnTls {
        read: Vec::new(),
        client_certificate: None,
        roots: None,
        subject_alt_names: Vec::new(),
    };
    match common.tls_certificate_sds_secret_configs.as_slice() {
        [] => {}
        [secret] => {
            let Some(FileSecret::Certificate { chain, key }) = FileSecret::parse(&secret.name)
            else {
                return Err(format!(
                    "tls_certificate_sds_secret_configs: {:?} does not name a certificate and key (file-cert:<chain>~<key>)",
                    secret.name
                ));
            };
            let chain_pem = own.read(chain)?;
            let key_pem = own.read(key)?;
            let chain_der = CertificateDer::pem_slice_iter(&chain_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("{chain}: {error}"))?;
            if chain_der.is_empty() {
                return Err(format!("{chain}: no PEM certificate in it"));
            }
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|error| format!("{key}: {error}"))?;
            crate::tls::origination::usable_pair(&chain_der, &key_der)
                .map_err(|error| format!("{chain} with {key}: {error}"))?;
            own.client_certificate = Some((chain_der, Arc::new(key_der)));
        }
        more => {
            return Err(format!(
                "one client certificate is supported, found {}",
                more.len()
            ));
        }
    }
    use common_tls_context::ValidationContextType;
    match &common.validation_context_type {
        // insecureSkipVerify: nothing to check.
        Some(ValidationContextType::ValidationContext(validation))
            if *validation == CertificateValidationContext::default() => {}
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            let secret = combined
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or("combined_validation_context needs validation_context_sds_secret_config")?;
            own.roots = Some(own.roots(secret)?);
            if let Some(validation) = &combined.default_validation_context {
                own.subject_alt_names = subject_alt_names(validation)?;
            }
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(secret)) => {
            own.roots = Some(own.roots(secret)?);
        }
        _ => {
            return Err(
                "the server must be validated against a file-root: SDS secret, or not at all (an empty validation_context)"
                    .into(),
            );
        }
    }
    Ok(own)
}

impl OwnTls {
    fn read(&mut self, path: &str) -> Result<Arc<[u8]>, Reason> {
        let bytes: Arc<[u8]> = std::fs::read(path)
            .map_err(|error| format!("cannot read {path}: {error}"))?
            .into();
        self.read.push((path.to_string(), Arc::clone(&bytes)));
        Ok(bytes)
    }

    fn roots(&mut self, secret: &SdsSecretConfig) -> Result<Arc<RootCertStore>, Reason> {
        let bundle = match FileSecret::parse(&secret.name) {
            Some(FileSecret::Root { bundle }) => bundle.to_string(),
            Some(FileSecret::SystemRoots) => crate::tls::origination::system_bundle()?,
            _ => {
                return Err(format!(
                    "validation secret {:?} does not name roots (file-root:<bundle> or file-root:system)",
                    secret.name
                ));
            }
        };
        let pem = self.read(&bundle)?;
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate.map_err(|error| format!("{bundle}: {error}"))?;
            // A bundle may hold certificates webpki cannot use as anchors; the rest count.
            let _ = roots.add(certificate);
        }
        if roots.is_empty() {
            return Err(format!("{bundle}: no usable CA certificate in it"));
        }
        Ok(Arc::new(roots))
    }
}

// The untyped matchers are deprecated in Envoy, but istiod still writes them.
#[allow(deprecated)]
fn subject_alt_names(validation: &CertificateValidationContext) -> Result<Vec<SanName>, Reason> {
    let unsupported = validation.trusted_ca.is_some()
        || !validation.verify_certificate_spki.is_empty()
        || !validation.verify_certificate_hash.is_empty()
        || validation.crl.is_some()
        || validation.custom_validator_config.is_some();
    if unsupported {
        return Err(
            "validation beyond roots and SANs (trusted_ca, spki/hash pins, CRLs, custom validators) is not supported"
                .into(),
        );
    }
    let exact = |field: String, matcher: Option<&StringMatcher>| match matcher
        .and_then(|m| m.match_pattern.as_ref())
    {
        Some(string_matcher::MatchPattern::Exact(name)) => Ok(name.clone()),
        _ => Err(format!("{field}: only exact matches are supported")),
    };
    let mut names = Vec::new();
    for (index, matcher) in validation.match_typed_subject_alt_names.iter().enumerate() {
        let field = format!("match_typed_subject_alt_names[{index}]");
        let name = exact(field.clone(), matcher.matcher.as_ref())?;
        use subject_alt_name_matcher::SanType;
        names.push(match SanType::try_from(matcher.san_type) {
            Ok(SanType::Dns) => SanName::Dns(name),
            Ok(SanType::Uri) => SanName::Uri(name),
            Ok(SanType::IpAddress) => SanName::Ip(
                name.parse()
                    .map_err(|_| format!("{field}: {name:?} is not an IP address"))?,
            ),
            _ => return Err(format!("{field}: only DNS, URI and IP SANs are supported")),
        });
    }
    for (index, matcher) in validation.match_subject_alt_names.iter().enumerate() {
        let name = exact(format!("match_subject_alt_names[{index}]"), Some(matcher))?;
        names.push(SanName::Any(name));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::ConfigSource;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SubjectAltNameMatcher;

    use super::*;

    fn secret(name: &str) -> SdsSecretConfig {
        SdsSecretConfig {
            name: name.to_string(),
            sds_config: Some(ConfigSource::default()),
        }
    }

    fn files() -> (tempfile::TempDir, String, String, String) {
        let dir = tempfile::tempdir().expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = rcgen::CertificateParams::new(vec!["api.example.com".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("cert.pem"), certificate.pem()).expect("write");
        std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");
        let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("cert.pem"));
        (dir, cert, key, ca)
    }

    fn context(certificate: Option<String>, root: &str, sans: &[&str]) -> CommonTlsContext {
        CommonTlsContext {
            tls_certificate_sds_secret_configs: certificate.iter().map(|c| secret(c)).collect(),
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_typed_subject_alt_names: sans
                                .iter()
                                .map(|name| SubjectAltNameMatcher {
                                    san_type: subject_alt_name_matcher::SanType::Dns as i32,
                                    matcher: Some(StringMatcher {
                                        match_pattern: Some(string_matcher::MatchPattern::Exact(
                                            name.to_string(),
                                        )),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(secret(root)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn files_named_by_the_secrets_are_read_and_parsed() {
        let (_dir, cert, key, ca) = files();
        let certificate = FileSecret::Certificate {
            chain: &cert,
            key: &key,
        }
        .name();
        let root = FileSecret::Root { bundle: &ca }.name();
        let own =
            compile(&context(Some(certificate), &root, &["api.example.com"])).expect("compiles");
        assert!(own.client_certificate.is_some());
        assert_eq!(own.roots.as_ref().map(|roots| roots.len()), Some(1));
        assert_eq!(
            own.subject_alt_names,
            [SanName::Dns("api.example.com".into())]
        );
    }

    #[test]
    fn a_missing_file_rejects_the_context_with_its_path() {
        let root = FileSecret::Root {
            bundle: "/nonexistent/ca.pem",
        }
        .name();
        let refused = compile(&context(None, &root, &[])).expect_err("refused");
        assert!(refused.contains("/nonexistent/ca.pem"), "{refused}");
    }

    #[test]
    fn an_empty_validation_context_verifies_nothing() {
        let own = compile(&CommonTlsContext {
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext::default(),
                ),
            ),
            ..Default::default()
        })
        .expect("compiles");
        assert!(own.roots.is_none() && own.client_certificate.is_none());
    }
}
