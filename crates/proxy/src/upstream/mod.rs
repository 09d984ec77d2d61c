//! Upstream clusters, their endpoints, load balancing and connection pools.

mod body;
mod cluster;
mod connector;
mod downstream;
mod endpoint;
mod limits;
mod replay;
mod tee;

pub use body::{Replay, UpstreamBody};
pub use cluster::{Cluster, ClusterSpec, Discovery, EndpointSpec, LbPolicy};
pub use connector::UpstreamPrincipal;
pub use downstream::DownstreamBody;
pub use endpoint::{ActiveRequest, Endpoint, EndpointSet, UpstreamClient, UpstreamProtocol};
pub use limits::{Admitted, CircuitLimits, RetryAdmitted};
pub use replay::{REPLAY_LIMIT, ReplayError};
pub use tee::{CopyBody, TeeBody};
