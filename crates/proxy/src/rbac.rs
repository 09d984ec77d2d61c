//! Envoy's role-based access control: policies of permissions (what is asked) and
//! principals (who asks), evaluated against a connection and, on HTTP, a request.
//!
//! One engine serves the HTTP filter (`envoy.filters.http.rbac`) and the network filter
//! (`envoy.filters.network.rbac`); on a TCP connection there is no request, so header and
//! path rules match nothing.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::routing::{HeaderMatch, RequestView, ValueMatch};
use crate::tls::PeerCertificate;

/// What access control looks at.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The caller's certificate, over mutual TLS.
    pub peer: Option<&'a PeerCertificate>,
    /// The connection's remote and local address.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The original client: the direct peer, or the address `x-forwarded-for` names.
    pub remote: Option<IpAddr>,
    /// The TLS server name the caller asked for (empty without TLS).
    pub sni: &'a str,
    /// The request, on an HTTP chain.
    pub request: Option<&'a RequestView<'a>>,
    /// What the filters before wrote: filter name → its dynamic metadata.
    pub metadata: Option<&'a serde_json::Map<String, Value>>,
}

/// `ALLOW`: only what a policy matches passes. `DENY`: what a policy matches is refused.
/// `LOG`: everything passes; matches are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    Allow,
    Deny,
    Log,
}

/// One RBAC config: an action and its named policies.
#[derive(Debug, Clone)]
pub struct Rbac {
    action: RbacAction,
    policies: Vec<(String, Policy)>,
    index: PrincipalIndex,
    /// By policy: the paths one of which a request must have for it to match (`None`:
    /// any), checked before the policy's rules.
    path_guards: Vec<Option<Vec<PathRequirement>>>,
}

/// A path a policy requires, as plain a comparison as it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathRequirement {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl PathRequirement {
    fn admits(&self, path: &str) -> bool {
        match self {
            PathRequirement::Exact(exact) => path == &**exact,
            PathRequirement::Prefix(prefix) => path.starts_with(&**prefix),
        }
    }
}

/// What [`Rbac::decide`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The policy that matched, if one did.
    pub matched: Option<String>,
}

impl Rbac {
    pub fn new(action: RbacAction, policies: Vec<(String, Policy)>) -> Self {
        let policies: Vec<(String, Policy)> = policies
            .into_iter()
            .map(|(name, policy)| {
                let policy = Policy {
                    permissions: policy
                        .permissions
                        .into_iter()
                        .map(Permission::flat)
                        .collect(),
                    principals: policy.principals.into_iter().map(Principal::flat).collect(),
                };
                (name, policy)
            })
            .collect();
        let index = PrincipalIndex::new(&policies);
        let path_guards = policies
            .iter()
            .map(|(_, policy)| policy.required_paths())
            .collect();
        Rbac {
            action,
            policies,
            index,
            path_guards,
        }
    }

    /// Whether the request's path can let policy `position` match.
    fn path_admits(&self, position: usize, subject: &Subject<'_>) -> bool {
        match &self.path_guards[position] {
            None => true,
            Some(paths) => subject
                .request
                .is_some_and(|request| paths.iter().any(|path| path.admits(request.path))),
        }
    }

    pub fn action(&self) -> RbacAction {
        self.action
    }

    pub fn policies(&self) -> &[(String, Policy)] {
        &self.policies
    }

    pub fn decide(&self, subject: &Subject<'_>) -> Decision {
        let matched = self
            .index
            .candidates(subject)
            .filter(|position| self.path_admits(*position, subject))
            .map(|position| &self.policies[position])
            .find(|(_, policy)| policy.matches(subject))
            .map(|(name, _)| name.clone());
        let allowed = match self.action {
            RbacAction::Allow => matched.is_some(),
            RbacAction::Deny => matched.is_none(),
            RbacAction::Log => true,
        };
        Decision { allowed, matched }
    }
}

/// The policies that can match a caller, without evaluating the others: a policy whose
/// every principal requires an exact authenticated identity (istiod's `principals`) is
/// filed under those identities, so a workload with a policy per caller evaluates only
/// the caller's. The rest are evaluated for every request. Candidates come in policy
/// order, so the first match is the one a linear walk finds.
#[derive(Debug, Clone, Default)]
struct PrincipalIndex {
    by_identity: std::collections::HashMap<String, Vec<usize>>,
    unindexed: Vec<usize>,
}

