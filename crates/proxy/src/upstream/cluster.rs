//! Clusters as the data path sees them: immutable settings plus a swappable
//! endpoint set, so EDS updates never rebuild the cluster or drop its pools.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::connector::TlsConnect;
use super::dns::{self, DnsDiscovery};
use super::endpoint::{Endpoint, EndpointSpec};
use super::hashing::HashingKind;
use super::limits::{
    Admitted, CircuitLimits, CircuitState, ConnectionSlot, Overflow, RetryAdmitted,
};
use super::membership::{Member, Membership, MembershipSettings};
use super::outlier::{Observation, OutlierSettings};
use super::pool::{PoolOptions, UpstreamProtocol};
use super::slow_start::SlowStart;
use crate::compile::{TransportSockets, UpstreamTls};
use crate::stats::ClusterStats;
use crate::telemetry::{ServiceLabels, Shared};
use crate::tls::TlsContexts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    /// RING_HASH or MAGLEV: the request's hash picks the endpoint.
    Hashing(HashingKind),
    /// The cluster names the endpoint (original destination).
    ClusterProvided,
}

impl LbPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::LeastRequest => "LEAST_REQUEST",
            LbPolicy::Random => "RANDOM",
            LbPolicy::Hashing(HashingKind::Ring { .. }) => "RING_HASH",
            LbPolicy::Hashing(HashingKind::Maglev { .. }) => "MAGLEV",
            LbPolicy::ClusterProvided => "CLUSTER_PROVIDED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Endpoints come inline with the cluster.
    Static(Vec<EndpointSpec>),
    /// Endpoints come from the ClusterLoadAssignment named `service_name`.
    Eds { service_name: String },
    /// Each request names its endpoint as `ip:port` in a header (`None`: the request's
    /// authority), Envoy's ORIGINAL_DST with `use_http_header`.
    OriginalDestination { header: Option<http::HeaderName> },
    /// Endpoints are the addresses the cluster's names resolve to (STRICT_DNS,
    /// LOGICAL_DNS), looked up by the proxy itself.
    Dns(DnsDiscovery),
}

/// Everything about a cluster except its EDS endpoints. Two equal specs mean the
/// cluster did not change, so its pools are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    /// The upstream protocol and how connections are made and kept.
    pub pool: PoolOptions,
    /// Plaintext or mutual TLS, per endpoint.
    pub transport: TransportSockets,
    /// The service the cluster was built for (`istio.services`), for metrics.
    pub service: Option<Shared<ServiceLabels>>,
    /// How many requests, retries and connections may be in flight at once.
    pub limits: CircuitLimits,
    /// Passive health checking; `None`: no endpoint is ever ejected.
    pub outlier: Option<OutlierSettings>,
    /// Below this percentage of serving endpoints, all of them take requests.
    pub panic_threshold: u32,
    /// New endpoints' weights grow over a window (round robin and least request).
    pub slow_start: Option<SlowStart>,
}

/// A request to an original-destination cluster that names no `ip:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoDestination;

/// Most endpoints an original-destination cluster keeps for the addresses requests name.
const MAX_NAMED_ENDPOINTS: usize = 1024;

/// Endpoint metadata a socket applies to, and the socket (`None`: plaintext).
type SocketMatch = (BTreeMap<String, String>, Option<Arc<TlsConnect>>);

#[derive(Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
    /// The TLS settings of `spec.transport`, made into rustls configs once.
    sockets: Vec<SocketMatch>,
    default_socket: Option<Arc<TlsConnect>>,
    endpoints: Arc<Membership>,
    /// The endpoints requests of an original-destination cluster have named.
    named: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    rr_cursor: AtomicUsize,
    circuit: CircuitState,
    /// For a DNS cluster: whether its first lookup is done (requests wait for it).
    first_lookup: Option<watch::Sender<bool>>,
    /// For a DNS cluster: the endpoints its names resolved to last, for the config dump.
    resolved: Mutex<Vec<EndpointSpec>>,
    pub stats: Arc<ClusterStats>,
}

