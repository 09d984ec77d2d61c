//! A simulated sidecar: one delta ADS stream subscribing like Envoy (clusters and
//! listeners by wildcard, then the endpoints and routes they name), acknowledging every
//! response, and timing when it is first in sync and when a watched resource changes.
//!
//! A thousand of them share the control plane's two cores, so each must cost little:
//! responses are decoded only as far as the names and versions (the resources' bytes are
//! kept as slices of the received buffer, not parsed), unlike a real sidecar on its own
//! machine.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bosun_xds::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ProxyNode, ROUTE_TYPE_URL,
};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What one client saw, as instants.
#[derive(Debug, Default, Clone)]
pub struct ClientTimes {
    pub synced: Option<Instant>,
    /// When the watched cluster's endpoints arrived with a version other than the first.
    pub changed: Option<Instant>,
    pub bytes: usize,
}

/// `DeltaDiscoveryResponse`, as far as a simulated sidecar reads it.
#[derive(Clone, PartialEq, prost::Message)]
struct DeltaResponse {
    #[prost(message, repeated, tag = "2")]
    resources: Vec<DeltaResource>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

/// `Resource`: its name and version; the resource itself left encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct DeltaResource {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(message, optional, tag = "2")]
    resource: Option<EncodedAny>,
    #[prost(string, tag = "3")]
    name: String,
}

/// `Any`: only its value's bytes, a slice of the received buffer.
#[derive(Clone, PartialEq, prost::Message)]
struct EncodedAny {
    #[prost(bytes = "bytes", tag = "2")]
    value: bytes::Bytes,
}

const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

#[derive(Default)]
struct SyncState {
    /// Clusters the mesh has (one per service); they may come over several responses.
    clusters_expected: usize,
    clusters_seen: usize,
    listeners: bool,
    routes: bool,
    endpoints_wanted: usize,
    endpoints_seen: usize,
    watched_version: Option<String>,
}

impl SyncState {
    fn synced(&self) -> bool {
        self.clusters_seen >= self.clusters_expected
            && self.listeners
            && self.routes
            && self.endpoints_seen >= self.endpoints_wanted
    }
}

fn request(type_url: &str, nonce: &str, subscribe: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        response_nonce: nonce.to_string(),
        resource_names_subscribe: subscribe,
        ..Default::default()
    }
}

/// Runs one client until `stop` flips; reports its instants on `times`.
pub async fn run(
    channel: Channel,
    index: usize,
    start: watch::Receiver<bool>,
    watched: String,
    clusters_expected: usize,
    group: Option<String>,
    times: watch::Sender<ClientTimes>,
) -> anyhow::Result<()> {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 1, (index >> 8) as u8, index as u8));
    let mut node = ProxyNode::sidecar(ip, &format!("client-{index}"), "bench");
    if let Some(group) = group {
        node.labels.insert("group".to_string(), group);
    }
    let (requests, outbound) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let mut start = start;
    let _ = start.wait_for(|go| *go).await;

    let mut first = request(CLUSTER_TYPE_URL, "", Vec::new());
    first.node = Some(node.to_node("xds-scale", env!("CARGO_PKG_VERSION")));
    requests.send(first).await?;
    requests
        .send(request(LISTENER_TYPE_URL, "", Vec::new()))
        .await?;

    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    client.ready().await?;
    let codec = tonic_prost::ProstCodec::<DeltaDiscoveryRequest, DeltaResponse>::default();
    let mut responses = client
        .streaming(
            tonic::Request::new(ReceiverStream::new(outbound)),
            http::uri::PathAndQuery::from_static(DELTA_PATH),
            codec,
        )
        .await?
        .into_inner();

    let mut state = SyncState {
        clusters_expected,
        ..SyncState::default()
    };
    while let Some(response) = responses.next().await {
        let response: DeltaResponse = response?;
        let now = Instant::now();
        let bytes: usize = response
            .resources
            .iter()
            .map(|r| r.resource.as_ref().map_or(0, |any| any.value.len()))
            .sum();
        let mut subscribe = Vec::new();
        let type_url = response.type_url.as_str();
        match type_url {
            // The first answers are every cluster, possibly over several responses;
            // they are EDS clusters named like their endpoints, subscribed to as they
            // come, as Envoy does. Later answers are changes, not needed here.
            CLUSTER_TYPE_URL if state.clusters_seen < state.clusters_expected => {
                // The service clusters take their endpoints over EDS; PassthroughCluster
                // (original destination) has none, and Envoy asks none for it.
                subscribe = response
                    .resources
                    .iter()
                    .map(|r| r.name.clone())
                    .filter(|name| name.starts_with("outbound|"))
                    .collect();
                state.clusters_seen += subscribe.len();
                state.endpoints_wanted += subscribe.len();
            }
            LISTENER_TYPE_URL if !state.listeners => {
                state.listeners = true;
                requests
                    .send(request(ROUTE_TYPE_URL, "", vec!["outbound".to_string()]))
                    .await?;
            }
            ROUTE_TYPE_URL => state.routes = true,
            ENDPOINT_TYPE_URL => {
                state.endpoints_seen += response.resources.len();
                for resource in &response.resources {
                    if resource.name != watched {
                        continue;
                    }
                    match &state.watched_version {
                        None => state.watched_version = Some(resource.version.clone()),
                        Some(version) if *version != resource.version => {
                            times.send_modify(|t| {
                                t.changed.get_or_insert(now);
                            });
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => {}
        }
        times.send_modify(|t| t.bytes += bytes);
        requests
            .send(request(type_url, &response.nonce, Vec::new()))
            .await?;
        if !subscribe.is_empty() {
            requests
                .send(request(ENDPOINT_TYPE_URL, "", subscribe))
                .await?;
        }
        if state.synced() {
            times.send_modify(|t| {
                t.synced.get_or_insert(now);
            });
        }
    }
    Ok(())
}
