//! The traffic part of `bosun up`'s live view: the traffic generators' `/stats`, merged
//! per service and version, as a table (a terminal) or one line per refresh (elsewhere).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use http::{HeaderMap, Uri};

use crate::sample::client::HttpClient;
use crate::sample::serve::error_chain;
use crate::sample::stats::{StatsSnapshot, TrafficStats};

/// One row: a (service, version) across every generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub service: String,
    pub version: String,
    pub stats: TrafficStats,
}

/// Reads the generators' statistics.
pub struct TrafficSources {
    addresses: Vec<SocketAddr>,
    client: HttpClient,
}

impl TrafficSources {
    pub fn new(addresses: Vec<SocketAddr>) -> Self {
        Self {
            addresses,
            client: HttpClient::new(None, Duration::from_millis(800)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The merged rows, and the generators that could not be read.
    pub async fn rows(&self) -> (Vec<Row>, Vec<String>) {
        let mut snapshots = Vec::new();
        let mut problems = Vec::new();
        for outcome in self.fetch().await {
            match outcome {
                Ok(snapshot) => snapshots.push(snapshot),
                Err(problem) => problems.push(problem),
            }
        }
        (merge(&snapshots), problems)
    }

    /// Each generator's snapshot, or why it could not be read.
    pub async fn fetch(&self) -> Vec<Result<StatsSnapshot, String>> {
        let fetches = self.addresses.iter().map(|address| async move {
            let url: Uri = format!("http://{address}/stats")
                .parse()
                .map_err(|error: http::uri::InvalidUri| error.to_string())?;
            let response = self
                .client
                .get(&url, HeaderMap::new())
                .await
                .map_err(|error| format!("{address}: {}", error_chain(&error)))?;
            serde_json::from_slice::<StatsSnapshot>(&response.body)
                .map_err(|error| format!("{address}: not statistics ({error})"))
        });
        futures::future::join_all(fetches).await
    }
}

/// Merges generators: requests and rates add up, the success rate is weighted by
/// requests, and latency percentiles take the worst generator's (percentiles of separate
/// samples cannot be combined exactly, and the worst is what needs seeing).
pub fn merge(snapshots: &[StatsSnapshot]) -> Vec<Row> {
    let mut rows: BTreeMap<(String, String), TrafficStats> = BTreeMap::new();
    for snapshot in snapshots {
        for service in &snapshot.services {
            let merged = rows
                .entry((service.service.clone(), service.version.clone()))
                .or_default();
            *merged = combine(merged, &service.traffic);
        }
    }
    rows.into_iter()
        .map(|((service, version), stats)| Row {
            service,
            version,
            stats,
        })
        .collect()
}

fn combine(a: &TrafficStats, b: &TrafficStats) -> TrafficStats {
    let requests = a.requests + b.requests;
    let successes =
        |stats: &TrafficStats| stats.success_rate.unwrap_or(0.0) * stats.requests as f64;
    let worst = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    TrafficStats {
        requests,
        requests_per_second: a.requests_per_second + b.requests_per_second,
        success_rate: (requests > 0).then(|| (successes(a) + successes(b)) / requests as f64),
        p50_ms: worst(a.p50_ms, b.p50_ms),
        p99_ms: worst(a.p99_ms, b.p99_ms),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", rate * 100.0))
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms"))
}

/// The table shown on a terminal.
pub fn render_table(rows: &[Row], problems: &[String]) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(["service", "version", "req/s", "success", "p50", "p99"]);
    for row in rows {
        table.add_row(vec![
            Cell::new(&row.service),
            Cell::new(&row.version),
            Cell::new(format!("{:.1}", row.stats.requests_per_second))
                .set_alignment(CellAlignment::Right),
            Cell::new(percent(row.stats.success_rate)).set_alignment(CellAlignment::Right),
            Cell::new(millis(row.stats.p50_ms)).set_alignment(CellAlignment::Right),
            Cell::new(millis(row.stats.p99_ms)).set_alignment(CellAlignment::Right),
        ]);
    }
    let mut text = table.to_string();
    if rows.is_empty() {
        text.push_str("\nwaiting for traffic...");
    }
    for problem in problems {
        text.push_str("\nstats unavailable: ");
        text.push_str(problem);
    }
    text
}

/// The one line printed per refresh when stdout is not a terminal.
pub fn render_line(rows: &[Row], problems: &[String]) -> String {
    let mut parts: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{} {} {:.1}/s {} p50 {} p99 {}",
                row.service,
                row.version,
                row.stats.requests_per_second,
                percent(row.stats.success_rate),
                millis(row.stats.p50_ms),
                millis(row.stats.p99_ms)
            )
        })
        .collect();
    if rows.is_empty() {
        parts.push("waiting for traffic".to_owned());
    }
    parts.extend(
        problems
            .iter()
            .map(|problem| format!("stats unavailable: {problem}")),
    );
    format!("traffic: {}", parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::stats::ServiceStats;

    fn stats(requests: u64, success_rate: f64, p99: f64) -> TrafficStats {
        TrafficStats {
            requests,
            requests_per_second: requests as f64 / 10.0,
            success_rate: Some(success_rate),
            p50_ms: Some(p99 / 2.0),
            p99_ms: Some(p99),
        }
    }

    fn snapshot(services: Vec<(&str, &str, TrafficStats)>) -> StatsSnapshot {
        StatsSnapshot {
            target: "http://productpage:9080/productpage".into(),
            window_seconds: 10.0,
            total: TrafficStats::default(),
            skipped: 0,
            services: services
                .into_iter()
                .map(|(service, version, traffic)| ServiceStats {
                    service: service.into(),
                    version: version.into(),
                    traffic,
                })
                .collect(),
            since_start: Default::default(),
        }
    }

    #[test]
    fn generators_merge_per_service_and_version() {
        let rows = merge(&[
            snapshot(vec![
                ("reviews", "v1", stats(100, 1.0, 10.0)),
                ("ratings", "v1", stats(50, 1.0, 2.0)),
            ]),
            snapshot(vec![("reviews", "v1", stats(100, 0.5, 30.0))]),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].service.as_str(), rows[0].version.as_str()),
            ("ratings", "v1")
        );
        let reviews = &rows[1].stats;
        assert_eq!(reviews.requests, 200);
        assert!((reviews.requests_per_second - 20.0).abs() < 1e-9);
        assert_eq!(reviews.success_rate, Some(0.75));
        assert_eq!(reviews.p99_ms, Some(30.0));
    }

    #[test]
    fn renders_a_table_and_a_line() {
        let rows = merge(&[snapshot(vec![("reviews", "v2", stats(200, 0.995, 12.34))])]);
        let table = render_table(&rows, &[]);
        assert!(table.contains("reviews"), "{table}");
        assert!(table.contains("20.0"), "{table}");
        assert!(table.contains("99.5%"), "{table}");
        assert!(table.contains("12.3ms"), "{table}");
        let line = render_line(&rows, &["127.0.10.100:15020: refused".into()]);
        assert_eq!(
            line,
            "traffic: reviews v2 20.0/s 99.5% p50 6.2ms p99 12.3ms | stats unavailable: 127.0.10.100:15020: refused"
        );
        assert_eq!(render_line(&[], &[]), "traffic: waiting for traffic");
    }
}
