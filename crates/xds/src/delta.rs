//! Incremental ADS (`DeltaAggregatedResources`): what one stream's proxy has, and the
//! changed and removed resources each request or config change calls for.
//!
//! Subscriptions are deltas themselves, so they are applied from every request, even one
//! whose nonce is stale; only the ACK/NACK part of a stale request is ignored.
//!
//! A push also resends the endpoints of every EDS cluster it updates, unchanged or not:
//! Envoy re-warms an updated cluster and waits for its endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

use crate::connection::StreamProtocol;
use crate::index::{ChangeHint, ProxyResources};
use crate::known::Known;
use crate::reply::Reply;
use crate::resources::ResourceType;
use crate::status::{StreamKind, TypeSyncStatus};
use crate::subscription::{NonceSource, Subscription};
use crate::versioned::{VersionedResource, rewarmed_endpoints};

static NOTHING: BTreeSet<String> = BTreeSet::new();

/// One delta stream.
#[derive(Debug)]
pub(crate) struct DeltaStream {
    proxy_id: String,
    /// Ordered by [`ResourceType`], which is the push order.
    watches: BTreeMap<ResourceType, Watch>,
    nonces: NonceSource,
}

#[derive(Debug)]
struct Watch {
    subscription: Subscription,
    /// What the proxy has, or will have once it applies what was sent.
    known: Known,
    status: TypeSyncStatus,
    revision: u64,
}

impl StreamProtocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    const KIND: StreamKind = StreamKind::Delta;

    fn new(proxy_id: &str) -> Self {
        Self {
            proxy_id: proxy_id.to_string(),
            watches: BTreeMap::new(),
            nonces: NonceSource::default(),
        }
    }

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        resources: &ProxyResources,
    ) -> Option<Reply> {
        let Some(resource_type) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(proxy = %self.proxy_id, type_url = %request.type_url, "ignoring request for an unsupported type");
            return None;
        };
        let first = !self.watches.contains_key(&resource_type);
        let watch = self.watches.entry(resource_type).or_insert_with(|| Watch {
            subscription: Subscription::initial_delta(
                resource_type,
                &request.resource_names_subscribe,
            ),
            // A reconnecting proxy says what it already has; it is not sent again.
            known: Known::new(resource_type, &request.initial_resource_versions),
            status: TypeSyncStatus::new(resource_type),
            revision: 0,
        });

        if !request.response_nonce.is_empty() {
            let error = request
                .error_detail
                .as_ref()
                .map(|status| status.message.as_str());
            if !watch.status.record_answer(&request.response_nonce, error) {
                tracing::debug!(proxy = %self.proxy_id, type = %resource_type, nonce = %request.response_nonce, "stale nonce: ignoring the acknowledgement");
            } else if let Some(message) = error {
                tracing::warn!(proxy = %self.proxy_id, type = %resource_type, nonce = %request.response_nonce, message, "proxy rejected config");
            }
        }

        let before = watch.subscription.apply_delta(
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
            resources.shared(),
        );
        let subscription_changed = before.is_some();
        if let Some(before) = before {
            // The proxy drops what it unsubscribes from; a later subscribe must resend it.
            watch.known.resubscribe(
                &before,
                &watch.subscription,
                &request.resource_names_subscribe,
                &request.resource_names_unsubscribe,
            );
        }

        if first || subscription_changed {
            // The first request is always answered, even with nothing, so the proxy's
            // initial fetch for this type completes.
            self.respond(resource_type, resources, first, &BTreeSet::new())
        } else {
            None
        }
    }

    fn on_push(&mut self, resources: &ProxyResources, hint: Option<&ChangeHint>) -> Vec<Reply> {
        let types: Vec<ResourceType> = self.watches.keys().copied().collect();
        let mut rewarmed = BTreeSet::new();
        let mut responses = Vec::new();
        for resource_type in types {
            let resend = match resource_type {
                ResourceType::Endpoint => std::mem::take(&mut rewarmed),
                _ => BTreeSet::new(),
            };
            let candidates = hint.map(|hint| hint.get(&resource_type).unwrap_or(&NOTHING));
            let Some(response) =
                self.respond_to(resource_type, resources, false, &resend, candidates)
            else {
                continue;
            };
            if resource_type == ResourceType::Cluster {
                rewarmed = rewarmed_endpoints(response.resources().iter());
            }
            responses.push(response);
        }
        responses
    }

    fn status(&self) -> Vec<TypeSyncStatus> {
        self.watches.values().map(|w| w.status.clone()).collect()
    }
}

