//! Bosun's control plane: watches a folder of Istio YAML, builds the mesh snapshot, and
//! serves it to proxies as Envoy xDS v3 (ADS), with a debug endpoint beside it.
//!
//! Proxies reach it over TLS (Istio's 15012): ADS and the certificate service, every call
//! authenticated with the workload's token and bound to that workload. The mesh root is
//! published out of band, as a file in the identity folder. Plaintext ADS (Istio's 15010)
//! is served only when asked for, and signs nothing.
//!
//! The shape follows "bind, then run": [`ControlPlane::bind`] loads the first config and
//! binds every socket, returning the real addresses, so tests run on port 0.

pub mod config_folder;
pub mod config_status;
pub mod debug;
pub mod folder_watch;
mod identities;
mod jwks;
mod reloads;
mod serving;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bosun_ca::service::Authorizer;
use bosun_ca::{
    Authenticate, CertificateAuthority, CertificateService, Identity, ROOT_CERT_FILE, TokenKey,
};
use bosun_xds::translate::MeshGenerator;
use bosun_xds::{AdsServer, Generator};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config_folder::ConfigFolder;
use crate::config_status::ConfigStatus;
use crate::folder_watch::FolderWatch;
use crate::identities::KnownIdentities;
use crate::jwks::JwksCache;

/// The file in the identity folder that holds the key workload tokens are checked with.
pub const TOKEN_KEY_FILE: &str = "token-key";

/// The folder, inside the identity folder, of the self-signed CA kept across restarts.
pub const SELF_SIGNED_CA_DIR: &str = "ca";

/// How long open xDS streams get to close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Every setting of the control plane, named once.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// The folder of YAML files to serve.
    pub config_dir: PathBuf,
    /// Where proxies connect for ADS and certificates, over TLS (Istio's 15012).
    pub xds_address: SocketAddr,
    /// Plaintext ADS (Istio's 15010), only where asked for (tests, debugging): no
    /// credential is checked and no certificate is signed there.
    pub plaintext_xds_address: Option<SocketAddr>,
    /// Where the debug endpoint listens.
    pub debug_address: SocketAddr,
    /// How long the folder must be quiet before a reload.
    pub debounce: Duration,
    /// The trust domain of workload identities (Istio's `meshConfig.trustDomain`).
    pub trust_domain: String,
    /// Istio's plug-in CA folder (`cacerts`); a self-signed root kept in the identity
    /// folder when unset.
    pub ca_folder: Option<PathBuf>,
    /// How often the key sets of `jwksUri`s are fetched again (Istio's 20 minutes).
    pub jwks_refresh: Duration,
    /// The identity folder: the mesh root published for proxies (`root-cert.pem`), the key
    /// workload tokens are checked with (`token-key`, made when missing), and the
    /// self-signed CA (`ca/`).
    pub identity_dir: PathBuf,
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
    #[error("cannot set up workload credentials: {0}")]
    Credential(#[from] bosun_ca::CredentialError),
    #[error("cannot use the identity folder {path}: {source}")]
    IdentityDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serving(#[from] serving::ServingError),
    #[error("the xDS server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(
        "config reloads stopped (the folder watch ended); exiting so that a supervisor restarts the control plane"
    )]
    ReloadsStopped,
}

