//! Bind, then run: building the proxy binds its admin socket and reports the real
//! address, so tests run in-process on port 0 and in parallel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::ProxyConfig;
use crate::config_dump::ConfigDump;
use crate::control_plane::{ControlPlaneError, ControlPlaneLink};
use crate::drain;
use crate::state::ConfigStore;
use crate::stats::{StatsRegistry, StatsSnapshot};
use crate::telemetry::{IstioMetrics, OwnWorkload, Telemetry};
use crate::tls::{TlsContexts, WorkloadCertificates};
use crate::xds::{AdsClient, XdsError};
use bosun_ca::Identity;
use tonic::transport::Endpoint;

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("cannot bind the admin API on {address}: {source}")]
    AdminBind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Xds(#[from] XdsError),
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
}

pub struct Proxy;

impl Proxy {
    pub async fn bind(config: ProxyConfig) -> Result<BoundProxy, ProxyError> {
        let admin_listener = TcpListener::bind(config.admin_address)
            .await
            .map_err(|source| ProxyError::AdminBind {
                address: config.admin_address,
                source,
            })?;
        let admin_address =
            admin_listener
                .local_addr()
                .map_err(|source| ProxyError::AdminBind {
                    address: config.admin_address,
                    source,
                })?;
        let stats = Arc::new(StatsRegistry::default());
        let certificates = Arc::new(WorkloadCertificates::default());
        let tls = Arc::new(TlsContexts::new(Arc::clone(&certificates)));
        let identity = config.node.identity(&config.trust_domain);
        let telemetry = Arc::new(Telemetry::new(&OwnWorkload {
            node_id: &config.node.node_id(),
            name: &config.node.workload,
            namespace: &config.node.namespace,
            labels: &config.node.labels,
            principal: &identity.uri(),
        }));
        let store = Arc::new(ConfigStore::new(
            stats.clone(),
            tls,
            Arc::clone(&telemetry),
            config.drain_timeout,
            config.node.upstream_source(),
            config.connection_limits.clone(),
        ));
        let link = ControlPlaneLink::new(config.root_cert.as_deref(), config.token_file.clone())?;
        let ads = AdsClient::new(&config, link.clone(), store.clone())?;
        let ca_address = config
            .ca_address
            .clone()
            .unwrap_or_else(|| config.xds_address.clone());
        let ca = link.endpoint(&ca_address)?;
        Ok(BoundProxy {
            admin_address,
            admin_listener,
            ads,
            ca,
            link,
            identity,
            certificate_ttl: config.certificate_ttl,
            certificates,
            handle: ProxyHandle {
                store,
                stats,
                telemetry,
            },
            drain_timeout: config.drain_timeout,
        })
    }
}

pub struct BoundProxy {
    pub admin_address: SocketAddr,
    admin_listener: TcpListener,
    ads: AdsClient,
    ca: Endpoint,
    link: ControlPlaneLink,
    identity: Identity,
    certificate_ttl: Duration,
    certificates: Arc<WorkloadCertificates>,
    handle: ProxyHandle,
    drain_timeout: Duration,
}

impl BoundProxy {
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` resolves, then stops taking config and drains: listeners
    /// keep accepting and tell clients to close for up to the drain timeout (less once
    /// no request arrives), then close and let what is in flight finish by the deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let state = AdminState {
            store: self.handle.store.clone(),
            stats: self.handle.stats.clone(),
            certificates: Arc::clone(&self.certificates),
            istio_metrics: Arc::clone(&self.handle.telemetry.metrics),
        };
        let (admin_trigger, admin_watcher) = drain::channel();
        let admin = tokio::spawn(admin::serve(self.admin_listener, state, admin_watcher));
        let ads = tokio::spawn(self.ads.run());
        let certificates = tokio::spawn(Arc::clone(&self.certificates).keep_current(
            self.ca,
            self.link,
            self.identity,
            self.certificate_ttl,
        ));
        // A config that uses mTLS is ready only once the certificate is there.
        let store = self.handle.store.clone();
        let first_certificate = self.certificates;
        let readiness = tokio::spawn(async move {
            first_certificate.wait_ready().await;
            store.recheck_readiness().await;
        });
        tracing::info!(admin = %self.admin_address, "proxy running");

        shutdown.await;
        tracing::info!(deadline = ?self.drain_timeout, "draining");
        ads.abort();
        certificates.abort();
        readiness.abort();
        if !self.handle.store.shutdown(self.drain_timeout).await {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
        admin_trigger.drain(Duration::from_secs(1)).await;
        admin.abort();
        tracing::info!("proxy stopped");
        Ok(())
    }
}

/// A cheap, cloneable view into a running proxy (for tests and embedding).
#[derive(Clone)]
pub struct ProxyHandle {
    store: Arc<ConfigStore>,
    stats: Arc<StatsRegistry>,
    telemetry: Arc<Telemetry>,
}

impl ProxyHandle {
    /// Where a listener is bound (useful when its configured port is 0).
    pub async fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.store.listener_address(name).await
    }

    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.store.readiness()
    }

    pub async fn wait_ready(&self) {
        let mut ready = self.readiness();
        let _ = ready.wait_for(|r| *r).await;
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Istio's standard metrics the proxy has recorded.
    pub fn istio_metrics(&self) -> &Arc<IstioMetrics> {
        &self.telemetry.metrics
    }

    pub async fn config_dump(&self) -> ConfigDump {
        self.store.dump().await
    }
}