impl PrincipalIndex {
    fn new(policies: &[(String, Policy)]) -> Self {
        let mut index = PrincipalIndex::default();
        for (position, (_, policy)) in policies.iter().enumerate() {
            match policy.required_identities() {
                Some(identities) => {
                    for identity in identities {
                        let positions = index.by_identity.entry(identity.to_string()).or_default();
                        if positions.last() != Some(&position) {
                            positions.push(position);
                        }
                    }
                }
                None => index.unindexed.push(position),
            }
        }
        index
    }

    /// The positions of the policies that may match `subject`, in order.
    fn candidates<'a>(&'a self, subject: &Subject<'_>) -> impl Iterator<Item = usize> + 'a {
        let indexed: &[usize] = subject
            .peer
            .filter(|_| !self.by_identity.is_empty())
            .and_then(|peer| self.by_identity.get(authenticated_name(peer)))
            .map_or(&[], Vec::as_slice);
        Merged {
            a: indexed.iter().copied().peekable(),
            b: self.unindexed.iter().copied().peekable(),
        }
    }
}

/// Two ascending position lists as one.
struct Merged<A: Iterator<Item = usize>, B: Iterator<Item = usize>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = usize>, B: Iterator<Item = usize>> Iterator for Merged<A, B> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if a <= b => self.a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, None) => None,
        }
    }
}

/// The name an authenticated principal is matched against: the URI SAN, else the first
/// DNS SAN, else the subject (Envoy's order).
fn authenticated_name(peer: &PeerCertificate) -> &str {
    match (&peer.uri, peer.dns.first()) {
        (Some(uri), _) => uri,
        (None, Some(dns)) => dns,
        (None, None) => &peer.subject,
    }
}

/// Matches when one of its permissions and one of its principals do.
#[derive(Debug, Clone)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

impl Policy {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(subject))
            && self.principals.iter().any(|p| p.matches(subject))
    }

    /// The paths one of which a request must have for the policy to match; `None` when
    /// a permission can match without one.
    fn required_paths(&self) -> Option<Vec<PathRequirement>> {
        let mut all = Vec::new();
        for permission in &self.permissions {
            all.extend(permission.required_paths()?);
        }
        Some(all)
    }

    /// The exact identities one of which a caller must have for the policy to match;
    /// `None` when a principal can match without one.
    fn required_identities(&self) -> Option<Vec<&str>> {
        let mut all = Vec::new();
        for principal in &self.principals {
            all.extend(principal.required_identities()?);
        }
        // No principal at all matches nothing: nobody is a candidate.
        Some(all)
    }
}

#[derive(Debug, Clone)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatch),
    /// The path without its query string.
    UrlPath(ValueMatch),
    UriTemplate(UriTemplate),
    DestinationIp(Cidr),
    DestinationPort(u16),
    DestinationPortRange(u16, u16),
    RequestedServerName(ValueMatch),
    Metadata(MetadataMatch),
}

impl Permission {
    /// The same rule without the one-rule `and_rules` / `or_rules` istiod wraps every
    /// rule in: a level less to walk per policy.
    fn flat(self) -> Permission {
        match self {
            Permission::And(all) => match <[Permission; 1]>::try_from(all) {
                Ok([one]) => one.flat(),
                Err(all) => Permission::And(all.into_iter().map(Permission::flat).collect()),
            },
            Permission::Or(any) => match <[Permission; 1]>::try_from(any) {
                Ok([one]) => one.flat(),
                Err(any) => Permission::Or(any.into_iter().map(Permission::flat).collect()),
            },
            Permission::Not(inner) => Permission::Not(Box::new(inner.flat())),
            other => other,
        }
    }

    /// See [`Policy::required_paths`].
    fn required_paths(&self) -> Option<Vec<PathRequirement>> {
        match self {
            Permission::UrlPath(ValueMatch::Exact {
                value,
                ignore_case: false,
            }) => Some(vec![PathRequirement::Exact(value.as_str().into())]),
            Permission::UrlPath(ValueMatch::Prefix {
                value,
                ignore_case: false,
            }) => Some(vec![PathRequirement::Prefix(value.as_str().into())]),
            Permission::Or(any) => {
                let mut all = Vec::new();
                for permission in any {
                    all.extend(permission.required_paths()?);
                }
                Some(all)
            }
            Permission::And(all) => all.iter().find_map(Permission::required_paths),
            _ => None,
        }
    }

