//! The agent beside a real Envoy (Istio's pilot-agent, for certificates): it makes the
//! workload's key, has the CA sign a CSR for it with the workload's token, renews it at
//! half its life, and serves it to Envoy over SDS on a Unix socket only the mesh's user
//! can open. The key never leaves the workload, and the control plane signs only for the
//! identity the token proves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bosun_ca::Identity;
use bosun_wire::secrets::{self, FileSecret};
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::util::pack_any;
use futures::{Stream, StreamExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use crate::control_plane::ControlPlaneLink;
use crate::tls::certificates::fetch_chain;

const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on the SDS socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the SDS server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The workload's current key and chain, as Envoy is given them.
#[derive(Debug)]
struct Issued {
    key_pem: String,
    /// Leaf and intermediates; the root travels as ROOTCA.
    chain_pem: String,
    root_pem: String,
    not_after: SystemTime,
}

/// What the agent needs to keep a workload's certificate.
pub struct SdsAgent {
    pub socket: PathBuf,
    pub ca: Endpoint,
    pub link: ControlPlaneLink,
    pub identity: Identity,
    pub ttl: Duration,
}

impl SdsAgent {
    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let listener = bind_private(&self.socket)?;
        let (current, watched) = watch::channel(None);
        let keeper = tokio::spawn(keep_current(
            self.ca,
            self.link,
            self.identity.clone(),
            self.ttl,
            current,
        ));
        tracing::info!(socket = %self.socket.display(), identity = %self.identity, "SDS agent serving");
        let served = tonic::transport::Server::builder()
            .add_service(SecretDiscoveryServiceServer::new(Secrets {
                current: watched,
            }))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await;
        keeper.abort();
        let _ = std::fs::remove_file(&self.socket);
        served.map_err(AgentError::from)
    }
}

/// A Unix socket at `path` that only its owner may connect to.
fn bind_private(path: &Path) -> Result<UnixListener, AgentError> {
    let failed = |source| AgentError::Bind {
        path: path.to_path_buf(),
        source,
    };
    // A socket left by an earlier run.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    }
    Ok(listener)
}

