//! State-of-the-world ADS (`StreamAggregatedResources`): what one stream has asked for and
//! been sent, and the responses each request or config change calls for.
//!
//! The rules are istiod's: a request without a nonce is answered with the current state;
//! a request whose nonce is not the latest response's is stale and ignored; with the latest
//! nonce it is an ACK (answered only if it changes the subscription) or a NACK (recorded,
//! never answered, so a rejected config is not sent again).
//!
//! A push sends each type whose content changed for the proxy, in push order, and the
//! endpoints of every EDS cluster just sent: Envoy re-warms an updated cluster and waits
//! for its endpoints even when they did not change.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::connection::StreamProtocol;
use crate::index::{ChangeHint, ProxyResources};
use crate::reply::Reply;
use crate::resources::ResourceType;
use crate::status::{StreamKind, TypeSyncStatus};
use crate::subscription::{NonceSource, Subscription};
use crate::versioned::{rewarmed_endpoints, set_version};

/// One state-of-the-world stream.
#[derive(Debug)]
pub(crate) struct SotwStream {
    proxy_id: String,
    /// Ordered by [`ResourceType`], which is the push order.
    watches: BTreeMap<ResourceType, Watch>,
    nonces: NonceSource,
}

#[derive(Debug)]
struct Watch {
    subscription: Subscription,
    /// Name -> version of the resources in the latest response.
    sent: BTreeMap<String, String>,
    status: TypeSyncStatus,
}

impl StreamProtocol for SotwStream {
    type Request = DiscoveryRequest;
    const KIND: StreamKind = StreamKind::Sotw;

    fn new(proxy_id: &str) -> Self {
        Self {
            proxy_id: proxy_id.to_string(),
            watches: BTreeMap::new(),
            nonces: NonceSource::default(),
        }
    }

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        resources: &ProxyResources,
    ) -> Option<Reply> {
        let Some(resource_type) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(proxy = %self.proxy_id, type_url = %request.type_url, "ignoring request for an unsupported type");
            return None;
        };
        let requested = Subscription::from_sotw_request(resource_type, &request.resource_names);

        let watch = self
            .watches
            .entry(resource_type)
            .or_insert_with(|| Watch::new(resource_type));
        // A first request, or one from a proxy that reconnected and carries a nonce from
        // another stream: answer with what it should have now.
        if request.response_nonce.is_empty() || watch.status.sent_nonce.is_none() {
            watch.subscription = requested;
            return Some(self.respond(resource_type, resources));
        }

        let error = request
            .error_detail
            .as_ref()
            .map(|status| status.message.as_str());
        if !watch.status.record_answer(&request.response_nonce, error) {
            tracing::debug!(proxy = %self.proxy_id, type = %resource_type, nonce = %request.response_nonce, "ignoring a request with a stale nonce");
            return None;
        }
        if let Some(message) = error {
            tracing::warn!(proxy = %self.proxy_id, type = %resource_type, version = %request.version_info, message, "proxy rejected config");
            return None;
        }
        if watch.subscription == requested {
            return None;
        }
        watch.subscription = requested;
        Some(self.respond(resource_type, resources))
    }

    fn on_push(&mut self, resources: &ProxyResources, _hint: Option<&ChangeHint>) -> Vec<Reply> {
        // State of the world sends whole sets: a hint cannot make that smaller.
        let mut rewarmed = BTreeSet::new();
        let mut changed = Vec::new();
        for (resource_type, watch) in &self.watches {
            let current = || watch.subscription.select(resources.of(*resource_type));
            let unchanged = current()
                .map(|r| (&r.name, &r.version))
                .eq(watch.sent.iter());
            let rewarming = *resource_type == ResourceType::Endpoint
                && current().any(|r| rewarmed.contains(&r.name));
            if *resource_type == ResourceType::Cluster && !unchanged {
                rewarmed = rewarmed_endpoints(
                    current().filter(|r| watch.sent.get(&r.name) != Some(&r.version)),
                );
            }
            if !unchanged || rewarming {
                changed.push(*resource_type);
            }
        }
        changed
            .into_iter()
            .map(|resource_type| self.respond(resource_type, resources))
            .collect()
    }

    fn status(&self) -> Vec<TypeSyncStatus> {
        self.watches.values().map(|w| w.status.clone()).collect()
    }
}

impl SotwStream {
    /// The full response for `resource_type`: every subscribed resource that exists.
    fn respond(&mut self, resource_type: ResourceType, resources: &ProxyResources) -> Reply {
        let nonce = self.nonces.next_nonce();
        let watch = self
            .watches
            .entry(resource_type)
            .or_insert_with(|| Watch::new(resource_type));
        let selected: Vec<_> = watch
            .subscription
            .select(resources.of(resource_type))
            .cloned()
            .collect();
        watch.sent = selected
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        let version = set_version(watch.sent.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        watch
            .status
            .record_sent(version.clone(), nonce.clone(), selected.len());
        tracing::debug!(proxy = %self.proxy_id, type = %resource_type, version, nonce, resources = selected.len(), "sending");
        let head = DiscoveryResponse {
            version_info: version,
            type_url: resource_type.type_url().to_string(),
            nonce,
            ..Default::default()
        };
        Reply::sotw(&head, selected)
    }
}

impl Watch {
    fn new(resource_type: ResourceType) -> Self {
        Self {
            subscription: Subscription::none(resource_type),
            sent: BTreeMap::new(),
            status: TypeSyncStatus::new(resource_type),
        }
    }
}
