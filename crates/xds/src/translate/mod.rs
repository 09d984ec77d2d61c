//! Istio's mesh model -> the Envoy v3 resources one proxy needs.
//!
//! One builder per resource type, each reading the immutable [`Snapshot`] and the
//! proxy's identity; names follow istiod's (docs/design/local-mesh.md).

mod clusters;
mod listeners;
mod names;
mod routes;

use std::sync::Arc;

use bosun_model::Snapshot;

use crate::{Generator, ProxyNode, ResourceSet};

pub use names::{inbound_cluster_name, outbound_cluster_name};

/// The port an app listens on for a workload port when the proxy does not say.
pub const DEFAULT_APP_PORT_OFFSET: u16 = 10000;

/// Turns one snapshot into resources for any proxy.
pub struct MeshGenerator {
    snapshot: Arc<Snapshot>,
}

impl MeshGenerator {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self { snapshot }
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}

impl Generator for MeshGenerator {
    fn generate(&self, node: &ProxyNode) -> ResourceSet {
        generate(&self.snapshot, node)
    }
}

/// Everything `node` should run with, given `snapshot`.
pub fn generate(snapshot: &Snapshot, node: &ProxyNode) -> ResourceSet {
    let outbound = clusters::outbound(snapshot);
    let inbound = listeners::inbound(snapshot, node);
    let mut set = ResourceSet {
        listeners: vec![listeners::virtual_outbound(node)],
        routes: vec![routes::outbound(snapshot, &node.namespace)],
        clusters: outbound.clusters,
        endpoints: outbound.endpoints,
    };
    for port in inbound {
        set.listeners.push(port.listener);
        set.clusters.push(port.cluster);
    }
    set
}

#[cfg(test)]
mod tests;
