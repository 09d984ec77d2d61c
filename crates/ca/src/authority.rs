//! The certificate authority: a signing key and certificate, the chain up to the root,
//! and the rules for what it signs (workload certificates for SPIFFE identities of its
//! trust domain, short-lived, never CAs).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use time::OffsetDateTime;

use crate::error::CaError;
use crate::identity::{Identity, check_trust_domain};
use crate::request::{read_request, request_params};

/// The lifetime of a workload certificate when none is asked for (Istio's default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a holder waits before renewing a certificate that expires at `not_after`: half
/// of its remaining life (Istio's grace ratio), and never less than a second, so an
/// expired one is not asked for again in a tight loop.
pub fn renewal_delay(now: SystemTime, not_after: SystemTime) -> Duration {
    let remaining = not_after.duration_since(now).unwrap_or_default();
    (remaining / 2).max(Duration::from_secs(1))
}

/// The longest lifetime a workload certificate gets unless [`CertificateAuthority::with_max_ttl`]
/// says otherwise.
pub const DEFAULT_MAX_TTL: Duration = DEFAULT_TTL;

/// How long a self-signed root is valid.
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Certificates start a little in the past, so that a peer whose clock is slightly behind
/// already accepts them.
const BACKDATE: Duration = Duration::from_secs(60);

/// Serial numbers are random: a CSR's key alone would give a renewal the same serial.
const SERIAL_BYTES: usize = 16;

/// Issues workload certificates. Holds its signing key in memory only.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// What follows a leaf in an issued chain, one PEM per certificate: the signing
    /// certificate's intermediates, if any, and last the root.
    chain_tail: Vec<String>,
    root_pem: String,
    signer_not_after: SystemTime,
    max_ttl: Duration,
    provider: Arc<CryptoProvider>,
}

/// A certificate issued for a CSR: `chain_pem` is the leaf first, the root last.
#[derive(Debug, Clone)]
pub struct SignedChain {
    pub chain_pem: Vec<String>,
    pub not_after: SystemTime,
}

