//! Which resources of one type a proxy asked for.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::index::TypeResources;
use crate::resources::ResourceType;
use crate::versioned::VersionedResource;

/// The name a client uses to ask for every resource of a type.
const WILDCARD: &str = "*";

/// A proxy's subscription to one type: everything (wildcard), named resources, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
}

impl Subscription {
    /// A state-of-the-world request's subscription: an empty list means everything for
    /// listeners and clusters, nothing for routes and endpoints.
    pub(crate) fn from_sotw_request(resource_type: ResourceType, names: &[String]) -> Self {
        let wildcard = names.iter().any(|name| name == WILDCARD)
            || (names.is_empty() && resource_type.is_wildcard_type());
        Self {
            wildcard,
            names: names
                .iter()
                .filter(|name| *name != WILDCARD)
                .cloned()
                .collect(),
        }
    }

    /// The subscription a delta stream starts with, before its first request is applied:
    /// wildcard for listeners and clusters when that request subscribes to nothing.
    pub(crate) fn initial_delta(resource_type: ResourceType, subscribe: &[String]) -> Self {
        Self {
            wildcard: resource_type.is_wildcard_type() && subscribe.is_empty(),
            names: BTreeSet::new(),
        }
    }

    /// Applies a delta request's changes; returns the subscription before them if they
    /// changed anything.
    pub(crate) fn apply_delta(
        &mut self,
        subscribe: &[String],
        unsubscribe: &[String],
    ) -> Option<Self> {
        let before = self.clone();
        for name in subscribe {
            if name == WILDCARD {
                self.wildcard = true;
            } else {
                self.names.insert(name.clone());
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
            } else {
                self.names.remove(name);
            }
        }
        (*self != before).then_some(before)
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
                .apply_delta(&names(&["a"]), &names(&["*"]))
                .is_some()
        );
        assert!(subscription.covers("a") && !subscription.covers("b"));
        assert!(subscription.apply_delta(&names(&["a"]), &[]).is_none());

        let mut routes = Subscription::initial_delta(ResourceType::Route, &names(&["r"]));
        assert!(routes.apply_delta(&names(&["r"]), &[]).is_some());
        assert!(routes.covers("r") && !routes.covers("other"));
    }
}
