//! Which resources of one type a proxy asked for.
//!
//! Envoy subscribes by name to the endpoints of every cluster it was sent: at 10k
//! services, 10k names per stream. Nearly all of them are names of the mesh's shared
//! index, the same for every stream, so a subscription keeps that index (an `Arc`) and the
//! few names where it differs from it, not a copy of every name per stream.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::index::{ResourceIndex, TypeResources};
use crate::resources::ResourceType;
use crate::versioned::VersionedResource;

/// The name a client uses to ask for every resource of a type.
const WILDCARD: &str = "*";

/// Differences from the base index past which a subscription is rebased on the current
/// one. Rebasing costs a pass over both, so the bound doubles past what is left after a
/// rebase (a proxy that has not yet subscribed to a grown mesh's new names).
const REBASE_AFTER: usize = 32;

/// A proxy's subscription to one type: everything (wildcard), named resources, or both.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    wildcard: bool,
    names: Names,
}

/// A set of names: the base index's names of one type, plus `added`, minus `removed`.
#[derive(Debug, Clone)]
struct Names {
    resource_type: ResourceType,
    base: Arc<ResourceIndex>,
    /// Names the base does not have.
    added: BTreeSet<String>,
    /// Names the base has that are not in the set.
    removed: BTreeSet<String>,
    /// Rebase once there are more differences than this.
    rebase_after: usize,
}

impl Subscription {
    /// Nothing of `resource_type`.
    pub(crate) fn none(resource_type: ResourceType) -> Self {
        Self {
            wildcard: false,
            names: Names::empty(resource_type),
        }
    }

    /// A state-of-the-world request's subscription: an empty list means everything for
    /// listeners and clusters, nothing for routes and endpoints.
    pub(crate) fn from_sotw_request(resource_type: ResourceType, names: &[String]) -> Self {
        let wildcard = names.iter().any(|name| name == WILDCARD)
            || (names.is_empty() && resource_type.is_wildcard_type());
        let mut subscription = Self {
            wildcard,
            ..Self::none(resource_type)
        };
        for name in names.iter().filter(|name| *name != WILDCARD) {
            subscription.names.insert(name);
        }
        subscription
    }

    /// The subscription a delta stream starts with, before its first request is applied:
    /// wildcard for listeners and clusters when that request subscribes to nothing.
    pub(crate) fn initial_delta(resource_type: ResourceType, subscribe: &[String]) -> Self {
        Self {
            wildcard: resource_type.is_wildcard_type() && subscribe.is_empty(),
            ..Self::none(resource_type)
        }
    }

    /// Applies a delta request's changes; returns the subscription before them if they
    /// changed anything. `shared` is the index the subscription may be rebased on.
    pub(crate) fn apply_delta(
        &mut self,
        subscribe: &[String],
        unsubscribe: &[String],
        shared: &Arc<ResourceIndex>,
    ) -> Option<Self> {
        if subscribe.is_empty() && unsubscribe.is_empty() {
            // An acknowledgement: most requests. Nothing to copy or compare.
            return None;
        }
        let before = self.clone();
        let mut changed = false;
        for name in subscribe {
            changed |= if name == WILDCARD {
                !std::mem::replace(&mut self.wildcard, true)
            } else {
                self.names.insert(name)
            };
        }
        for name in unsubscribe {
            changed |= if name == WILDCARD {
                std::mem::replace(&mut self.wildcard, false)
            } else {
                self.names.remove(name)
            };
        }
        if self.names.differences() > self.names.rebase_after {
            self.names.rebase(shared);
        }
        changed.then_some(before)
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether a resource of this name is (or would be, once it exists) part of the
    /// subscription.
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The subscribed resources that exist, in name order.
    pub(crate) fn select<'a>(
        &'a self,
        all: TypeResources<'a>,
    ) -> Box<dyn Iterator<Item = &'a Arc<VersionedResource>> + 'a> {
        if self.wildcard {
            Box::new(all.values())
        } else {
            Box::new(self.names.iter().filter_map(move |name| all.get(name)))
        }
    }
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard && self.names.iter().eq(other.names.iter())
    }
}

impl Names {
    fn empty(resource_type: ResourceType) -> Self {
        Self {
            resource_type,
            base: Arc::default(),
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            rebase_after: REBASE_AFTER,
        }
    }

    fn in_base(&self, name: &str) -> bool {
        self.base.of(self.resource_type).contains_key(name)
    }

    fn contains(&self, name: &str) -> bool {
        if self.in_base(name) {
            !self.removed.contains(name)
        } else {
            self.added.contains(name)
        }
    }

    /// Adds `name`; whether it was not there.
    fn insert(&mut self, name: &str) -> bool {
        if self.in_base(name) {
            self.removed.remove(name)
        } else {
            self.added.insert(name.to_string())
        }
    }

    /// Removes `name`; whether it was there.
    fn remove(&mut self, name: &str) -> bool {
        if self.in_base(name) {
            self.removed.insert(name.to_string())
        } else {
            self.added.remove(name)
        }
    }

