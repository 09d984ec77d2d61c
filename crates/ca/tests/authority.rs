//! The self-signed CA: what it signs, what it refuses, and what it issues directly.

mod common;

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use bosun_ca::{
    CaError, CertificateAuthority, DEFAULT_MAX_TTL, DEFAULT_TRUST_DOMAIN, Identity,
    certificate_request,
};
use common::{assert_workload_leaf, csr_with, ders, dns, unix, uri, verify, verify_both};
use rcgen::KeyPair;
use webpki::KeyUsage;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

const HOUR: Duration = Duration::from_secs(3600);

fn ca() -> CertificateAuthority {
    CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap()
}

fn web() -> Identity {
    Identity::new(DEFAULT_TRUST_DOMAIN, "default", "web")
}

#[test]
fn authority_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CertificateAuthority>();
}

#[test]
fn self_signed_root_is_a_ten_year_p256_ca_named_for_the_trust_domain() {
    let ca = CertificateAuthority::self_signed("mesh.example").unwrap();
    assert_eq!(ca.trust_domain(), "mesh.example");
    let roots = common::bundle(ca.root_pem());
    assert_eq!(roots.len(), 1);
    let (_, root) = X509Certificate::from_der(&roots[0]).unwrap();
    assert!(root.is_ca());
    assert_eq!(root.subject(), root.issuer());
    let subject = root.subject().to_string();
    assert!(subject.contains("CN=Bosun CA"), "{subject}");
    assert!(subject.contains("O=mesh.example"), "{subject}");
    assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
    // ecPublicKey on prime256v1.
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    let curve = root.public_key().algorithm.parameters.as_ref().unwrap();
    assert_eq!(
        curve.as_oid().unwrap().to_id_string(),
        "1.2.840.10045.3.1.7"
    );
    let lifetime = root.validity().not_after.timestamp() - unix(SystemTime::now());
    let ten_years = 10 * 365 * 24 * 3600;
    assert!(
        (ten_years - 10..=ten_years).contains(&lifetime),
        "{lifetime}"
    );
    assert!(ca.not_after() > SystemTime::now() + Duration::from_secs(9 * 365 * 24 * 3600));
}

#[test]
fn rejects_an_invalid_trust_domain() {
    for trust_domain in ["", "Cluster.Local", "cluster.local:80", "a/b"] {
        assert!(
            matches!(
                CertificateAuthority::self_signed(trust_domain),
                Err(CaError::InvalidTrustDomain { .. })
            ),
            "{trust_domain:?}"
        );
    }
}

#[test]
fn signs_a_csr_for_its_identity() {
    let ca = ca();
    let request = certificate_request(&web()).unwrap();
    let asked = RefCell::new(Vec::new());
    let signed = ca
        .sign_csr(&request.csr_pem, HOUR, |identity| {
            asked.borrow_mut().push(identity.clone());
            true
        })
        .unwrap();
    assert_eq!(
        asked.into_inner(),
        vec![web()],
        "authorize sees the CSR's identity"
    );

    assert_eq!(signed.chain_pem.len(), 2, "leaf, root");
    assert_eq!(signed.chain_pem[1], ca.root_pem(), "the root is last");
    assert_workload_leaf(&signed.chain_pem[0], &web(), HOUR);
    verify_both(&signed.chain_pem, ca.root_pem());

    // The certificate is for the CSR's key.
    let der = ders(&signed.chain_pem).remove(0);
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    let key = KeyPair::from_pem(&request.key_pem).unwrap();
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(
        unix(signed.not_after),
        leaf.validity().not_after.timestamp()
    );
}

#[test]
fn the_chain_does_not_verify_against_another_root() {
    let ca = ca();
    let other = CertificateAuthority::self_signed(DEFAULT_TRUST_DOMAIN).unwrap();
    let issued = ca.issue(&web(), HOUR).unwrap();
    assert!(verify(&issued.chain_pem, other.root_pem(), KeyUsage::server_auth()).is_err());
    assert!(verify(&issued.chain_pem, ca.root_pem(), KeyUsage::server_auth()).is_ok());
}

#[test]
fn lifetime_is_clamped_to_the_maximum() {
    let ca = ca();
    assert_eq!(ca.max_ttl(), DEFAULT_MAX_TTL);
    let csr = certificate_request(&web()).unwrap().csr_pem;
    let signed = ca.sign_csr(&csr, 10 * DEFAULT_MAX_TTL, |_| true).unwrap();
    assert_workload_leaf(&signed.chain_pem[0], &web(), DEFAULT_MAX_TTL);

    let ca = ca.with_max_ttl(HOUR);
    let signed = ca.sign_csr(&csr, 2 * HOUR, |_| true).unwrap();
    assert_workload_leaf(&signed.chain_pem[0], &web(), HOUR);
    let expected = SystemTime::now() + HOUR;
    let off = unix(expected) - unix(signed.not_after);
    assert!((0..=5).contains(&off), "not_after is {off}s from now + 1h");
}

#[test]
fn a_zero_lifetime_is_refused() {
    let csr = certificate_request(&web()).unwrap().csr_pem;
    assert!(matches!(
        ca().sign_csr(&csr, Duration::ZERO, |_| true),
        Err(CaError::InvalidTtl(_))
    ));
}

