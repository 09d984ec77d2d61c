//! The TCP data path: a connection's bytes to an endpoint of a cluster and back, as they
//! are. An inbound TCP port's chain proxies each accepted connection (Envoy's
//! `tcp_proxy`); the outbound HTTP port terminates a `CONNECT` and proxies the tunnel the
//! same way. The connection holds its place in the cluster's limits and its endpoint's
//! active count for as long as it is open.

use std::sync::atomic::Ordering::Relaxed;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::upstream::{ActiveRequest, Admitted, Cluster, UpstreamStream};

/// Why no upstream connection was opened.
#[derive(Debug, Error)]
pub enum TunnelError {
    #[error("the circuit breaker of cluster {0} is open")]
    Overflow(String),
    #[error("cluster {0} has no healthy endpoint")]
    NoHealthyUpstream(String),
    #[error("connecting to {endpoint} failed: {error}")]
    Connect {
        endpoint: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// An open upstream connection and what it holds while it is open.
pub struct Upstream {
    pub stream: UpstreamStream,
    _active: ActiveRequest,
    _admitted: Admitted,
}

/// Opens a connection to an endpoint the cluster's load balancer picks.
pub async fn connect(cluster: &Cluster) -> Result<Upstream, TunnelError> {
    let name = || cluster.spec.name.clone();
    cluster.stats.requests.fetch_add(1, Relaxed);
    cluster
        .first_lookup_done(cluster.spec.pool.connect_timeout)
        .await;
    let Some(admitted) = cluster.admit() else {
        cluster.stats.overflows.fetch_add(1, Relaxed);
        return Err(TunnelError::Overflow(name()));
    };
    let Some(endpoint) = cluster.pick() else {
        cluster.stats.no_healthy_upstream.fetch_add(1, Relaxed);
        return Err(TunnelError::NoHealthyUpstream(name()));
    };
    let active = ActiveRequest::new(endpoint.clone());
    let stream = endpoint
        .connect()
        .await
        .map_err(|error| TunnelError::Connect {
            endpoint: endpoint.address,
            error,
        })?;
    Ok(Upstream {
        stream,
        _active: active,
        _admitted: admitted,
    })
}

/// Copies bytes both ways until either side closes.
pub async fn splice<D>(mut downstream: D, mut upstream: Upstream)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream.stream).await {
        tracing::debug!(%error, "a proxied connection closed with an error");
    }
}
