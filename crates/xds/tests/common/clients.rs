//! gRPC clients that speak ADS to the server under test, the way a proxy would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bosun_xds::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ProxyNode, ROUTE_TYPE_URL,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

/// Generous: a response is normally there in milliseconds; this only bounds a failure.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A sidecar identity for `workload` in `default`, labelled `app=<app>`.
pub fn test_node(workload: &str, app: &str) -> Node {
    let mut node = ProxyNode::sidecar("127.0.10.1".parse().unwrap(), workload, "default");
    node.labels.insert("app".into(), app.into());
    node.to_node("bosun-test", "0.1.0")
}

/// The name of a resource packed in an `Any`.
pub fn resource_name(any: &Any) -> String {
    let bytes = any.value.as_slice();
    match any.type_url.as_str() {
        LISTENER_TYPE_URL => Listener::decode(bytes).unwrap().name,
        ROUTE_TYPE_URL => RouteConfiguration::decode(bytes).unwrap().name,
        CLUSTER_TYPE_URL => Cluster::decode(bytes).unwrap().name,
        ENDPOINT_TYPE_URL => ClusterLoadAssignment::decode(bytes).unwrap().cluster_name,
        other => panic!("unexpected type {other}"),
    }
}

async fn connect(addr: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the ADS server")
}

/// A state-of-the-world client.
pub struct SotwClient {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
    node: Option<Node>,
}

impl SotwClient {
    pub async fn connect(addr: SocketAddr, node: Node) -> Self {
        let (requests, outbound) = mpsc::unbounded_channel();
        let responses = connect(addr)
            .await
            .stream_aggregated_resources(UnboundedReceiverStream::new(outbound))
            .await
            .expect("open the stream")
            .into_inner();
        Self {
            requests,
            responses,
            node: Some(node),
        }
    }

    /// Sends a request; the first one carries the node, as Envoy does.
    pub fn send(&mut self, mut request: DiscoveryRequest) {
        request.node = self.node.take();
        self.requests.send(request).expect("stream open");
    }

    pub fn request(&mut self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        self.send(DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        });
    }

    pub fn ack(&mut self, response: &DiscoveryResponse, names: &[&str]) {
        self.request(
            &response.type_url,
            names,
            &response.version_info,
            &response.nonce,
        );
    }

    /// Rejects `response`, reporting the previously accepted `version`.
    pub fn nack(
        &mut self,
        response: &DiscoveryResponse,
        names: &[&str],
        version: &str,
        message: &str,
    ) {
        let mut request = DiscoveryRequest {
            type_url: response.type_url.clone(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.into(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        request.error_detail = Some(RpcStatus {
            code: tonic::Code::InvalidArgument as i32,
            message: message.into(),
            details: Vec::new(),
        });
        self.send(request);
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        match tokio::time::timeout(RECV_TIMEOUT, self.responses.message()).await {
            Ok(Ok(Some(response))) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The error the server ended the stream with.
    pub async fn recv_error(&mut self) -> tonic::Status {
        match tokio::time::timeout(RECV_TIMEOUT, self.responses.message()).await {
            Ok(Err(status)) => status,
            other => panic!("expected the stream to fail, got {other:?}"),
        }
    }
}

/// Names in a state-of-the-world response.
pub fn names(response: &DiscoveryResponse) -> Vec<String> {
    response.resources.iter().map(resource_name).collect()
}

/// A delta client.
pub struct DeltaClient {
    requests: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
    node: Option<Node>,
}

impl DeltaClient {
    pub async fn connect(addr: SocketAddr, node: Node) -> Self {
        let (requests, outbound) = mpsc::unbounded_channel();
        let responses = connect(addr)
            .await
            .delta_aggregated_resources(UnboundedReceiverStream::new(outbound))
            .await
            .expect("open the stream")
            .into_inner();
        Self {
            requests,
            responses,
            node: Some(node),
        }
    }

    pub fn send(&mut self, mut request: DeltaDiscoveryRequest) {
        request.node = self.node.take();
        self.requests.send(request).expect("stream open");
    }

    pub fn subscribe(&mut self, type_url: &str, subscribe: &[&str], unsubscribe: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
    }

    /// A first request on a new stream from a proxy that already has `initial` resources.
    pub fn resume(&mut self, type_url: &str, subscribe: &[&str], initial: HashMap<String, String>) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            initial_resource_versions: initial,
            ..Default::default()
        });
    }

    pub fn ack(&mut self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        });
    }

    pub fn nack(&mut self, response: &DeltaDiscoveryResponse, message: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message: message.into(),
                details: Vec::new(),
            }),
            ..Default::default()
        });
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        match tokio::time::timeout(RECV_TIMEOUT, self.responses.message()).await {
            Ok(Ok(Some(response))) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }
    /// The error the server ended the stream with.
    pub async fn recv_error(&mut self) -> tonic::Status {
        match tokio::time::timeout(RECV_TIMEOUT, self.responses.message()).await {
            Ok(Err(status)) => status,
            other => panic!("expected the stream to fail, got {other:?}"),
        }
    }
}

/// Name -> version of the resources in a delta response.
pub fn versions(response: &DeltaDiscoveryResponse) -> HashMap<String, String> {
    response
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

/// Sorted names of the resources in a delta response.
pub fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = response.resources.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}
