//! `DeltaAggregatedResources`: incremental updates, explicit removals,
//! `initial_resource_versions` on reconnect.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::StreamProgress;
use super::{XdsError, diff, error_detail, stream_request};
use crate::control_plane::ControlPlaneLink;
use crate::resource::ResourceType;
use crate::state::{ConfigStore, RawResource, Update};

pub async fn run(
    mut client: AggregatedDiscoveryServiceClient<Channel>,
    link: &ControlPlaneLink,
    node: &Node,
    store: &ConfigStore,
    progress: &mut StreamProgress<'_>,
) -> Result<(), XdsError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let send =
        |req: DeltaDiscoveryRequest| tx.send(req).map_err(|_| XdsError::RequestChannelClosed);

    // Subscribe like Envoy: clusters and listeners by wildcard, then what they name.
    let (routes, endpoints) = store.wanted().await;
    let mut subscribed: HashMap<ResourceType, BTreeSet<String>> = HashMap::from([
        (ResourceType::Route, routes),
        (ResourceType::Endpoints, endpoints),
    ]);
    let mut first = true;
    for kind in ResourceType::ALL {
        let names: Vec<String> = if kind.is_wildcard() {
            Vec::new()
        } else {
            subscribed
                .get(&kind)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        if !kind.is_wildcard() && names.is_empty() {
            continue;
        }
        let held = store.versions(kind).await;
        send(DeltaDiscoveryRequest {
            node: first.then(|| node.clone()),
            type_url: kind.type_url().to_owned(),
            resource_names_subscribe: names,
            initial_resource_versions: held,
            ..Default::default()
        })?;
        first = false;
    }

    let mut responses = client
        .delta_aggregated_resources(stream_request(link, UnboundedReceiverStream::new(rx))?)
        .await?
        .into_inner();
    progress.established();
    while let Some(response) = responses.message().await? {
        progress.made = true;
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            tracing::warn!(type_url = %response.type_url, "ignoring a resource type the proxy does not use");
            send(DeltaDiscoveryRequest {
                type_url: response.type_url,
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
                .map(|r| RawResource {
                    name: r.name,
                    version: r.version,
                    resource: r.resource.unwrap_or_default(),
                })
                .collect(),
            removed: response.removed_resources,
            full_state: false,
        };
        tracing::debug!(%kind, resources = update.resources.len(), removed = update.removed.len(), "delta update");
        let errors = store.apply(update).await;
        send(DeltaDiscoveryRequest {
            type_url: response.type_url,
            response_nonce: response.nonce,
            error_detail: error_detail(&errors),
            ..Default::default()
        })?;

        let (routes, endpoints) = store.wanted().await;
        for (kind, wanted) in [
            (ResourceType::Route, routes),
            (ResourceType::Endpoints, endpoints),
        ] {
            let current = subscribed.entry(kind).or_default();
            let (subscribe, unsubscribe) = diff(current, &wanted);
            if subscribe.is_empty() && unsubscribe.is_empty() {
                continue;
            }
            send(DeltaDiscoveryRequest {
                type_url: kind.type_url().to_owned(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            })?;
            *current = wanted;
        }
    }
    Err(XdsError::Closed)
}
