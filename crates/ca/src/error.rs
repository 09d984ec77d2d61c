//! The crate's one error type. Each message says what went wrong and what to do about it.

use std::path::PathBuf;

/// Why an identity could not be parsed, a certificate not be issued, a CA not be loaded, or
/// a certificate not be obtained from the certificate service.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A string that is not a SPIFFE identity of the form Istio uses.
    #[error(
        "{uri:?} is not a workload identity: {reason}; expected \
         spiffe://<trust domain>/ns/<namespace>/sa/<service account>"
    )]
    InvalidIdentity { uri: String, reason: String },

    /// A trust domain that cannot appear in a SPIFFE identity.
    #[error(
        "{trust_domain:?} is not a usable trust domain: {reason}; use a lowercase DNS-like \
         name such as \"cluster.local\""
    )]
    InvalidTrustDomain {
        trust_domain: String,
        reason: String,
    },

    /// A certificate signing request that cannot be signed as sent.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),

    /// An identity of another trust domain than the CA's.
    #[error(
        "{identity} is in trust domain {trust_domain:?}, but this CA issues for {expected:?}; \
         request an identity in {expected:?}"
    )]
    ForeignTrustDomain {
        /// The identity's URI.
        identity: String,
        trust_domain: String,
        expected: String,
    },

    /// The caller may not have a certificate for this identity.
    #[error("not authorized to obtain a certificate for {identity}")]
    Unauthorized {
        /// The identity's URI.
        identity: String,
    },

    /// A certificate lifetime that cannot be honoured.
    #[error("invalid certificate lifetime: {0}")]
    InvalidTtl(String),

    /// The CA's own signing certificate is no longer valid.
    #[error(
        "the CA's signing certificate expired; replace the CA certificates (cacerts) and \
         restart"
    )]
    CaExpired,

    /// A file of the plug-in CA folder is missing or unreadable.
    #[error(
        "cannot read {}: {source}; a plug-in CA folder holds ca-cert.pem, ca-key.pem, \
         root-cert.pem and cert-chain.pem (Istio's cacerts layout)",
        path.display()
    )]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file of the plug-in CA folder that does not hold what it should.
    #[error("{}: {problem}", path.display())]
    InvalidCaFile { path: PathBuf, problem: String },

    /// The signing library refused (a bug or an unsupported key).
    #[error("cannot {action}: {source}")]
    Crypto {
        action: &'static str,
        #[source]
        source: rcgen::Error,
    },

    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed; no certificate can be issued")]
    Random,

    /// The certificate service could not be reached.
    #[error("cannot reach the certificate service: {0}; check the control plane's address")]
    Connect(#[source] tonic::transport::Error),

    /// The certificate service answered with an error.
    #[error("the certificate service refused: {}: {}", .0.code(), .0.message())]
    Rejected(#[source] Box<tonic::Status>),

    /// The certificate service answered with something that is not a certificate chain.
    #[error("the certificate service sent an unusable answer: {0}")]
    InvalidResponse(String),
}

impl CaError {
    pub(crate) fn crypto(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| Self::Crypto { action, source }
    }

    /// The status the certificate service answers with for this error.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            Self::InvalidIdentity { .. }
            | Self::InvalidCsr(_)
            | Self::ForeignTrustDomain { .. }
            | Self::InvalidTtl(_) => tonic::Status::invalid_argument(message),
            Self::Unauthorized { .. } => tonic::Status::permission_denied(message),
            Self::CaExpired => tonic::Status::unavailable(message),
            Self::Rejected(status) => tonic::Status::new(status.code(), message),
            Self::InvalidTrustDomain { .. }
            | Self::ReadCaFile { .. }
            | Self::InvalidCaFile { .. }
            | Self::Crypto { .. }
            | Self::Random
            | Self::Connect(_)
            | Self::InvalidResponse(_) => tonic::Status::internal(message),
        }
    }
}
