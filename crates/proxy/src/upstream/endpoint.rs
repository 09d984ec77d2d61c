//! Endpoints (one address, one connection pool) and the load-balanced sets of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::UpstreamBody;
use super::connector::{EndpointConnector, TlsConnect, UpstreamStream};
use super::hashing::{HashTable, HashingKind};
use super::outlier::EndpointHealth;
use super::pool::{PoolOptions, UpstreamProtocol};
use crate::telemetry::{PeerWorkload, Shared};

pub type UpstreamClient = Client<EndpointConnector, UpstreamBody>;

/// One endpoint as configured (healthy or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub address: SocketAddr,
    pub weight: u32,
    pub healthy: bool,
    pub health: String,
    /// What the cluster's transport socket matches read (`envoy.transport_socket_match`).
    pub socket_match: BTreeMap<String, String>,
    /// Who runs there (`istio.workload`), for the metrics of requests sent to it.
    pub workload: Option<Shared<PeerWorkload>>,
}

/// One upstream address with its own connection pool, active-request count and
/// outlier-detection state.
#[derive(Debug)]
pub struct Endpoint {
    pub address: SocketAddr,
    active: AtomicUsize,
    client: UpstreamClient,
    /// Keeps no connection: each request on it opens its own.
    fresh: UpstreamClient,
    /// Opens the connections of TCP proxying, one per downstream connection.
    connector: EndpointConnector,
    tls: Option<Arc<TlsConnect>>,
    workload: Option<Shared<PeerWorkload>>,
    health: EndpointHealth,
    /// When it joined the cluster (slow start counts from here).
    joined: Instant,
}

impl Endpoint {
    pub fn new(
        address: SocketAddr,
        pool: &PoolOptions,
        tls: Option<Arc<TlsConnect>>,
        workload: Option<Shared<PeerWorkload>>,
    ) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(pool.idle_timeout)
            .pool_timer(TokioTimer::new())
            .http2_only(pool.protocol == UpstreamProtocol::Http2)
            .set_host(false);
        if let Some(keepalive) = pool.http2_keepalive {
            builder
                .timer(TokioTimer::new())
                .http2_keep_alive_interval(keepalive.interval)
                .http2_keep_alive_timeout(keepalive.timeout)
                .http2_keep_alive_while_idle(true);
        }
        let connector = EndpointConnector::new(address, pool, tls.clone());
        let client = builder.build(connector.clone());
        let fresh = builder.pool_max_idle_per_host(0).build(connector.clone());
        Endpoint {
            address,
            active: AtomicUsize::new(0),
            client,
            fresh,
            connector,
            tls,
            workload,
            health: EndpointHealth::default(),
            joined: Instant::now(),
        }
    }

    /// Its consecutive errors and whether outlier detection has ejected it.
    pub fn health(&self) -> &EndpointHealth {
        &self.health
    }

    /// Who runs at this address, as its endpoint metadata says.
    pub fn workload(&self) -> Option<&Shared<PeerWorkload>> {
        self.workload.as_ref()
    }

    /// The endpoint's mutual TLS, when its transport socket is TLS.
    pub fn tls(&self) -> Option<&Arc<TlsConnect>> {
        self.tls.as_ref()
    }

    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// A client that sends each request on a new connection, for a request the pool's
    /// connection lost (it was closed under it).
    pub fn fresh_client(&self) -> &UpstreamClient {
        &self.fresh
    }

    /// A new connection to the endpoint, plaintext or mutual TLS as its transport says,
    /// for bytes proxied as they are.
    pub async fn connect(&self) -> std::io::Result<UpstreamStream> {
        use tower::Service;
        let mut connector = self.connector.clone();
        let stream = connector.call(http::Uri::from_static("/")).await?;
        Ok(stream.into_inner())
    }

    /// How long it has been in the cluster.
    pub fn age(&self) -> std::time::Duration {
        self.joined.elapsed()
    }

    pub fn active_requests(&self) -> usize {
        self.active.load(Relaxed)
    }
}

/// Marks a request active on an endpoint until dropped (least-request reads this).
#[derive(Debug)]
pub struct ActiveRequest {
    endpoint: Arc<Endpoint>,
}

impl ActiveRequest {
    pub fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.active.fetch_add(1, Relaxed);
        ActiveRequest { endpoint }
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Relaxed);
    }
}

/// The healthy endpoints of a cluster with their weights, plus precomputed
/// structures so every policy picks in O(1) or O(log n) without locks.
#[derive(Debug, Default)]
pub struct EndpointSet {
    members: Vec<Arc<Endpoint>>,
    /// Weighted round-robin schedule (indices into `members`); empty when weights are equal.
    wheel: Vec<u32>,
    /// Cumulative weights for weighted random choice; empty when weights are equal.
    cumulative: Vec<u64>,
    /// The ring hash or maglev table of a hashing cluster.
    hashing: Option<HashTable>,
}

/// Longest weighted round-robin schedule kept; larger weight sums are scaled down.
const MAX_WHEEL: u64 = 1024;

impl EndpointSet {
    pub fn new(members: Vec<(Arc<Endpoint>, u32)>) -> Self {
        Self::hashed(members, None)
    }

