//! `StreamAggregatedResources`: every response for a wildcard type is the full set;
//! ACKs echo the version and nonce, NACKs keep the last accepted version.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::StreamProgress;
use super::{XdsError, error_detail, stream_request};
use crate::control_plane::ControlPlaneLink;
use crate::resource::ResourceType;
use crate::state::{ConfigStore, RawResource, Update};

/// Last accepted `version_info` per type, kept across reconnects so the control
/// plane can tell the proxy is already up to date.
#[derive(Debug, Default)]
pub struct Versions(HashMap<ResourceType, String>);

#[derive(Debug, Default)]
struct TypeState {
    nonce: String,
    names: BTreeSet<String>,
}

pub async fn run(
    mut client: AggregatedDiscoveryServiceClient<Channel>,
    link: &ControlPlaneLink,
    node: &Node,
    store: &ConfigStore,
    versions: &mut Versions,
    progress: &mut StreamProgress<'_>,
) -> Result<(), XdsError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let send = |req: DiscoveryRequest| tx.send(req).map_err(|_| XdsError::RequestChannelClosed);
    let version_of = |versions: &Versions, kind| versions.0.get(&kind).cloned().unwrap_or_default();

    let (routes, endpoints) = store.wanted().await;
    let mut state: HashMap<ResourceType, TypeState> = HashMap::new();
    state.entry(ResourceType::Route).or_default().names = routes;
    state.entry(ResourceType::Endpoints).or_default().names = endpoints;
    let mut first = true;
    for kind in ResourceType::ALL {
        let names = state.entry(kind).or_default().names.clone();
        if !kind.is_wildcard() && names.is_empty() {
            continue;
        }
        send(DiscoveryRequest {
            node: first.then(|| node.clone()),
            type_url: kind.type_url().to_owned(),
            version_info: version_of(versions, kind),
            resource_names: names.into_iter().collect(),
            ..Default::default()
        })?;
        first = false;
    }

    let mut responses = client
        .stream_aggregated_resources(stream_request(link, UnboundedReceiverStream::new(rx))?)
        .await?
        .into_inner();
    progress.established();
    while let Some(response) = responses.message().await? {
        progress.made = true;
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            tracing::warn!(type_url = %response.type_url, "ignoring a resource type the proxy does not use");
            send(DiscoveryRequest {
                type_url: response.type_url,
                version_info: response.version_info,
                response_nonce: response.nonce,
                ..Default::default()
            })?;
            continue;
        };
        let update = Update {
            kind,
            resources: response
                .resources
                .into_iter()
                .map(|resource| RawResource {
                    name: String::new(),
                    version: response.version_info.clone(),
                    resource,
                })
                .collect(),
            removed: Vec::new(),
            full_state: kind.is_wildcard(),
        };
        tracing::debug!(%kind, version = %response.version_info, resources = update.resources.len(), "sotw update");
        let errors = store.apply(update).await;
        if errors.is_empty() {
            versions.0.insert(kind, response.version_info.clone());
        }
        let type_state = state.entry(kind).or_default();
        type_state.nonce = response.nonce;
        send(DiscoveryRequest {
            type_url: response.type_url,
            version_info: version_of(versions, kind),
            response_nonce: type_state.nonce.clone(),
            resource_names: type_state.names.iter().cloned().collect(),
            error_detail: error_detail(&errors),
            ..Default::default()
        })?;

        let (routes, endpoints) = store.wanted().await;
        for (kind, wanted) in [
            (ResourceType::Route, routes),
            (ResourceType::Endpoints, endpoints),
        ] {
            let type_state = state.entry(kind).or_default();
            if type_state.names == wanted {
                continue;
            }
            type_state.names = wanted;
            send(DiscoveryRequest {
                type_url: kind.type_url().to_owned(),
                version_info: version_of(versions, kind),
                response_nonce: type_state.nonce.clone(),
                resource_names: type_state.names.iter().cloned().collect(),
                ..Default::default()
            })?;
        }
    }
    Err(XdsError::Closed)
}
