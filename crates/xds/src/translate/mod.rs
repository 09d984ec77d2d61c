//! Istio's mesh model -> the Envoy v3 resources one proxy needs.
//!
//! One builder per resource type, each reading the immutable [`Snapshot`] and the
//! proxy's identity; names follow istiod's (docs/design/local-mesh.md).

mod actions;
mod authentication;
mod authorization;
mod caller;
mod clusters;
mod connect;
mod destinations;
mod ext_authz;
mod listeners;
mod load_balancer;
mod matchers;
mod names;
mod passthrough;
mod resilience;
mod routes;
mod scope;
mod telemetry;
mod tls;
mod traffic_policy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bosun_model::{SidecarScope, Snapshot, SourceMatch};

use crate::index::ResourcesByName;
use crate::{
    EncodedSet, Generator, IncrementalGenerator, ProxyNode, ResourceIndex, ResourceSet,
    ResourceType, SharedChanges, TypedResource, VersionedResource,
};

pub use names::{inbound_cluster_name, outbound_cluster_name};
pub use tls::{ROOT_SECRET, SDS_CLUSTER, WORKLOAD_SECRET};

/// The trust domain of workload identities when the mesh does not name one (Istio's).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The port an app listens on for a workload port when the proxy does not say.
pub const DEFAULT_APP_PORT_OFFSET: u16 = 10000;

/// Turns one snapshot into resources for any proxy.
///
/// What every proxy shares (the outbound clusters and their endpoints, and the outbound
/// routes of each namespace) is translated and encoded once per snapshot and handed to
/// every proxy as the same `Arc`; only the listeners and inbound clusters are per proxy.
/// Resources equal to those of the previous snapshot keep their encoding and version.
pub struct MeshGenerator {
    generation: u64,
    /// The trust domain of the SPIFFE identities sidecars verify each other by.
    trust_domain: Arc<str>,
    /// The generation this one was built from, and what changed since it.
    changes: Option<(u64, SharedChanges)>,
    snapshot: Arc<Snapshot>,
    outbound_clusters: Vec<Arc<VersionedResource>>,
    outbound_endpoints: Vec<Arc<VersionedResource>>,
    /// The outbound clusters and endpoints, indexed once for every stream.
    shared: Arc<ResourceIndex>,
    /// The shared resources by service host, for Sidecar scopes; made on first use.
    by_host: OnceLock<scope::ByHost>,
    /// The shared resources as each Sidecar with egress hosts scopes them.
    scoped: Mutex<HashMap<SidecarScope, Arc<ResourceIndex>>>,
    /// The previous snapshot's Sidecars and root namespace: a proxy whose Sidecar is
    /// the same in both takes the shared changes; one whose Sidecar changed is compared
    /// in full.
    previous_sidecars: Option<(Vec<Arc<SidecarScope>>, String)>,
    /// The caller conditions of the mesh's VirtualService matches, in a stable order.
    source_matches: Vec<SourceMatch>,
    /// The outbound RouteConfiguration as each view sees it (its namespace, and which
    /// caller conditions admit it), made on first use.
    routes_by_view: Mutex<HashMap<String, Arc<VersionedResource>>>,
    /// The previous snapshot's routes, so unchanged ones keep their version.
    previous_routes: HashMap<String, Arc<VersionedResource>>,
}

