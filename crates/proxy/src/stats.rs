//! Lock-free counters per listener and per cluster, and a fixed-bucket latency
//! histogram. The request path only touches atomics; the registry's mutex is taken
//! when config is compiled and when the admin API reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Counts responses by status class.
#[derive(Debug, Default)]
pub struct ResponseClasses {
    pub rq_2xx: AtomicU64,
    pub rq_3xx: AtomicU64,
    pub rq_4xx: AtomicU64,
    pub rq_5xx: AtomicU64,
}

impl ResponseClasses {
    pub fn record(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.rq_2xx,
            300..=399 => &self.rq_3xx,
            400..=499 => &self.rq_4xx,
            _ => &self.rq_5xx,
        };
        counter.fetch_add(1, Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct ListenerStats {
    pub requests: AtomicU64,
    pub responses: ResponseClasses,
    pub no_route: AtomicU64,
    pub in_flight: AtomicI64,
    pub connections: AtomicU64,
    /// HTTP/2 connections closed for flooding PING or SETTINGS frames (Envoy's
    /// `http2.outbound_control_flood`).
    pub control_floods: AtomicU64,
    /// Downstream connections open now (`downstream_cx_active`).
    pub active_connections: AtomicU64,
    /// Connections closed at once for the listener's cap (`downstream_cx_overflow`).
    pub connection_overflows: AtomicU64,
    /// Connections closed at once for the proxy's global cap
    /// (`downstream_global_cx_overflow`).
    pub global_connection_overflows: AtomicU64,
}

#[derive(Debug, Default)]
pub struct ClusterStats {
    pub requests: AtomicU64,
    pub responses: ResponseClasses,
    pub connect_failures: AtomicU64,
    pub no_healthy_upstream: AtomicU64,
    pub timeouts: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Retries made (Envoy's `upstream_rq_retry`).
    pub retries: AtomicU64,
    /// Retries not made because too many were in flight (`upstream_rq_retry_overflow`).
    pub retry_overflows: AtomicU64,
    /// Requests refused by the circuit breaker (`upstream_rq_pending_overflow`).
    pub overflows: AtomicU64,
    /// Endpoints ejected by outlier detection (`outlier_detection.ejections_enforced_total`).
    pub ejections: AtomicU64,
    pub in_flight: AtomicI64,
    pub latency: Histogram,
}

/// Upper bounds of the latency buckets, in microseconds; the last bucket is open.
const BUCKET_BOUNDS_US: [u64; 18] = [
    250, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The `q` quantile (0..=1) in milliseconds, interpolated inside its bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (seen + count) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_US[i - 1] };
                let upper = BUCKET_BOUNDS_US.get(i).copied().unwrap_or(lower * 2);
                let within = (rank - seen as f64) / count as f64;
                let us = lower as f64 + within * (upper - lower) as f64;
                return Some(us / 1000.0);
            }
            seen += count;
        }
        None
    }

    pub fn mean_ms(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_us.load(Relaxed) as f64 / count as f64 / 1000.0)
    }
}

/// Hands out the long-lived stats object for each listener and cluster name, so
/// counters survive config updates.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    listeners: Mutex<BTreeMap<String, Arc<ListenerStats>>>,
    clusters: Mutex<BTreeMap<String, Arc<ClusterStats>>>,
    control_plane: Arc<ControlPlaneStats>,
}

/// The ADS connection, as Envoy's `control_plane.*` statistics show it.
#[derive(Debug, Default)]
pub struct ControlPlaneStats {
    connected: AtomicBool,
    /// Streams the control plane accepted.
    connects: AtomicU64,
    /// Streams that ended (the control plane went away, or the connection broke).
    disconnects: AtomicU64,
}

impl ControlPlaneStats {
    pub fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Relaxed);
        match (was, connected) {
            (false, true) => self.connects.fetch_add(1, Relaxed),
            (true, false) => self.disconnects.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    fn counters(&self) -> ControlPlaneCounters {
        ControlPlaneCounters {
            connected_state: u8::from(self.connected.load(Relaxed)),
            connects: self.connects.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
        }
    }
}

