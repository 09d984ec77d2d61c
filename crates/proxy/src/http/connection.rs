//! What a request knows of the connection it came on.

use std::sync::OnceLock;

use http::HeaderValue;

use crate::compile::CertDetails;
use crate::tls::PeerCertificate;

#[derive(Debug, Default)]
pub struct ConnectionInfo {
    /// Whether the connection is served by the listener's TLS chain.
    pub is_tls: bool,
    /// The caller's certificate, over mutual TLS.
    pub peer: Option<PeerCertificate>,
    /// The connection's `x-forwarded-client-cert` element, made on its first request.
    forwarded: OnceLock<(CertDetails, HeaderValue)>,
}

impl ConnectionInfo {
    pub fn mutual_tls(peer: Option<PeerCertificate>) -> Self {
        Self {
            is_tls: true,
            peer,
            forwarded: OnceLock::new(),
        }
    }

    /// The caller's certificate as an `x-forwarded-client-cert` element, with `by` (the
    /// proxy's own identity) asked for only once per connection.
    pub fn forwarded_element(
        &self,
        details: CertDetails,
        by: impl FnOnce() -> Option<String>,
    ) -> Option<HeaderValue> {
        let peer = self.peer.as_ref()?;
        if let Some((made_for, value)) = self.forwarded.get()
            && *made_for == details
        {
            return Some(value.clone());
        }
        let value = HeaderValue::try_from(peer.forwarded_element(by().as_deref(), details)).ok()?;
        let _ = self.forwarded.set((details, value.clone()));
        Some(value)
    }
}