impl DeltaStream {
    /// The resources the proxy lacks or has at another version (plus those named in
    /// `resend`), and the ones it has that no longer exist; `None` when there is nothing to
    /// say and `always` is false.
    fn respond(
        &mut self,
        resource_type: ResourceType,
        resources: &ProxyResources,
        always: bool,
        resend: &BTreeSet<String>,
    ) -> Option<Reply> {
        self.respond_to(resource_type, resources, always, resend, None)
    }

    /// As [`Self::respond`]; with `candidates`, only those names (and `resend`) are looked
    /// at: a push names what may have changed, so a small change costs a small look.
    fn respond_to(
        &mut self,
        resource_type: ResourceType,
        resources: &ProxyResources,
        always: bool,
        resend: &BTreeSet<String>,
        candidates: Option<&BTreeSet<String>>,
    ) -> Option<Reply> {
        let watch = self.watches.get_mut(&resource_type)?;
        let all = resources.of(resource_type);
        let (subscription, known) = (&watch.subscription, &watch.known);
        let stale = |r: &&Arc<VersionedResource>| {
            known.version(subscription, &r.name) != Some(r.version.as_str())
                || resend.contains(&r.name)
        };
        // With a full look, also how many resources the proxy will hold after it.
        let (updated, removed, held_after_full_look): (Vec<_>, Vec<String>, _) = match candidates {
            None => {
                let mut held = 0;
                let updated = subscription
                    .select(all)
                    .inspect(|_| held += 1)
                    .filter(stale)
                    .cloned()
                    .collect();
                let removed = known
                    .names(subscription)
                    .filter(|name| !all.contains_key(name))
                    .cloned()
                    .collect();
                (updated, removed, Some(held))
            }
            Some(candidates) => {
                let names: BTreeSet<&String> = candidates.iter().chain(resend).collect();
                (
                    names
                        .iter()
                        .filter(|name| subscription.covers(name))
                        .filter_map(|name| all.get(name))
                        .filter(stale)
                        .cloned()
                        .collect(),
                    names
                        .iter()
                        .filter(|name| {
                            !all.contains_key(name) && known.version(subscription, name).is_some()
                        })
                        .map(|name| (*name).clone())
                        .collect(),
                    None,
                )
            }
        };

        match held_after_full_look {
            // Everything subscribed is on its way, and nothing else is held: said at once,
            // instead of name by name (20k names per proxy at 10k services).
            Some(held) => watch.known.hold_all(&watch.subscription, resources, held),
            None => {
                for resource in &updated {
                    watch
                        .known
                        .insert(&watch.subscription, &resource.name, &resource.version);
                }
                for name in &removed {
                    watch.known.remove(&watch.subscription, name);
                }
                // Every subscribed resource the server has is now on its way to the proxy.
                watch.known.rebase(&watch.subscription, resources.shared());
            }
        }
        if updated.is_empty() && removed.is_empty() && !always {
            return None;
        }
        let nonce = self.nonces.next_nonce();
        // Delta proxies do not read the system version; a revision per type is enough to
        // tell responses apart, and costs nothing per resource.
        watch.revision += 1;
        let version = format!("{}", watch.revision);
        watch
            .status
            .record_sent(version.clone(), nonce.clone(), watch.known.len());
        tracing::debug!(proxy = %self.proxy_id, type = %resource_type, version, nonce, updated = updated.len(), removed = removed.len(), "sending");
        let head = DeltaDiscoveryResponse {
            system_version_info: version,
            type_url: resource_type.type_url().to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        };
        Some(Reply::delta(&head, updated))
    }
}
