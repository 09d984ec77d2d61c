//! Incremental ADS (`DeltaAggregatedResources`): what one stream's proxy has, and the
//! changed and removed resources each request or config change calls for.
//!
//! Subscriptions are deltas themselves, so they are applied from every request, even one
//! whose nonce is stale; only the ACK/NACK part of a stale request is ignored.
//!
//! A push also resends the endpoints of every EDS cluster it updates, unchanged or not:
//! Envoy re-warms an updated cluster and waits for its endpoints.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use prost::Message as _;

use crate::connection::StreamProtocol;
use crate::known::Known;
use crate::resources::ResourceType;
use crate::status::{StreamKind, TypeSyncStatus};
use crate::subscription::{NonceSource, Subscription};
use crate::versioned::{ChangeHint, ProxyResources, rewarmed_endpoints};

static NOTHING: BTreeSet<String> = BTreeSet::new();

/// The most resource bytes one response carries; more are split over several responses.
/// gRPC's encoder keeps, for the life of a stream, a buffer as large as the largest
/// message it has sent: without a cap, every stream would hold a whole mesh's worth.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// `resources` in order, in groups of at most `limit` bytes (a resource larger than that
/// goes alone); always at least one group, possibly empty.
fn split_by_size(resources: Vec<Resource>, limit: usize) -> Vec<Vec<Resource>> {
    let mut groups = vec![Vec::new()];
    let mut size = 0;
    for resource in resources {
        let bytes = resource.encoded_len();
        if size + bytes > limit && !groups.last().is_some_and(Vec::is_empty) {
            groups.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(group) = groups.last_mut() {
            group.push(resource);
        }
    }
    groups
}

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
    type Response = DeltaDiscoveryResponse;
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
    ) -> Vec<DeltaDiscoveryResponse> {
        let Some(resource_type) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(proxy = %self.proxy_id, type_url = %request.type_url, "ignoring request for an unsupported type");
            return Vec::new();
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
            Vec::new()
        }
    }

    fn on_push(
        &mut self,
        resources: &ProxyResources,
        hint: Option<&ChangeHint>,
    ) -> Vec<DeltaDiscoveryResponse> {
        let types: Vec<ResourceType> = self.watches.keys().copied().collect();
        let mut rewarmed = BTreeSet::new();
        let mut responses = Vec::new();
        for resource_type in types {
            let resend = match resource_type {
                ResourceType::Endpoint => std::mem::take(&mut rewarmed),
                _ => BTreeSet::new(),
            };
            let candidates = hint.map(|hint| hint.get(&resource_type).unwrap_or(&NOTHING));
            let answers = self.respond_to(resource_type, resources, false, &resend, candidates);
            if resource_type == ResourceType::Cluster {
                let clusters = resources.of(ResourceType::Cluster);
                rewarmed = rewarmed_endpoints(
                    answers
                        .iter()
                        .flat_map(|answer| &answer.resources)
                        .filter_map(|sent| clusters.get(&sent.name)),
                );
            }
            responses.extend(answers);
        }
        responses
    }

    fn status(&self) -> Vec<TypeSyncStatus> {
        self.watches.values().map(|w| w.status.clone()).collect()
    }
}

impl DeltaStream {
    /// The resources the proxy lacks or has at another version (plus those named in
    /// `resend`), and the ones it has that no longer exist, in responses of at most
    /// [`MAX_RESPONSE_BYTES`]; none when there is nothing to say and `always` is false.
    fn respond(
        &mut self,
        resource_type: ResourceType,
        resources: &ProxyResources,
        always: bool,
        resend: &BTreeSet<String>,
    ) -> Vec<DeltaDiscoveryResponse> {
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
    ) -> Vec<DeltaDiscoveryResponse> {
        let Some(watch) = self.watches.get_mut(&resource_type) else {
            return Vec::new();
        };
        let all = resources.of(resource_type);
        let (subscription, known) = (&watch.subscription, &watch.known);
        let stale = |r: &&std::sync::Arc<crate::versioned::VersionedResource>| {
            known.version(subscription, &r.name) != Some(r.version.as_str())
                || resend.contains(&r.name)
        };
        let (updated, mut removed): (Vec<_>, Vec<String>) = match candidates {
            None => (
                subscription.select(all).filter(stale).collect(),
                known
                    .names(subscription)
                    .filter(|name| !all.contains_key(name))
                    .cloned()
                    .collect(),
            ),
            Some(candidates) => {
                let names: BTreeSet<&String> = candidates.iter().chain(resend).collect();
                (
                    names
                        .iter()
                        .filter(|name| subscription.covers(name))
                        .filter_map(|name| all.get(name))
                        .filter(stale)
                        .collect(),
                    names
                        .iter()
                        .filter(|name| {
                            !all.contains_key(name) && known.version(subscription, name).is_some()
                        })
                        .map(|name| (*name).clone())
                        .collect(),
                )
            }
        };
        let updated: Vec<Resource> = updated
            .into_iter()
            .map(|r| Resource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.any.clone()),
                ..Default::default()
            })
            .collect();

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
        if updated.is_empty() && removed.is_empty() && !always {
            return Vec::new();
        }
        let (updated_count, removed_count) = (updated.len(), removed.len());
        let mut parts = split_by_size(updated, MAX_RESPONSE_BYTES);
        let mut nonces = Vec::with_capacity(parts.len());
        // Delta proxies do not read the system version; a revision per type is enough to
        // tell responses apart, and costs nothing per resource.
        watch.revision += 1;
        let version = format!("{}", watch.revision);
        let last = parts.len() - 1;
        let answers: Vec<DeltaDiscoveryResponse> = parts
            .drain(..)
            .enumerate()
            .map(|(index, part)| {
                let nonce = self.nonces.next_nonce();
                nonces.push(nonce.clone());
                DeltaDiscoveryResponse {
                    system_version_info: version.clone(),
                    resources: part,
                    type_url: resource_type.type_url().to_string(),
                    // Removals go last, after everything that may replace them.
                    removed_resources: if index == last {
                        std::mem::take(&mut removed)
                    } else {
                        Vec::new()
                    },
                    nonce,
                    ..Default::default()
                }
            })
            .collect();
        tracing::debug!(proxy = %self.proxy_id, type = %resource_type, version, nonces = ?nonces, updated = updated_count, removed = removed_count, "sending");
        watch
            .status
            .record_sent_in_parts(version, nonces, watch.known.len());
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, bytes: usize) -> Resource {
        Resource {
            name: name.to_string(),
            resource: Some(envoy_types::pb::google::protobuf::Any {
                type_url: String::new(),
                value: vec![0; bytes],
            }),
            ..Default::default()
        }
    }

    fn names(groups: &[Vec<Resource>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|group| group.iter().map(|r| r.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn resources_are_split_in_order_under_the_limit() {
        let groups = split_by_size(
            vec![
                resource("a", 40),
                resource("b", 40),
                resource("c", 40),
                resource("big", 500),
                resource("d", 10),
            ],
            100,
        );
        assert_eq!(
            names(&groups),
            [vec!["a", "b"], vec!["c"], vec!["big"], vec!["d"]]
        );
        for group in &groups[..2] {
            assert!(group.iter().map(|r| r.encoded_len()).sum::<usize>() <= 100);
        }
    }

    #[test]
    fn nothing_to_split_is_one_empty_group() {
        assert_eq!(split_by_size(Vec::new(), 100).len(), 1);
        assert!(split_by_size(Vec::new(), 100)[0].is_empty());
    }
}