impl Cluster {
    pub fn new(spec: ClusterSpec, stats: Arc<ClusterStats>, tls: &TlsContexts) -> Self {
        let connect = |upstream: &Option<UpstreamTls>| {
            upstream
                .as_ref()
                .map(|upstream| Arc::new(TlsConnect::new(tls, upstream, &spec.pool)))
        };
        let cluster = Cluster {
            sockets: spec
                .transport
                .matches
                .iter()
                .map(|(wanted, upstream)| (wanted.clone(), connect(upstream)))
                .collect(),
            default_socket: connect(&spec.transport.default),
            endpoints: Arc::new(Membership::new(
                MembershipSettings {
                    panic_threshold: spec.panic_threshold,
                    outlier: spec.outlier.clone(),
                    hashing: match spec.lb_policy {
                        LbPolicy::Hashing(kind) => Some(kind),
                        _ => None,
                    },
                    slow_start: spec.slow_start,
                },
                Arc::clone(&stats),
            )),
            named: Mutex::default(),
            rr_cursor: AtomicUsize::new(0),
            first_lookup: matches!(spec.discovery, Discovery::Dns(_))
                .then(|| watch::channel(false).0),
            resolved: Mutex::default(),
            circuit: CircuitState::new(&spec.limits, spec.pool.protocol == UpstreamProtocol::Http1),
            spec,
            stats,
        };
        if let Discovery::Static(endpoints) = &cluster.spec.discovery {
            let endpoints = endpoints.clone();
            cluster.set_endpoints(&endpoints);
        }
        cluster
    }

