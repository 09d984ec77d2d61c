//! The config store: applies xDS updates resource by resource, keeps what was
//! applied (with versions) for the ADS client and the admin API, and publishes an
//! immutable [`Snapshot`] that requests read lock-free.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster as ProtoCluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{Mutex, watch};

use crate::compile::{
    CompileError, ListenerSpec, compile_cluster, compile_endpoints, compile_listener,
    compile_route_config, decode_any,
};
use crate::config_dump::{ConfigDump, NackDump};
use crate::connection_limits::ConnectionLimits;
use crate::listeners::ListenerManager;
use crate::resource::ResourceType;
use crate::routing::RouteTable;
use crate::snapshot::Snapshot;
use crate::stats::StatsRegistry;
use crate::telemetry::Telemetry;
use crate::tls::TlsContexts;
use crate::upstream::{Cluster, EndpointSpec};

/// One resource from the control plane, still encoded.
#[derive(Debug, Clone)]
pub struct RawResource {
    /// Empty for state-of-the-world responses: the name is read from the resource.
    pub name: String,
    pub version: String,
    pub resource: Any,
}

/// One response's worth of changes for one type.
#[derive(Debug, Clone)]
pub struct Update {
    pub kind: ResourceType,
    pub resources: Vec<RawResource>,
    pub removed: Vec<String>,
    /// State of the world for a wildcard type: resources not listed are removed.
    pub full_state: bool,
}

#[derive(Debug, Clone)]
struct Applied<T> {
    version: String,
    value: T,
}

#[derive(Debug)]
struct Inner {
    listeners: BTreeMap<String, Applied<ListenerSpec>>,
    routes: BTreeMap<String, Applied<Arc<RouteTable>>>,
    clusters: BTreeMap<String, Applied<Arc<Cluster>>>,
    endpoints: BTreeMap<String, Applied<Vec<EndpointSpec>>>,
    /// Types for which at least one response was applied.
    received: BTreeSet<ResourceType>,
    nacks: BTreeMap<ResourceType, NackDump>,
    listener_manager: ListenerManager,
}

#[derive(Debug)]
pub struct ConfigStore {
    inner: Mutex<Inner>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stats: Arc<StatsRegistry>,
    tls: Arc<TlsContexts>,
    /// Where upstream connections leave from, for clusters that do not say.
    upstream_source: Option<std::net::IpAddr>,
    ready: watch::Sender<bool>,
    /// Shutting down: listeners drain, and `/ready` says so (Envoy's `DRAINING`).
    draining: std::sync::atomic::AtomicBool,
}

impl ConfigStore {
    /// The proxy's long-lived statistics.
    pub fn stats(&self) -> &Arc<StatsRegistry> {
        &self.stats
    }

