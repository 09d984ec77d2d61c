//! HTTP routing for a service host, from VirtualServices.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::host::Hostname;

/// How a string in a request is matched. Regexes are RE2 syntax and match the whole
/// string, as in Istio and Envoy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// One `match` block: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestMatch {
    pub uri: Option<StringMatch>,
    /// Header name (lowercase) -> how its value must match.
    pub headers: Vec<(String, StringMatch)>,
    /// Headers that must be absent or must not match (`withoutHeaders`).
    pub without_headers: Vec<(String, StringMatch)>,
    /// Only requests to this service port.
    pub port: Option<u16>,
    /// Query parameter name -> how its (first) value must match.
    pub query_params: Vec<(String, StringMatch)>,
    /// Match `uri` (exact and prefix) without regard to case.
    pub ignore_uri_case: bool,
    /// Which proxies the match applies to (`sourceLabels`, `sourceNamespace`, `gateways`).
    /// istiod decides it when it writes each proxy's routes, not per request.
    pub source: SourceMatch,
}

/// The callers a match is written for: proxies whose labels include `labels`, in
/// `namespace` when it is set; with `gateways`, only the gateways named (a sidecar is
/// `mesh`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SourceMatch {
    pub labels: BTreeMap<String, String>,
    pub namespace: Option<String>,
    pub gateways: Vec<String>,
}

/// The name a sidecar has among `gateways` (Istio's reserved `mesh`).
pub const MESH_GATEWAY: &str = "mesh";

impl SourceMatch {
    /// Whether the match is written for every proxy.
    pub fn is_any(&self) -> bool {
        self.labels.is_empty() && self.namespace.is_none() && self.gateways.is_empty()
    }

    /// istiod's rule for a sidecar with `labels` in `namespace`: named gateways decide
    /// alone; otherwise the labels must include the match's, in its namespace if set.
    pub fn admits_sidecar(&self, labels: &BTreeMap<String, String>, namespace: &str) -> bool {
        if !self.gateways.is_empty() {
            return self.gateways.iter().any(|gateway| gateway == MESH_GATEWAY);
        }
        self.labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self
                .namespace
                .as_deref()
                .is_none_or(|wanted| wanted == namespace)
    }
}

/// Where a rule sends its traffic, and what share of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteDestination {
    pub host: Hostname,
    pub subset: Option<String>,
    /// The destination port; `None` means the port the request came in on (or the
    /// service's only port).
    pub port: Option<u16>,
    pub weight: u32,
    /// Header changes for requests sent to this destination and its responses.
    pub headers: HeaderOperations,
}

/// One `http` entry of a VirtualService.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct HttpRouteRule {
    pub name: Option<String>,
    /// Any of these matches selects the rule; empty means every request.
    pub matches: Vec<RequestMatch>,
    pub destinations: Vec<RouteDestination>,
    /// How long the whole request may take; `None`: no limit (Istio's default).
    pub timeout: Option<Duration>,
    pub retries: Retries,
    pub fault: Option<Fault>,
    /// Header changes of the whole rule.
    pub headers: HeaderOperations,
    pub rewrite: Option<Rewrite>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// Answer directly instead of forwarding.
    pub direct_response: Option<DirectResponse>,
    /// Where copies of the requests go (`mirror`, then each of `mirrors`).
    pub mirrors: Vec<Mirror>,
    pub cors: Option<CorsPolicy>,
}

/// A VirtualService's `corsPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CorsPolicy {
    /// `allowOrigins`, or the older exact `allowOrigin` list.
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
    /// `unmatchedPreflights: IGNORE`: answer them here instead of forwarding them.
    pub ignore_unmatched_preflights: bool,
}

/// A mirror destination and the share of requests copied to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mirror {
    /// Its weight is unused.
    pub destination: RouteDestination,
    pub share: Share,
}

/// `set`, `add` and `remove` for one direction, as written (sorted by name).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeaderChanges {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderChanges {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A VirtualService's `headers`: changes to requests and to responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeaderOperations {
    pub request: HeaderChanges,
    pub response: HeaderChanges,
}

impl HeaderOperations {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// A VirtualService's `rewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rewrite {
    /// Replaces the part of the path the rule matched.
    pub uri: Option<String>,
    /// `(pattern, substitution)` applied to the path.
    pub uri_regex: Option<(String, String)>,
    pub authority: Option<String>,
}

/// A VirtualService's `redirect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redirect {
    pub uri: Option<String>,
    /// The matched prefix of the path replaced by this (`prefixRewrite`); `uri` wins.
    pub prefix_rewrite: Option<String>,
    pub authority: Option<String>,
    pub port: Option<RedirectPort>,
    pub scheme: Option<String>,
    /// 301 when unset.
    pub code: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RedirectPort {
    Number(u16),
    /// `derivePort: FROM_REQUEST_PORT`: the port the request came in on.
    FromRequest,
}

/// A VirtualService's `directResponse`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Option<Vec<u8>>,
}

/// What a rule says of retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub enum Retries {
    /// Nothing: Istio's default policy applies.
    #[default]
    MeshDefault,
    /// `attempts: 0`: no retries.
    Disabled,
    Policy(RetryPolicy),
}

/// A VirtualService's `retries`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    /// The `retryOn` conditions as written (Envoy's names and status codes); `None`
    /// keeps Istio's default conditions.
    pub retry_on: Option<String>,
    pub retry_remote_localities: bool,
    /// Whether a retry avoids the endpoints already tried (Istio's default: yes).
    pub avoid_previous_hosts: bool,
    pub backoff: Option<Duration>,
}

/// A VirtualService's `fault`: delays and aborts injected by the caller's sidecar.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultDelay {
    pub fixed_delay: Duration,
    pub share: Share,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultAbort {
    pub with: AbortWith,
    pub share: Share,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AbortWith {
    HttpStatus(u16),
    /// A gRPC status code.
    GrpcStatus(u32),
}

/// Which share of requests a fault or a mirror applies to, as written.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Share {
    /// `percentage.value`, a percent with a fraction.
    Percentage(f64),
    /// The deprecated integer `percent`.
    Percent(u32),
    /// Neither: a fault then applies to no request, a mirror to all.
    Unset,
}

/// The routing rules for a set of hosts, from one VirtualService.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VirtualRoutes {
    /// `namespace/name` of the VirtualService, for messages and route names.
    pub source: String,
    pub namespace: String,
    pub hosts: Vec<Hostname>,
    pub http: Vec<HttpRouteRule>,
    /// The `tcp` rules: where connections to the hosts' TCP ports go.
    pub tcp: Vec<TcpRouteRule>,
}

/// One `tcp` entry of a VirtualService: the first whose matches admit a connection
/// decides its weighted destinations.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TcpRouteRule {
    /// Any of them admits (none: every connection).
    pub matches: Vec<ConnectionMatch>,
    pub destinations: Vec<RouteDestination>,
}

/// Conditions on a connection (`L4MatchAttributes`): its service port and who opens it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionMatch {
    pub port: Option<u16>,
    pub source: SourceMatch,
}

impl TcpRouteRule {
    /// Whether a connection to `port` from a caller `admits` accepts is this rule's.
    pub fn takes(&self, port: u16, admits: impl Fn(&SourceMatch) -> bool) -> bool {
        self.matches.is_empty()
            || self.matches.iter().any(|condition| {
                condition.port.is_none_or(|wanted| wanted == port) && admits(&condition.source)
            })
    }
}