    fn matches(&self, subject: &Subject<'_>) -> bool {
        let local = subject.addresses.map(|(_, local)| local);
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(|p| p.matches(subject)),
            Permission::Or(any) => any.iter().any(|p| p.matches(subject)),
            Permission::Not(inner) => !inner.matches(subject),
            Permission::Header(header) => subject.request.is_some_and(|req| header.matches(req)),
            Permission::UrlPath(path) => subject.request.is_some_and(|req| path.matches(req.path)),
            Permission::UriTemplate(template) => subject
                .request
                .is_some_and(|req| template.matches(req.path)),
            Permission::DestinationIp(cidr) => local.is_some_and(|local| cidr.contains(local.ip())),
            Permission::DestinationPort(port) => local.is_some_and(|local| local.port() == *port),
            Permission::DestinationPortRange(start, end) => {
                local.is_some_and(|local| (*start..*end).contains(&local.port()))
            }
            Permission::RequestedServerName(name) => name.matches(subject.sni),
            Permission::Metadata(matcher) => matcher.matches(subject.metadata),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A caller with a certificate; with a name, one whose URI SAN (else DNS SAN, else
    /// subject) matches it.
    Authenticated(Option<ValueMatch>),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    Header(HeaderMatch),
    Metadata(MetadataMatch),
}

impl Principal {
    /// See [`Permission::flat`].
    fn flat(self) -> Principal {
        match self {
            Principal::And(all) => match <[Principal; 1]>::try_from(all) {
                Ok([one]) => one.flat(),
                Err(all) => Principal::And(all.into_iter().map(Principal::flat).collect()),
            },
            Principal::Or(any) => match <[Principal; 1]>::try_from(any) {
                Ok([one]) => one.flat(),
                Err(any) => Principal::Or(any.into_iter().map(Principal::flat).collect()),
            },
            Principal::Not(inner) => Principal::Not(Box::new(inner.flat())),
            other => other,
        }
    }

    /// See [`Policy::required_identities`].
    fn required_identities(&self) -> Option<Vec<&str>> {
        match self {
            Principal::Authenticated(Some(ValueMatch::Exact {
                value,
                ignore_case: false,
            })) => Some(vec![value.as_str()]),
            Principal::Or(any) => {
                let mut all = Vec::new();
                for principal in any {
                    all.extend(principal.required_identities()?);
                }
                Some(all)
            }
            // Every one must match, so any one that requires identities will do.
            Principal::And(all) => all.iter().find_map(Principal::required_identities),
            _ => None,
        }
    }

    fn matches(&self, subject: &Subject<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(all) => all.iter().all(|p| p.matches(subject)),
            Principal::Or(any) => any.iter().any(|p| p.matches(subject)),
            Principal::Not(inner) => !inner.matches(subject),
            Principal::Authenticated(name) => match (subject.peer, name) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(peer), Some(name)) => name.matches(authenticated_name(peer)),
            },
            Principal::DirectRemoteIp(cidr) => subject
                .addresses
                .is_some_and(|(remote, _)| cidr.contains(remote.ip())),
            Principal::RemoteIp(cidr) => subject.remote.is_some_and(|ip| cidr.contains(ip)),
            Principal::Header(header) => subject.request.is_some_and(|req| header.matches(req)),
            Principal::Metadata(matcher) => matcher.matches(subject.metadata),
        }
    }
}

/// Envoy's `MetadataMatcher`: the value at a path of a filter's dynamic metadata.
#[derive(Debug, Clone)]
pub struct MetadataMatch {
    pub filter: String,
    pub path: Vec<String>,
    pub value: MetadataValue,
    pub invert: bool,
}

impl MetadataMatch {
    pub fn matches(&self, metadata: Option<&serde_json::Map<String, Value>>) -> bool {
        let found = metadata
            .and_then(|metadata| metadata.get(&self.filter))
            .and_then(|value| {
                self.path
                    .iter()
                    .try_fold(value, |value, key| value.get(key.as_str()))
            });
        found.is_some_and(|value| self.value.matches(value)) != self.invert
    }
}

