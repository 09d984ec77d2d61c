//! The mesh's certificate authority and workload identity.
//!
//! - [`Identity`]: a workload's SPIFFE ID, `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
//! - [`CertificateAuthority`]: a self-signed root ([`CertificateAuthority::self_signed`]) or
//!   Istio's plug-in CA folder ([`CertificateAuthority::from_folder`]); signs workload CSRs
//!   ([`CertificateAuthority::sign_csr`]) or makes key and certificate in one step
//!   ([`CertificateAuthority::issue`]).
//! - [`certificate_request`]: a workload's key and CSR for its identity.
//! - [`credential`]: who is asking: workload tokens and the [`Caller`] they prove.
//! - [`service`]: Istio's `IstioCertificateService` over gRPC, server and client.
//!
//! Cryptography is aws-lc-rs only, through rustls and rcgen.

/// The name the control plane's serving certificate carries and proxies check (istiod's
/// `istiod.istio-system.svc`, where Istio's proxies reach it on port 15012).
pub const CONTROL_PLANE_NAME: &str = "istiod.istio-system.svc";

mod authority;
mod cacerts;
pub mod credential;
mod error;
mod identity;
mod pem;
mod request;
pub mod service;

pub use authority::{
    CertificateAuthority, DEFAULT_MAX_TTL, DEFAULT_TTL, IssuedCertificate, SignedChain,
    renewal_delay,
};
pub use cacerts::{CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE};
pub use credential::{Authenticate, Caller, CredentialError, TokenKey};
pub use error::CaError;
pub use identity::{DEFAULT_TRUST_DOMAIN, Identity};
pub use request::{CertificateRequest, certificate_request};
pub use service::{CertificateService, request_certificate};
