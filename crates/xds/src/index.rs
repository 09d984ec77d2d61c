//! One proxy's resources by type and name: the mesh's shared resources, indexed once per
//! generation for every stream, and each proxy's own beside them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::resources::ResourceType;
use crate::versioned::{EncodedSet, SharedChanges, VersionedResource};

/// Resources of one type by name.
pub(crate) type ResourcesByName = BTreeMap<String, Arc<VersionedResource>>;

/// Resources of every type, by name. What all proxies share is indexed once per
/// generation and handed to every stream as the same `Arc`, so a stream holds only its
/// proxy's own resources: memory grows with the mesh once, not once per proxy.
#[derive(Debug, Default)]
pub struct ResourceIndex {
    listeners: ResourcesByName,
    routes: ResourcesByName,
    clusters: ResourcesByName,
    endpoints: ResourcesByName,
}

impl ResourceIndex {
    /// Indexes `set` by type and name.
    pub fn new(set: EncodedSet) -> Self {
        Self::reusing(set, &ProxyResources::default())
    }

    /// Indexes `set`, keeping the encoding and version `previous` has for every resource
    /// whose content did not change.
    fn reusing(set: EncodedSet, previous: &ProxyResources) -> Self {
        let EncodedSet {
            listeners,
            routes,
            clusters,
            endpoints,
        } = set;
        Self {
            listeners: index(listeners, previous.of(ResourceType::Listener)),
            routes: index(routes, previous.of(ResourceType::Route)),
            clusters: index(clusters, previous.of(ResourceType::Cluster)),
            endpoints: index(endpoints, previous.of(ResourceType::Endpoint)),
        }
    }

    pub(crate) fn of(&self, resource_type: ResourceType) -> &ResourcesByName {
        match resource_type {
            ResourceType::Listener => &self.listeners,
            ResourceType::Route => &self.routes,
            ResourceType::Cluster => &self.clusters,
            ResourceType::Endpoint => &self.endpoints,
        }
    }

    fn names(&self) -> impl Iterator<Item = (ResourceType, &String)> {
        ResourceType::PUSH_ORDER
            .into_iter()
            .flat_map(|resource_type| {
                self.of(resource_type)
                    .keys()
                    .map(move |name| (resource_type, name))
            })
    }
}

/// Names that may have changed in a push, per type: all a stream needs to look at.
pub(crate) type ChangeHint = BTreeMap<ResourceType, BTreeSet<String>>;

/// Everything one proxy should have: the mesh's shared resources (one `Arc` for every
/// stream) and the proxy's own, encoded and versioned.
#[derive(Debug, Default)]
pub(crate) struct ProxyResources {
    shared: Arc<ResourceIndex>,
    /// The proxy's own resources; everything, for generators that share nothing.
    own: ResourceIndex,
    /// The generator generation these were built from, when it tracks its changes.
    pub(crate) generation: Option<u64>,
}

impl ProxyResources {
    /// Encodes `set`, reusing the encoding and version of every resource unchanged since
    /// `previous`.
    pub(crate) fn build(set: EncodedSet, previous: &ProxyResources) -> Self {
        Self {
            shared: Arc::default(),
            own: ResourceIndex::reusing(set, previous),
            generation: None,
        }
    }

    /// A full build from a generator that tracks its changes: its shared index and the
    /// proxy's own resources.
    pub(crate) fn build_split(
        shared: Arc<ResourceIndex>,
        own: EncodedSet,
        generation: u64,
        previous: &ProxyResources,
    ) -> Self {
        Self {
            shared,
            own: ResourceIndex::reusing(own, previous),
            generation: Some(generation),
        }
    }

    /// Moves to the next generation, given what changed in the shared resources, in time
    /// proportional to the change rather than to the mesh. Returns the names that may
    /// have changed.
    pub(crate) fn apply(
        &mut self,
        changes: &SharedChanges,
        shared: Arc<ResourceIndex>,
        own: EncodedSet,
        generation: u64,
    ) -> ChangeHint {
        let mut hint = ChangeHint::new();
        let mut note = |resource_type: ResourceType, name: &String| {
            hint.entry(resource_type).or_default().insert(name.clone());
        };
        for resource in changes.updated.iter() {
            note(resource.resource_type, &resource.name);
        }
        for (resource_type, name) in &changes.removed {
            note(*resource_type, name);
        }
        let own = ResourceIndex::reusing(own, self);
        for (resource_type, name) in self.own.names().chain(own.names()) {
            note(resource_type, name);
        }
        self.own = own;
        self.shared = shared;
        self.generation = Some(generation);
        hint
    }

    /// What every proxy shares, as of this proxy's generation.
    pub(crate) fn shared(&self) -> &Arc<ResourceIndex> {
        &self.shared
    }

    /// The proxy's own resources of `resource_type`.
    pub(crate) fn own_of(&self, resource_type: ResourceType) -> &ResourcesByName {
        self.own.of(resource_type)
    }

    pub(crate) fn of(&self, resource_type: ResourceType) -> TypeResources<'_> {
        TypeResources {
            own: self.own.of(resource_type),
            shared: self.shared.of(resource_type),
        }
    }
}

/// One type's resources of a proxy: its own over the shared ones, in name order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeResources<'a> {
    own: &'a ResourcesByName,
    shared: &'a ResourcesByName,
}

