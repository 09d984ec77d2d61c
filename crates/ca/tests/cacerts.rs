//! A plug-in CA loaded from Istio's four-file `cacerts` folder, made here with rcgen: a
//! root and an intermediate that signs.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use bosun_ca::{
    CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, CaError, CertificateAuthority,
    DEFAULT_TRUST_DOMAIN, Identity, ROOT_CERT_FILE, certificate_request,
};
use common::{assert_workload_leaf, verify, verify_both};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, DnValue, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use webpki::KeyUsage;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

const HOUR: Duration = Duration::from_secs(3600);

struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(common_name: &str, path_len: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // Istio's sample certificates name the organization in a PrintableString.
    params.distinguished_name.push(
        DnType::OrganizationName,
        DnValue::PrintableString("Istio".try_into().unwrap()),
    );
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(match path_len {
        Some(length) => BasicConstraints::Constrained(length),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    params
}

fn make_pki() -> Pki {
    let root = CertifiedIssuer::self_signed(
        ca_params("Root CA", None),
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
    )
    .unwrap();
    let mut intermediate_params = ca_params("Intermediate CA", Some(0));
    intermediate_params.use_authority_key_identifier_extension = true;
    let intermediate =
        CertifiedIssuer::signed_by(intermediate_params, KeyPair::generate().unwrap(), &root)
            .unwrap();
    Pki { root, intermediate }
}

/// Writes Istio's layout: the intermediate signs, the chain is intermediate then root.
fn write_folder(pki: &Pki) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), CA_CERT_FILE, &pki.intermediate.pem());
    write(
        dir.path(),
        CA_KEY_FILE,
        &pki.intermediate.key().serialize_pem(),
    );
    write(dir.path(), ROOT_CERT_FILE, &pki.root.pem());
    write(
        dir.path(),
        CERT_CHAIN_FILE,
        &format!("{}{}", pki.intermediate.pem(), pki.root.pem()),
    );
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

fn web() -> Identity {
    Identity::new(DEFAULT_TRUST_DOMAIN, "default", "web")
}

fn load(dir: &Path) -> Result<CertificateAuthority, CaError> {
    CertificateAuthority::from_folder(dir, DEFAULT_TRUST_DOMAIN)
}

/// The file an error names, and its message.
fn failure(dir: &Path) -> (String, String) {
    let error = load(dir).expect_err("the folder should not load");
    let message = error.to_string();
    let path = match &error {
        CaError::ReadCaFile { path, .. } | CaError::InvalidCaFile { path, .. } => path.clone(),
        other => panic!("expected a CA file error, got {other:?}"),
    };
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, message)
}

#[test]
fn signs_with_the_intermediate_and_chains_to_the_root() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    let ca = load(dir.path()).unwrap();
    assert_eq!(ca.root_pem(), pki.root.pem());

    let request = certificate_request(&web()).unwrap();
    let signed = ca.sign_csr(&request.csr_pem, HOUR, |_| true).unwrap();
    assert_eq!(signed.chain_pem.len(), 3, "leaf, intermediate, root");
    assert_eq!(signed.chain_pem[1], pki.intermediate.pem());
    assert_eq!(signed.chain_pem[2], pki.root.pem());
    assert_workload_leaf(&signed.chain_pem[0], &web(), HOUR);

    // The leaf names its issuer's key, as OpenSSL-based peers use to build the chain.
    let ders = common::ders(&signed.chain_pem);
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    let (_, intermediate) = X509Certificate::from_der(&ders[1]).unwrap();
    let key_id = |cert: &X509Certificate<'_>| {
        cert.iter_extensions()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
    };
    let authority_key_id =
        leaf.iter_extensions()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            });
    assert!(key_id(&intermediate).is_some());
    assert_eq!(authority_key_id, key_id(&intermediate));
    assert_eq!(leaf.issuer().as_raw(), intermediate.subject().as_raw());

    let root_file = fs::read_to_string(dir.path().join(ROOT_CERT_FILE)).unwrap();
    verify_both(&signed.chain_pem, &root_file);
    // Without the intermediate the leaf does not reach the root.
    let skipped = vec![signed.chain_pem[0].clone(), signed.chain_pem[2].clone()];
    assert!(verify(&skipped, &root_file, KeyUsage::client_auth()).is_err());
}

#[test]
fn finds_the_root_when_the_chain_stops_below_it() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    write(dir.path(), CERT_CHAIN_FILE, &pki.intermediate.pem());
    let ca = load(dir.path()).unwrap();
    let issued = ca.issue(&web(), HOUR).unwrap();
    assert_eq!(
        issued.chain_pem,
        vec![
            issued.chain_pem[0].clone(),
            pki.intermediate.pem(),
            pki.root.pem()
        ]
    );
    verify_both(&issued.chain_pem, ca.root_pem());
}

#[test]
fn a_root_can_sign_directly() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), CA_CERT_FILE, &pki.root.pem());
    write(dir.path(), CA_KEY_FILE, &pki.root.key().serialize_pem());
    write(dir.path(), ROOT_CERT_FILE, &pki.root.pem());
    write(dir.path(), CERT_CHAIN_FILE, &pki.root.pem());
    let ca = load(dir.path()).unwrap();
    let issued = ca.issue(&web(), HOUR).unwrap();
    assert_eq!(issued.chain_pem.len(), 2);
    assert_eq!(issued.chain_pem[1], pki.root.pem());
    verify_both(&issued.chain_pem, ca.root_pem());
}

