//! `bosun sample load`: the traffic generator.
//!
//! Sends `GET <target>` at a fixed rate (open loop: the schedule does not wait for
//! answers), with at most `--concurrency` requests outstanding; a tick that finds them all
//! busy is counted as skipped rather than queued, so a slow mesh cannot make the generator
//! grow without bound. Each answer's call tree feeds [`RollingStats`], served as JSON on
//! `--stats-listen` at `GET /stats`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::{self, HttpClient};
use super::duration::{parse_duration, parse_ratio};
use super::http_server::{self, Handler};
use super::report::EchoReport;
use super::stats::{RollingStats, StatsSnapshot, hops_of_answer};

/// The environment variable `bosun up` sets to tell a generator where to serve `/stats`.
pub const STATS_LISTEN_ENV: &str = "BOSUN_STATS_LISTEN";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to send requests to.
    #[arg(long, default_value = "http://productpage:9080/productpage")]
    target: Uri,
    /// Requests per second.
    #[arg(long, default_value_t = 20.0, value_parser = parse_rate)]
    rps: f64,
    /// Most requests waiting for an answer at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// A header to send, `name:value` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Fraction of requests that carry the `--header`s, between 0 and 1 (e.g. 0.3 sends
    /// `end-user: jason` on about a third of requests).
    #[arg(long, value_parser = parse_ratio, default_value = "1")]
    header_ratio: f64,
    /// How long to run [default: until stopped].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// HTTP proxy to send through (the sidecar's outbound listener) [default: $HTTP_PROXY].
    #[arg(long, value_name = "ADDRESS")]
    via: Option<String>,
    /// Serve `GET /stats` (JSON) on this address.
    #[arg(long, env = STATS_LISTEN_ENV, value_name = "ADDRESS")]
    stats_listen: Option<SocketAddr>,
    /// How long one request may take.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

/// The generator's settings, once parsed.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: Uri,
    pub rps: f64,
    pub concurrency: u32,
    pub headers: HeaderMap,
    pub header_ratio: f64,
    pub proxy: Option<Uri>,
    pub timeout: Duration,
}

/// Statistics shared by the request tasks and the `/stats` endpoint.
pub type SharedStats = Arc<Mutex<RollingStats>>;

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME:VALUE"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|error| format!("{name:?}: {error}"))?;
    let value =
        HeaderValue::try_from(value.trim()).map_err(|error| format!("{value:?}: {error}"))?;
    Ok((name, value))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = match args.via.or_else(client::proxy_from_environment) {
        Some(address) => client::parse_proxy(&address)?,
        None => None,
    };
    let config = LoadConfig {
        target: args.target,
        rps: args.rps,
        concurrency: args.concurrency,
        headers: args.headers.into_iter().collect(),
        header_ratio: args.header_ratio,
        proxy,
        timeout: args.timeout,
    };
    let stats: SharedStats = Arc::new(Mutex::new(RollingStats::new(
        config.target.to_string(),
        Instant::now().into_std(),
    )));
    if let Some(address) = args.stats_listen {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot serve statistics on {address}"))?;
        tracing::info!(%address, "serving statistics at GET /stats");
        tokio::spawn(serve_stats(listener, stats.clone()));
    }
    tracing::info!(
        target = %config.target,
        rps = config.rps,
        concurrency = config.concurrency,
        via = ?config.proxy.as_ref().map(Uri::to_string),
        "sending traffic"
    );
    let summaries = tokio::spawn(log_summaries(stats.clone()));
    let until = args.duration.map(|duration| Instant::now() + duration);
    generate(config, stats.clone(), until).await;
    summaries.abort();
    log_summary(&snapshot(&stats));
    Ok(())
}