/// Envoy's `ValueMatcher`, for the kinds istiod writes.
#[derive(Debug, Clone)]
pub enum MetadataValue {
    String(ValueMatch),
    Present,
    Bool(bool),
    /// A list with one item that matches.
    OneOf(Box<MetadataValue>),
    Or(Vec<MetadataValue>),
}

impl MetadataValue {
    fn matches(&self, value: &Value) -> bool {
        match self {
            MetadataValue::String(matcher) => value.as_str().is_some_and(|s| matcher.matches(s)),
            MetadataValue::Present => !value.is_null(),
            MetadataValue::Bool(expected) => value.as_bool() == Some(*expected),
            MetadataValue::OneOf(item) => value
                .as_array()
                .is_some_and(|items| items.iter().any(|v| item.matches(v))),
            MetadataValue::Or(any) => any.iter().any(|m| m.matches(value)),
        }
    }
}

/// An address range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 caller on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(range), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(range) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(range), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(range) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Envoy's URI template matcher (`envoy.path.match.uri_template`), as Envoy evaluates
/// it: `*` is one or more characters of one path segment, `**` any characters across
/// segments (and must be the last operator), everything else literal; the whole path
/// must match.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    regex: regex::Regex,
}

/// RFC 3986 `pchar`s, the characters Envoy lets `*` and `**` match.
const PATH_CHARS: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]";