    fn differences(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    /// Every name, in order.
    fn iter(&self) -> impl Iterator<Item = &String> {
        let mut base = self
            .base
            .of(self.resource_type)
            .keys()
            .filter(|name| !self.removed.contains(*name))
            .peekable();
        // `added` and the base have no name in common.
        let mut added = self.added.iter().peekable();
        std::iter::from_fn(move || match (base.peek(), added.peek()) {
            (Some(from_base), Some(extra)) => match from_base.cmp(extra) {
                Ordering::Less => base.next(),
                _ => added.next(),
            },
            (Some(_), None) => base.next(),
            (None, _) => added.next(),
        })
    }

    /// The same set, relative to `index`.
    fn rebase(&mut self, index: &Arc<ResourceIndex>) {
        let of_index = index.of(self.resource_type);
        let added = self
            .iter()
            .filter(|name| !of_index.contains_key(*name))
            .cloned()
            .collect();
        let removed = of_index
            .keys()
            .filter(|name| !self.contains(name))
            .cloned()
            .collect();
        self.base = Arc::clone(index);
        self.added = added;
        self.removed = removed;
        self.rebase_after = REBASE_AFTER.max(2 * self.differences());
    }
}

/// Nonces for one stream: unique per response, so a late answer is recognised as stale.
#[derive(Debug, Default)]
pub(crate) struct NonceSource {
    last: u64,
}

impl NonceSource {
    pub(crate) fn next_nonce(&mut self) -> String {
        self.last += 1;
        self.last.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// An index of the shared endpoints `e0` .. `e{count - 1}`.
    fn shared_endpoints(count: usize) -> Arc<ResourceIndex> {
        use crate::resources::ResourceSet;
        use crate::versioned::EncodedSet;
        use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
        let endpoints = (0..count)
            .map(|i| ClusterLoadAssignment {
                cluster_name: format!("e{i}"),
                ..Default::default()
            })
            .collect();
        Arc::new(ResourceIndex::new(EncodedSet::encode(ResourceSet {
            endpoints,
            ..Default::default()
        })))
    }

    #[test]
    fn a_large_subscription_is_kept_as_the_shared_index_and_its_differences() {
        let shared = shared_endpoints(1000);
        let mut subscription = Subscription::initial_delta(ResourceType::Endpoint, &[]);
        let mut all: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
        all.push("own".into());
        let before = subscription
            .apply_delta(&all, &[], &shared)
            .expect("changed");
        assert!(!before.covers("e1"));
        assert_eq!(
            subscription.names.differences(),
            1,
            "only `own` is not shared"
        );
        assert!(Arc::ptr_eq(&subscription.names.base, &shared));
        assert!(subscription.covers("e999") && subscription.covers("own"));

        // Unsubscribing shared names and subscribing them again.
        let gone = names(&["e1", "e2", "own"]);
        assert!(subscription.apply_delta(&[], &gone, &shared).is_some());
        assert!(!subscription.covers("e1") && !subscription.covers("own"));
        assert!(subscription.apply_delta(&[], &gone, &shared).is_none());
        assert!(
            subscription
                .apply_delta(&names(&["e1"]), &[], &shared)
                .is_some()
        );
        assert!(subscription.covers("e1") && !subscription.covers("e2"));

        // The same set, whatever its base, in name order.
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|name| !["e2", "own"].contains(&name.as_str()))
            .cloned()
            .collect();
        let listed: Vec<&String> = subscription.names.iter().collect();
        assert_eq!(listed, expected.iter().collect::<Vec<_>>());
        let spelled_out = Subscription::from_sotw_request(
            ResourceType::Endpoint,
            &expected.iter().cloned().collect::<Vec<_>>(),
        );
        assert_eq!(subscription, spelled_out);
    }

    #[test]
    fn differences_past_the_bound_rebase_on_the_current_index() {
        let first = shared_endpoints(100);
        let mut subscription = Subscription::initial_delta(ResourceType::Endpoint, &[]);
        let all: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
        subscription.apply_delta(&all, &[], &first);
        // The mesh grows; the proxy subscribes to the new names a few at a time.
        let grown = shared_endpoints(200);
        let mut rebases = 0;
        for i in 100..200 {
            let base = Arc::clone(&subscription.names.base);
            subscription.apply_delta(&[format!("e{i}")], &[], &grown);
            rebases += usize::from(!Arc::ptr_eq(&base, &subscription.names.base));
        }
        assert_eq!(rebases, 1, "once, not on every request past the bound");
        assert!(Arc::ptr_eq(&subscription.names.base, &grown));
        assert_eq!(subscription.names.differences(), 0);
        let expected: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
        let mut expected: Vec<&String> = expected.iter().collect();
        expected.sort();
        assert_eq!(subscription.names.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn sotw_empty_names_mean_everything_only_for_wildcard_types() {
        assert!(Subscription::from_sotw_request(ResourceType::Listener, &[]).covers("any"));
        assert!(Subscription::from_sotw_request(ResourceType::Cluster, &names(&["*"])).covers("x"));
        assert!(!Subscription::from_sotw_request(ResourceType::Route, &[]).covers("any"));
        let named = Subscription::from_sotw_request(ResourceType::Endpoint, &names(&["a"]));
        assert!(named.covers("a") && !named.covers("b"));
    }

    #[test]
    fn delta_subscribe_and_unsubscribe_including_wildcard() {
        let mut subscription = Subscription::initial_delta(ResourceType::Cluster, &[]);
        assert!(subscription.covers("anything"));
        assert!(
            subscription
                .apply_delta(&names(&["a"]), &names(&["*"]), &Arc::default())
                .is_some()
        );
        assert!(subscription.covers("a") && !subscription.covers("b"));
        assert!(
            subscription
                .apply_delta(&names(&["a"]), &[], &Arc::default())
                .is_none()
        );

        let mut routes = Subscription::initial_delta(ResourceType::Route, &names(&["r"]));
        assert!(
            routes
                .apply_delta(&names(&["r"]), &[], &Arc::default())
                .is_some()
        );
        assert!(routes.covers("r") && !routes.covers("other"));
    }
}
