//! Bosun's sidecar proxy: an L7 data plane configured only through Envoy xDS v3.
//!
//! xDS resources are compiled ([`compile`]) into immutable route tables and
//! clusters, swapped in atomically ([`state`]), and read lock-free by every request
//! ([`http`]). [`Proxy::bind`] then [`BoundProxy::run`] starts the whole thing.

mod admin;
mod app;
pub mod compile;
pub mod config;
pub mod config_dump;
pub mod connection_limits;
pub mod control_plane;
pub mod drain;
mod dump;
pub mod filters;
pub mod headers;
mod http;
mod in_flight;
/// Request path normalization (Envoy's `normalize_path` and friends).
pub use http::path as http_path;
mod listeners;
pub mod rbac;
pub mod resource;
pub mod routing;
pub mod sds_agent;
mod snapshot;
mod state;
pub mod stats;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod xds;

pub use app::{BoundProxy, Proxy, ProxyError, ProxyHandle};
pub use config::{Backoff, NodeIdentity, ProxyConfig, XdsMode};
pub use connection_limits::ConnectionLimits;