    /// The set with the consistent-hashing table of `hashing` built over it.
    pub fn hashed(members: Vec<(Arc<Endpoint>, u32)>, hashing: Option<HashingKind>) -> Self {
        let hashing = hashing.and_then(|kind| {
            let addresses: Vec<(SocketAddr, u32)> =
                members.iter().map(|(e, w)| (e.address, *w)).collect();
            HashTable::build(kind, &addresses)
        });
        let weights: Vec<u64> = members
            .iter()
            .map(|(_, w)| u64::from((*w).max(1)))
            .collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let (wheel, cumulative) = if uniform {
            (Vec::new(), Vec::new())
        } else {
            let mut total = 0;
            let cumulative = weights
                .iter()
                .map(|w| {
                    total += w;
                    total
                })
                .collect();
            (smooth_wheel(&weights), cumulative)
        };
        EndpointSet {
            members: members.into_iter().map(|(e, _)| e).collect(),
            wheel,
            cumulative,
            hashing,
        }
    }

    /// The endpoint the hashing table gives `hash`, at the retry `attempt` (0 first);
    /// a random one when the set has no table.
    pub fn by_hash(&self, hash: u64, attempt: u32) -> Option<&Arc<Endpoint>> {
        match &self.hashing {
            Some(table) => self.members.get(table.lookup(hash, attempt)),
            None => self.random(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> &[Arc<Endpoint>] {
        &self.members
    }

    pub fn find(&self, address: SocketAddr) -> Option<&Arc<Endpoint>> {
        self.members.iter().find(|e| e.address == address)
    }

    pub fn round_robin(&self, cursor: &AtomicUsize) -> Option<&Arc<Endpoint>> {
        if self.members.is_empty() {
            return None;
        }
        let turn = cursor.fetch_add(1, Relaxed);
        let idx = if self.wheel.is_empty() {
            turn % self.members.len()
        } else {
            self.wheel[turn % self.wheel.len()] as usize
        };
        self.members.get(idx)
    }

    pub fn random(&self) -> Option<&Arc<Endpoint>> {
        if self.members.is_empty() {
            return None;
        }
        self.members.get(self.random_index())
    }

    fn random_index(&self) -> usize {
        match self.cumulative.last() {
            None => rand::random_range(0..self.members.len()),
            Some(&total) => {
                let point = rand::random_range(0..total);
                self.cumulative.partition_point(|&upper| upper <= point)
            }
        }
    }

    /// Power of two choices: the less busy of two random endpoints.
    pub fn least_request(&self) -> Option<&Arc<Endpoint>> {
        match self.members.len() {
            0 => None,
            1 => self.members.first(),
            n => {
                let first = self.random_index();
                let mut second = self.random_index();
                if second == first {
                    second = (first + 1 + rand::random_range(0..n - 1)) % n;
                }
                let (a, b) = (&self.members[first], &self.members[second]);
                Some(if b.active_requests() < a.active_requests() {
                    b
                } else {
                    a
                })
            }
        }
    }
}

/// nginx's smooth weighted round robin, unrolled into a fixed schedule so picking
/// is a single atomic increment.
fn smooth_wheel(weights: &[u64]) -> Vec<u32> {
    let gcd = weights.iter().copied().fold(0, gcd);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / gcd.max(1)).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_WHEEL {
        reduced = reduced
            .iter()
            .map(|w| (w * MAX_WHEEL / total).max(1))
            .collect();
    }
    let total: i64 = reduced.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; reduced.len()];
    let mut wheel = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in reduced.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        wheel.push(best as u32);
    }
    wheel
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn set(weights: &[u32]) -> EndpointSet {
        EndpointSet::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
                    (
                        Arc::new(Endpoint::new(
                            addr,
                            &PoolOptions::new(UpstreamProtocol::Http1, Duration::from_secs(1)),
                            None,
                            None,
                        )),
                        *w,
                    )
                })
                .collect(),
        )
    }

    fn port(e: &Arc<Endpoint>) -> u16 {
        e.address.port() - 10_000
    }

    #[tokio::test]
    async fn round_robin_alternates_evenly() {
        let s = set(&[1, 1, 1]);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<u16> = (0..6)
            .map(|_| port(s.round_robin(&cursor).expect("endpoint")))
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test]
    async fn weighted_round_robin_is_smooth() {
        let s = set(&[5, 1, 1]);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<u16> = (0..7)
            .map(|_| port(s.round_robin(&cursor).expect("endpoint")))
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[tokio::test]
    async fn least_request_prefers_the_idle_endpoint() {
        let s = set(&[1, 1]);
        let busy = s.members()[0].clone();
        let _held: Vec<ActiveRequest> = (0..3).map(|_| ActiveRequest::new(busy.clone())).collect();
        for _ in 0..50 {
            assert_eq!(port(s.least_request().expect("endpoint")), 1);
        }
    }

    #[tokio::test]
    async fn empty_set_picks_nothing() {
        let s = EndpointSet::default();
        assert!(s.round_robin(&AtomicUsize::new(0)).is_none());
        assert!(s.random().is_none());
        assert!(s.least_request().is_none());
    }
}
