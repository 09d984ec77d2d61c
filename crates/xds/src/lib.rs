//! Envoy xDS for Bosun: per-proxy resources and the ADS server that delivers them.
//!
//! - [`node`]: who is asking ([`ProxyNode`], parsed from the xDS `Node`).
//! - [`resources`]: what a proxy is given ([`ResourceSet`]) and who makes it ([`Generator`]).
//! - [`translate`]: Istio resources -> Envoy resources for one proxy.

pub mod node;
pub mod resources;
pub mod translate;

pub use node::{NodeError, ProxyNode};
pub use resources::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, EmptyGenerator, Generator, LISTENER_TYPE_URL,
    ROUTE_TYPE_URL, ResourceSet, ResourceType,
};
