//! The resources a proxy is given, and the seam between translation and serving.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use crate::node::ProxyNode;
use crate::versioned::{EncodedSet, SharedChanges};

pub const LISTENER_TYPE_URL: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Everything one proxy should have right now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ResourceSet {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
}

/// Produces resources per proxy from one immutable config snapshot.
///
/// A new generator is published for every (debounced) config change; the server calls
/// `generate` once per connected proxy per change, off any shared lock.
pub trait Generator: Send + Sync + 'static {
    fn generate(&self, node: &ProxyNode) -> ResourceSet;

    /// The same resources, encoded. A generator that shares resources between proxies
    /// returns the same `Arc`s to each, so they are encoded once per change.
    fn generate_encoded(&self, node: &ProxyNode) -> EncodedSet {
        EncodedSet::encode(self.generate(node))
    }

    /// For generators that share resources between proxies and track what changed: this
    /// generator's number, its shared resources, and each proxy's own. `None` (the
    /// default) means every push rebuilds each proxy's resources from
    /// [`Generator::generate_encoded`].
    fn incremental(&self) -> Option<&dyn IncrementalGenerator> {
        None
    }
}

/// A generator whose shared resources are the same `Arc`s for every proxy, and which
/// knows what changed since the generation before it. Pushing a small change then costs
/// each proxy the change, not the mesh.
pub trait IncrementalGenerator {
    /// A number no other generator of this process has.
    fn generation(&self) -> u64;
    /// Every resource all proxies share.
    fn shared(&self) -> EncodedSet;
    /// What changed in the shared resources since `generation`, if this generator was
    /// built right after it.
    fn shared_changes_since(&self, generation: u64) -> Option<&SharedChanges>;
    /// The proxy's own resources (listeners, routes, inbound clusters).
    fn own(&self, node: &ProxyNode) -> EncodedSet;
}

/// A generator that gives every proxy nothing; what a server starts with before the first
/// snapshot is ready.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyGenerator;

impl Generator for EmptyGenerator {
    fn generate(&self, _node: &ProxyNode) -> ResourceSet {
        ResourceSet::default()
    }
}

impl<F> Generator for F
where
    F: Fn(&ProxyNode) -> ResourceSet + Send + Sync + 'static,
{
    fn generate(&self, node: &ProxyNode) -> ResourceSet {
        self(node)
    }
}

/// The four xDS types served over ADS, in push order: make before break, as istiod does
/// (clusters before the endpoints they load, listeners before the routes they name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl ResourceType {
    /// All types in push order.
    pub const PUSH_ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    pub fn from_type_url(type_url: &str) -> Option<Self> {
        match type_url {
            LISTENER_TYPE_URL => Some(Self::Listener),
            ROUTE_TYPE_URL => Some(Self::Route),
            CLUSTER_TYPE_URL => Some(Self::Cluster),
            ENDPOINT_TYPE_URL => Some(Self::Endpoint),
            _ => None,
        }
    }

    pub fn type_url(self) -> &'static str {
        match self {
            Self::Listener => LISTENER_TYPE_URL,
            Self::Route => ROUTE_TYPE_URL,
            Self::Cluster => CLUSTER_TYPE_URL,
            Self::Endpoint => ENDPOINT_TYPE_URL,
        }
    }

    /// Short name used in logs and status, as Envoy and istiod say it.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Listener => "LDS",
            Self::Route => "RDS",
            Self::Cluster => "CDS",
            Self::Endpoint => "EDS",
        }
    }

    /// Listeners and clusters are wildcard types: the proxy gets all of them unless it
    /// names some. Routes and endpoints are only sent when named.
    pub fn is_wildcard_type(self) -> bool {
        matches!(self, Self::Listener | Self::Cluster)
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}
