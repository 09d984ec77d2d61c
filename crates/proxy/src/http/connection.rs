//! What a request knows of the connection it came on.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use bosun_ca::Identity;

use super::head_timeout::HeadWatch;
use crate::compile::CertDetails;
use crate::telemetry::labels::{UNKNOWN_WORKLOAD, principal};
use crate::telemetry::{PeerWorkload, Principal, Shared, exchange};
use crate::tls::PeerCertificate;

#[derive(Debug, Default)]
pub struct ConnectionInfo {
    /// Whether the connection is served by the listener's TLS chain.
    pub is_tls: bool,
    /// The connection's remote (caller) and local address.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The caller's certificate, over mutual TLS.
    pub peer: Option<PeerCertificate>,
    /// The TLS server name the caller asked for.
    pub sni: Option<String>,
    /// The caller's SPIFFE identity, as metrics label it.
    pub principal: Option<Principal>,
    /// The connection's `x-forwarded-client-cert` element, made on its first request.
    forwarded: OnceLock<(CertDetails, HeaderValue)>,
    /// The caller's workload, from the exchange header of its first request (the
    /// header it sent with it, to tell a later different one).
    caller: OnceLock<(Option<HeaderValue>, Shared<PeerWorkload>)>,
    /// Whether a request's headers are being read, for the request headers timeout.
    pub head: Arc<HeadWatch>,
}

impl ConnectionInfo {
    /// A plaintext connection from `remote` to `local`.
    pub fn plain(addresses: Option<(SocketAddr, SocketAddr)>) -> Self {
        Self {
            addresses,
            ..Default::default()
        }
    }

    pub fn mutual_tls(
        peer: Option<PeerCertificate>,
        sni: Option<String>,
        addresses: Option<(SocketAddr, SocketAddr)>,
    ) -> Self {
        let principal = peer
            .as_ref()
            .and_then(|peer| peer.uri.as_deref())
            .map(principal);
        Self {
            is_tls: true,
            addresses,
            peer,
            sni,
            principal,
            ..Default::default()
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

    /// Who called, for metrics: the workload its metadata-exchange header names, decoded
    /// once per connection, in the namespace its certificate names when it has one.
    pub fn caller(&self, exchange_header: Option<HeaderValue>) -> Shared<PeerWorkload> {
        if let Some((seen, caller)) = self.caller.get()
            && *seen == exchange_header
        {
            return caller.clone();
        }
        let caller = self.decode_caller(exchange_header.as_ref());
        let _ = self.caller.set((exchange_header, caller.clone()));
        caller
    }

    fn decode_caller(&self, header: Option<&HeaderValue>) -> Shared<PeerWorkload> {
        let certified_namespace = self
            .principal
            .as_deref()
            .and_then(|uri| uri.parse::<Identity>().ok())
            .map(|identity| identity.namespace);
        let decoded = header.and_then(exchange::decode);
        match (decoded, certified_namespace) {
            (None, None) => UNKNOWN_WORKLOAD.clone(),
            (Some(workload), None) => Shared::new(Arc::new(workload)),
            (decoded, Some(namespace)) => {
                let mut workload =
                    decoded.unwrap_or_else(|| PeerWorkload::clone(&UNKNOWN_WORKLOAD));
                workload.namespace = namespace;
                Shared::new(Arc::new(workload))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_without_metadata_is_in_its_certificate_namespace() {
        let connection = ConnectionInfo {
            principal: Some(principal("spiffe://cluster.local/ns/shop/sa/web")),
            ..Default::default()
        };
        let caller = connection.caller(None);
        assert_eq!(caller.namespace, "shop");
        assert_eq!(caller.name, crate::telemetry::labels::UNKNOWN);
        let not_spiffe = ConnectionInfo {
            principal: Some(principal("https://example.com/ns/x")),
            ..Default::default()
        };
        assert_eq!(not_spiffe.caller(None), *UNKNOWN_WORKLOAD);
    }

    #[test]
    fn a_plaintext_caller_without_metadata_is_unknown() {
        let connection = ConnectionInfo::default();
        assert_eq!(connection.caller(None), *UNKNOWN_WORKLOAD);
    }
}