/// A key made by the CA and its certificate: `chain_pem` is the leaf first, the root last.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// PKCS#8 `PRIVATE KEY`.
    pub key_pem: String,
    pub chain_pem: Vec<String>,
    pub not_after: SystemTime,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("key_pem", &"<redacted>")
            .field("chain_pem", &self.chain_pem)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("chain_len", &(self.chain_tail.len()))
            .field("signer_not_after", &self.signer_not_after)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A fresh self-signed root (ECDSA P-256, valid 10 years, CN "Bosun CA", O = the trust
    /// domain) that signs workload certificates itself. The key lives in memory only: a
    /// restart makes a new root, and every proxy must be given the new one.
    pub fn self_signed(trust_domain: &str) -> Result<Self, CaError> {
        Self::generate(trust_domain).map(|(ca, _key_pem)| ca)
    }

    /// As [`self_signed`](Self::self_signed), with the root key's PEM for whoever keeps it.
    pub(crate) fn generate(trust_domain: &str) -> Result<(Self, String), CaError> {
        check_trust_domain_arg(trust_domain)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(CaError::crypto("generate the root key"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

        let now = whole_seconds(SystemTime::now());
        let not_after = now + ROOT_VALIDITY;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Bosun CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, trust_domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial(&provider)?);
        let root = params
            .self_signed(&key)
            .map_err(CaError::crypto("sign the root certificate"))?;
        let root_pem = root.pem();
        let key_pem = key.serialize_pem();

        let ca = Self {
            trust_domain: trust_domain.to_string(),
            issuer: Issuer::new(params, key),
            chain_tail: vec![root_pem.clone()],
            root_pem,
            signer_not_after: not_after,
            max_ttl: DEFAULT_MAX_TTL,
            provider,
        };
        Ok((ca, key_pem))
    }

    /// A CA that signs with `issuer`, whose issued chains end in `chain_tail`; checks that
    /// what it signs verifies against `root_pem` before it is used.
    pub(crate) fn from_parts(
        trust_domain: &str,
        issuer: Issuer<'static, KeyPair>,
        chain_tail: Vec<String>,
        root_pem: String,
        signer_not_after: SystemTime,
    ) -> Result<Self, CaError> {
        check_trust_domain_arg(trust_domain)?;
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            issuer,
            chain_tail,
            root_pem,
            signer_not_after,
            max_ttl: DEFAULT_MAX_TTL,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        })
    }

    /// The same CA, issuing certificates for at most `max_ttl` (at least one second).
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl.max(Duration::from_secs(1));
        self
    }

    /// The longest lifetime an issued certificate gets.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// The trust domain whose identities this CA issues for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// PEM of the trust anchor(s) proxies verify peers against (Istio's ROOTCA).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// When the CA's signing certificate expires: no certificate it issues outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.signer_not_after
    }

    /// Signs a PEM CSR. The CSR must carry exactly one URI SAN, a SPIFFE identity of this
    /// CA's trust domain, and `authorize` must allow that identity. The certificate has
    /// the CSR's key, that URI as its only SAN, and a lifetime of `ttl` (at most
    /// [`max_ttl`](Self::max_ttl)); it is for TLS servers and clients, not a CA.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        ttl: Duration,
        authorize: impl Fn(&Identity) -> bool,
    ) -> Result<SignedChain, CaError> {
        let request = read_request(csr_pem)?;
        self.check_domain(&request.identity)?;
        if !authorize(&request.identity) {
            return Err(CaError::Unauthorized {
                identity: request.identity.uri(),
            });
        }
        let (leaf, not_after) = self.sign_leaf(&request.identity, &request.public_key, ttl)?;
        Ok(SignedChain {
            chain_pem: self.chain_with(leaf),
            not_after,
        })
    }

    /// Makes a key for `identity` and signs it, for proxies that cannot send a CSR (Envoy
    /// fed over SDS). The identity must be of this CA's trust domain.
    pub fn issue(&self, identity: &Identity, ttl: Duration) -> Result<IssuedCertificate, CaError> {
        identity.validate()?;
        self.check_domain(identity)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(CaError::crypto("generate a key"))?;
        let (leaf, not_after) = self.sign_leaf(identity, &key, ttl)?;
        Ok(IssuedCertificate {
            key_pem: key.serialize_pem(),
            chain_pem: self.chain_with(leaf),
            not_after,
        })
    }

    /// A key and a TLS server certificate for `dns_names` (the control plane's own serving
    /// certificate, as istiod's `istiod.istio-system.svc`), living `ttl` at most.
    pub fn issue_server(
        &self,
        dns_names: &[&str],
        ttl: Duration,
    ) -> Result<IssuedCertificate, CaError> {
        let mut params = CertificateParams::new(
            dns_names
                .iter()
                .map(|name| (*name).to_string())
                .collect::<Vec<_>>(),
        )
        .map_err(CaError::crypto("name the serving certificate"))?;
        let now = whole_seconds(SystemTime::now());
        if self.signer_not_after <= now {
            return Err(CaError::CaExpired);
        }
        let not_after = (now + ttl).min(self.signer_not_after);
        params.distinguished_name = DistinguishedName::new();
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial(&self.provider)?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(CaError::crypto("generate a key"))?;
        let leaf = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::crypto("sign the serving certificate"))?;
        Ok(IssuedCertificate {
            key_pem: key.serialize_pem(),
            chain_pem: self.chain_with(leaf),
            not_after,
        })
    }

    fn check_domain(&self, identity: &Identity) -> Result<(), CaError> {
        if identity.trust_domain == self.trust_domain {
            Ok(())
        } else {
            Err(CaError::ForeignTrustDomain {
                identity: identity.uri(),
                trust_domain: identity.trust_domain.clone(),
                expected: self.trust_domain.clone(),
            })
        }
    }

    fn chain_with(&self, leaf: Certificate) -> Vec<String> {
        let mut chain = Vec::with_capacity(1 + self.chain_tail.len());
        chain.push(leaf.pem());
        chain.extend(self.chain_tail.iter().cloned());
        chain
    }

    /// The workload certificate for `identity` and `public_key`, and its expiry.
    fn sign_leaf(
        &self,
        identity: &Identity,
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<(Certificate, SystemTime), CaError> {
        if ttl < Duration::from_secs(1) {
            return Err(CaError::InvalidTtl(format!(
                "{ttl:?} is shorter than a second; ask for a lifetime of minutes or hours"
            )));
        }
        let now = whole_seconds(SystemTime::now());
        if self.signer_not_after <= now {
            return Err(CaError::CaExpired);
        }
        let ttl = Duration::from_secs(ttl.min(self.max_ttl).as_secs());
        // Nothing issued outlives the certificate that signs it.
        let not_after = (now + ttl).min(self.signer_not_after);

        let mut params = request_params(identity)?;
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial(&self.provider)?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(public_key, &self.issuer)
            .map_err(CaError::crypto("sign the workload certificate"))?;
        tracing::debug!(
            identity = %identity,
            not_after = %OffsetDateTime::from(not_after),
            "issued a workload certificate"
        );
        Ok((leaf, not_after))
    }

    /// Checks that a certificate this CA issues verifies, through the chain it is sent
    /// with, against the roots it publishes: the loaded files fit together.
    pub(crate) fn self_check(&self) -> Result<(), String> {
        let probe = Identity::new(self.trust_domain.clone(), "istio-system", "bosun-ca-check");
        let issued = self
            .issue(&probe, Duration::from_secs(60))
            .map_err(|error| format!("cannot sign a test certificate: {error}"))?;
        let chain = issued
            .chain_pem
            .iter()
            .map(|pem| crate::pem::single_certificate(pem).map(|cert| cert.der))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = crate::pem::certificates(&self.root_pem)?
            .into_iter()
            .map(|cert| cert.der)
            .collect::<Vec<_>>();
        verify_chain(&self.provider, &chain, &roots)
    }
}

/// Verifies `chain` (leaf first) as a TLS client certificate against `roots`.
pub(crate) fn verify_chain(
    provider: &Arc<CryptoProvider>,
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|error| format!("a root cannot be a trust anchor: {error}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|error| format!("no usable roots: {error}"))?;
    let (leaf, intermediates) = chain.split_first().ok_or("the chain is empty")?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|error| error.to_string())
}

fn check_trust_domain_arg(trust_domain: &str) -> Result<(), CaError> {
    check_trust_domain(trust_domain).map_err(|reason| CaError::InvalidTrustDomain {
        trust_domain: trust_domain.to_string(),
        reason,
    })
}

/// `time` rounded down to a whole second: certificates carry whole seconds, and so does
/// what is reported about them.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut serial = [0u8; SERIAL_BYTES];
    provider
        .secure_random
        .fill(&mut serial)
        .map_err(|_| CaError::Random)?;
    // Positive and never zero, as RFC 5280 requires.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&serial))
}
