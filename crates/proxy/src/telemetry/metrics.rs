//! Istio's standard HTTP metrics: `istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes` and
//! `istio_response_bytes`, one series per label set.
//!
//! A request is recorded once, when its response ends: one map lookup under an
//! uncontended lock, then atomics. Scrapes encode through prometheus-client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;

use super::labels::{PeerWorkload, Principal, ServiceLabels, Shared, UNKNOWN};

/// Which proxy reports: the client's sidecar (`source`) or the server's (`destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    Http,
    Grpc,
}

impl RequestProtocol {
    fn as_str(self) -> &'static str {
        match self {
            RequestProtocol::Http => "http",
            RequestProtocol::Grpc => "grpc",
        }
    }
}

/// Istio's `connection_security_policy`: known only to the server's sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    MutualTls,
    None,
    Unknown,
}

impl SecurityPolicy {
    fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::MutualTls => "mutual_tls",
            SecurityPolicy::None => "none",
            SecurityPolicy::Unknown => UNKNOWN,
        }
    }
}

/// Envoy's response flags, as far as the proxy sets them; `-` when none applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseFlag {
    #[default]
    None,
    /// NR: no route matched.
    NoRoute,
    /// NC: the route's cluster is not known.
    NoCluster,
    /// UH: no healthy upstream endpoint.
    NoHealthyUpstream,
    /// UF: the upstream connection failed.
    UpstreamConnectFailure,
    /// UT: the upstream request timed out.
    UpstreamTimeout,
    /// UC: the upstream connection ended before a response.
    UpstreamReset,
    /// DC: the downstream went away before the response ended.
    DownstreamDisconnect,
    /// UO: the cluster's circuit breaker refused the request.
    UpstreamOverflow,
    /// URX: the request would have been retried, but no retry was left.
    UpstreamRetryLimitExceeded,
    /// FI: the fault filter aborted the request.
    FaultInjected,
    /// DI: the fault filter delayed the request.
    DelayInjected,
    /// UAEX: the external authorizer denied the request (or could not be asked).
    UnauthorizedExternalService,
    /// DPE: the downstream request broke HTTP (an invalid chunked body, say).
    DownstreamProtocolError,
}

impl ResponseFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoCluster => "NC",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectFailure => "UF",
            ResponseFlag::UpstreamTimeout => "UT",
            ResponseFlag::UpstreamReset => "UC",
            ResponseFlag::DownstreamDisconnect => "DC",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
        }
    }
}

/// One series' labels: Istio's standard label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    pub reporter: Reporter,
    pub source: Shared<PeerWorkload>,
    pub source_principal: Option<Principal>,
    pub destination: Shared<PeerWorkload>,
    pub destination_principal: Option<Principal>,
    pub service: Shared<ServiceLabels>,
    pub protocol: RequestProtocol,
    pub response_code: u16,
    /// gRPC's status code, for gRPC requests that carried one.
    pub grpc_status: Option<u32>,
    pub flag: ResponseFlag,
    pub security: SecurityPolicy,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        fn principal(p: &Option<Principal>) -> &str {
            p.as_deref().unwrap_or(UNKNOWN)
        }
        let (source, destination) = (&*self.source, &*self.destination);
        let code = self.response_code.to_string();
        let grpc = self.grpc_status.map(|s| s.to_string()).unwrap_or_default();
        let pairs: [(&str, &str); 25] = [
            ("reporter", self.reporter.as_str()),
            ("source_workload", &source.name),
            ("source_canonical_service", &source.canonical_service),
            ("source_canonical_revision", &source.canonical_revision),
            ("source_workload_namespace", &source.namespace),
            ("source_principal", principal(&self.source_principal)),
            ("source_app", &source.app),
            ("source_version", &source.version),
            ("source_cluster", &source.cluster),
            ("destination_workload", &destination.name),
            ("destination_workload_namespace", &destination.namespace),
            (
                "destination_principal",
                principal(&self.destination_principal),
            ),
            ("destination_app", &destination.app),
            ("destination_version", &destination.version),
            ("destination_service", &self.service.host),
            (
                "destination_canonical_service",
                &destination.canonical_service,
            ),
            (
                "destination_canonical_revision",
                &destination.canonical_revision,
            ),
            ("destination_service_name", &self.service.name),
            ("destination_service_namespace", &self.service.namespace),
            ("destination_cluster", &destination.cluster),
            ("request_protocol", self.protocol.as_str()),
            ("response_code", &code),
            ("grpc_response_status", &grpc),
            ("response_flags", self.flag.as_str()),
            ("connection_security_policy", self.security.as_str()),
        ];
        for pair in pairs {
            pair.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Envoy's default histogram buckets, which Istio's sidecars use for the duration and
/// both size histograms unless a workload asks for others.
const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A histogram over [`BUCKETS`] of whole numbers (milliseconds or bytes, as Envoy
/// records them): counts per bucket, the last one open, and the sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: u64) {
        let index = BUCKETS.partition_point(|&bound| bound < value as f64);
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// `(upper bound, count in this bucket)` pairs ending at +Inf (the encoder makes
    /// them cumulative), the sum and the count.
    fn read(&self) -> HistogramReading {
        let bounds = BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (buckets, self.sum.load(Relaxed) as f64, count)
    }
}

/// A histogram's buckets (upper bound, count), sum and count, as encoders take them.
type HistogramReading = (Vec<(f64, u64)>, f64, u64);
type ReadHistogram = fn(&RequestSeries) -> HistogramReading;

/// Everything recorded for one label set.
#[derive(Debug)]
struct RequestSeries {
    requests: AtomicU64,
    duration_ms: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Default for RequestSeries {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            duration_ms: Histogram::default(),
            request_bytes: Histogram::default(),
            response_bytes: Histogram::default(),
        }
    }
}

