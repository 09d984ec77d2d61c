//! What the tests share: reading issued chains back and checking them independently of
//! the CA (x509-parser for the fields, webpki for the chain).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_ca::Identity;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The DER of each PEM of `chain`, which must hold exactly one certificate each.
pub fn ders(chain: &[String]) -> Vec<CertificateDer<'static>> {
    chain
        .iter()
        .map(|pem| {
            let found = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            assert_eq!(found.len(), 1, "one certificate per chain entry: {pem}");
            found.into_iter().next().unwrap()
        })
        .collect()
}

/// Every certificate of a PEM bundle.
pub fn bundle(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Verifies `chain` (leaf first) for `usage` with the roots of `root_pem` as anchors.
pub fn verify(chain: &[String], root_pem: &str, usage: KeyUsage) -> Result<(), webpki::Error> {
    let certs = ders(chain);
    let roots = bundle(root_pem);
    let anchors = roots
        .iter()
        .map(|root| webpki::anchor_from_trusted_cert(root).unwrap())
        .collect::<Vec<_>>();
    let (leaf, intermediates) = certs.split_first().expect("a chain");
    let leaf = EndEntityCert::try_from(leaf)?;
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

/// Verifies `chain` for both TLS server and TLS client use.
pub fn verify_both(chain: &[String], root_pem: &str) {
    verify(chain, root_pem, KeyUsage::server_auth()).expect("verifies for serverAuth");
    verify(chain, root_pem, KeyUsage::client_auth()).expect("verifies for clientAuth");
}

/// The URIs among a certificate's SANs, and how many SANs there are in all.
pub fn uri_sans(cert: &X509Certificate<'_>) -> (Vec<String>, usize) {
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let uris = names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect();
    (uris, names.len())
}

pub fn unix(time: SystemTime) -> i64 {
    i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Checks everything a workload certificate must be: `identity` as its only SAN, for TLS
/// servers and clients, not a CA, valid from a minute ago for `ttl`.
pub fn assert_workload_leaf(leaf_pem: &str, identity: &Identity, ttl: Duration) {
    let der = ders(&[leaf_pem.to_string()]).remove(0);
    let (rest, leaf) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());

    let (uris, all) = uri_sans(&leaf);
    assert_eq!(uris, vec![identity.uri()]);
    assert_eq!(all, 1, "the identity is the only SAN");
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "an empty subject makes the SAN critical");
    assert_eq!(leaf.subject().iter().count(), 0, "empty subject");

    let eku = leaf.extended_key_usage().unwrap().expect("an EKU").value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!eku.any && !eku.code_signing && eku.other.is_empty());

    let ku = leaf.key_usage().unwrap().expect("a key usage").value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(!ku.key_cert_sign() && !ku.crl_sign());

    let is_ca = leaf
        .basic_constraints()
        .unwrap()
        .is_some_and(|constraints| constraints.value.ca);
    assert!(!is_ca, "a workload certificate is not a CA");
    assert!(!leaf.is_ca());

    let now = unix(SystemTime::now());
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let ttl = i64::try_from(ttl.as_secs()).unwrap();
    assert!(
        (now - 65..=now - 55).contains(&not_before),
        "not_before {not_before} is about a minute before {now}"
    );
    assert!(
        (now + ttl - 5..=now + ttl).contains(&not_after),
        "not_after {not_after} is about {ttl}s after {now}"
    );
}

/// A CSR with the given SANs (and no checks of its own), for requests the CA must refuse.
pub fn csr_with(sans: Vec<SanType>) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

pub fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

pub fn dns(text: &str) -> SanType {
    SanType::DnsName(text.try_into().unwrap())
}
