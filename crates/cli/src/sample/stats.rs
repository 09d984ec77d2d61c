//! Rolling traffic statistics of the traffic generator: per (service, version) hop found in
//! the answers, over the last [`WINDOW`], and the JSON `GET /stats` serves (which `bosun up`
//! reads for its live table).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::report::{CallReport, EchoReport};

/// How far back the statistics look.
pub const WINDOW: Duration = Duration::from_secs(10);
const WINDOW_SECONDS: u64 = WINDOW.as_secs();

/// The version shown for a hop whose answer did not say (a proxy's error reply, a refused
/// connection).
pub const UNKNOWN_VERSION: &str = "-";

/// `GET /stats`: the last [`WINDOW`] of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub target: String,
    /// The span the rates are computed over: [`WINDOW`], or less right after start.
    pub window_seconds: f64,
    /// The target as the generator sees it.
    pub total: TrafficStats,
    /// Requests the generator did not send because `--concurrency` requests were still
    /// waiting for answers.
    pub skipped: u64,
    /// Each (service, version) found in the answers, latency as seen by its caller.
    pub services: Vec<ServiceStats>,
    /// Every request since the generator started, to count each failure in a long run.
    #[serde(default)]
    pub since_start: SinceStart,
}

/// Requests to the target since the generator started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinceStart {
    pub requests: u64,
    /// Answered other than 2xx, or not answered at all.
    pub failures: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub service: String,
    pub version: String,
    #[serde(flatten)]
    pub traffic: TrafficStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficStats {
    pub requests: u64,
    pub requests_per_second: f64,
    /// Fraction of requests answered 2xx; absent without requests.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One request's outcome at one hop.
#[derive(Debug, Clone, PartialEq)]
pub struct HopSample {
    pub service: String,
    pub version: String,
    pub success: bool,
    pub latency: Duration,
}

/// The hops of one answer: the target itself (as measured by the generator) and every
/// call in the tree below it (as measured by each caller).
pub fn hops_of_answer(
    target_host: &str,
    status: Option<u16>,
    latency: Duration,
    answer: Option<&EchoReport>,
) -> Vec<HopSample> {
    let success = status.is_some_and(|status| (200..300).contains(&status));
    let (service, version) = match answer {
        Some(report) => (report.service.clone(), report.version.clone()),
        None => (target_host.to_owned(), UNKNOWN_VERSION.to_owned()),
    };
    let mut hops = vec![HopSample {
        service,
        version,
        success,
        latency,
    }];
    if let Some(report) = answer {
        collect_calls(&report.calls, &mut hops);
    }
    hops
}

fn collect_calls(calls: &[CallReport], hops: &mut Vec<HopSample>) {
    for call in calls {
        let service = call.service.clone().unwrap_or_else(|| host_of(&call.url));
        hops.push(HopSample {
            service,
            version: call
                .version
                .clone()
                .unwrap_or_else(|| UNKNOWN_VERSION.to_owned()),
            success: call.succeeded(),
            latency: Duration::from_secs_f64(call.duration_ms.max(0.0) / 1000.0),
        });
        collect_calls(&call.calls, hops);
    }
}

fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

/// Counts kept per second, so the window can roll forward a second at a time.
#[derive(Debug)]
pub struct RollingStats {
    target: String,
    started: Instant,
    /// One slot per second of the window, indexed by `second % len`.
    slots: Vec<Slot>,
    since_start: SinceStart,
}

#[derive(Debug, Default)]
struct Slot {
    /// Seconds since start this slot holds; slots of older seconds are stale.
    second: u64,
    total: Counts,
    skipped: u64,
    hops: HashMap<(String, String), Counts>,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    requests: u64,
    successes: u64,
    latency: LatencyHistogram,
}

impl Counts {
    fn record(&mut self, success: bool, latency: Duration) {
        self.requests += 1;
        self.successes += u64::from(success);
        self.latency.record(latency);
    }

    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.latency.merge(&other.latency);
    }

    fn summarize(&self, window_seconds: f64) -> TrafficStats {
        let has_requests = self.requests > 0;
        TrafficStats {
            requests: self.requests,
            requests_per_second: if window_seconds > 0.0 {
                self.requests as f64 / window_seconds
            } else {
                0.0
            },
            success_rate: has_requests.then(|| self.successes as f64 / self.requests as f64),
            p50_ms: self.latency.quantile_ms(0.50),
            p99_ms: self.latency.quantile_ms(0.99),
        }
    }
}