impl StatsRegistry {
    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        let mut map = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_default().clone()
    }

    pub fn control_plane(&self) -> Arc<ControlPlaneStats> {
        Arc::clone(&self.control_plane)
    }

    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_default().clone()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    ListenerCounters {
                        requests: s.requests.load(Relaxed),
                        responses: ClassCounters::of(&s.responses),
                        no_route: s.no_route.load(Relaxed),
                        in_flight: s.in_flight.load(Relaxed),
                        connections: s.connections.load(Relaxed),
                        control_floods: s.control_floods.load(Relaxed),
                        active_connections: s.active_connections.load(Relaxed),
                        connection_overflows: s.connection_overflows.load(Relaxed),
                        global_connection_overflows: s.global_connection_overflows.load(Relaxed),
                    },
                )
            })
            .collect();
        let clusters = self
            .clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    ClusterCounters {
                        requests: s.requests.load(Relaxed),
                        responses: ClassCounters::of(&s.responses),
                        connect_failures: s.connect_failures.load(Relaxed),
                        no_healthy_upstream: s.no_healthy_upstream.load(Relaxed),
                        timeouts: s.timeouts.load(Relaxed),
                        upstream_errors: s.upstream_errors.load(Relaxed),
                        retries: s.retries.load(Relaxed),
                        retry_overflows: s.retry_overflows.load(Relaxed),
                        overflows: s.overflows.load(Relaxed),
                        ejections: s.ejections.load(Relaxed),
                        in_flight: s.in_flight.load(Relaxed),
                        latency_ms: LatencySummary {
                            count: s.latency.count(),
                            mean: s.latency.mean_ms(),
                            p50: s.latency.quantile_ms(0.50),
                            p90: s.latency.quantile_ms(0.90),
                            p99: s.latency.quantile_ms(0.99),
                        },
                    },
                )
            })
            .collect();
        StatsSnapshot {
            listeners,
            clusters,
            control_plane: self.control_plane.counters(),
        }
    }
}

/// What `GET /stats` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub listeners: BTreeMap<String, ListenerCounters>,
    pub clusters: BTreeMap<String, ClusterCounters>,
    #[serde(default)]
    pub control_plane: ControlPlaneCounters,
}

/// Envoy's `control_plane.connected_state` (1 while an ADS stream is up) and how often
/// the stream came and went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlPlaneCounters {
    pub connected_state: u8,
    pub connects: u64,
    pub disconnects: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassCounters {
    #[serde(rename = "2xx")]
    pub rq_2xx: u64,
    #[serde(rename = "3xx")]
    pub rq_3xx: u64,
    #[serde(rename = "4xx")]
    pub rq_4xx: u64,
    #[serde(rename = "5xx")]
    pub rq_5xx: u64,
}

