//! Bosun's control plane: watches a folder of Istio YAML, builds the mesh snapshot, and
//! serves it to proxies as Envoy xDS v3 (ADS), with a debug endpoint beside it.
//!
//! The shape follows "bind, then run": [`ControlPlane::bind`] loads the first config and
//! binds every socket, returning the real addresses, so tests run on port 0.

pub mod config_folder;
pub mod config_status;
pub mod debug;
pub mod folder_watch;
mod identities;
mod jwks;
pub mod secrets;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bosun_ca::service::Authorizer;
use bosun_ca::{CertificateAuthority, CertificateService, Identity};
use bosun_xds::translate::MeshGenerator;
use bosun_xds::{AdsServer, Generator};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config_folder::ConfigFolder;
use crate::config_status::ConfigStatus;
use crate::folder_watch::FolderWatch;
use crate::identities::KnownIdentities;
use crate::secrets::SecretService;

/// How long open xDS streams get to close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Every setting of the control plane, named once.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// The folder of YAML files to serve.
    pub config_dir: PathBuf,
    /// Where proxies connect for ADS.
    pub xds_address: SocketAddr,
    /// Where the debug endpoint listens.
    pub debug_address: SocketAddr,
    /// How long the folder must be quiet before a reload.
    pub debounce: Duration,
    /// The trust domain of workload identities (Istio's `meshConfig.trustDomain`).
    pub trust_domain: String,
    /// Istio's plug-in CA folder (`cacerts`); a fresh self-signed root when unset.
    pub ca_folder: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the config folder {path}: {source}")]
    ConfigFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address} for {what}: {source}")]
    Bind {
        what: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Watch(#[from] folder_watch::WatchError),
    #[error("cannot set up the certificate authority: {0}")]
    Ca(#[from] bosun_ca::CaError),
    #[error("the xDS server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A control plane whose sockets are bound and whose first config is loaded.
pub struct BoundControlPlane {
    xds_listener: TcpListener,
    debug_listener: TcpListener,
    folder: ConfigFolder,
    config: ControlPlaneConfig,
    status: Arc<ArcSwap<ConfigStatus>>,
    generators: watch::Sender<Arc<dyn Generator>>,
    first_generator: Arc<MeshGenerator>,
    ads: AdsServer,
    ca: Arc<CertificateAuthority>,
    /// The identities workloads may be given: every (namespace, service account) the
    /// config names, refreshed on each reload.
    identities: Arc<ArcSwap<KnownIdentities>>,
}

pub struct ControlPlane;

impl ControlPlane {
    /// Loads the folder once and binds the xDS and debug listeners.
    ///
    /// A missing or unreadable folder is an error; errors inside files are not: they are
    /// reported and the rest of the folder is served.
    pub async fn bind(config: ControlPlaneConfig) -> Result<BoundControlPlane, Error> {
        let mut folder = ConfigFolder::new(config.config_dir.clone());
        let load = folder.reload().map_err(|source| Error::ConfigFolder {
            path: config.config_dir.clone(),
            source,
        })?;
        load.log();
        let status = Arc::new(ArcSwap::from_pointee(load.status(1)));
        let ca = Arc::new(match &config.ca_folder {
            Some(folder) => CertificateAuthority::from_folder(folder, &config.trust_domain)?,
            None => CertificateAuthority::self_signed(&config.trust_domain)?,
        });
        let identities = Arc::new(ArcSwap::from_pointee(KnownIdentities::of(&load.snapshot)));
        let first_generator = Arc::new(MeshGenerator::in_trust_domain(
            Arc::clone(&load.snapshot),
            &config.trust_domain,
        ));
        let generator: Arc<dyn Generator> = first_generator.clone();
        let (generators, generator_rx) = watch::channel(generator);
        let ads = AdsServer::new(generator_rx);
        let xds_listener = bind("xDS", config.xds_address).await?;
        let debug_listener = bind("debug", config.debug_address).await?;
        Ok(BoundControlPlane {
            xds_listener,
            debug_listener,
            folder,
            config,
            status,
            generators,
            first_generator,
            ads,
            ca,
            identities,
        })
    }
}

async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind {
            what,
            address,
            source,
        })
}

impl BoundControlPlane {
    pub fn xds_address(&self) -> SocketAddr {
        self.xds_listener
            .local_addr()
            .unwrap_or(self.config.xds_address)
    }

    pub fn debug_address(&self) -> SocketAddr {
        self.debug_listener
            .local_addr()
            .unwrap_or(self.config.debug_address)
    }

    /// Serves until `shutdown` completes, reloading the folder on every change.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Self {
            xds_listener,
            debug_listener,
            mut folder,
            config,
            status,
            generators,
            first_generator,
            ads,
            ca,
            identities,
        } = self;
        let authorize: Authorizer = {
            let identities = Arc::clone(&identities);
            Arc::new(move |identity: &Identity| identities.load().allows(identity))
        };
        let (changed_tx, mut changed_rx) = mpsc::channel(1);
        let _watch = FolderWatch::start(&config.config_dir, config.debounce, changed_tx)?;
        let (stop_tx, stop_rx) = watch::channel(false);

        let ads_for_status = ads.clone();
        let debug_state = debug::DebugState {
            config: status.clone(),
            sync_status: Arc::new(move || {
                serde_json::to_value(ads_for_status.status()).unwrap_or_default()
            }),
        };
        let debug_task = tokio::spawn(debug::serve(debug_listener, debug_state, stop_rx.clone()));

        let reload_status = status.clone();
        let reloads = tokio::spawn(async move {
            let mut generation = 1;
            // Moved, not cloned: the task must not keep the first config alive.
            let mut previous = first_generator;
            while changed_rx.recv().await.is_some() {
                // Parsing and translating a large mesh takes a while: off the async workers.
                let base = Arc::clone(&previous);
                let reloaded = tokio::task::spawn_blocking(move || {
                    let reload = folder.reload().map(|load| {
                        let started = std::time::Instant::now();
                        let generator = Arc::new(MeshGenerator::with_previous(
                            Arc::clone(&load.snapshot),
                            Some(&base),
                        ));
                        tracing::debug!(
                            translate_ms = started.elapsed().as_millis() as u64,
                            "config translated"
                        );
                        (load, generator)
                    });
                    (folder, reload)
                })
                .await;
                let Ok((returned, reload)) = reloaded else {
                    tracing::error!("config reload panicked; serving the last good config");
                    return;
                };
                folder = returned;
                let (load, generator) = match reload {
                    Ok(reloaded) => reloaded,
                    Err(error) => {
                        tracing::error!(%error, "cannot read the config folder; serving the last good config");
                        continue;
                    }
                };
                load.log();
                identities.store(Arc::new(KnownIdentities::of(&load.snapshot)));
                generation += 1;
                reload_status.store(Arc::new(load.status(generation)));
                let replaced = std::mem::replace(&mut previous, Arc::clone(&generator));
                if generators.send(generator).is_err() {
                    return;
                }
                // Freeing a generation of a large mesh takes a while (~90 ms at 10k
                // services): not on an async worker, where streams would wait for it.
                tokio::task::spawn_blocking(move || drop(replaced));
            }
        });

        let mut stop_for_xds = stop_rx.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(xds_listener);
        let serve = tonic::transport::Server::builder()
            .add_service(ads.service())
            .add_service(CertificateService::new(
                Arc::clone(&ca),
                Arc::clone(&authorize),
            ))
            .add_service(SecretService::new(ca, authorize).into_server())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_for_xds.wait_for(|stop| *stop).await;
            });
        tracing::info!(
            xds = %config.xds_address,
            folder = %config.config_dir.display(),
            "control plane serving"
        );
        let mut serve = tokio::spawn(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            () = shutdown => {
                // Stop accepting, let open streams end, then return.
                // Stop accepting; ADS streams never end on their own, so give them a
                // moment to see the GOAWAY and then close what is left.
                let _ = stop_tx.send(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        serve.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        let result = match result {
            Ok(served) => served.map_err(Error::from),
            Err(_) => Ok(()),
        };
        let _ = stop_tx.send(true);
        reloads.abort();
        let _ = debug_task.await;
        result
    }
}