    pub fn new(
        stats: Arc<StatsRegistry>,
        tls: Arc<TlsContexts>,
        telemetry: Arc<Telemetry>,
        drain_timeout: Duration,
        upstream_source: Option<std::net::IpAddr>,
        connection_limits: ConnectionLimits,
    ) -> Self {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        ConfigStore {
            inner: Mutex::new(Inner {
                listeners: BTreeMap::new(),
                routes: BTreeMap::new(),
                clusters: BTreeMap::new(),
                endpoints: BTreeMap::new(),
                received: BTreeSet::new(),
                nacks: BTreeMap::new(),
                listener_manager: ListenerManager::new(
                    snapshot.clone(),
                    Arc::clone(&tls),
                    telemetry,
                    drain_timeout,
                    connection_limits,
                ),
            }),
            snapshot,
            stats,
            tls,
            upstream_source,
            ready: watch::channel(false).0,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Becomes `true` once the first listeners and clusters, and the routes and
    /// endpoints they need, have been applied. Never goes back to `false`.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Applies what can be applied; every refused resource is returned with why.
    pub async fn apply(&self, update: Update) -> Vec<CompileError> {
        let mut inner = self.inner.lock().await;
        let errors = match update.kind {
            ResourceType::Cluster => self.apply_clusters(&mut inner, &update),
            ResourceType::Endpoints => apply_endpoints(&mut inner, &update),
            ResourceType::Listener => self.apply_listeners(&mut inner, &update),
            ResourceType::Route => apply_routes(&mut inner, &update),
        };
        inner.received.insert(update.kind);
        if errors.is_empty() {
            inner.nacks.remove(&update.kind);
        } else {
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let at_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            inner
                .nacks
                .insert(update.kind, NackDump { message, at_unix });
        }
        prune_unreferenced(&mut inner);
        self.publish(&inner);
        errors
    }

    /// Route configuration names the listeners need, and EDS service names the
    /// clusters need: what the ADS client subscribes to.
    pub async fn wanted(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let inner = self.inner.lock().await;
        (wanted_routes(&inner), wanted_endpoints(&inner))
    }

    /// Versions of the resources held, for delta `initial_resource_versions`.
    pub async fn versions(&self, kind: ResourceType) -> HashMap<String, String> {
        let inner = self.inner.lock().await;
        fn collect<T>(map: &BTreeMap<String, Applied<T>>) -> HashMap<String, String> {
            map.iter()
                .map(|(k, v)| (k.clone(), v.version.clone()))
                .collect()
        }
        match kind {
            ResourceType::Listener => collect(&inner.listeners),
            ResourceType::Route => collect(&inner.routes),
            ResourceType::Cluster => collect(&inner.clusters),
            ResourceType::Endpoints => collect(&inner.endpoints),
        }
    }

    pub async fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.inner.lock().await.listener_manager.bound_address(name)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drains every listener gracefully for up to `period`; `false` if requests were
    /// left in flight at the end.
    pub async fn shutdown(&self, period: Duration) -> bool {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .lock()
            .await
            .listener_manager
            .shutdown(period)
            .await
    }

    pub async fn dump(&self) -> ConfigDump {
        let inner = self.inner.lock().await;
        crate::dump::build(
            self.is_ready(),
            inner.listeners.iter().map(|(n, a)| {
                (
                    n.as_str(),
                    a.version.as_str(),
                    &a.value,
                    inner.listener_manager.bound_address(n),
                )
            }),
            inner
                .routes
                .values()
                .map(|a| (a.version.as_str(), a.value.as_ref())),
            inner
                .clusters
                .values()
                .map(|a| (a.version.as_str(), a.value.as_ref()))
                .collect(),
            inner
                .endpoints
                .iter()
                .map(|(n, a)| (n.as_str(), a.version.as_str(), a.value.as_slice())),
            inner.nacks.clone(),
        )
    }

    fn publish(&self, inner: &Inner) {
        let snapshot = Snapshot {
            routes: inner
                .routes
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            clusters: inner
                .clusters
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        };
        self.snapshot.store(Arc::new(snapshot));
        self.update_readiness(inner);
    }

    /// Ready once the first config is complete and, when it uses mutual TLS, the
    /// workload certificate is there too.
    fn update_readiness(&self, inner: &Inner) {
        if self.is_ready() || !is_complete(inner) {
            return;
        }
        if uses_tls(inner) && self.tls.certificates().current().is_none() {
            tracing::info!("configuration applied; waiting for the workload certificate");
            return;
        }
        tracing::info!("initial configuration applied; proxy is ready");
        self.ready.send_replace(true);
    }

    /// Re-evaluates readiness after something outside the config changed (the
    /// workload certificate arrived).
    pub async fn recheck_readiness(&self) {
        let inner = self.inner.lock().await;
        self.update_readiness(&inner);
    }

    fn apply_clusters(&self, inner: &mut Inner, update: &Update) -> Vec<CompileError> {
        let mut errors = Vec::new();
        let mut present = BTreeSet::new();
        for raw in &update.resources {
            let decoded = decode::<ProtoCluster>(raw, ResourceType::Cluster, |c| &c.name);
            let (name, proto) = match decoded {
                Ok(ok) => ok,
                Err(e) => {
                    present.insert(e.name.clone());
                    errors.push(e);
                    continue;
                }
            };
            present.insert(name.clone());
            let spec = match compile_cluster(&proto) {
                Ok(mut spec) => {
                    spec.pool.source_ip = spec.pool.source_ip.or(self.upstream_source);
                    spec
                }
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let version = raw.version.clone();
            // Same settings: keep the running cluster, its pools and endpoints.
            if let Some(existing) = inner.clusters.get_mut(&name)
                && existing.value.spec == spec
            {
                existing.version = version;
                continue;
            }
            let cluster = Cluster::new(spec, self.stats.cluster(&name), &self.tls);
            if let Some(service) = cluster.eds_service_name()
                && let Some(endpoints) = inner.endpoints.get(service)
            {
                cluster.set_endpoints(&endpoints.value);
            }
            let cluster = Arc::new(cluster);
            cluster.start_resolving();
            inner.clusters.insert(
                name,
                Applied {
                    version,
                    value: cluster,
                },
            );
        }
        remove_missing(&mut inner.clusters, update, &present);
        errors
    }

    fn apply_listeners(&self, inner: &mut Inner, update: &Update) -> Vec<CompileError> {
        let mut errors = Vec::new();
        let mut present = BTreeSet::new();
        for raw in &update.resources {
            let (name, proto) = match decode::<Listener>(raw, ResourceType::Listener, |l| &l.name) {
                Ok(ok) => ok,
                Err(e) => {
                    present.insert(e.name.clone());
                    errors.push(e);
                    continue;
                }
            };
            present.insert(name.clone());
            let spec = match compile_listener(&proto) {
                Ok(spec) => spec,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let stats = self.stats.listener(&name);
            if let Err(reason) = inner.listener_manager.upsert(spec.clone(), stats) {
                errors.push(CompileError::new(ResourceType::Listener, &name, reason));
                continue;
            }
            inner.listeners.insert(
                name,
                Applied {
                    version: raw.version.clone(),
                    value: spec,
                },
            );
        }
        let before: Vec<String> = inner.listeners.keys().cloned().collect();
        remove_missing(&mut inner.listeners, update, &present);
        for name in before {
            if !inner.listeners.contains_key(&name) {
                inner.listener_manager.remove(&name);
            }
        }
        errors
    }
}

fn apply_routes(inner: &mut Inner, update: &Update) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let mut present = BTreeSet::new();
    for raw in &update.resources {
        let result = decode::<RouteConfiguration>(raw, ResourceType::Route, |r| &r.name)
            .and_then(|(name, proto)| Ok((name, compile_route_config(&proto)?)));
        match result {
            Ok((name, table)) => {
                present.insert(name.clone());
                inner.routes.insert(
                    name,
                    Applied {
                        version: raw.version.clone(),
                        value: Arc::new(table),
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    remove_missing(&mut inner.routes, update, &present);
    errors
}

fn apply_endpoints(inner: &mut Inner, update: &Update) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let mut present = BTreeSet::new();
    for raw in &update.resources {
        let result =
            decode::<ClusterLoadAssignment>(raw, ResourceType::Endpoints, |c| &c.cluster_name)
                .and_then(|(name, proto)| Ok((name, compile_endpoints(&proto)?)));
        match result {
            Ok((name, endpoints)) => {
                present.insert(name.clone());
                for applied in inner.clusters.values() {
                    if applied.value.eds_service_name() == Some(name.as_str()) {
                        applied.value.set_endpoints(&endpoints);
                    }
                }
                inner.endpoints.insert(
                    name,
                    Applied {
                        version: raw.version.clone(),
                        value: endpoints,
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    for name in &update.removed {
        for applied in inner.clusters.values() {
            if applied.value.eds_service_name() == Some(name.as_str()) {
                applied.value.set_endpoints(&[]);
            }
        }
    }
    remove_missing(&mut inner.endpoints, update, &present);
    errors
}

/// Drops explicitly removed resources, and for state-of-the-world updates every
/// resource the response did not list.
fn remove_missing<T>(
    map: &mut BTreeMap<String, Applied<T>>,
    update: &Update,
    present: &BTreeSet<String>,
) {
    for name in &update.removed {
        map.remove(name);
    }
    if update.full_state {
        map.retain(|name, _| present.contains(name));
    }
}

/// Routes and endpoints nobody references any more are forgotten (their
/// subscriptions are dropped too).
fn prune_unreferenced(inner: &mut Inner) {
    if inner.received.contains(&ResourceType::Listener) {
        let wanted = wanted_routes(inner);
        inner.routes.retain(|name, _| wanted.contains(name));
    }
    if inner.received.contains(&ResourceType::Cluster) {
        let wanted = wanted_endpoints(inner);
        inner.endpoints.retain(|name, _| wanted.contains(name));
    }
}

fn wanted_routes(inner: &Inner) -> BTreeSet<String> {
    inner
        .listeners
        .values()
        .flat_map(|l| l.value.rds_names().map(str::to_owned))
        .collect()
}

fn wanted_endpoints(inner: &Inner) -> BTreeSet<String> {
    inner
        .clusters
        .values()
        .filter_map(|c| c.value.eds_service_name().map(str::to_owned))
        .collect()
}

fn uses_tls(inner: &Inner) -> bool {
    inner
        .listeners
        .values()
        .any(|listener| listener.value.tls_chain.is_some())
        || inner.clusters.values().any(|cluster| {
            let transport = &cluster.value.spec.transport;
            let mesh = |tls: &Option<crate::compile::UpstreamTls>| {
                tls.as_ref()
                    .is_some_and(crate::compile::UpstreamTls::is_mesh)
            };
            mesh(&transport.default) || transport.matches.iter().any(|(_, tls)| mesh(tls))
        })
}

fn is_complete(inner: &Inner) -> bool {
    inner.received.contains(&ResourceType::Listener)
        && inner.received.contains(&ResourceType::Cluster)
        && wanted_routes(inner)
            .iter()
            .all(|r| inner.routes.contains_key(r))
        && wanted_endpoints(inner)
            .iter()
            .all(|e| inner.endpoints.contains_key(e))
}

/// Decodes a resource and settles its name (delta gives it; SotW carries it inside).
fn decode<M: prost::Message + Default>(
    raw: &RawResource,
    kind: ResourceType,
    name_of: impl Fn(&M) -> &String,
) -> Result<(String, M), CompileError> {
    let message: M = decode_any(&raw.resource, kind.type_url())
        .map_err(|reason| CompileError::new(kind, raw.name.clone(), reason))?;
    let name = if raw.name.is_empty() {
        name_of(&message).clone()
    } else {
        raw.name.clone()
    };
    Ok((name, message))
}