    /// Replaces the endpoints, keeping the existing endpoint (its pool, active-request
    /// count and outlier state) for every address that stays.
    pub fn set_endpoints(&self, endpoints: &[EndpointSpec]) {
        let current = self.endpoints.configured();
        let members = endpoints
            .iter()
            .map(|e| {
                let tls = self.socket_for(&e.socket_match);
                // An endpoint whose transport or workload changed gets a new pool.
                let endpoint = current
                    .iter()
                    .map(|member| &member.endpoint)
                    .find(|endpoint| endpoint.address == e.address)
                    .filter(|endpoint| same_socket(endpoint.tls(), tls.as_ref()))
                    .filter(|endpoint| endpoint.workload() == e.workload.as_ref())
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint::new(
                            e.address,
                            &self.spec.pool,
                            tls,
                            e.workload.clone(),
                        ))
                    });
                Member {
                    endpoint,
                    weight: e.weight,
                    healthy: e.healthy,
                }
            })
            .collect();
        self.endpoints.replace(members);
    }

    fn socket_for(&self, socket_match: &BTreeMap<String, String>) -> Option<Arc<TlsConnect>> {
        self.sockets
            .iter()
            .find(|(wanted, _)| wanted.iter().all(|(k, v)| socket_match.get(k) == Some(v)))
            .map_or(self.default_socket.as_ref(), |(_, tls)| tls.as_ref())
            .cloned()
    }

    /// The endpoints taking requests: healthy and not ejected (or all, in panic).
    pub fn healthy_endpoints(&self) -> usize {
        self.endpoints.active().len()
    }

    /// The endpoint the cluster's policy picks for the next request.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        self.pick_hashed(None, 0)
    }

    /// The endpoint for a request hashed to `hash` (by the route's hash policy), at the
    /// retry `attempt`. A hashing cluster picks at random for a request with no hash, as
    /// Envoy does; other clusters ignore the hash.
    fn pick_hashed(&self, hash: Option<u64>, attempt: u32) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.active();
        let picked = match self.spec.lb_policy {
            LbPolicy::RoundRobin => set.round_robin(&self.rr_cursor),
            LbPolicy::LeastRequest => set.least_request(),
            LbPolicy::Random => set.random(),
            LbPolicy::Hashing(_) => match hash {
                Some(hash) => set.by_hash(hash, attempt),
                None => set.random(),
            },
            LbPolicy::ClusterProvided => None,
        };
        picked.cloned()
    }

    /// For an original-destination cluster, the address a request names: `Ok(None)` for
    /// any other cluster, `Err` when the request names no `ip:port`.
    pub fn original_destination(
        &self,
        authority: &http::uri::Authority,
        headers: &http::HeaderMap,
    ) -> Result<Option<SocketAddr>, NoDestination> {
        let Discovery::OriginalDestination { header } = &self.spec.discovery else {
            return Ok(None);
        };
        let named = match header {
            None => Some(authority.as_str()),
            Some(name) => headers.get(name).and_then(|value| value.to_str().ok()),
        };
        named
            .and_then(|value| value.parse::<SocketAddr>().ok())
            .map(Some)
            .ok_or(NoDestination)
    }

    /// The endpoint at `address`, made on first use and kept for the next requests.
    pub fn endpoint_at(&self, address: SocketAddr) -> Arc<Endpoint> {
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(endpoint) = named.get(&address) {
            return Arc::clone(endpoint);
        }
        // Callers choose the addresses: keep a bounded set.
        if named.len() >= MAX_NAMED_ENDPOINTS {
            named.clear();
        }
        let endpoint = Arc::new(Endpoint::new(
            address,
            &self.spec.pool,
            self.default_socket.clone(),
            None,
        ));
        named.insert(address, Arc::clone(&endpoint));
        endpoint
    }

    /// The endpoint for a retry: one not tried yet when `avoid` is given, looked for with
    /// up to `attempts` picks of the cluster's policy (Envoy's previous-hosts predicate).
    /// Where Envoy then settles for a tried endpoint, this takes any endpoint not tried
    /// yet, so a retry never goes back to a dead endpoint while another one is left.
    /// A hashed request looks again with its hash changed per pick, as Envoy does.
    pub fn pick_avoiding(
        &self,
        avoid: &[SocketAddr],
        attempts: u32,
        hash: Option<u64>,
    ) -> Option<Arc<Endpoint>> {
        let mut picked = self.pick_hashed(hash, 0)?;
        if avoid.is_empty() {
            return Some(picked);
        }
        for attempt in 1..attempts.max(1) {
            if !avoid.contains(&picked.address) {
                return Some(picked);
            }
            picked = self.pick_hashed(hash, attempt)?;
        }
        if !avoid.contains(&picked.address) {
            return Some(picked);
        }
        let set = self.endpoints.active();
        let untried = set
            .members()
            .iter()
            .find(|endpoint| !avoid.contains(&endpoint.address));
        Some(untried.cloned().unwrap_or(picked))
    }

    /// Counts a request in against `max_requests`; `None` when the circuit is open.
    pub fn admit(&self) -> Option<Admitted> {
        self.circuit.admit(self.spec.limits.max_requests)
    }

    /// A connection slot for an attempt (HTTP/1.1 under `max_connections`), waiting in
    /// the pending queue when all are busy; `Err` when the queue is full too.
    pub async fn connection(&self) -> Result<Option<ConnectionSlot>, Overflow> {
        self.circuit.connection().await
    }

    /// What an attempt to `endpoint` came to, for outlier detection.
    pub fn observe(&self, endpoint: &Endpoint, observation: Observation) {
        if self.spec.outlier.is_some() {
            self.endpoints.observe(endpoint, observation);
        }
    }

    /// Counts a retry in against `max_retries`; `None` when too many are in flight.
    pub fn admit_retry(&self) -> Option<RetryAdmitted<'_>> {
        self.circuit.admit_retry(self.spec.limits.max_retries)
    }

    pub fn eds_service_name(&self) -> Option<&str> {
        match &self.spec.discovery {
            Discovery::Eds { service_name } => Some(service_name),
            Discovery::Static(_) | Discovery::OriginalDestination { .. } | Discovery::Dns(_) => {
                None
            }
        }
    }

    pub fn dns(&self) -> Option<&DnsDiscovery> {
        match &self.spec.discovery {
            Discovery::Dns(discovery) => Some(discovery),
            _ => None,
        }
    }

    /// Waits, at most `within`, for a DNS cluster's first lookup (Envoy warms such a
    /// cluster before using it); returns at once for every other cluster.
    pub async fn first_lookup_done(&self, within: Duration) {
        let Some(done) = &self.first_lookup else {
            return;
        };
        let mut done = done.subscribe();
        let _ = tokio::time::timeout(within, done.wait_for(|done| *done)).await;
    }

    /// Whether requests must wait for [`Cluster::first_lookup_done`]: a DNS cluster
    /// whose first lookup is not done yet.
    pub fn awaits_first_lookup(&self) -> bool {
        self.first_lookup
            .as_ref()
            .is_some_and(|done| !*done.borrow())
    }

    /// The endpoints a DNS cluster's names resolved to last.
    pub fn resolved_endpoints(&self) -> Vec<EndpointSpec> {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts resolving a DNS cluster's names, for as long as the cluster is in use:
    /// each answer replaces the endpoints when it differs from the last.
    pub fn start_resolving(self: &Arc<Self>) {
        let Some(discovery) = self.dns().cloned() else {
            return;
        };
        let cluster = Arc::downgrade(self);
        tokio::spawn(dns::keep_resolving(discovery, move |endpoints| {
            let Some(cluster) = cluster.upgrade() else {
                return false;
            };
            let mut resolved = cluster.resolved.lock().unwrap_or_else(|e| e.into_inner());
            if *resolved != endpoints {
                tracing::debug!(cluster = %cluster.spec.name, endpoints = endpoints.len(), "DNS answer changed the endpoints");
                cluster.set_endpoints(&endpoints);
                *resolved = endpoints;
            }
            drop(resolved);
            cluster.mark_resolved();
            true
        }));
    }

    fn mark_resolved(&self) {
        if let Some(done) = &self.first_lookup {
            done.send_replace(true);
        }
    }
}

fn same_socket(a: Option<&Arc<TlsConnect>>, b: Option<&Arc<TlsConnect>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}