/// Gets the certificate, again at half of each one's life, retrying while the CA cannot
/// be reached; the last certificate keeps serving meanwhile.
async fn keep_current(
    ca: Endpoint,
    link: ControlPlaneLink,
    identity: Identity,
    ttl: Duration,
    current: watch::Sender<Option<Arc<Issued>>>,
) {
    let mut retry = RETRY_INITIAL;
    loop {
        match issue(&ca, &link, &identity, ttl).await {
            Ok(issued) => {
                retry = RETRY_INITIAL;
                let renew_in = bosun_ca::renewal_delay(SystemTime::now(), issued.not_after);
                tracing::info!(%identity, renew_in_s = renew_in.as_secs(), "workload certificate issued for Envoy");
                current.send_replace(Some(Arc::new(issued)));
                tokio::time::sleep(renew_in).await;
            }
            Err(error) => {
                tracing::warn!(%identity, %error, retry_in = ?retry, "cannot get a workload certificate");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn issue(
    ca: &Endpoint,
    link: &ControlPlaneLink,
    identity: &Identity,
    ttl: Duration,
) -> Result<Issued, String> {
    let (key_pem, chain) = fetch_chain(ca, link, identity, ttl)
        .await
        .map_err(|error| error.to_string())?;
    // Checked as the proxy checks its own: the chain must end in the root handed over.
    let checked =
        crate::tls::WorkloadCertificate::from_pem(identity.clone(), &key_pem, &chain, link.root())
            .map_err(|error| error.to_string())?;
    let (reply_root, leaf_and_intermediates) = chain
        .split_last()
        .ok_or_else(|| "the CA sent an empty chain".to_string())?;
    let root_pem = match link.root() {
        Some(root) => root.pem().to_string(),
        None => reply_root.clone(),
    };
    Ok(Issued {
        key_pem,
        chain_pem: leaf_and_intermediates.concat(),
        root_pem,
        not_after: checked.not_after,
    })
}

/// The SDS service over the current certificate.
struct Secrets {
    current: watch::Receiver<Option<Arc<Issued>>>,
}

#[tonic::async_trait]
impl SecretDiscoveryService for Secrets {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "delta SDS is not served; set the SDS config's api_type to GRPC",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (responses, outbound) = mpsc::channel(4);
        tokio::spawn(serve_stream(
            request.into_inner(),
            self.current.clone(),
            responses,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let mut current = self.current.clone();
        let issued = current
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Status::unavailable("the agent is stopping"))?
            .clone();
        let names: BTreeSet<String> = request.into_inner().resource_names.into_iter().collect();
        let issued = issued.ok_or_else(|| Status::unavailable("no certificate yet"))?;
        Ok(Response::new(response(&issued, &names, 1)?))
    }
}

/// One Envoy's SDS stream: answers what it asks for, and pushes each renewal.
async fn serve_stream(
    mut requests: Streaming<DiscoveryRequest>,
    mut current: watch::Receiver<Option<Arc<Issued>>>,
    responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut names = BTreeSet::new();
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            request = requests.next() => {
                let Some(Ok(request)) = request else { return };
                if let Some(error) = &request.error_detail {
                    tracing::warn!(message = %error.message, "Envoy rejected its secrets");
                }
                let asked: BTreeSet<String> = request.resource_names.into_iter().collect();
                // An acknowledgement of what was sent asks for nothing new.
                if !request.response_nonce.is_empty() && asked == names {
                    continue;
                }
                names = asked;
            }
            changed = current.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let issued = current.borrow_and_update().clone();
        let Some(issued) = issued else { continue };
        nonce += 1;
        let reply = response(&issued, &names, nonce);
        let failed = reply.is_err();
        if responses.send(reply).await.is_err() || failed {
            return;
        }
    }
}

fn response(
    issued: &Issued,
    names: &BTreeSet<String>,
    nonce: u64,
) -> Result<DiscoveryResponse, Status> {
    let mut resources = Vec::new();
    for name in names {
        let kind = match name.as_str() {
            secrets::WORKLOAD => secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(issued.chain_pem.clone())),
                private_key: Some(inline(issued.key_pem.clone())),
                ..Default::default()
            }),
            secrets::ROOT => secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(issued.root_pem.clone())),
                ..Default::default()
            }),
            other => match FileSecret::parse(other) {
                Some(files) => file_secret(&files)?,
                None => {
                    return Err(Status::not_found(format!(
                        "secret {other:?} is not served; the agent serves {:?}, {:?} and files (file-cert:<chain>~<key>, file-root:<bundle>)",
                        secrets::WORKLOAD,
                        secrets::ROOT
                    )));
                }
            },
        };
        resources.push(pack_any(Secret {
            name: name.clone(),
            r#type: Some(kind),
        }));
    }
    let version = issued
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    Ok(DiscoveryResponse {
        version_info: version.to_string(),
        resources,
        type_url: SECRET_TYPE_URL.to_string(),
        nonce: nonce.to_string(),
        ..Default::default()
    })
}

/// A secret a DestinationRule names by file, read now (as Istio's agent reads them).
fn file_secret(files: &FileSecret<'_>) -> Result<secret::Type, Status> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map_err(|error| Status::not_found(format!("cannot read {path}: {error}")))
    };
    Ok(match files {
        FileSecret::Certificate { chain, key } => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(read(chain)?)),
            private_key: Some(inline(read(key)?)),
            ..Default::default()
        }),
        FileSecret::Root { bundle } => {
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(read(bundle)?)),
                ..Default::default()
            })
        }
        FileSecret::SystemRoots => {
            let bundle = crate::tls::origination::system_bundle().map_err(Status::not_found)?;
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(read(&bundle)?)),
                ..Default::default()
            })
        }
    })
}

fn inline(pem: String) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(pem)),
        ..Default::default()
    }
}