impl UriTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        if !template.starts_with('/') {
            return Err(format!("path template {template:?} must start with /"));
        }
        let mut pattern = String::from("^");
        let mut rest = template;
        let mut seen_rest_operator = false;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("**") {
                pattern.push_str(&format!("(?:{PATH_CHARS}|/)*"));
                seen_rest_operator = true;
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                if seen_rest_operator {
                    return Err(format!(
                        "path template {template:?}: ** must be the last operator"
                    ));
                }
                pattern.push_str(&format!("{PATH_CHARS}+"));
                rest = after;
            } else {
                let literal_end = rest.find('*').unwrap_or(rest.len());
                pattern.push_str(&regex::escape(&rest[..literal_end]));
                rest = &rest[literal_end..];
            }
        }
        pattern.push('$');
        let regex =
            regex::Regex::new(&pattern).map_err(|e| format!("path template {template:?}: {e}"))?;
        Ok(Self { regex })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(identity: &str) -> Principal {
        // istiod's shape: and_ids of or_ids of one authenticated name.
        Principal::And(vec![Principal::Or(vec![Principal::Authenticated(Some(
            ValueMatch::Exact {
                value: identity.to_string(),
                ignore_case: false,
            },
        ))])])
    }

    fn port(port: u16) -> Vec<Permission> {
        vec![Permission::DestinationPort(port)]
    }

    fn subject_of(peer: Option<&PeerCertificate>, local_port: u16) -> Subject<'_> {
        Subject {
            peer,
            addresses: Some((
                "10.0.0.1:40000".parse().unwrap(),
                SocketAddr::from(([10, 0, 0, 2], local_port)),
            )),
            remote: None,
            sni: "",
            request: None,
            metadata: None,
        }
    }

    fn peer(uri: &str) -> PeerCertificate {
        PeerCertificate {
            hash: String::new(),
            subject: String::new(),
            uri: Some(uri.to_string()),
            dns: Vec::new(),
        }
    }

    /// The index must find what a walk over every policy finds: the first policy, in
    /// order, that matches, whether filed under the caller's identity or not.
    #[test]
    fn the_principal_index_finds_the_first_match_a_walk_would() {
        let policy = |principals: Vec<Principal>, port_number: u16| Policy {
            permissions: port(port_number),
            principals,
        };
        let rbac = Rbac::new(
            RbacAction::Allow,
            vec![
                ("a-on-80".into(), policy(vec![exact("spiffe://td/a")], 80)),
                ("anyone-on-81".into(), policy(vec![Principal::Any], 81)),
                (
                    "a-or-b-on-81".into(),
                    policy(vec![exact("spiffe://td/a"), exact("spiffe://td/b")], 81),
                ),
                ("b-on-82".into(), policy(vec![exact("spiffe://td/b")], 82)),
                ("nobody".into(), policy(vec![], 83)),
            ],
        );
        let walk = |subject: &Subject<'_>| {
            rbac.policies()
                .iter()
                .find(|(_, policy)| policy.matches(subject))
                .map(|(name, _)| name.clone())
        };
        let (a, b, c) = (
            peer("spiffe://td/a"),
            peer("spiffe://td/b"),
            peer("spiffe://td/c"),
        );
        for caller in [Some(&a), Some(&b), Some(&c), None] {
            for local_port in 79..=83 {
                let subject = subject_of(caller, local_port);
                assert_eq!(
                    rbac.decide(&subject).matched,
                    walk(&subject),
                    "{caller:?} on {local_port}"
                );
            }
        }
        assert_eq!(
            rbac.decide(&subject_of(Some(&b), 81)).matched.as_deref(),
            Some("anyone-on-81")
        );
        assert_eq!(
            rbac.decide(&subject_of(Some(&b), 82)).matched.as_deref(),
            Some("b-on-82")
        );
        assert_eq!(rbac.decide(&subject_of(Some(&a), 82)).matched, None);
    }

    /// Path guards set a policy aside only when its rules could not match the path.
    #[test]
    fn path_guards_set_aside_only_what_cannot_match() {
        use crate::routing::RequestView;
        let path = |value: &str, prefix: bool| {
            let value = value.to_string();
            Permission::UrlPath(if prefix {
                ValueMatch::Prefix {
                    value,
                    ignore_case: false,
                }
            } else {
                ValueMatch::Exact {
                    value,
                    ignore_case: false,
                }
            })
        };
        let anyone = || vec![Principal::Any];
        let rbac = Rbac::new(
            RbacAction::Allow,
            vec![
                (
                    "api-get".into(),
                    Policy {
                        permissions: vec![Permission::And(vec![
                            Permission::Or(vec![path("/api/", true)]),
                            Permission::Not(Box::new(path("/api/admin", true))),
                        ])],
                        principals: anyone(),
                    },
                ),
                (
                    "exact-or-port".into(),
                    Policy {
                        permissions: vec![path("/health", false), Permission::DestinationPort(81)],
                        principals: anyone(),
                    },
                ),
                (
                    "two-paths".into(),
                    Policy {
                        permissions: vec![Permission::Or(vec![
                            path("/a", false),
                            path("/b/", true),
                        ])],
                        principals: anyone(),
                    },
                ),
            ],
        );
        let headers = http::HeaderMap::new();
        for request_path in [
            "/",
            "/api/x",
            "/api/admin/y",
            "/health",
            "/healthz",
            "/a",
            "/b/c",
        ] {
            for local_port in [80, 81] {
                let view = RequestView {
                    authority: "b",
                    path: request_path,
                    query: None,
                    method: &http::Method::GET,
                    scheme: "http",
                    headers: &headers,
                };
                let mut subject = subject_of(None, local_port);
                subject.request = Some(&view);
                let walked = rbac
                    .policies()
                    .iter()
                    .find(|(_, policy)| policy.matches(&subject))
                    .map(|(name, _)| name.clone());
                assert_eq!(
                    rbac.decide(&subject).matched,
                    walked,
                    "{request_path} on {local_port}"
                );
            }
        }
        // On a connection (no request) only the rule that needs no path can match.
        assert_eq!(
            rbac.decide(&subject_of(None, 81)).matched.as_deref(),
            Some("exact-or-port")
        );
    }

    #[test]
    fn cidr_ranges_hold_their_addresses_only() {
        let range = Cidr {
            address: "10.10.0.0".parse().unwrap(),
            prefix_len: 16,
        };
        assert!(range.contains("10.10.3.4".parse().unwrap()));
        assert!(range.contains("::ffff:10.10.3.4".parse().unwrap()));
        assert!(!range.contains("10.11.0.1".parse().unwrap()));
        let all = Cidr {
            address: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
        };
        assert!(all.contains("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn uri_templates_match_segments() {
        let one = UriTemplate::parse("/foo/*/bar").unwrap();
        assert!(one.matches("/foo/x/bar"));
        assert!(!one.matches("/foo/x/y/bar"));
        assert!(!one.matches("/foo//bar"));
        let rest = UriTemplate::parse("/foo/**").unwrap();
        assert!(rest.matches("/foo/a/b/c"));
        assert!(rest.matches("/foo/"));
        assert!(!rest.matches("/bar/a"));
        let middle = UriTemplate::parse("/**/cart").unwrap();
        assert!(middle.matches("/store/a/cart"));
        assert!(!middle.matches("/cart"));
        assert!(UriTemplate::parse("/**/*").is_err());
    }
}
