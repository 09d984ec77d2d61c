//! What a delta stream's proxy holds of one resource type, name by name.
//!
//! A proxy holds, after each response, the version of every subscribed shared resource
//! the server has: the same for every proxy of the mesh. So instead of a name and version
//! per resource per proxy, a stream keeps the shared index it last brought its proxy up
//! to (one `Arc`, the same for every stream) and the few names where the proxy differs
//! from it: its own resources, and what the latest changes have not been answered with
//! yet. Memory per stream is then a pointer plus a handful of entries.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::index::{ProxyResources, ResourceIndex};
use crate::resources::ResourceType;
use crate::subscription::Subscription;

#[derive(Debug)]
pub(crate) struct Known {
    resource_type: ResourceType,
    /// Every resource of this index that the subscription covers is held at the index's
    /// version, unless `exceptions` says otherwise.
    base: Arc<ResourceIndex>,
    /// Where the proxy differs from `base`: the version it holds, or `None` for not held.
    exceptions: BTreeMap<String, Option<String>>,
    /// How many resources the proxy holds.
    held: usize,
}

impl Known {
    /// What a proxy says it holds when it (re)connects; nothing for a new one.
    pub(crate) fn new<'a>(
        resource_type: ResourceType,
        initial: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let exceptions: BTreeMap<String, Option<String>> = initial
            .into_iter()
            .map(|(name, version)| (name.clone(), Some(version.clone())))
            .collect();
        Self {
            resource_type,
            base: Arc::default(),
            held: exceptions.len(),
            exceptions,
        }
    }

    /// The version of `name` the proxy holds, if any.
    pub(crate) fn version<'a>(
        &'a self,
        subscription: &Subscription,
        name: &str,
    ) -> Option<&'a str> {
        match self.exceptions.get(name) {
            Some(held) => held.as_deref(),
            None if subscription.covers(name) => self
                .base
                .of(self.resource_type)
                .get(name)
                .map(|resource| resource.version()),
            None => None,
        }
    }

    /// Every name the proxy holds.
    pub(crate) fn names<'a>(
        &'a self,
        subscription: &'a Subscription,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let differing = self
            .exceptions
            .iter()
            .filter(|(_, held)| held.is_some())
            .map(|(name, _)| name);
        let from_base = self
            .base
            .of(self.resource_type)
            .keys()
            .filter(|name| subscription.covers(name) && !self.exceptions.contains_key(*name));
        differing.chain(from_base)
    }

    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// The proxy was sent `version` of `name`.
    pub(crate) fn insert(&mut self, subscription: &Subscription, name: &str, version: &str) {
        if self.version(subscription, name).is_none() {
            self.held += 1;
        }
        self.exceptions
            .insert(name.to_string(), Some(version.to_string()));
    }

    /// The proxy was told `name` is gone.
    pub(crate) fn remove(&mut self, subscription: &Subscription, name: &str) {
        if self.version(subscription, name).is_some() {
            self.held -= 1;
        }
        self.exceptions.insert(name.to_string(), None);
    }

    /// After a response that left the proxy holding every subscribed resource of
    /// `resources` at its version, `held` of them, and nothing else: the shared index is
    /// the base, and only the proxy's own resources differ from it.
    pub(crate) fn hold_all(
        &mut self,
        subscription: &Subscription,
        resources: &ProxyResources,
        held: usize,
    ) {
        self.base = Arc::clone(resources.shared());
        self.exceptions = resources
            .own_of(self.resource_type)
            .iter()
            .filter(|(name, _)| subscription.covers(name))
            .map(|(name, resource)| (name.clone(), Some(resource.version().to_string())))
            .collect();
        self.held = held;
    }

    /// After a response that left the proxy holding every subscribed resource of
    /// `current` at its version (besides its own): makes `current` the base and keeps only
    /// the names where the proxy still differs from it.
    pub(crate) fn rebase(&mut self, subscription: &Subscription, current: &Arc<ResourceIndex>) {
        let resources = current.of(self.resource_type);
        self.exceptions.retain(|name, held| {
            let in_current = subscription
                .covers(name)
                .then(|| resources.get(name))
                .flatten()
                .map(|resource| resource.version());
            held.as_deref() != in_current
        });
        self.base = Arc::clone(current);
    }

    /// Follows a change of subscription from `before` to `after`: names newly covered are
    /// not held yet; names no longer covered are dropped by the proxy.
    pub(crate) fn resubscribe(
        &mut self,
        before: &Subscription,
        after: &Subscription,
        subscribed: &[String],
        unsubscribed: &[String],
    ) {
        if before.is_wildcard() != after.is_wildcard() {
            // Coverage of the whole base changes: spell out what is held, then drop what
            // is no longer covered. Rare (a proxy turning wildcard on or off).
            let held: BTreeMap<String, Option<String>> = self
                .names(before)
                .filter(|name| after.covers(name))
                .map(|name| {
                    let version = self.version(before, name).map(str::to_string);
                    (name.clone(), version)
                })
                .collect();
            self.held = held.len();
            self.exceptions = held;
            self.base = Arc::default();
            return;
        }
        let base = self.base.of(self.resource_type);
        for name in subscribed {
            if !before.covers(name)
                && after.covers(name)
                && !self.exceptions.contains_key(name)
                && base.contains_key(name)
            {
                self.exceptions.insert(name.clone(), None);
            }
        }
        for name in unsubscribed {
            if before.covers(name) && !after.covers(name) {
                if self.version(before, name).is_some() {
                    self.held -= 1;
                }
                self.exceptions.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceSet;
    use crate::versioned::EncodedSet;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

    fn index(names: &[(&str, u32)]) -> Arc<ResourceIndex> {
        let endpoints = names
            .iter()
            .map(|(name, priority)| ClusterLoadAssignment {
                cluster_name: (*name).to_string(),
                // A field that changes the encoding, hence the version.
                policy: Some(Default::default()).filter(|_| *priority > 0),
                ..Default::default()
            })
            .collect();
        Arc::new(ResourceIndex::new(EncodedSet::encode(ResourceSet {
            endpoints,
            ..Default::default()
        })))
    }

    fn version_in(index: &Arc<ResourceIndex>, name: &str) -> String {
        let resources = ProxyResources::build_split(
            Arc::clone(index),
            EncodedSet::default(),
            1,
            &ProxyResources::default(),
        );
        resources
            .of(ResourceType::Endpoint)
            .get(name)
            .expect("resource")
            .version()
            .to_string()
    }

    fn named(names: &[&str]) -> Subscription {
        let mut subscription = Subscription::initial_delta(ResourceType::Endpoint, &[]);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        subscription.apply_delta(&names, &[], &Arc::default());
        subscription
    }

    #[test]
    fn after_a_rebase_the_base_answers_for_every_covered_name() {
        let shared = index(&[("a", 0), ("b", 0), ("c", 0)]);
        let subscription = named(&["a", "b"]);
        let mut known = Known::new(ResourceType::Endpoint, &BTreeMap::new());
        for name in ["a", "b"] {
            known.insert(&subscription, name, &version_in(&shared, name));
        }
        known.rebase(&subscription, &shared);
        assert!(known.exceptions.is_empty(), "{:?}", known.exceptions);
        assert_eq!(known.len(), 2);
        assert_eq!(
            known.version(&subscription, "a"),
            Some(version_in(&shared, "a").as_str())
        );
        assert_eq!(known.version(&subscription, "c"), None, "not subscribed");
        let names: Vec<&String> = known.names(&subscription).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn holding_all_takes_the_shared_index_with_the_proxy_s_own_resources_as_exceptions() {
        let shared = index(&[("a", 0), ("b", 0), ("c", 0)]);
        let own = EncodedSet::encode(ResourceSet {
            endpoints: vec![
                ClusterLoadAssignment {
                    cluster_name: "b".into(),
                    policy: Some(Default::default()),
                    ..Default::default()
                },
                ClusterLoadAssignment {
                    cluster_name: "own".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let resources =
            ProxyResources::build_split(Arc::clone(&shared), own, 1, &ProxyResources::default());
        let subscription = named(&["a", "b", "own"]);
        let mut known = Known::new(ResourceType::Endpoint, &BTreeMap::new());
        known.hold_all(&subscription, &resources, 3);

        let all = resources.of(ResourceType::Endpoint);
        for name in ["a", "b", "own"] {
            let expected = all.get(name).expect("resource").version();
            assert_eq!(known.version(&subscription, name), Some(expected), "{name}");
        }
        assert_ne!(
            known.version(&subscription, "b"),
            Some(version_in(&shared, "b").as_str()),
            "the proxy's own `b` is held, not the shared one"
        );
        assert_eq!(known.version(&subscription, "c"), None, "not subscribed");
        assert_eq!(known.len(), 3);
        assert_eq!(known.exceptions.len(), 2, "only the proxy's own resources");
        let names: Vec<&String> = known.names(&subscription).collect();
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn a_newly_subscribed_name_is_not_held_until_sent() {
        let shared = index(&[("a", 0), ("b", 0)]);
        let mut subscription = named(&["a"]);
        let mut known = Known::new(ResourceType::Endpoint, &BTreeMap::new());
        known.insert(&subscription, "a", &version_in(&shared, "a"));
        known.rebase(&subscription, &shared);

        let before = subscription.clone();
        subscription.apply_delta(&["b".to_string()], &[], &Arc::default());
        known.resubscribe(&before, &subscription, &["b".to_string()], &[]);
        assert_eq!(known.version(&subscription, "b"), None);
        assert_eq!(known.len(), 1);

        let before = subscription.clone();
        subscription.apply_delta(&[], &["a".to_string()], &Arc::default());
        known.resubscribe(&before, &subscription, &[], &["a".to_string()]);
        assert_eq!(known.version(&subscription, "a"), None);
        assert_eq!(known.len(), 0);
    }

    #[test]
    fn a_change_not_yet_sent_stays_an_exception_over_the_new_base() {
        let old = index(&[("a", 0)]);
        let new = index(&[("a", 1)]);
        let subscription = named(&["a"]);
        let mut known = Known::new(ResourceType::Endpoint, &BTreeMap::new());
        known.insert(&subscription, "a", &version_in(&old, "a"));
        known.rebase(&subscription, &new);
        assert_eq!(
            known.version(&subscription, "a"),
            Some(version_in(&old, "a").as_str()),
            "the proxy still holds the old version"
        );
        known.insert(&subscription, "a", &version_in(&new, "a"));
        known.rebase(&subscription, &new);
        assert!(known.exceptions.is_empty());
        assert_eq!(known.len(), 1);
    }

    #[test]
    fn a_removed_name_is_not_held_and_a_reconnect_starts_from_what_the_proxy_says() {
        let shared = index(&[("a", 0)]);
        let subscription = named(&["a"]);
        let initial = BTreeMap::from([("a".to_string(), version_in(&shared, "a"))]);
        let mut known = Known::new(ResourceType::Endpoint, &initial);
        assert_eq!(known.len(), 1);
        known.rebase(&subscription, &shared);
        assert!(known.exceptions.is_empty());
        known.remove(&subscription, "a");
        assert_eq!(known.version(&subscription, "a"), None);
        assert_eq!(known.len(), 0);
        known.rebase(&subscription, &index(&[]));
        assert!(known.exceptions.is_empty());
    }
}
