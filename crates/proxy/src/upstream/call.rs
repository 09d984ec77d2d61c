//! A request the proxy itself sends to a cluster (a mirrored copy, an authorization
//! check): admitted by the cluster's circuit breakers, to an endpoint its load balancer
//! picks, counted in its stats, within `timeout`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use thiserror::Error;

use super::{ActiveRequest, Cluster, UpstreamBody};

/// Why a call got no response.
#[derive(Debug, Error)]
pub enum CallError {
    #[error("the circuit breaker of cluster {0} is open")]
    Overflow(String),
    #[error("cluster {0} has no healthy endpoint")]
    NoHealthyUpstream(String),
    #[error("no response from cluster {0} in time")]
    Timeout(String),
    #[error("connecting to cluster {cluster} failed: {error}")]
    Connect { cluster: String, error: String },
    #[error("the request to cluster {cluster} failed: {error}")]
    Failed { cluster: String, error: String },
}

/// Sends `request` to an endpoint of `cluster`; the response's head, its body to read.
pub async fn call(
    cluster: &Cluster,
    request: Request<UpstreamBody>,
    timeout: Option<Duration>,
) -> Result<Response<Incoming>, CallError> {
    let stats = &cluster.stats;
    let name = || cluster.spec.name.clone();
    stats.requests.fetch_add(1, Relaxed);
    let Some(_admitted) = cluster.admit() else {
        stats.overflows.fetch_add(1, Relaxed);
        return Err(CallError::Overflow(name()));
    };
    let exchange = async {
        cluster
            .first_lookup_done(cluster.spec.pool.connect_timeout)
            .await;
        let Some(endpoint) = cluster.pick() else {
            stats.no_healthy_upstream.fetch_add(1, Relaxed);
            return Err(CallError::NoHealthyUpstream(name()));
        };
        let active = ActiveRequest::new(endpoint);
        let Ok(_slot) = cluster.connection().await else {
            stats.overflows.fetch_add(1, Relaxed);
            return Err(CallError::Overflow(name()));
        };
        match active.endpoint().client().request(request).await {
            Ok(response) => {
                stats.responses.record(response.status().as_u16());
                Ok(response)
            }
            Err(error) if error.is_connect() => {
                stats.connect_failures.fetch_add(1, Relaxed);
                Err(CallError::Connect {
                    cluster: name(),
                    error: error.to_string(),
                })
            }
            Err(error) => {
                stats.upstream_errors.fetch_add(1, Relaxed);
                Err(CallError::Failed {
                    cluster: name(),
                    error: error.to_string(),
                })
            }
        }
    };
    match timeout {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| {
                stats.timeouts.fetch_add(1, Relaxed);
                Err(CallError::Timeout(name()))
            }),
        None => exchange.await,
    }
}