impl ClassCounters {
    fn of(c: &ResponseClasses) -> Self {
        ClassCounters {
            rq_2xx: c.rq_2xx.load(Relaxed),
            rq_3xx: c.rq_3xx.load(Relaxed),
            rq_4xx: c.rq_4xx.load(Relaxed),
            rq_5xx: c.rq_5xx.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerCounters {
    pub requests: u64,
    pub responses: ClassCounters,
    pub no_route: u64,
    pub in_flight: i64,
    pub connections: u64,
    #[serde(default)]
    pub control_floods: u64,
    #[serde(default)]
    pub active_connections: u64,
    #[serde(default)]
    pub connection_overflows: u64,
    #[serde(default)]
    pub global_connection_overflows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterCounters {
    pub requests: u64,
    pub responses: ClassCounters,
    pub connect_failures: u64,
    pub no_healthy_upstream: u64,
    pub timeouts: u64,
    pub upstream_errors: u64,
    #[serde(default)]
    pub retries: u64,
    #[serde(default)]
    pub retry_overflows: u64,
    #[serde(default)]
    pub overflows: u64,
    #[serde(default)]
    pub ejections: u64,
    pub in_flight: i64,
    pub latency_ms: LatencySummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl StatsSnapshot {
    /// Prometheus text exposition, with Envoy-like metric names.
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let control_plane = &self.control_plane;
        let _ = writeln!(
            out,
            "bosun_control_plane_connected_state {}",
            control_plane.connected_state
        );
        let _ = writeln!(
            out,
            "bosun_control_plane_connects_total {}",
            control_plane.connects
        );
        let _ = writeln!(
            out,
            "bosun_control_plane_disconnects_total {}",
            control_plane.disconnects
        );
        for (name, l) in &self.listeners {
            let _ = writeln!(
                out,
                "bosun_listener_requests_total{{listener=\"{name}\"}} {}",
                l.requests
            );
            for (class, v) in l.responses.pairs() {
                let _ = writeln!(
                    out,
                    "bosun_listener_responses_total{{listener=\"{name}\",class=\"{class}\"}} {v}"
                );
            }
            let _ = writeln!(
                out,
                "bosun_listener_no_route_total{{listener=\"{name}\"}} {}",
                l.no_route
            );
            let _ = writeln!(
                out,
                "bosun_listener_in_flight{{listener=\"{name}\"}} {}",
                l.in_flight
            );
            let _ = writeln!(
                out,
                "bosun_listener_http2_control_floods_total{{listener=\"{name}\"}} {}",
                l.control_floods
            );
            let _ = writeln!(
                out,
                "bosun_listener_connections_active{{listener=\"{name}\"}} {}",
                l.active_connections
            );
            let _ = writeln!(
                out,
                "bosun_listener_connection_overflows_total{{listener=\"{name}\",cap=\"listener\"}} {}",
                l.connection_overflows
            );
            let _ = writeln!(
                out,
                "bosun_listener_connection_overflows_total{{listener=\"{name}\",cap=\"global\"}} {}",
                l.global_connection_overflows
            );
        }
        for (name, c) in &self.clusters {
            let _ = writeln!(
                out,
                "bosun_cluster_requests_total{{cluster=\"{name}\"}} {}",
                c.requests
            );
            for (class, v) in c.responses.pairs() {
                let _ = writeln!(
                    out,
                    "bosun_cluster_responses_total{{cluster=\"{name}\",class=\"{class}\"}} {v}"
                );
            }
            let _ = writeln!(
                out,
                "bosun_cluster_connect_failures_total{{cluster=\"{name}\"}} {}",
                c.connect_failures
            );
            let _ = writeln!(
                out,
                "bosun_cluster_overflows_total{{cluster=\"{name}\"}} {}",
                c.overflows
            );
            let _ = writeln!(
                out,
                "bosun_cluster_ejections_total{{cluster=\"{name}\"}} {}",
                c.ejections
            );
            let _ = writeln!(
                out,
                "bosun_cluster_in_flight{{cluster=\"{name}\"}} {}",
                c.in_flight
            );
            for (q, v) in [("0.5", c.latency_ms.p50), ("0.99", c.latency_ms.p99)] {
                if let Some(v) = v {
                    let _ = writeln!(
                        out,
                        "bosun_cluster_latency_ms{{cluster=\"{name}\",quantile=\"{q}\"}} {v:.3}"
                    );
                }
            }
        }
        out
    }
}

impl ClassCounters {
    fn pairs(&self) -> [(&'static str, u64); 4] {
        [
            ("2xx", self.rq_2xx),
            ("3xx", self.rq_3xx),
            ("4xx", self.rq_4xx),
            ("5xx", self.rq_5xx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(800));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(40));
        }
        let p50 = h.quantile_ms(0.5).expect("samples");
        assert!((0.5..=1.0).contains(&p50), "p50 {p50}");
        let p99 = h.quantile_ms(0.99).expect("samples");
        assert!((20.0..=50.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }
}