impl RollingStats {
    pub fn new(target: String, started: Instant) -> Self {
        let slots = (0..WINDOW_SECONDS).map(|_| Slot::default()).collect();
        Self {
            target,
            started,
            slots,
            since_start: SinceStart::default(),
        }
    }

    /// Records one answered (or failed) request to the target, with its hops.
    pub fn record(
        &mut self,
        at: Instant,
        total_success: bool,
        total_latency: Duration,
        hops: &[HopSample],
    ) {
        self.since_start.requests += 1;
        self.since_start.failures += u64::from(!total_success);
        let slot = self.slot_at(at);
        slot.total.record(total_success, total_latency);
        for hop in hops {
            slot.hops
                .entry((hop.service.clone(), hop.version.clone()))
                .or_default()
                .record(hop.success, hop.latency);
        }
    }

    pub fn record_skipped(&mut self, at: Instant) {
        self.since_start.skipped += 1;
        self.slot_at(at).skipped += 1;
    }

    fn slot_at(&mut self, at: Instant) -> &mut Slot {
        let second = at.saturating_duration_since(self.started).as_secs();
        let index = (second % WINDOW_SECONDS) as usize;
        let slot = &mut self.slots[index];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }

    /// The statistics of the window ending at `now`: the current (partial) second and the
    /// full seconds before it.
    pub fn snapshot(&self, now: Instant) -> StatsSnapshot {
        let elapsed = now.saturating_duration_since(self.started);
        let current = elapsed.as_secs();
        let oldest = (current + 1).saturating_sub(WINDOW_SECONDS);
        let window_seconds = elapsed.as_secs_f64() - oldest as f64;

        let mut total = Counts::default();
        let mut skipped = 0;
        let mut hops: BTreeMap<(String, String), Counts> = BTreeMap::new();
        for slot in self
            .slots
            .iter()
            .filter(|slot| (oldest..=current).contains(&slot.second))
        {
            total.merge(&slot.total);
            skipped += slot.skipped;
            for (key, counts) in &slot.hops {
                hops.entry(key.clone()).or_default().merge(counts);
            }
        }
        StatsSnapshot {
            target: self.target.clone(),
            window_seconds,
            total: total.summarize(window_seconds),
            skipped,
            services: hops
                .into_iter()
                .map(|((service, version), counts)| ServiceStats {
                    service,
                    version,
                    traffic: counts.summarize(window_seconds),
                })
                .collect(),
            since_start: self.since_start,
        }
    }
}

/// Latencies in logarithmic buckets, each about 4% wide: constant memory however many
/// requests, mergeable, and precise enough for p50/p99.
#[derive(Debug, Default, Clone)]
struct LatencyHistogram {
    /// Bucket index -> count.
    buckets: BTreeMap<u16, u64>,
    count: u64,
}

const BUCKET_GROWTH: f64 = 1.04;