/// One finished request, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample {
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The proxy's Istio metrics: every series it has recorded, kept for its lifetime.
#[derive(Debug, Default)]
pub struct IstioMetrics {
    series: Mutex<HashMap<RequestLabels, Arc<RequestSeries>>>,
}

impl IstioMetrics {
    pub fn record(&self, labels: RequestLabels, sample: RequestSample) {
        let series = {
            let mut map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(labels).or_default())
        };
        series.requests.fetch_add(1, Relaxed);
        // Envoy records whole milliseconds, truncated.
        let ms = u64::try_from(sample.duration.as_millis()).unwrap_or(u64::MAX);
        series.duration_ms.observe(ms);
        series.request_bytes.observe(sample.request_bytes);
        series.response_bytes.observe(sample.response_bytes);
    }

    /// How many requests carry exactly these labels (for tests and debugging).
    pub fn requests(&self, labels: &RequestLabels) -> u64 {
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(labels)
            .map_or(0, |series| series.requests.load(Relaxed))
    }

    fn series(&self) -> Vec<(RequestLabels, Arc<RequestSeries>)> {
        let map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(labels, series)| (labels.clone(), Arc::clone(series)))
            .collect()
    }
}

impl Collector for IstioMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.series();
        if series.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "istio_requests",
            "Requests, counted when their response ends",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in &series {
            family
                .encode_family(labels)?
                .encode_counter::<RequestLabels, u64, f64>(&s.requests.load(Relaxed), None)?;
        }
        let histograms: [(&str, &str, ReadHistogram); 3] = [
            (
                "istio_request_duration_milliseconds",
                "Time from the request's start to its response's end, in milliseconds",
                |s| s.duration_ms.read(),
            ),
            (
                "istio_request_bytes",
                "Request sizes on the wire, headers included, in bytes",
                |s| s.request_bytes.read(),
            ),
            (
                "istio_response_bytes",
                "Response sizes on the wire, headers included, in bytes",
                |s| s.response_bytes.read(),
            ),
        ];
        for (name, help, read) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, s) in &series {
                let (buckets, sum, count) = read(s);
                family
                    .encode_family(labels)?
                    .encode_histogram::<RequestLabels>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::labels::{UNKNOWN_WORKLOAD, principal};
    use prometheus_client::registry::Registry;

    fn labels(code: u16) -> RequestLabels {
        RequestLabels {
            reporter: Reporter::Destination,
            source: UNKNOWN_WORKLOAD.clone(),
            source_principal: Some(principal("spiffe://cluster.local/ns/default/sa/client")),
            destination: UNKNOWN_WORKLOAD.clone(),
            destination_principal: None,
            service: ServiceLabels::of_host("reviews.default.svc.cluster.local"),
            protocol: RequestProtocol::Http,
            response_code: code,
            grpc_status: None,
            flag: ResponseFlag::None,
            security: SecurityPolicy::MutualTls,
        }
    }

    fn sample(ms: u64, bytes: u64) -> RequestSample {
        RequestSample {
            duration: Duration::from_millis(ms),
            request_bytes: 100,
            response_bytes: bytes,
        }
    }

    #[test]
    fn requests_with_equal_labels_share_a_series() {
        let metrics = IstioMetrics::default();
        metrics.record(labels(200), sample(3, 1024));
        metrics.record(labels(200), sample(7, 1024));
        metrics.record(labels(503), sample(1, 0));
        assert_eq!(metrics.requests(&labels(200)), 2);
        assert_eq!(metrics.requests(&labels(503)), 1);
        assert_eq!(metrics.requests(&labels(404)), 0);
    }

    #[test]
    fn exposition_uses_istio_names_labels_and_buckets() {
        let metrics = Arc::new(IstioMetrics::default());
        metrics.record(labels(200), sample(3, 1024));
        metrics.record(labels(200), sample(40, 1024));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&metrics)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        let counter = text
            .lines()
            .find(|line| line.starts_with("istio_requests_total{"))
            .expect("counter line");
        for label in [
            "reporter=\"destination\"",
            "source_principal=\"spiffe://cluster.local/ns/default/sa/client\"",
            "destination_principal=\"unknown\"",
            "destination_service=\"reviews.default.svc.cluster.local\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "connection_security_policy=\"mutual_tls\"",
            "grpc_response_status=\"\"",
        ] {
            assert!(counter.contains(label), "{label} missing in {counter}");
        }
        assert!(counter.ends_with(" 2"), "{counter}");
        let bucket = |name: &str, le: &str| {
            text.lines()
                .find(|line| line.starts_with(name) && line.contains(&format!("le=\"{le}\"")))
                .and_then(|line| line.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(
            bucket("istio_request_duration_milliseconds_bucket", "5").as_deref(),
            Some("1")
        );
        assert_eq!(
            bucket("istio_request_duration_milliseconds_bucket", "50").as_deref(),
            Some("2")
        );
        assert_eq!(
            bucket("istio_response_bytes_bucket", "1000").as_deref(),
            Some("0")
        );
        assert_eq!(
            bucket("istio_response_bytes_bucket", "10000").as_deref(),
            Some("2")
        );
        assert!(text.contains("istio_request_duration_milliseconds_sum{"));
    }
}