impl<'a> TypeResources<'a> {
    pub(crate) fn get(self, name: &str) -> Option<&'a Arc<VersionedResource>> {
        self.own.get(name).or_else(|| self.shared.get(name))
    }

    pub(crate) fn contains_key(self, name: &str) -> bool {
        self.own.contains_key(name) || self.shared.contains_key(name)
    }

    /// Every resource in name order; the proxy's own wins where both have a name.
    pub(crate) fn values(self) -> impl Iterator<Item = &'a Arc<VersionedResource>> + 'a {
        let mut own = self.own.values().peekable();
        let mut shared = self.shared.values().peekable();
        std::iter::from_fn(move || match (own.peek(), shared.peek()) {
            (Some(mine), Some(common)) => match mine.name.cmp(&common.name) {
                std::cmp::Ordering::Greater => shared.next(),
                std::cmp::Ordering::Equal => {
                    shared.next();
                    own.next()
                }
                std::cmp::Ordering::Less => own.next(),
            },
            (Some(_), None) => own.next(),
            (None, _) => shared.next(),
        })
    }

    #[cfg(test)]
    pub(crate) fn len(self) -> usize {
        self.values().count()
    }
}

fn index(resources: Vec<Arc<VersionedResource>>, previous: TypeResources<'_>) -> ResourcesByName {
    let mut indexed = ResourcesByName::new();
    for resource in resources {
        if resource.name.is_empty() {
            tracing::warn!(type = %resource.resource_type, "generator produced a resource without a name; skipped");
            continue;
        }
        if indexed.contains_key(&resource.name) {
            tracing::warn!(type = %resource.resource_type, name = %resource.name, "generator produced a duplicate resource name; the first one is kept");
            continue;
        }
        // The same content keeps the version the proxy already has: by identity (a shared
        // resource), by version, or by message (equal messages can encode differently).
        let resource = match previous.get(&resource.name) {
            Some(unchanged)
                if Arc::ptr_eq(unchanged, &resource)
                    || unchanged.version == resource.version
                    || unchanged.same_content(&resource) =>
            {
                Arc::clone(unchanged)
            }
            _ => resource,
        };
        indexed.insert(resource.name.clone(), resource);
    }
    indexed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceSet;
    use crate::versioned::TypedResource;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

    fn cluster_with_metadata(name: &str, keys: &[&str]) -> Cluster {
        use envoy_types::pb::envoy::config::core::v3::Metadata;
        let fields = keys
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(k.to_string())),
                    },
                )
            })
            .collect();
        Cluster {
            name: name.into(),
            metadata: Some(Metadata {
                filter_metadata: [("istio".to_string(), Struct { fields })].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn set(clusters: Vec<Cluster>) -> EncodedSet {
        EncodedSet::encode(ResourceSet {
            clusters,
            ..Default::default()
        })
    }

    #[test]
    fn equal_resources_keep_their_version_and_changed_ones_get_a_new_one() {
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let first = ProxyResources::build(
            set(vec![
                cluster_with_metadata("one", &keys),
                cluster_with_metadata("two", &keys),
            ]),
            &ProxyResources::default(),
        );
        // Rebuilt maps iterate in a different order; the versions must not move.
        let second = ProxyResources::build(
            set(vec![
                cluster_with_metadata("one", &keys),
                cluster_with_metadata("two", &keys[..3]),
            ]),
            &first,
        );
        let version = |r: &ProxyResources, name: &str| {
            r.of(ResourceType::Cluster)
                .get(name)
                .expect("cluster")
                .version
                .clone()
        };
        assert_eq!(version(&first, "one"), version(&second, "one"));
        assert_ne!(version(&first, "two"), version(&second, "two"));
    }

    #[test]
    fn nameless_and_duplicate_resources_are_skipped() {
        let resources = ProxyResources::build(
            set(vec![
                Cluster::default(),
                cluster_with_metadata("one", &["first"]),
                cluster_with_metadata("one", &["second"]),
            ]),
            &ProxyResources::default(),
        );
        let clusters = resources.of(ResourceType::Cluster);
        assert_eq!(clusters.len(), 1);
        let TypedResource::Cluster(kept) = clusters.get("one").expect("kept").decode().unwrap()
        else {
            panic!("not a cluster");
        };
        assert_eq!(*kept, cluster_with_metadata("one", &["first"]));
    }

    #[test]
    fn a_proxy_sees_its_own_resources_over_the_shared_ones_in_name_order() {
        let shared = Arc::new(ResourceIndex::new(set(vec![
            cluster_with_metadata("b", &["shared"]),
            cluster_with_metadata("d", &["shared"]),
        ])));
        let own = set(vec![
            cluster_with_metadata("a", &["own"]),
            cluster_with_metadata("b", &["own"]),
            cluster_with_metadata("c", &["own"]),
        ]);
        let resources = ProxyResources::build_split(shared, own, 1, &ProxyResources::default());
        let clusters = resources.of(ResourceType::Cluster);
        let names: Vec<&str> = clusters.values().map(|r| r.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let TypedResource::Cluster(b) = clusters.get("b").expect("b").decode().unwrap() else {
            panic!("not a cluster");
        };
        assert_eq!(*b, cluster_with_metadata("b", &["own"]));
        assert!(clusters.contains_key("d") && !clusters.contains_key("e"));
    }

    #[test]
    fn streams_hold_one_shared_index_not_copies_of_it() {
        let shared = Arc::new(ResourceIndex::new(set(vec![cluster_with_metadata(
            "outbound",
            &[],
        )])));
        let stream = |own: &str| {
            ProxyResources::build_split(
                Arc::clone(&shared),
                set(vec![cluster_with_metadata(own, &[])]),
                1,
                &ProxyResources::default(),
            )
        };
        let (one, two) = (stream("inbound-one"), stream("inbound-two"));
        assert_eq!(Arc::strong_count(&shared), 3);
        let outbound = |r: &ProxyResources| {
            Arc::clone(r.of(ResourceType::Cluster).get("outbound").expect("shared"))
        };
        assert!(Arc::ptr_eq(&outbound(&one), &outbound(&two)));
        assert!(!one.of(ResourceType::Cluster).contains_key("inbound-two"));
    }
}
