//! `envoy.filters.http.fault`: delays and aborts a share of requests, as Istio's
//! VirtualService `fault` asks. The listener's settings apply unless the route gives the
//! filter its own (istiod writes an empty filter and the faults per route).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use http::StatusCode;

use super::LocalReply;
use crate::routing::{Fraction, HeaderMatch, Override, RequestView, Route};
use crate::telemetry::ResponseFlag;

pub const FAULT_FILTER: &str = bosun_wire::http_filters::FAULT;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDelay {
    pub duration: Duration,
    pub share: Fraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortWith {
    Http(StatusCode),
    /// A gRPC status, answered as a trailers-only gRPC response.
    Grpc(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultAbort {
    pub with: AbortWith,
    pub share: Fraction,
}

/// One fault filter's settings (Envoy's `HTTPFault`, the parts Istio writes and more).
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// Only requests routed to this cluster.
    pub upstream_cluster: Option<String>,
    /// Only requests whose headers all match.
    pub headers: Vec<HeaderMatch>,
    /// At most this many requests delayed or aborted at once.
    pub max_active_faults: Option<u32>,
}

/// A fault filter in a listener's chain.
#[derive(Debug)]
pub struct FaultFilter {
    pub name: String,
    pub config: Arc<FaultConfig>,
    active: AtomicU32,
}

/// Counts a fault as active until it ends.
struct ActiveFault<'a>(&'a AtomicU32);

impl Drop for ActiveFault<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// What the fault filter did to a request that goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    Untouched,
    Delayed,
}

impl FaultFilter {
    pub fn new(name: String, config: FaultConfig) -> Self {
        FaultFilter {
            name,
            config: Arc::new(config),
            active: AtomicU32::new(0),
        }
    }

    /// Delays the request, or answers it in the proxy's place, when its fault applies.
    pub async fn on_request(
        &self,
        request: &RequestView<'_>,
        route: &Route,
        cluster: Option<&str>,
    ) -> Result<FaultOutcome, LocalReply> {
        let config = match route.filter_configs.get::<FaultConfig>(&self.name) {
            Some(Override::Disabled) => return Ok(FaultOutcome::Untouched),
            Some(Override::Config(config)) => config,
            None => &self.config,
        };
        if config.delay.is_none() && config.abort.is_none() {
            return Ok(FaultOutcome::Untouched);
        }
        if let Some(wanted) = &config.upstream_cluster
            && cluster != Some(wanted.as_str())
        {
            return Ok(FaultOutcome::Untouched);
        }
        if !config.headers.iter().all(|header| header.matches(request)) {
            return Ok(FaultOutcome::Untouched);
        }
        let delay = config.delay.as_ref().filter(|delay| delay.share.roll());
        let abort = config.abort.as_ref().filter(|abort| abort.share.roll());
        if delay.is_none() && abort.is_none() {
            return Ok(FaultOutcome::Untouched);
        }
        let Some(_active) = self.enter(config.max_active_faults) else {
            return Ok(FaultOutcome::Untouched);
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay.duration).await;
        }
        match abort {
            Some(abort) => Err(match abort.with {
                AbortWith::Http(status) => {
                    LocalReply::new(status, "fault filter abort", ResponseFlag::FaultInjected)
                }
                AbortWith::Grpc(grpc_status) => LocalReply::grpc(
                    grpc_status,
                    "fault filter abort",
                    ResponseFlag::FaultInjected,
                ),
            }),
            None => Ok(FaultOutcome::Delayed),
        }
    }

    fn enter(&self, max: Option<u32>) -> Option<ActiveFault<'_>> {
        let max = max.unwrap_or(u32::MAX);
        self.active
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| ActiveFault(&self.active))
    }
}