/// A control plane whose sockets are bound and whose first config is loaded.
pub struct BoundControlPlane {
    xds_listener: TcpListener,
    plaintext_xds_listener: Option<TcpListener>,
    tokens: Arc<TokenKey>,
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
        // Istio's: key servers are trusted by the system's roots and the plug-in CA
        // folder's `extra.pem`.
        let jwks_roots = config
            .ca_folder
            .as_ref()
            .map(|folder| folder.join("extra.pem"));
        let mut folder =
            ConfigFolder::with_jwks(config.config_dir.clone(), JwksCache::new(jwks_roots));
        let load = folder.reload().map_err(|source| Error::ConfigFolder {
            path: config.config_dir.clone(),
            source,
        })?;
        load.log();
        let status = Arc::new(ArcSwap::from_pointee(load.status(1)));
        let identity_dir = &config.identity_dir;
        create_private_dir(identity_dir)?;
        let ca = Arc::new(match &config.ca_folder {
            Some(folder) => CertificateAuthority::from_folder(folder, &config.trust_domain)?,
            None => CertificateAuthority::self_signed_in(
                &identity_dir.join(SELF_SIGNED_CA_DIR),
                &config.trust_domain,
            )?,
        });
        publish_root(identity_dir, ca.root_pem())?;
        let tokens = Arc::new(TokenKey::load_or_create(
            &identity_dir.join(TOKEN_KEY_FILE),
        )?);
        let identities = Arc::new(ArcSwap::from_pointee(KnownIdentities::of(&load.snapshot)));
        let first_generator = Arc::new(MeshGenerator::in_trust_domain(
            Arc::clone(&load.snapshot),
            &config.trust_domain,
        ));
        let generator: Arc<dyn Generator> = first_generator.clone();
        let (generators, generator_rx) = watch::channel(generator);
        let ads = AdsServer::new(generator_rx);
        let xds_listener = bind("xDS (TLS)", config.xds_address).await?;
        let plaintext_xds_listener = match config.plaintext_xds_address {
            Some(address) => Some(bind("plaintext xDS", address).await?),
            None => None,
        };
        let debug_listener = bind("debug", config.debug_address).await?;
        Ok(BoundControlPlane {
            xds_listener,
            plaintext_xds_listener,
            tokens,
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

/// The identity folder, readable by its owner only: it holds the token key.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let failed = |source| Error::IdentityDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    Ok(())
}

/// Writes the mesh root where proxies read it (replaced whole, never half written).
fn publish_root(dir: &Path, root_pem: &str) -> Result<(), Error> {
    let failed = |source| Error::IdentityDir {
        path: dir.to_path_buf(),
        source,
    };
    let aside = dir.join(format!(".{ROOT_CERT_FILE}.tmp"));
    std::fs::write(&aside, root_pem).map_err(failed)?;
    std::fs::rename(&aside, dir.join(ROOT_CERT_FILE)).map_err(failed)
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

    /// The plaintext ADS address, when one was asked for.
    pub fn plaintext_xds_address(&self) -> Option<SocketAddr> {
        self.plaintext_xds_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Where the mesh root is published for proxies.
    pub fn root_cert_path(&self) -> PathBuf {
        self.config.identity_dir.join(ROOT_CERT_FILE)
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
            plaintext_xds_listener,
            tokens,
            debug_listener,
            folder,
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
        let (changed_tx, changed_rx) = mpsc::channel(1);
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

        let mut reloads = tokio::spawn(
            reloads::Reloads {
                folder,
                // Moved, not cloned: the task must not keep the first config alive.
                previous: first_generator,
                status,
                identities,
                generators,
                jwks_refresh: config.jwks_refresh,
            }
            .run(changed_rx),
        );

        let authenticate: Arc<dyn Authenticate> = tokens;
        let mut stop_for_xds = stop_rx.clone();
        let incoming = serving::incoming(xds_listener, serving::acceptor(Arc::clone(&ca))?);
        let secure = tonic::transport::Server::builder()
            .add_service(ads.authenticated_by(Arc::clone(&authenticate)).service())
            .add_service(CertificateService::new(ca, authenticate, authorize))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_for_xds.wait_for(|stop| *stop).await;
            });
        let plaintext = plaintext_xds_listener.map(|listener| {
            let mut stop = stop_rx.clone();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tonic::transport::Server::builder()
                .add_service(ads.service())
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
        });
        tracing::info!(
            xds = %config.xds_address,
            plaintext_xds = ?config.plaintext_xds_address,
            root_cert = %config.identity_dir.join(ROOT_CERT_FILE).display(),
            folder = %config.config_dir.display(),
            "control plane serving"
        );
        let serve = async move {
            match plaintext {
                Some(plaintext) => tokio::try_join!(secure, plaintext).map(|_| ()),
                None => secure.await,
            }
        };
        let mut serve = tokio::spawn(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            // A control plane that no longer follows its folder must not look healthy:
            // it exits, and `bosun up` (or Kubernetes) starts a fresh one.
            _ = &mut reloads => {
                let _ = stop_tx.send(true);
                serve.abort();
                let _ = debug_task.await;
                return Err(Error::ReloadsStopped);
            }
            () = shutdown => {
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
