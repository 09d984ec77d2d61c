//! Loading a plug-in CA from Istio's `cacerts` folder: the signing certificate and key,
//! the roots peers trust, and the chain between them. Everything is checked at load, so a
//! folder that does not fit together fails at start, not at the first handshake.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{Issuer, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::authority::CertificateAuthority;
use crate::error::CaError;
use crate::pem::{PemCertificate, certificates, single_certificate};

/// The signing (intermediate or root) CA certificate.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The private key of [`CA_CERT_FILE`].
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The trust anchors: the root(s) that proxies verify peers against.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// The chain from the signing certificate up to (and including) the root.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";

impl CertificateAuthority {
    /// The self-signed CA kept in `dir` in the `cacerts` layout: loaded when the folder
    /// holds one, else made and written there (the key readable by its owner only), so a
    /// restarted control plane keeps the root every proxy trusts (as istiod keeps its
    /// self-signed root in the `istio-ca-secret`).
    pub fn self_signed_in(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        if dir.join(CA_KEY_FILE).exists() {
            return Self::from_folder(dir, trust_domain);
        }
        let (ca, key_pem) = Self::generate(trust_domain)?;
        let write = |name: &str, text: &str, private: bool| {
            let path = dir.join(name);
            let written = if private {
                crate::credential::write_private(&path, text.as_bytes())
            } else {
                std::fs::write(&path, text)
            };
            written.map_err(|source| CaError::ReadCaFile { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| CaError::ReadCaFile {
            path: dir.to_path_buf(),
            source,
        })?;
        write(CA_KEY_FILE, &key_pem, true)?;
        write(CA_CERT_FILE, ca.root_pem(), false)?;
        write(ROOT_CERT_FILE, ca.root_pem(), false)?;
        write(CERT_CHAIN_FILE, ca.root_pem(), false)?;
        Ok(ca)
    }

    /// Loads Istio's plug-in CA folder ("cacerts"): `ca-cert.pem` (the signing
    /// certificate), `ca-key.pem` (its key), `root-cert.pem` (the trust anchors) and
    /// `cert-chain.pem` (the signing certificate, then each issuer up to the root).
    ///
    /// Fails, naming the file, when a file is missing or holds no usable PEM, when the key
    /// is not the signing certificate's, when the signing certificate is not a valid CA, or
    /// when a certificate it signs would not verify against the roots.
    pub fn from_folder(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let ca_cert = CaFile::read(dir, CA_CERT_FILE)?;
        let ca_key = CaFile::read(dir, CA_KEY_FILE)?;
        let root_cert = CaFile::read(dir, ROOT_CERT_FILE)?;
        let cert_chain = CaFile::read(dir, CERT_CHAIN_FILE)?;

        let signer =
            single_certificate(&ca_cert.text).map_err(|problem| ca_cert.invalid(problem))?;
        let signer_x509 = parse(&signer).map_err(|problem| ca_cert.invalid(problem))?;
        let is_ca = signer_x509
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|constraints| constraints.value.ca);
        if !is_ca {
            return Err(ca_cert.invalid(
                "is not a CA certificate (no basicConstraints CA:TRUE); put the mesh's \
                 intermediate or root CA certificate there",
            ));
        }
        let signer_not_after = system_time(signer_x509.validity().not_after.timestamp());
        if signer_not_after <= SystemTime::now() {
            return Err(ca_cert.invalid(format!(
                "expired at {}; replace the CA certificates",
                signer_x509.validity().not_after
            )));
        }

        let key_der = PrivateKeyDer::from_pem_slice(ca_key.text.as_bytes()).map_err(|error| {
            ca_key.invalid(format!(
                "holds no unencrypted PEM private key ({error}); put the key of {CA_CERT_FILE} \
                 there"
            ))
        })?;
        let key = KeyPair::try_from(&key_der).map_err(|error| {
            ca_key.invalid(format!(
                "is not a key this CA can sign with ({error}); use an ECDSA P-256/P-384 or RSA \
                 key"
            ))
        })?;
        if key.public_key_raw() != signer_x509.public_key().subject_public_key.data.as_ref() {
            return Err(ca_key.invalid(format!(
                "is not the key of the certificate in {CA_CERT_FILE}; put that certificate's \
                 key there, or the certificate of this key in {CA_CERT_FILE}"
            )));
        }

        let roots = certificates(&root_cert.text).map_err(|problem| root_cert.invalid(problem))?;
        if roots.is_empty() {
            return Err(root_cert.invalid("holds no PEM CERTIFICATE; put the mesh's root CA there"));
        }
        let chain =
            certificates(&cert_chain.text).map_err(|problem| cert_chain.invalid(problem))?;
        if chain.first().map(|first| &first.der) != Some(&signer.der) {
            return Err(cert_chain.invalid(format!(
                "must begin with the certificate of {CA_CERT_FILE}, then each issuer up to the \
                 root"
            )));
        }
        let chain_tail = chain_to_root(chain, &roots, &root_cert)?;

        let issuer = Issuer::from_ca_cert_der(&signer.der, key)
            .map_err(|error| ca_cert.invalid(format!("cannot be signed with ({error})")))?;
        let root_pem = roots
            .iter()
            .map(|root| root.pem.as_str())
            .collect::<String>();
        let ca = CertificateAuthority::from_parts(
            trust_domain,
            issuer,
            chain_tail,
            root_pem,
            signer_not_after,
        )?;
        ca.self_check().map_err(|problem| CaError::InvalidCaFile {
            path: dir.to_path_buf(),
            problem: format!(
                "a certificate signed with {CA_CERT_FILE} does not verify against \
                 {ROOT_CERT_FILE} ({problem}); check that {CERT_CHAIN_FILE} leads from \
                 {CA_CERT_FILE} to a root in {ROOT_CERT_FILE}"
            ),
        })?;
        Ok(ca)
    }
}

/// The PEMs that follow a leaf: `chain` up to the first certificate that is one of
/// `roots`, else all of `chain` and then the root that issued its last certificate.
fn chain_to_root(
    mut chain: Vec<PemCertificate>,
    roots: &[PemCertificate],
    root_cert: &CaFile,
) -> Result<Vec<String>, CaError> {
    if let Some(at) = chain
        .iter()
        .position(|cert| roots.iter().any(|root| root.der == cert.der))
    {
        chain.truncate(at + 1);
        return Ok(chain.into_iter().map(|cert| cert.pem).collect());
    }
    let Some(last) = chain.last() else {
        return Ok(Vec::new());
    };
    let last = parse(last).map_err(|problem| root_cert.invalid(problem))?;
    if last.subject().as_raw() == last.issuer().as_raw() {
        return Err(root_cert.invalid(format!(
            "does not hold {}, the root {CERT_CHAIN_FILE} ends with; put that root there \
             (beside any other trusted roots)",
            last.subject()
        )));
    }
    let mut anchor = None;
    for root in roots {
        let root_x509 = parse(root).map_err(|problem| root_cert.invalid(problem))?;
        if root_x509.subject().as_raw() == last.issuer().as_raw() {
            anchor = Some(root.pem.clone());
            break;
        }
    }
    let Some(anchor) = anchor else {
        return Err(root_cert.invalid(format!(
            "holds no root named {}, the issuer of the last certificate in {CERT_CHAIN_FILE}; \
             put the root that issued the chain there",
            last.issuer()
        )));
    };
    let mut tail: Vec<String> = chain.into_iter().map(|cert| cert.pem).collect();
    tail.push(anchor);
    Ok(tail)
}

/// One file of the folder, read.
struct CaFile {
    path: PathBuf,
    text: String,
}

impl CaFile {
    fn read(dir: &Path, name: &str) -> Result<Self, CaError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self { path, text }),
            Err(source) => Err(CaError::ReadCaFile { path, source }),
        }
    }

    fn invalid(&self, problem: impl Into<String>) -> CaError {
        CaError::InvalidCaFile {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }
}

fn parse(cert: &PemCertificate) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(&cert.der) {
        Ok(([], parsed)) => Ok(parsed),
        Ok(_) => Err("a certificate has trailing bytes".to_string()),
        Err(error) => Err(format!("a certificate does not parse ({error})")),
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds).unwrap_or(0))
}
