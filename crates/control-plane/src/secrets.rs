//! SDS for proxies with no agent beside them (a real Envoy): the control plane answers
//! the two secrets every mesh TLS context names, `default` (the workload's certificate
//! and key) and `ROOTCA` (the mesh root), for the identity in the proxy's node metadata.
//!
//! Bosun's own proxy never asks here: it makes its key itself and sends only a CSR to the
//! certificate service. For Envoy the key is made here, since nothing else can make it.
//! Certificates are renewed at half their life and pushed on the open stream.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bosun_ca::service::Authorizer;
use bosun_ca::{CertificateAuthority, Identity, IssuedCertificate};
use bosun_xds::ProxyNode;
use bosun_xds::translate::{ROOT_SECRET, WORKLOAD_SECRET};
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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The SecretDiscoveryService (state of the world) over the mesh's CA.
#[derive(Clone)]
pub struct SecretService {
    ca: Arc<CertificateAuthority>,
    authorize: Authorizer,
}

impl SecretService {
    pub fn new(ca: Arc<CertificateAuthority>, authorize: Authorizer) -> Self {
        Self { ca, authorize }
    }

    pub fn into_server(self) -> SecretDiscoveryServiceServer<Self> {
        SecretDiscoveryServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SecretService {
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
        let stream = SecretStream {
            ca: Arc::clone(&self.ca),
            authorize: Arc::clone(&self.authorize),
            identity: None,
            names: BTreeSet::new(),
            issued: None,
            renew_at: None,
            nonce: 0,
            responses,
        };
        tokio::spawn(stream.serve(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        let identity = identity_of(&request, self.ca.trust_domain(), &self.authorize)?;
        let issued = issue(&self.ca, &identity)?;
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        Ok(Response::new(response(&self.ca, &issued, &names, 1)?))
    }
}

/// One proxy's SDS stream.
struct SecretStream {
    ca: Arc<CertificateAuthority>,
    authorize: Authorizer,
    identity: Option<Identity>,
    names: BTreeSet<String>,
    issued: Option<IssuedCertificate>,
    renew_at: Option<tokio::time::Instant>,
    nonce: u64,
    responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl SecretStream {
    async fn serve(mut self, mut requests: Streaming<DiscoveryRequest>) {
        loop {
            let request = tokio::select! {
                request = requests.next() => request,
                () = sleep_until(self.renew_at) => {
                    self.issued = None;
                    if let Err(status) = self.send().await {
                        let _ = self.responses.send(Err(status)).await;
                        return;
                    }
                    continue;
                }
            };
            let request = match request {
                Some(Ok(request)) => request,
                Some(Err(_)) | None => return,
            };
            if let Err(status) = self.on_request(request).await {
                let _ = self.responses.send(Err(status)).await;
                return;
            }
        }
    }

    async fn on_request(&mut self, request: DiscoveryRequest) -> Result<(), Status> {
        if self.identity.is_none() {
            self.identity = Some(identity_of(
                &request,
                self.ca.trust_domain(),
                &self.authorize,
            )?);
        }
        if let Some(error) = &request.error_detail {
            tracing::warn!(message = %error.message, "a proxy rejected its secrets");
        }
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        // An acknowledgement of what was sent asks for nothing new.
        if !request.response_nonce.is_empty() && names == self.names {
            return Ok(());
        }
        self.names = names;
        self.send().await
    }

    async fn send(&mut self) -> Result<(), Status> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        if self.issued.is_none() {
            let issued = issue(&self.ca, identity)?;
            self.renew_at = Some(renewal(issued.not_after));
            self.issued = Some(issued);
        }
        let Some(issued) = &self.issued else {
            return Ok(());
        };
        self.nonce += 1;
        let response = response(&self.ca, issued, &self.names, self.nonce)?;
        self.responses
            .send(Ok(response))
            .await
            .map_err(|_| Status::cancelled("the proxy went away"))
    }
}

/// The identity a proxy is given: its node's namespace and service account.
fn identity_of(
    request: &DiscoveryRequest,
    trust_domain: &str,
    authorize: &Authorizer,
) -> Result<Identity, Status> {
    let node = request
        .node
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("the first SDS request must carry the node"))?;
    let node = ProxyNode::from_node(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let account = if node.service_account.is_empty() {
        "default"
    } else {
        node.service_account.as_str()
    };
    let identity = Identity::new(trust_domain, &node.namespace, account);
    if !authorize(&identity) {
        return Err(Status::permission_denied(format!(
            "no workload in namespace {} runs as service account {account}; name it in a WorkloadEntry's serviceAccount",
            node.namespace
        )));
    }
    Ok(identity)
}

fn issue(ca: &CertificateAuthority, identity: &Identity) -> Result<IssuedCertificate, Status> {
    let issued = ca
        .issue(identity, bosun_ca::DEFAULT_TTL)
        .map_err(|error| Status::internal(error.to_string()))?;
    tracing::debug!(%identity, "workload certificate issued over SDS");
    Ok(issued)
}

fn response(
    ca: &CertificateAuthority,
    issued: &IssuedCertificate,
    names: &BTreeSet<String>,
    nonce: u64,
) -> Result<DiscoveryResponse, Status> {
    let mut resources = Vec::new();
    for name in names {
        let secret = match name.as_str() {
            WORKLOAD_SECRET => {
                // Leaf and intermediates; the root travels as ROOTCA.
                let (_root, chain) = issued
                    .chain_pem
                    .split_last()
                    .ok_or_else(|| Status::internal("the CA issued an empty chain"))?;
                Secret {
                    name: name.clone(),
                    r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                        certificate_chain: Some(inline(chain.concat())),
                        private_key: Some(inline(issued.key_pem.clone())),
                        ..Default::default()
                    })),
                }
            }
            ROOT_SECRET => Secret {
                name: name.clone(),
                r#type: Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(inline(ca.root_pem().to_string())),
                        ..Default::default()
                    },
                )),
            },
            other => {
                return Err(Status::not_found(format!(
                    "secret {other:?} is not served; the mesh serves {WORKLOAD_SECRET:?} and {ROOT_SECRET:?}"
                )));
            }
        };
        resources.push(pack_any(secret));
    }
    Ok(DiscoveryResponse {
        version_info: issued_version(issued),
        resources,
        type_url: SECRET_TYPE_URL.to_string(),
        nonce: nonce.to_string(),
        ..Default::default()
    })
}

fn issued_version(issued: &IssuedCertificate) -> String {
    issued
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

fn inline(pem: String) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(pem)),
        ..Default::default()
    }
}

/// When to renew a certificate, by the CA's rule.
fn renewal(not_after: SystemTime) -> tokio::time::Instant {
    tokio::time::Instant::now() + bosun_ca::renewal_delay(SystemTime::now(), not_after)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