impl MeshGenerator {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self::in_trust_domain(snapshot, DEFAULT_TRUST_DOMAIN)
    }

    /// The first generator of a mesh whose identities live in `trust_domain`.
    pub fn in_trust_domain(snapshot: Arc<Snapshot>, trust_domain: &str) -> Self {
        Self::build(snapshot, Arc::from(trust_domain), None)
    }

    /// Builds the generator for `snapshot`, reusing what `previous` encoded where the
    /// content did not change.
    pub fn with_previous(snapshot: Arc<Snapshot>, previous: Option<&MeshGenerator>) -> Self {
        let trust_domain = previous.map_or_else(
            || Arc::from(DEFAULT_TRUST_DOMAIN),
            |previous| Arc::clone(&previous.trust_domain),
        );
        Self::build(snapshot, trust_domain, previous)
    }

    fn build(
        snapshot: Arc<Snapshot>,
        trust_domain: Arc<str>,
        previous: Option<&MeshGenerator>,
    ) -> Self {
        let outbound = clusters::outbound(&snapshot, &trust_domain);
        // What the previous generator shared, by name: its index already holds it.
        let previous_of = |resource_type| {
            previous.map_or(&NO_RESOURCES, |previous: &MeshGenerator| {
                previous.shared.of(resource_type)
            })
        };
        let outbound_clusters = encode_reusing_all(
            outbound
                .clusters
                .into_iter()
                .map(|cluster| TypedResource::Cluster(Box::new(cluster))),
            previous_of(ResourceType::Cluster),
        );
        let outbound_endpoints = encode_reusing_all(
            outbound
                .endpoints
                .into_iter()
                .map(|assignment| TypedResource::Endpoint(Box::new(assignment))),
            previous_of(ResourceType::Endpoint),
        );
        let changes = previous.map(|previous| {
            (
                previous.generation,
                shared_changes(&previous.shared, &outbound_clusters, &outbound_endpoints),
            )
        });
        let previous_routes = previous
            .map(|p| {
                p.routes_by_view
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        let shared = Arc::new(ResourceIndex::new(EncodedSet {
            clusters: outbound_clusters.clone(),
            endpoints: outbound_endpoints.clone(),
            ..Default::default()
        }));
        let source_matches = snapshot.source_matches().into_iter().cloned().collect();
        let previous_sidecars = previous.map(|previous| {
            (
                previous.snapshot.sidecars().to_vec(),
                previous.snapshot.mesh().root_namespace.clone(),
            )
        });
        Self {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            by_host: OnceLock::new(),
            scoped: Mutex::new(HashMap::new()),
            previous_sidecars,
            source_matches,
            trust_domain,
            changes,
            snapshot,
            outbound_clusters,
            outbound_endpoints,
            shared,
            routes_by_view: Mutex::new(HashMap::new()),
            previous_routes,
        }
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The Sidecar that scopes what `node` is sent, if one with egress hosts applies.
    fn egress_scope(&self, node: &ProxyNode) -> Option<&Arc<SidecarScope>> {
        scope::egress_scope_in(&self.snapshot, node)
    }

    fn by_host(&self) -> &scope::ByHost {
        self.by_host
            .get_or_init(|| scope::ByHost::new(&self.outbound_clusters, &self.outbound_endpoints))
    }

    /// The shared resources `node` is sent: all of them, or its Sidecar's scope of them
    /// (the same `Arc` for every proxy under that Sidecar).
    fn shared_for(&self, node: &ProxyNode) -> Arc<ResourceIndex> {
        let Some(sidecar) = self.egress_scope(node) else {
            return Arc::clone(&self.shared);
        };
        let mut scoped = self.scoped.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = scoped.get(sidecar.as_ref()) {
            return Arc::clone(index);
        }
        let index = Arc::new(self.by_host().scoped_index(
            &self.snapshot,
            sidecar,
            &self.outbound_clusters,
            &self.outbound_endpoints,
        ));
        scoped.insert(sidecar.as_ref().clone(), Arc::clone(&index));
        index
    }

    fn outbound_route(&self, node: &ProxyNode) -> Arc<VersionedResource> {
        let caller = caller::Caller::of(&self.snapshot, node);
        let view = caller.view(&self.source_matches);
        let mut routes = self
            .routes_by_view
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get(&view) {
            return Arc::clone(route);
        }
        let typed = TypedResource::Route(Box::new(routes::outbound(&self.snapshot, caller)));
        let route = VersionedResource::encode_reusing(typed, self.previous_routes.get(&view));
        routes.insert(view, Arc::clone(&route));
        route
    }
}

impl Generator for MeshGenerator {
    fn generate(&self, node: &ProxyNode) -> ResourceSet {
        generate(&self.snapshot, node, &self.trust_domain)
    }

    fn generate_encoded(&self, node: &ProxyNode) -> EncodedSet {
        let mut set = match self.egress_scope(node) {
            Some(sidecar) => self.by_host().scoped(
                &self.snapshot,
                sidecar,
                &self.outbound_clusters,
                &self.outbound_endpoints,
            ),
            None => EncodedSet {
                clusters: self.outbound_clusters.clone(),
                endpoints: self.outbound_endpoints.clone(),
                ..Default::default()
            },
        };
        set.append(self.own(node));
        set
    }

    fn incremental(&self) -> Option<&dyn IncrementalGenerator> {
        Some(self)
    }
}

impl IncrementalGenerator for MeshGenerator {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn shared(&self, node: &ProxyNode) -> Arc<ResourceIndex> {
        self.shared_for(node)
    }

    /// The changes of every shared resource: a hint of names that may have changed, so
    /// they serve a scoped proxy too, as long as its Sidecar is the one it had.
    fn shared_changes_since(&self, generation: u64, node: &ProxyNode) -> Option<&SharedChanges> {
        let (previous, changes) = self.changes.as_ref()?;
        if *previous != generation {
            return None;
        }
        let (sidecars, root) = self.previous_sidecars.as_ref()?;
        let before = scope::egress_scope(sidecars, root, node);
        let now = self.egress_scope(node);
        (before.map(|s| s.as_ref()) == now.map(|s| s.as_ref())).then_some(changes)
    }

    fn own(&self, node: &ProxyNode) -> EncodedSet {
        let encode = |typed| Arc::new(VersionedResource::encode(typed));
        let mut set = EncodedSet {
            listeners: vec![encode(TypedResource::Listener(Box::new(
                listeners::virtual_outbound(&self.snapshot, node),
            )))],
            routes: vec![self.outbound_route(node)],
            ..Default::default()
        };
        for port in listeners::inbound(&self.snapshot, node) {
            set.listeners
                .push(encode(TypedResource::Listener(Box::new(port.listener))));
            set.clusters
                .push(encode(TypedResource::Cluster(Box::new(port.cluster))));
        }
        set
    }
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

static NO_RESOURCES: ResourcesByName = ResourcesByName::new();

/// Encodes each resource, reusing the encoding (and version) of the one of the same name
/// in `previous` when the content is the same.
fn encode_reusing_all(
    resources: impl Iterator<Item = TypedResource>,
    previous: &ResourcesByName,
) -> Vec<Arc<VersionedResource>> {
    // Not `collect`: collected from a `Vec` of typed messages, the pointers would be
    // written in place into that `Vec`'s allocation, sized for the messages (a `Cluster`
    // is 3 KiB: 55 MB kept for 10k clusters).
    let mut encoded = Vec::with_capacity(resources.size_hint().0);
    encoded.extend(resources.map(|typed| {
        let before = previous.get(typed.name());
        VersionedResource::encode_reusing(typed, before)
    }));
    encoded
}

/// The shared resources that differ between two generations (by identity: an unchanged
/// resource is carried over as the same `Arc`), and those that are gone.
fn shared_changes(
    previous: &ResourceIndex,
    clusters: &[Arc<VersionedResource>],
    endpoints: &[Arc<VersionedResource>],
) -> SharedChanges {
    let previous_clusters = previous.of(ResourceType::Cluster);
    let previous_endpoints = previous.of(ResourceType::Endpoint);
    let changed = |previous: &ResourcesByName, current: &[Arc<VersionedResource>]| {
        current
            .iter()
            .filter(|resource| {
                previous
                    .get(resource.name())
                    .is_none_or(|before| !Arc::ptr_eq(before, resource))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let gone = |previous: &ResourcesByName,
                current: &[Arc<VersionedResource>],
                resource_type: ResourceType| {
        let current: std::collections::HashSet<&str> =
            current.iter().map(|resource| resource.name()).collect();
        previous
            .keys()
            .filter(|name| !current.contains(name.as_str()))
            .map(|name| (resource_type, name.clone()))
            .collect::<Vec<_>>()
    };
    let mut removed = gone(previous_clusters, clusters, ResourceType::Cluster);
    removed.extend(gone(previous_endpoints, endpoints, ResourceType::Endpoint));
    SharedChanges {
        updated: EncodedSet {
            clusters: changed(previous_clusters, clusters),
            endpoints: changed(previous_endpoints, endpoints),
            ..Default::default()
        },
        removed,
    }
}

/// Everything `node` should run with, given `snapshot`.
pub fn generate(snapshot: &Snapshot, node: &ProxyNode, trust_domain: &str) -> ResourceSet {
    let mut outbound = clusters::outbound(snapshot, trust_domain);
    if let Some(sidecar) = scope::egress_scope_in(snapshot, node) {
        outbound
            .clusters
            .retain(|cluster| scope::admits_name(snapshot, sidecar, &cluster.name));
        outbound
            .endpoints
            .retain(|assignment| scope::admits_name(snapshot, sidecar, &assignment.cluster_name));
    }
    let inbound = listeners::inbound(snapshot, node);
    let mut set = ResourceSet {
        listeners: vec![listeners::virtual_outbound(snapshot, node)],
        routes: vec![routes::outbound(
            snapshot,
            caller::Caller::of(snapshot, node),
        )],
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
mod test_mesh;
#[cfg(test)]
mod tests;