/// Sends traffic until `until` (or forever), recording every outcome in `stats`.
pub async fn generate(config: LoadConfig, stats: SharedStats, until: Option<Instant>) {
    let client = HttpClient::new(config.proxy.clone(), config.timeout);
    let in_flight = Arc::new(Semaphore::new(config.concurrency as usize));
    let target_host = config.target.host().unwrap_or_default().to_owned();
    let config = Arc::new(config);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rps));
    // Catch up after a stall so the rate holds on average; the semaphore bounds the burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        let tick = match until {
            Some(until) => match tokio::time::timeout_at(until, ticks.tick()).await {
                Ok(tick) => tick,
                Err(_) => break,
            },
            None => ticks.tick().await,
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            lock(&stats).record_skipped(tick.into_std());
            continue;
        };
        let client = client.clone();
        let config = config.clone();
        let stats = stats.clone();
        let target_host = target_host.clone();
        tokio::spawn(async move {
            send_one(&client, &config, &stats, &target_host).await;
            drop(permit);
        });
    }
    // Let the requests already sent finish, so the final numbers include them.
    let _ = in_flight.acquire_many(config.concurrency).await;
}

async fn send_one(
    client: &HttpClient,
    config: &LoadConfig,
    stats: &SharedStats,
    target_host: &str,
) {
    let mut headers = HeaderMap::new();
    if config.header_ratio >= 1.0 || rand::random::<f64>() < config.header_ratio {
        headers.extend(config.headers.clone());
    }
    headers.insert(HeaderName::from_static("x-request-id"), request_id());
    let started = Instant::now();
    let outcome = client.get(&config.target, headers).await;
    let latency = started.elapsed();
    let (status, answer) = match &outcome {
        Ok(response) => (
            Some(response.status),
            serde_json::from_slice::<EchoReport>(&response.body).ok(),
        ),
        Err(error) => {
            tracing::debug!(%error, "request failed");
            (None, None)
        }
    };
    let status_code = status.map(|status| status.as_u16());
    let hops = hops_of_answer(target_host, status_code, latency, answer.as_ref());
    let success = status.is_some_and(|status| status.is_success());
    lock(stats).record(Instant::now().into_std(), success, latency, &hops);
}

/// A random request id, as Envoy would make for a request entering the mesh.
fn request_id() -> HeaderValue {
    let bits: u128 = rand::random();
    let text = format!("{bits:032x}");
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The stats lock is held only to add a sample or take a snapshot; a panic while holding
/// it leaves counts that are still worth reading.
fn lock(stats: &SharedStats) -> std::sync::MutexGuard<'_, RollingStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

fn snapshot(stats: &SharedStats) -> StatsSnapshot {
    lock(stats).snapshot(Instant::now().into_std())
}

/// Serves `GET /stats` from `listener` until the task is dropped.
pub async fn serve_stats(listener: TcpListener, stats: SharedStats) -> std::io::Result<()> {
    http_server::serve(listener, Arc::new(StatsEndpoint { stats })).await
}

struct StatsEndpoint {
    stats: SharedStats,
}

impl Handler for StatsEndpoint {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match request.uri().path() {
            "/stats" => http_server::json_response(StatusCode::OK, &snapshot(&self.stats)),
            "/healthz" => http_server::response(StatusCode::OK, "text/plain", "ok\n"),
            _ => http_server::response(StatusCode::NOT_FOUND, "text/plain", "try GET /stats\n"),
        }
    }
}

async fn log_summaries(stats: SharedStats) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        log_summary(&snapshot(&stats));
    }
}

fn log_summary(snapshot: &StatsSnapshot) {
    let total = &snapshot.total;
    tracing::info!(
        target_url = %snapshot.target,
        rps = format!("{:.1}", total.requests_per_second),
        success = total.success_rate.map(|rate| format!("{:.1}%", rate * 100.0)),
        p50_ms = total.p50_ms.map(|ms| format!("{ms:.1}")),
        p99_ms = total.p99_ms.map(|ms| format!("{ms:.1}")),
        skipped = snapshot.skipped,
        "last {:.0}s",
        snapshot.window_seconds
    );
}

#[cfg(test)]
mod tests;
