//! Workload identity: the SPIFFE ID Istio gives a workload,
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, carried as the one URI
//! SAN of its certificate.

use std::fmt;
use std::str::FromStr;

use crate::error::CaError;

/// The trust domain of a mesh that does not name one (Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

const SCHEME: &str = "spiffe://";

/// The SPIFFE specification's limits, in bytes.
const MAX_URI_LEN: usize = 2048;
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A workload's identity: `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// The identity of `service_account` in `namespace` of `trust_domain`. Not checked:
    /// parse [`Identity::uri`] back (or let the CA do it) to know it is well formed.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// The SPIFFE URI, as written in a certificate's SAN.
    pub fn uri(&self) -> String {
        self.to_string()
    }

    /// Checks that the parts make a well-formed SPIFFE ID (what parsing would accept).
    pub fn validate(&self) -> Result<(), CaError> {
        let uri = self.uri();
        match uri.parse::<Identity>() {
            Ok(parsed) if parsed == *self => Ok(()),
            Ok(_) => Err(invalid(&uri, "a part holds a '/'")),
            Err(error) => Err(error),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for Identity {
    type Err = CaError;

    fn from_str(uri: &str) -> Result<Self, CaError> {
        if uri.len() > MAX_URI_LEN {
            return Err(invalid(uri, "it is longer than 2048 bytes"));
        }
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Err(invalid(uri, "the scheme must be spiffe://"));
        };
        let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_trust_domain(trust_domain).map_err(|reason| invalid(uri, &reason))?;

        let mut segments = path.split('/');
        if segments.next() != Some("ns") {
            return Err(invalid(uri, "the /ns/<namespace> segment is missing"));
        }
        let namespace = segments.next().unwrap_or_default();
        check_segment("namespace", namespace).map_err(|reason| invalid(uri, &reason))?;
        if segments.next() != Some("sa") {
            return Err(invalid(uri, "the /sa/<service account> segment is missing"));
        }
        let service_account = segments.next().unwrap_or_default();
        check_segment("service account", service_account)
            .map_err(|reason| invalid(uri, &reason))?;
        if segments.next().is_some() {
            return Err(invalid(
                uri,
                "there are path segments after the service account",
            ));
        }
        Ok(Self::new(trust_domain, namespace, service_account))
    }
}

/// Checks a trust domain against the SPIFFE specification (a name, no port or user).
pub(crate) fn check_trust_domain(trust_domain: &str) -> Result<(), String> {
    if trust_domain.is_empty() {
        return Err("the trust domain is empty".to_string());
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err("the trust domain is longer than 255 bytes".to_string());
    }
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
    if !trust_domain.chars().all(allowed) {
        return Err(format!(
            "the trust domain {trust_domain:?} may hold only lowercase letters, digits, '.', '-' \
             and '_'"
        ));
    }
    Ok(())
}

/// Checks one path segment against the SPIFFE specification.
fn check_segment(what: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if segment == "." || segment == ".." {
        return Err(format!("the {what} may not be {segment:?}"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !segment.chars().all(allowed) {
        return Err(format!(
            "the {what} {segment:?} may hold only letters, digits, '.', '-' and '_'"
        ));
    }
    Ok(())
}

fn invalid(uri: &str, reason: &str) -> CaError {
    CaError::InvalidIdentity {
        uri: uri.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(uri: &str) -> String {
        match uri.parse::<Identity>() {
            Err(CaError::InvalidIdentity { reason, .. }) => reason,
            other => panic!("{uri}: expected InvalidIdentity, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let uri = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
        let identity: Identity = uri.parse().unwrap();
        assert_eq!(
            identity,
            Identity::new("cluster.local", "default", "bookinfo-productpage")
        );
        assert_eq!(identity.uri(), uri);
        assert_eq!(identity.to_string(), uri);
        assert!(identity.validate().is_ok());
    }

    #[test]
    fn rejects_wrong_scheme() {
        for uri in [
            "https://cluster.local/ns/default/sa/x",
            "SPIFFE://cluster.local/ns/default/sa/x",
            "cluster.local/ns/default/sa/x",
            "",
        ] {
            assert!(reason(uri).contains("scheme"), "{uri}");
        }
    }

    #[test]
    fn rejects_missing_segments() {
        assert!(reason("spiffe://cluster.local").contains("/ns/"));
        assert!(reason("spiffe://cluster.local/sa/x").contains("/ns/"));
        assert!(reason("spiffe://cluster.local/ns/default").contains("/sa/"));
        assert!(reason("spiffe://cluster.local/ns/default/x/y").contains("/sa/"));
        assert!(reason("spiffe://cluster.local/ns//sa/x").contains("namespace is empty"));
        assert!(
            reason("spiffe://cluster.local/ns/default/sa").contains("service account is empty")
        );
        assert!(
            reason("spiffe://cluster.local/ns/default/sa/").contains("service account is empty")
        );
        assert!(reason("spiffe:///ns/default/sa/x").contains("trust domain is empty"));
    }

    #[test]
    fn rejects_extra_segments() {
        assert!(reason("spiffe://cluster.local/ns/default/sa/x/y").contains("after"));
        assert!(reason("spiffe://cluster.local/ns/default/sa/x/").contains("after"));
    }

    #[test]
    fn rejects_bad_characters() {
        assert!(reason("spiffe://Cluster.local/ns/default/sa/x").contains("lowercase"));
        assert!(reason("spiffe://cluster.local:8080/ns/default/sa/x").contains("lowercase"));
        assert!(reason("spiffe://user@cluster.local/ns/default/sa/x").contains("lowercase"));
        assert!(reason("spiffe://cluster.local/ns/default/sa/x?y=1").contains("service account"));
        assert!(reason("spiffe://cluster.local/ns/../sa/x").contains("namespace"));
        assert!(reason("spiffe://cluster.local/ns/a%2Fb/sa/x").contains("namespace"));
    }

    #[test]
    fn validate_catches_parts_that_do_not_round_trip() {
        assert!(
            Identity::new("cluster.local", "a/b", "x")
                .validate()
                .is_err()
        );
        assert!(
            Identity::new("cluster.local", "default", "")
                .validate()
                .is_err()
        );
        assert!(Identity::new("Cluster", "default", "x").validate().is_err());
    }

    #[test]
    fn error_message_says_what_is_expected() {
        let message = "spiffe://cluster.local/ns/default"
            .parse::<Identity>()
            .unwrap_err()
            .to_string();
        assert!(message.contains("spiffe://<trust domain>/ns/<namespace>/sa/<service account>"));
        assert!(message.contains("spiffe://cluster.local/ns/default"));
    }
}
