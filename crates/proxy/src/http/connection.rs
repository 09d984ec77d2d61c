//! What a request knows of the connection it came on.

use crate::tls::PeerCertificate;

#[derive(Debug, Default)]
pub struct ConnectionInfo {
    /// Whether the connection is served by the listener's TLS chain.
    pub is_tls: bool,
    /// The caller's certificate, over mutual TLS.
    pub peer: Option<PeerCertificate>,
}
