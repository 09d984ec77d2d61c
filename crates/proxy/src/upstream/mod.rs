//! Upstream clusters, their endpoints, load balancing and connection pools.

mod cluster;
mod connector;
mod endpoint;

pub use cluster::{Cluster, ClusterSpec, Discovery, EndpointSpec, LbPolicy};
pub use connector::UpstreamPrincipal;
pub use endpoint::{ActiveRequest, Endpoint, EndpointSet, UpstreamClient, UpstreamProtocol};
