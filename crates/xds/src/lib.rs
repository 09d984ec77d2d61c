//! Envoy xDS for Bosun: per-proxy resources and the ADS server that delivers them.
//!
//! - [`node`]: who is asking ([`ProxyNode`], parsed from the xDS `Node`).
//! - [`resources`]: what a proxy is given ([`ResourceSet`]); [`generator`]: who makes it
//!   ([`Generator`], and [`IncrementalGenerator`] for pushes that cost only the change).
//! - [`translate`]: Istio resources -> Envoy resources for one proxy.
//! - [`AdsServer`]: serves them over ADS, state-of-the-world and delta, and reports each
//!   proxy's sync state ([`status`]).
//! - [`bootstrap`]: the bootstrap that makes a real Envoy one of the mesh's proxies.

pub mod bootstrap;
mod connection;
mod delta;
mod frames;
pub mod generator;
mod index;
mod known;
pub mod node;
mod reply;
pub mod resources;
mod server;
mod sotw;
pub mod status;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod translate;
pub mod versioned;

pub use bootstrap::{EnvoySources, XdsSecurity, envoy_bootstrap, set_connection_limits};
pub use connection::StreamError;
pub use frames::AdsService;
pub use generator::{EmptyGenerator, Generator, IncrementalGenerator};
pub use index::ResourceIndex;
pub use node::{NodeError, ProxyNode};
pub use resources::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL, ResourceSet,
    ResourceType,
};
pub use server::AdsServer;
pub use status::{Nack, ProxySyncStatus, StreamKind, SyncState, TypeSyncStatus};
pub use versioned::{EncodedSet, SharedChanges, TypedResource, VersionedResource};
