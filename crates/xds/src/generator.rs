//! Who makes a proxy's resources: the [`Generator`] the server calls on every change,
//! and the [`IncrementalGenerator`] that lets a push cost the change, not the mesh.

use std::sync::Arc;

use crate::index::ResourceIndex;
use crate::node::ProxyNode;
use crate::resources::ResourceSet;
use crate::versioned::{EncodedSet, SharedChanges};

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
    /// The shared resources `node` is sent, indexed once: the same `Arc` for every proxy
    /// of the same scope (all of them, or those a Sidecar's egress admits).
    fn shared(&self, node: &ProxyNode) -> Arc<ResourceIndex>;
    /// What may have changed in `node`'s shared resources since `generation`, if this
    /// generator was built right after it and the proxy's scope did not change.
    fn shared_changes_since(&self, generation: u64, node: &ProxyNode) -> Option<&SharedChanges>;
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
