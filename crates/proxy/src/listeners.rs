//! Live listeners: bind on add, swap config in place on update (same address keeps
//! its socket and connections), close and drain on removal, drain gracefully on shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::compile::ListenerSpec;
use crate::connection_limits::{ConnectionLimits, DownstreamConnections};
use crate::drain::{self, DrainTrigger};
use crate::snapshot::Snapshot;
use crate::stats::ListenerStats;
use crate::telemetry::Telemetry;
use crate::tls::{TlsContexts, WorkloadCertificates};

/// A listener's current config, swapped whole on update.
#[derive(Debug)]
pub struct ListenerRuntime {
    pub spec: ListenerSpec,
    pub stats: Arc<ListenerStats>,
    /// Terminates the TLS chain's mutual TLS, when the listener has one.
    pub server_tls: Option<Arc<ServerConfig>>,
}

impl ListenerRuntime {
    fn new(spec: ListenerSpec, stats: Arc<ListenerStats>, tls: &TlsContexts) -> Self {
        let server_tls = spec
            .tls_chain
            .as_ref()
            .and_then(|chain| chain.tls.as_ref())
            .map(|downstream| tls.server(&downstream.alpn));
        Self {
            spec,
            stats,
            server_tls,
        }
    }
}

/// What a listener's connections read per request.
#[derive(Debug)]
pub struct ListenerContext {
    pub config: ArcSwap<ListenerRuntime>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The workload's certificate, for the `By` of `x-forwarded-client-cert`.
    pub certificates: Arc<WorkloadCertificates>,
    /// Where requests are reported (Istio's metrics).
    pub telemetry: Arc<Telemetry>,
    /// The proxy's open downstream connections, against its global cap.
    pub connections: Arc<DownstreamConnections>,
    /// This listener's own cap on open connections.
    pub connection_limit: Option<u64>,
}

/// How many accepted connections may wait for the proxy to take them. Envoy asks for
/// the kernel's most (`net.core.somaxconn`), which this caps to: a burst of thousands of
/// connections is queued, not dropped into the clients' SYN retries.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds `address` as a listener, with the address reusable at once after a restart.
fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot open a socket for {address}: {e}"))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("cannot configure {address}: {e}"))?;
    socket
        .bind(address)
        .map_err(|e| format!("cannot bind {address}: {e}"))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// A draining listener with no request in flight for this long has no client still
/// sending to it, and closes before its drain period ends.
const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct RunningListener {
    configured: SocketAddr,
    bound: SocketAddr,
    ctx: Arc<ListenerContext>,
    trigger: DrainTrigger,
}

#[derive(Debug)]
pub struct ListenerManager {
    running: HashMap<String, RunningListener>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    tls: Arc<TlsContexts>,
    telemetry: Arc<Telemetry>,
    drain_timeout: Duration,
    connections: Arc<DownstreamConnections>,
    /// Listener name -> its cap on open connections.
    listener_limits: std::collections::BTreeMap<String, u64>,
}

impl ListenerManager {
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        tls: Arc<TlsContexts>,
        telemetry: Arc<Telemetry>,
        drain_timeout: Duration,
        limits: ConnectionLimits,
    ) -> Self {
        ListenerManager {
            running: HashMap::new(),
            snapshot,
            tls,
            telemetry,
            drain_timeout,
            connections: Arc::new(DownstreamConnections::new(limits.global)),
            listener_limits: limits.per_listener,
        }
    }

    /// Adds or updates a listener. Returns the bound address, or why binding failed.
    pub fn upsert(
        &mut self,
        spec: ListenerSpec,
        stats: Arc<ListenerStats>,
    ) -> Result<SocketAddr, String> {
        if let Some(running) = self.running.get(&spec.name)
            && running.configured == spec.address
        {
            running
                .ctx
                .config
                .store(Arc::new(ListenerRuntime::new(spec, stats, &self.tls)));
            return Ok(running.bound);
        }
        let name = spec.name.clone();
        let configured = spec.address;
        // A moved listener releases its old address first, so a swap of ports works.
        self.remove(&name);
        let listener = bind(configured)?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot read bound address: {e}"))?;
        let ctx = Arc::new(ListenerContext {
            config: ArcSwap::from_pointee(ListenerRuntime::new(spec, stats, &self.tls)),
            snapshot: self.snapshot.clone(),
            certificates: Arc::clone(self.tls.certificates()),
            telemetry: Arc::clone(&self.telemetry),
            connections: Arc::clone(&self.connections),
            connection_limit: self.listener_limits.get(&name).copied(),
        });
        let (trigger, watcher) = drain::channel();
        tokio::spawn(crate::http::serve(listener, ctx.clone(), watcher));
        tracing::info!(listener = %name, address = %bound, "listener bound");
        self.running.insert(
            name,
            RunningListener {
                configured,
                bound,
                ctx,
                trigger,
            },
        );
        Ok(bound)
    }

    /// Stops accepting on a listener and drains it in the background.
    pub fn remove(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            let deadline = self.drain_timeout;
            let name = name.to_owned();
            tokio::spawn(async move {
                if !running.trigger.drain(deadline).await {
                    tracing::warn!(listener = %name, "drain deadline passed with requests in flight");
                }
                tracing::info!(listener = %name, "listener removed");
            });
        }
    }

    pub fn bound_address(&self, name: &str) -> Option<SocketAddr> {
        self.running.get(name).map(|r| r.bound)
    }

    /// Drains every listener concurrently, gracefully: each keeps accepting and tells
    /// its clients to close for up to `period`, or until no request has been in flight
    /// on it for [`QUIET`]; then it closes. `false` if any had work left at the end.
    pub async fn shutdown(&mut self, period: Duration) -> bool {
        let drains: Vec<_> = self
            .running
            .drain()
            .map(|(_, running)| {
                let ctx = running.ctx;
                let idle = move || ctx.config.load().stats.in_flight.load(Relaxed) <= 0;
                running.trigger.drain_gracefully(period, QUIET, idle)
            })
            .collect();
        futures::future::join_all(drains)
            .await
            .into_iter()
            .all(|ok| ok)
    }
}