#[test]
fn each_certificate_has_its_own_serial() {
    let ca = ca();
    let csr = certificate_request(&web()).unwrap().csr_pem;
    let serial = |chain: &[String]| {
        let der = ders(chain).remove(0);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.raw_serial().to_vec()
    };
    let first = serial(&ca.sign_csr(&csr, HOUR, |_| true).unwrap().chain_pem);
    let second = serial(&ca.sign_csr(&csr, HOUR, |_| true).unwrap().chain_pem);
    assert_ne!(first, second, "the same CSR signed twice");
    assert!(first.len() >= 8);
}

fn csr_error(csr: &str) -> CaError {
    match ca().sign_csr(csr, HOUR, |_| true) {
        Ok(_) => panic!("signed a CSR that should be refused"),
        Err(error) => error,
    }
}

#[test]
fn refuses_a_csr_with_only_a_dns_san() {
    let error = csr_error(&csr_with(vec![dns("web.default.svc.cluster.local")]));
    assert!(matches!(error, CaError::InvalidCsr(_)), "{error:?}");
    assert!(error.to_string().contains("no URI SAN"), "{error}");
}

#[test]
fn refuses_a_csr_without_any_san() {
    let error = csr_error(&csr_with(vec![]));
    assert!(error.to_string().contains("no URI SAN"), "{error}");
}

#[test]
fn refuses_an_identity_of_another_trust_domain() {
    let error = csr_error(&csr_with(vec![uri(
        "spiffe://other.domain/ns/default/sa/web",
    )]));
    match &error {
        CaError::ForeignTrustDomain {
            trust_domain,
            expected,
            ..
        } => {
            assert_eq!(trust_domain, "other.domain");
            assert_eq!(expected, DEFAULT_TRUST_DOMAIN);
        }
        other => panic!("expected ForeignTrustDomain, got {other:?}"),
    }
    assert!(error.to_string().contains("other.domain"));
}

#[test]
fn refuses_two_uri_sans() {
    let error = csr_error(&csr_with(vec![
        uri("spiffe://cluster.local/ns/default/sa/web"),
        uri("spiffe://cluster.local/ns/default/sa/admin"),
    ]));
    assert!(matches!(error, CaError::InvalidCsr(_)), "{error:?}");
    assert!(error.to_string().contains("2 URI SANs"), "{error}");
}

#[test]
fn refuses_a_uri_that_is_not_an_identity() {
    let error = csr_error(&csr_with(vec![uri(
        "https://cluster.local/ns/default/sa/web",
    )]));
    assert!(
        matches!(error, CaError::InvalidIdentity { .. }),
        "{error:?}"
    );
    let error = csr_error(&csr_with(vec![uri("spiffe://cluster.local/web")]));
    assert!(
        matches!(error, CaError::InvalidIdentity { .. }),
        "{error:?}"
    );
}

#[test]
fn refuses_garbage() {
    for garbage in [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n%%%%\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let error = csr_error(garbage);
        assert!(
            matches!(error, CaError::InvalidCsr(_)),
            "{garbage:?}: {error:?}"
        );
    }
    // A certificate is not a request.
    let issued = ca().issue(&web(), HOUR).unwrap();
    assert!(matches!(
        csr_error(&issued.chain_pem[0]),
        CaError::InvalidCsr(_)
    ));
}

#[test]
fn refuses_when_not_authorized() {
    let ca = ca();
    let csr = certificate_request(&web()).unwrap().csr_pem;
    match ca.sign_csr(&csr, HOUR, |identity| identity.service_account != "web") {
        Err(CaError::Unauthorized { identity }) => assert_eq!(identity, web().uri()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[test]
fn issues_a_key_and_certificate() {
    let ca = ca();
    let identity = Identity::new(DEFAULT_TRUST_DOMAIN, "istio-system", "ingressgateway");
    let issued = ca.issue(&identity, HOUR).unwrap();
    assert_eq!(issued.chain_pem.len(), 2);
    assert_workload_leaf(&issued.chain_pem[0], &identity, HOUR);
    verify_both(&issued.chain_pem, ca.root_pem());

    let key = KeyPair::from_pem(&issued.key_pem).unwrap();
    let der = ders(&issued.chain_pem).remove(0);
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(
        !format!("{issued:?}").contains("PRIVATE KEY"),
        "Debug hides the key"
    );
}

#[test]
fn issue_checks_the_identity() {
    let ca = ca();
    assert!(matches!(
        ca.issue(&Identity::new("other.domain", "default", "web"), HOUR),
        Err(CaError::ForeignTrustDomain { .. })
    ));
    assert!(matches!(
        ca.issue(&Identity::new(DEFAULT_TRUST_DOMAIN, "default", "a/b"), HOUR),
        Err(CaError::InvalidIdentity { .. })
    ));
}

#[test]
fn a_certificate_is_renewed_at_half_its_remaining_life() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert_eq!(
        bosun_ca::renewal_delay(now, now + Duration::from_secs(3600)),
        Duration::from_secs(1800)
    );
    // An expired certificate is asked for again, but not in a tight loop.
    assert_eq!(
        bosun_ca::renewal_delay(now, now - Duration::from_secs(5)),
        Duration::from_secs(1)
    );
}
