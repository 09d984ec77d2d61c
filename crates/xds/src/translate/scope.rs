//! A Sidecar's egress scope over the shared outbound clusters and endpoints: a proxy
//! under a Sidecar with egress hosts is sent only the service ports those admit. Every
//! proxy under the same Sidecar gets the same index, made once per snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bosun_model::{Hostname, SidecarScope, Snapshot};

use crate::index::ResourceIndex;
use crate::{EncodedSet, VersionedResource};

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
            match service_port(cluster.name()) {
                Some((port, host)) => by_host
                    .clusters
                    .entry(host)
                    .or_default()
                    .push((port, index)),
                None => by_host.unscoped_clusters.push(index),
            }
        }
        for (index, assignment) in endpoints.iter().enumerate() {
            if let Some((port, host)) = service_port(assignment.name()) {
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

/// Whether a proxy under `sidecar` is sent the cluster or load assignment `name`.
pub(super) fn admits_name(snapshot: &Snapshot, sidecar: &SidecarScope, name: &str) -> bool {
    match service_port(name) {
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

/// The service port and host of an outbound cluster or load assignment name
/// (`outbound|9080|v1|reviews.default.svc.cluster.local`).
fn service_port(name: &str) -> Option<(u16, Hostname)> {
    let mut parts = name.splitn(4, '|');
    if parts.next()? != "outbound" {
        return None;
    }
    let port = parts.next()?.parse().ok()?;
    let _subset = parts.next()?;
    Some((port, Hostname::new(parts.next()?)))
}
