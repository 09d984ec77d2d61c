//! An in-process ADS server the tests drive: set resources, and it pushes them to
//! the proxy like a control plane would (delta or state of the world), recording
//! every ACK and NACK it receives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_proxy::resource::ResourceType;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

type Resources = BTreeMap<ResourceType, BTreeMap<String, Any>>;

/// One ACK or NACK as received.
#[derive(Debug, Clone)]
pub struct Ack {
    pub kind: Option<ResourceType>,
    pub nack: Option<String>,
    pub version_info: String,
}

#[derive(Default)]
struct Shared {
    resources: Mutex<Resources>,
    acks: Mutex<Vec<Ack>>,
    first_node: Mutex<Option<envoy_types::pb::envoy::config::core::v3::Node>>,
    streams_opened: std::sync::atomic::AtomicUsize,
}

pub struct FakeAds {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    changed: watch::Sender<u64>,
    /// Ends every open stream and stops the server.
    killed: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeAds {
    pub async fn start() -> FakeAds {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ads");
        let address = listener.local_addr().expect("ads address");
        let mut ads = FakeAds {
            address,
            shared: Arc::new(Shared::default()),
            changed: watch::channel(0).0,
            killed: watch::channel(false).0,
            server: None,
        };
        ads.serve(listener);
        ads
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        self.killed.send_replace(false);
        let service = Service {
            shared: self.shared.clone(),
            changed: self.changed.subscribe(),
            killed: self.killed.subscribe(),
        };
        let mut killed = self.killed.subscribe();
        self.server = Some(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = killed.wait_for(|k| *k).await;
                })
                .await;
        }));
    }

    /// The control plane goes away: streams end and the port closes.
    pub async fn stop(&mut self) {
        self.killed.send_replace(true);
        if let Some(server) = self.server.take() {
            // Connections that will not close in time are simply abandoned.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    }

    /// The control plane comes back on the same address with the same resources.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .expect("rebind ads");
        self.serve(listener);
    }

    /// Replaces all resources of one type and pushes the change.
    pub fn set(&self, kind: ResourceType, resources: Vec<(String, Any)>) {
        self.shared
            .resources
            .lock()
            .expect("lock")
            .insert(kind, resources.into_iter().collect());
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.shared.acks.lock().expect("lock").clone()
    }

    pub fn streams_opened(&self) -> usize {
        self.shared
            .streams_opened
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn first_node(&self) -> Option<envoy_types::pb::envoy::config::core::v3::Node> {
        self.shared.first_node.lock().expect("lock").clone()
    }

    /// Waits until a NACK containing `needle` arrives.
    pub async fn wait_for_nack(&self, needle: &str) -> Ack {
        super::eventually(Duration::from_secs(10), || {
            self.acks()
                .into_iter()
                .find(|a| a.nack.as_deref().is_some_and(|m| m.contains(needle)))
        })
        .await
    }
}

impl Drop for FakeAds {
    fn drop(&mut self) {
        self.killed.send_replace(true);
    }
}

#[derive(Clone)]
struct Service {
    shared: Arc<Shared>,
    changed: watch::Receiver<u64>,
    killed: watch::Receiver<bool>,
}

fn version_of(any: &Any) -> String {
    let mut h = DefaultHasher::new();
    any.value.hash(&mut h);
    format!("{:x}", h.finish())
}

/// What a stream is subscribed to per type: `None` = wildcard.
type Subscriptions = HashMap<ResourceType, Option<BTreeSet<String>>>;

fn wanted(
    resources: &Resources,
    kind: ResourceType,
    subs: &Subscriptions,
) -> BTreeMap<String, Any> {
    let Some(sub) = subs.get(&kind) else {
        return BTreeMap::new();
    };
    resources
        .get(&kind)
        .map(|all| {
            all.iter()
                .filter(|(name, _)| sub.as_ref().is_none_or(|names| names.contains(*name)))
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect()
        })
        .unwrap_or_default()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let this = self.clone();
        this.shared
            .streams_opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let mut changed = this.changed.clone();
            let mut killed = this.killed.clone();
            let mut subs: Subscriptions = HashMap::new();
            let mut nonce = 0u64;
            loop {
                let mut push: Vec<ResourceType> = Vec::new();
                tokio::select! {
                    req = requests.message() => {
                        let Ok(Some(req)) = req else { return };
                        if let Some(node) = req.node.clone() {
                            this.shared.first_node.lock().expect("lock").get_or_insert(node);
                        }
                        let Some(kind) = ResourceType::from_type_url(&req.type_url) else { continue };
                        if !req.response_nonce.is_empty() {
                            this.shared.acks.lock().expect("lock").push(Ack {
                                kind: Some(kind),
                                nack: req.error_detail.map(|s| s.message),
                                version_info: req.version_info.clone(),
                            });
                        }
                        let sub = if kind.is_wildcard() { None } else { Some(req.resource_names.iter().cloned().collect()) };
                        if subs.get(&kind) != Some(&sub) {
                            subs.insert(kind, sub);
                            push.push(kind);
                        }
                    }
                    _ = changed.changed() => push.extend(ResourceType::ALL),
                    _ = killed.wait_for(|k| *k) => return,
                }
                let resources = this.shared.resources.lock().expect("lock").clone();
                let version = changed.borrow().to_string();
                for kind in push {
                    if !subs.contains_key(&kind) {
                        continue;
                    }
                    nonce += 1;
                    let response = DiscoveryResponse {
                        version_info: version.clone(),
                        resources: wanted(&resources, kind, &subs).into_values().collect(),
                        type_url: kind.type_url().to_owned(),
                        nonce: nonce.to_string(),
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let this = self.clone();
        this.shared
            .streams_opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let mut changed = this.changed.clone();
            let mut killed = this.killed.clone();
            let mut subs: Subscriptions = HashMap::new();
            // What the proxy holds per type: name -> version.
            let mut sent: HashMap<ResourceType, BTreeMap<String, String>> = HashMap::new();
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    req = requests.message() => {
                        let Ok(Some(req)) = req else { return };
                        if let Some(node) = req.node.clone() {
                            this.shared.first_node.lock().expect("lock").get_or_insert(node);
                        }
                        let Some(kind) = ResourceType::from_type_url(&req.type_url) else { continue };
                        if !req.response_nonce.is_empty() {
                            this.shared.acks.lock().expect("lock").push(Ack {
                                kind: Some(kind),
                                nack: req.error_detail.map(|s| s.message),
                                version_info: String::new(),
                            });
                        }
                        if !req.initial_resource_versions.is_empty() {
                            sent.entry(kind).or_default().extend(req.initial_resource_versions.clone());
                        }
                        let entry = subs.entry(kind).or_insert_with(|| (!kind.is_wildcard()).then(BTreeSet::new));
                        if let Some(names) = entry {
                            names.extend(req.resource_names_subscribe.iter().cloned());
                            for name in &req.resource_names_unsubscribe {
                                names.remove(name);
                                sent.entry(kind).or_default().remove(name);
                            }
                        }
                    }
                    _ = changed.changed() => {}
                    _ = killed.wait_for(|k| *k) => return,
                }
                let resources = this.shared.resources.lock().expect("lock").clone();
                for kind in ResourceType::ALL {
                    if !subs.contains_key(&kind) {
                        continue;
                    }
                    let want = wanted(&resources, kind, &subs);
                    let held = sent.entry(kind).or_default();
                    let mut changed_resources = Vec::new();
                    for (name, any) in &want {
                        let version = version_of(any);
                        if held.get(name) != Some(&version) {
                            held.insert(name.clone(), version.clone());
                            changed_resources.push(Resource {
                                name: name.clone(),
                                version,
                                resource: Some(any.clone()),
                                ..Default::default()
                            });
                        }
                    }
                    let removed: Vec<String> = held
                        .keys()
                        .filter(|n| !want.contains_key(*n))
                        .cloned()
                        .collect();
                    for name in &removed {
                        held.remove(name);
                    }
                    if changed_resources.is_empty() && removed.is_empty() {
                        continue;
                    }
                    nonce += 1;
                    let response = DeltaDiscoveryResponse {
                        resources: changed_resources,
                        removed_resources: removed,
                        type_url: kind.type_url().to_owned(),
                        nonce: nonce.to_string(),
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
