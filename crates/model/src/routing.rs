//! HTTP routing for a service host, from VirtualServices.

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
}

/// One `http` entry of a VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HttpRouteRule {
    pub name: Option<String>,
    /// Any of these matches selects the rule; empty means every request.
    pub matches: Vec<RequestMatch>,
    pub destinations: Vec<RouteDestination>,
}

/// The routing rules for a set of hosts, from one VirtualService.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VirtualRoutes {
    /// `namespace/name` of the VirtualService, for messages and route names.
    pub source: String,
    pub namespace: String,
    pub hosts: Vec<Hostname>,
    pub http: Vec<HttpRouteRule>,
}