impl LatencyHistogram {
    fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let index = if micros < 1.0 {
            0
        } else {
            // Bucket i >= 1 holds [growth^(i-1), growth^i) microseconds.
            (micros.ln() / BUCKET_GROWTH.ln())
                .floor()
                .min(f64::from(u16::MAX - 1)) as u16
                + 1
        };
        *self.buckets.entry(index).or_default() += 1;
        self.count += 1;
    }

    fn merge(&mut self, other: &LatencyHistogram) {
        for (index, count) in &other.buckets {
            *self.buckets.entry(*index).or_default() += count;
        }
        self.count += other.count;
    }

    fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                // The bucket's geometric middle.
                let micros = if *index == 0 {
                    0.5
                } else {
                    BUCKET_GROWTH.powf(f64::from(*index) - 0.5)
                };
                return Some(micros / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(service: &str, version: &str, calls: Vec<CallReport>) -> EchoReport {
        EchoReport {
            service: service.into(),
            version: version.into(),
            workload: format!("{service}-{version}"),
            method: "GET".into(),
            path: "/".into(),
            host: service.into(),
            headers: Default::default(),
            protocol: "HTTP/1.1".into(),
            calls,
            error: None,
            tls: None,
            body_bytes: 0,
        }
    }

    fn call(
        service: Option<&str>,
        status: Option<u16>,
        ms: f64,
        calls: Vec<CallReport>,
    ) -> CallReport {
        CallReport {
            url: "http://ratings:9080/ratings".into(),
            status,
            service: service.map(Into::into),
            version: service.map(|_| "v1".into()),
            duration_ms: ms,
            calls,
            error: status
                .filter(|s| *s >= 300)
                .map(|s| format!("answered {s}")),
        }
    }

    #[test]
    fn every_hop_of_the_tree_is_counted() {
        let answer = report(
            "productpage",
            "v1",
            vec![
                call(Some("details"), Some(200), 2.0, vec![]),
                call(
                    Some("reviews"),
                    Some(200),
                    5.0,
                    vec![call(None, Some(503), 1.0, vec![])],
                ),
            ],
        );
        let hops = hops_of_answer(
            "productpage",
            Some(200),
            Duration::from_millis(9),
            Some(&answer),
        );
        let names: Vec<_> = hops
            .iter()
            .map(|hop| (hop.service.as_str(), hop.version.as_str(), hop.success))
            .collect();
        assert_eq!(
            names,
            vec![
                ("productpage", "v1", true),
                ("details", "v1", true),
                ("reviews", "v1", true),
                // No report came back: named after the URL's host.
                ("ratings", UNKNOWN_VERSION, false),
            ]
        );
    }

    #[test]
    fn the_window_rolls_and_rates_use_the_time_covered() {
        let start = Instant::now();
        let mut stats = RollingStats::new("http://productpage:9080/".into(), start);
        let hop = |version: &str, success| HopSample {
            service: "reviews".into(),
            version: version.into(),
            success,
            latency: Duration::from_millis(10),
        };
        for tenth in 0..20 {
            let at = start + Duration::from_millis(tenth * 100);
            stats.record(
                at,
                true,
                Duration::from_millis(10),
                &[hop("v1", tenth % 2 == 0)],
            );
        }
        let snapshot = stats.snapshot(start + Duration::from_secs(2));
        assert_eq!(snapshot.total.requests, 20);
        assert!((snapshot.window_seconds - 2.0).abs() < 1e-9);
        assert!((snapshot.total.requests_per_second - 10.0).abs() < 1e-9);
        let reviews = &snapshot.services[0];
        assert_eq!(
            (reviews.service.as_str(), reviews.version.as_str()),
            ("reviews", "v1")
        );
        assert_eq!(reviews.traffic.success_rate, Some(0.5));
        let p50 = reviews.traffic.p50_ms.unwrap();
        assert!((9.5..10.5).contains(&p50), "p50 {p50}");

        // Thirty seconds later the old seconds have left the window.
        let later = start + Duration::from_secs(30);
        stats.record_skipped(later);
        let snapshot = stats.snapshot(later);
        assert_eq!(snapshot.total.requests, 0);
        assert_eq!(snapshot.total.success_rate, None);
        assert_eq!(snapshot.skipped, 1);
        assert!(snapshot.services.is_empty());
        assert!((snapshot.window_seconds - WINDOW_SECONDS as f64 + 1.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut histogram = LatencyHistogram::default();
        for millis in 1..=100 {
            histogram.record(Duration::from_millis(millis));
        }
        let p50 = histogram.quantile_ms(0.5).unwrap();
        let p99 = histogram.quantile_ms(0.99).unwrap();
        assert!((48.0..52.0).contains(&p50), "p50 {p50}");
        assert!((95.0..103.0).contains(&p99), "p99 {p99}");
    }
}
