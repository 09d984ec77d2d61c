//! The resources a proxy is given, and the seam between translation and serving.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

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
