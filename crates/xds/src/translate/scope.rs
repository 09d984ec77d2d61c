//! A Sidecar's egress scope over the shared outbound clusters and endpoints: a proxy
//! under a Sidecar with egress hosts is sent only the service ports those admit. Every
//! proxy under the same Sidecar gets the same index, made once per snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bosun_model::{Hostname, SidecarScope, Snapshot};

use super::names::parse_outbound_cluster_name;
use crate::index::ResourceIndex;
use crate::{EncodedSet, ProxyNode, VersionedResource};

/// The shared resources by the service host they are for, read once from their names.
#[derive(Default)]
pub(super) struct ByHost {
    clusters: HashMap<Hostname, Vec<(u16, usize)>>,
    endpoints: HashMap<Hostname, Vec<(u16, usize)>>,
    /// Clusters for no service (PassthroughCluster): every proxy gets them.
    unscoped_clusters: Vec<usize>,
}

impl ByHost {
    pub fn new(clusters: &[Arc<VersionedResource>], endpoints: &[Arc<VersionedResource>]) -> Self {
        let mut by_host = ByHost::default();
        for (index, cluster) in clusters.iter().enumerate() {
            match parse_outbound_cluster_name(cluster.name()) {
                Some((port, host)) => by_host
                    .clusters
                    .entry(host)
                    .or_default()
                    .push((port, index)),
                None => by_host.unscoped_clusters.push(index),
            }
        }
        for (index, assignment) in endpoints.iter().enumerate() {
            if let Some((port, host)) = parse_outbound_cluster_name(assignment.name()) {
                by_host
                    .endpoints
                    .entry(host)
                    .or_default()
                    .push((port, index));
            }
        }
        by_host
    }

    /// The shared resources a proxy under `sidecar` is sent, indexed.
    pub fn scoped_index(
        &self,
        snapshot: &Snapshot,
        sidecar: &SidecarScope,
        clusters: &[Arc<VersionedResource>],
        endpoints: &[Arc<VersionedResource>],
    ) -> ResourceIndex {
        ResourceIndex::new(self.scoped(snapshot, sidecar, clusters, endpoints))
    }

    /// The shared resources a proxy under `sidecar` is sent.
    pub fn scoped(
        &self,
        snapshot: &Snapshot,
        sidecar: &SidecarScope,
        clusters: &[Arc<VersionedResource>],
        endpoints: &[Arc<VersionedResource>],
    ) -> EncodedSet {
        let mut set = EncodedSet {
            clusters: self
                .unscoped_clusters
                .iter()
                .map(|index| Arc::clone(&clusters[*index]))
                .collect(),
            ..Default::default()
        };
        let mut seen = BTreeSet::new();
        for service in candidates(snapshot, sidecar) {
            if !seen.insert(service.hostname.clone()) {
                continue;
            }
            let admitted = |entries: Option<&Vec<(u16, usize)>>| {
                entries
                    .into_iter()
                    .flatten()
                    .filter(|(port, _)| sidecar.admits(service, *port))
                    .map(|(_, index)| *index)
                    .collect::<Vec<_>>()
            };
            set.clusters.extend(
                admitted(self.clusters.get(&service.hostname))
                    .into_iter()
                    .map(|index| Arc::clone(&clusters[index])),
            );
            set.endpoints.extend(
                admitted(self.endpoints.get(&service.hostname))
                    .into_iter()
                    .map(|index| Arc::clone(&endpoints[index])),
            );
        }
        set
    }
}

/// The Sidecar with egress hosts that scopes what `node` is sent, among `sidecars` of a
/// mesh whose root namespace is `root_namespace`; `None`: it is sent everything.
pub(super) fn egress_scope<'s>(
    sidecars: &'s [Arc<SidecarScope>],
    root_namespace: &str,
    node: &ProxyNode,
) -> Option<&'s Arc<SidecarScope>> {
    bosun_model::scope::choose(sidecars, &node.namespace, &node.labels, root_namespace)
        .filter(|sidecar| sidecar.scopes_egress())
}

/// [`egress_scope`] in `snapshot`.
pub(super) fn egress_scope_in<'s>(
    snapshot: &'s Snapshot,
    node: &ProxyNode,
) -> Option<&'s Arc<SidecarScope>> {
    egress_scope(snapshot.sidecars(), &snapshot.mesh().root_namespace, node)
}

/// Whether a proxy under `sidecar` is sent the cluster or load assignment `name`.
pub(super) fn admits_name(snapshot: &Snapshot, sidecar: &SidecarScope, name: &str) -> bool {
    match parse_outbound_cluster_name(name) {
        None => true,
        Some((port, host)) => snapshot
            .service(&host)
            .is_some_and(|service| sidecar.admits(service, port)),
    }
}

/// The services worth asking the Sidecar about: those its exact hosts name, or every
/// service when a host is a wildcard.
fn candidates<'s>(
    snapshot: &'s Snapshot,
    sidecar: &SidecarScope,
) -> Box<dyn Iterator<Item = &'s Arc<bosun_model::Service>> + 's> {
    let hosts: Vec<&str> = sidecar
        .egress
        .iter()
        .flat_map(|listener| &listener.hosts)
        .map(|host| host.name.as_str())
        .collect();
    if hosts.iter().any(|name| name.contains('*')) {
        return Box::new(snapshot.services());
    }
    let named: Vec<&'s Arc<bosun_model::Service>> = hosts
        .into_iter()
        .filter_map(|name| snapshot.service(&Hostname::new(name)))
        .collect();
    Box::new(named.into_iter())
}