#[test]
fn publishes_every_root_of_root_cert_pem() {
    let pki = make_pki();
    let other = make_pki();
    let dir = write_folder(&pki);
    // During a root rotation root-cert.pem holds the old and the new root.
    write(
        dir.path(),
        ROOT_CERT_FILE,
        &format!("{}{}", other.root.pem(), pki.root.pem()),
    );
    let ca = load(dir.path()).unwrap();
    assert_eq!(common::bundle(ca.root_pem()).len(), 2);
    let issued = ca.issue(&web(), HOUR).unwrap();
    assert_eq!(issued.chain_pem.last().unwrap(), &pki.root.pem());
}

#[test]
fn reads_a_key_after_an_ec_parameters_block() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    // What `openssl ecparam -genkey` writes: the curve first, then the key.
    let key = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        pki.intermediate.key().serialize_pem()
    );
    write(dir.path(), CA_KEY_FILE, &key);
    assert!(load(dir.path()).is_ok());
}

#[test]
fn a_missing_file_is_named() {
    for name in [CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE] {
        let dir = write_folder(&make_pki());
        fs::remove_file(dir.path().join(name)).unwrap();
        let error = load(dir.path()).expect_err("a file is missing");
        assert!(matches!(error, CaError::ReadCaFile { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(name), "{message}");
        assert!(
            message.contains("cacerts"),
            "says what the folder should hold: {message}"
        );
    }
}

#[test]
fn bad_pem_is_named() {
    let pki = make_pki();
    for name in [CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE] {
        let dir = write_folder(&pki);
        write(dir.path(), name, "this is not PEM\n");
        let (file, message) = failure(dir.path());
        assert_eq!(file, name, "{message}");
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    write(
        dir.path(),
        CA_KEY_FILE,
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let (file, message) = failure(dir.path());
    assert_eq!(file, CA_KEY_FILE);
    assert!(message.contains("is not the key"), "{message}");
}

#[test]
fn a_root_that_did_not_issue_the_chain_is_refused() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    write(dir.path(), ROOT_CERT_FILE, &make_pki().root.pem());
    let (file, message) = failure(dir.path());
    assert_eq!(file, ROOT_CERT_FILE, "{message}");
    assert!(message.contains("does not hold"), "{message}");
}

#[test]
fn an_rsa_intermediate_signs() {
    let pki = make_pki();
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("RSA Intermediate CA", Some(0)), rsa, &pki.root)
            .unwrap();
    let pki = Pki {
        root: pki.root,
        intermediate,
    };
    let dir = write_folder(&pki);
    let ca = load(dir.path()).unwrap();
    let signed = ca
        .sign_csr(&certificate_request(&web()).unwrap().csr_pem, HOUR, |_| {
            true
        })
        .unwrap();
    assert_workload_leaf(&signed.chain_pem[0], &web(), HOUR);
    verify_both(&signed.chain_pem, ca.root_pem());
}

#[test]
fn a_root_with_the_same_name_but_another_key_is_refused() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    write(dir.path(), CERT_CHAIN_FILE, &pki.intermediate.pem());
    // Same subject as the real root, different key: only a signature check tells.
    let impostor = CertifiedIssuer::self_signed(
        ca_params("Root CA", None),
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
    )
    .unwrap();
    write(dir.path(), ROOT_CERT_FILE, &impostor.pem());
    let error = load(dir.path()).expect_err("the chain does not verify");
    assert!(error.to_string().contains("does not verify"), "{error}");
}

#[test]
fn a_chain_that_does_not_start_with_the_signer_is_refused() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    write(dir.path(), CERT_CHAIN_FILE, &pki.root.pem());
    let (file, message) = failure(dir.path());
    assert_eq!(file, CERT_CHAIN_FILE);
    assert!(message.contains("must begin with"), "{message}");
}

#[test]
fn a_signer_that_is_not_a_ca_is_refused() {
    let pki = make_pki();
    let dir = write_folder(&pki);
    let mut params = CertificateParams::new(vec!["not-a-ca.example".to_string()]).unwrap();
    params.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &pki.root).unwrap();
    write(dir.path(), CA_CERT_FILE, &leaf.pem());
    write(dir.path(), CA_KEY_FILE, &key.serialize_pem());
    write(
        dir.path(),
        CERT_CHAIN_FILE,
        &format!("{}{}", leaf.pem(), pki.root.pem()),
    );
    let (file, message) = failure(dir.path());
    assert_eq!(file, CA_CERT_FILE);
    assert!(message.contains("not a CA"), "{message}");
}

#[test]
fn a_self_signed_ca_kept_in_a_folder_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let first = CertificateAuthority::self_signed_in(dir.path(), DEFAULT_TRUST_DOMAIN).unwrap();
    let again = CertificateAuthority::self_signed_in(dir.path(), DEFAULT_TRUST_DOMAIN).unwrap();
    assert_eq!(first.root_pem(), again.root_pem());
    let issued = again
        .issue(&Identity::new(DEFAULT_TRUST_DOMAIN, "default", "web"), HOUR)
        .unwrap();
    verify_both(&issued.chain_pem, first.root_pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the CA key is its owner's only");
    }
}
