//! Upstream clusters, their endpoints, load balancing and connection pools.

mod body;
mod call;
mod cluster;
mod connector;
mod dns;
mod downstream;
mod endpoint;
mod hashing;
mod limits;
mod membership;
mod outlier;
mod pool;
mod replay;
mod request_body;
mod response;
mod slow_start;
mod tee;

pub use body::{Replay, UpstreamBody};
pub use call::{CallError, call};
pub use cluster::{Cluster, ClusterSpec, Discovery, LbPolicy};
pub use connector::{ConnectionUse, UpstreamPrincipal, UpstreamStream};
pub use dns::{DEFAULT_REFRESH_RATE, DnsDiscovery, DnsTarget, LookupFamily};
pub use downstream::DownstreamBody;
pub use endpoint::{ActiveRequest, Endpoint, EndpointSet, EndpointSpec, UpstreamClient};
pub use hashing::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MAXIMUM_RING_SIZE, DEFAULT_MINIMUM_RING_SIZE, HashingKind,
};
pub use limits::{Admitted, CircuitLimits, ConnectionSlot, Overflow, RetryAdmitted};
pub use membership::DEFAULT_PANIC_THRESHOLD;
pub use outlier::{Observation, OutlierSettings};
pub use pool::{Http2Keepalive, PoolOptions, TcpKeepalive, UpstreamProtocol};
pub use replay::{REPLAY_LIMIT, ReplayError};
pub use request_body::{BodyPrefix, ReadAheadError, RequestBody};
pub use response::{Held, UpstreamResponseBody};
pub use slow_start::SlowStart;
pub use tee::{CopyBody, TeeBody};
