//! One proxy's resources, encoded once and versioned by content.
//!
//! Each resource is encoded to an `Any` when it first appears and versioned by a hash of
//! its bytes. A resource that comes back equal from the next generation keeps its encoding
//! and version, so a proxy is only sent what really changed. Equality is checked on the
//! typed message because protobuf map fields (e.g. `Struct` metadata) encode in hash-map
//! order: equal messages may not encode to equal bytes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::resources::{ResourceSet, ResourceType};

/// A resource as the typed message the generator produced.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedResource {
    // Boxed: the messages differ in size by an order of magnitude.
    Listener(Box<Listener>),
    Route(Box<RouteConfiguration>),
    Cluster(Box<Cluster>),
    Endpoint(Box<ClusterLoadAssignment>),
}

impl TypedResource {
    pub fn name(&self) -> &str {
        match self {
            Self::Listener(listener) => &listener.name,
            Self::Route(route) => &route.name,
            Self::Cluster(cluster) => &cluster.name,
            Self::Endpoint(assignment) => &assignment.cluster_name,
        }
    }

    pub fn resource_type(&self) -> ResourceType {
        match self {
            Self::Listener(_) => ResourceType::Listener,
            Self::Route(_) => ResourceType::Route,
            Self::Cluster(_) => ResourceType::Cluster,
            Self::Endpoint(_) => ResourceType::Endpoint,
        }
    }

    fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Self::Listener(listener) => listener.encode_to_vec(),
            Self::Route(route) => route.encode_to_vec(),
            Self::Cluster(cluster) => cluster.encode_to_vec(),
            Self::Endpoint(assignment) => assignment.encode_to_vec(),
        }
    }
}

/// One encoded resource and its content version. Shared (`Arc`) between every proxy that
/// is given it, so a resource common to the mesh is encoded once per change, not once per
/// proxy.
#[derive(Debug)]
pub struct VersionedResource {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) any: Any,
    typed: TypedResource,
}

impl VersionedResource {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn typed(&self) -> &TypedResource {
        &self.typed
    }

    /// Encodes `typed`, unless `previous` already holds the same message: then that
    /// encoding (and its version) is reused, so equal content keeps its version.
    pub fn encode_reusing(typed: TypedResource, previous: Option<&Arc<Self>>) -> Arc<Self> {
        match previous {
            Some(previous) if previous.typed == typed => Arc::clone(previous),
            _ => Arc::new(Self::encode(typed)),
        }
    }

    pub fn encode(typed: TypedResource) -> Self {
        let value = typed.encode_to_vec();
        Self {
            name: typed.name().to_string(),
            version: content_version(&value),
            any: Any {
                type_url: typed.resource_type().type_url().to_string(),
                value,
            },
            typed,
        }
    }
}

impl VersionedResource {
    /// For a cluster whose endpoints come from EDS, the name they are requested under.
    pub(crate) fn eds_service_name(&self) -> Option<&str> {
        let TypedResource::Cluster(cluster) = &self.typed else {
            return None;
        };
        let eds = cluster::DiscoveryType::Eds as i32;
        if cluster.cluster_discovery_type != Some(cluster::ClusterDiscoveryType::Type(eds)) {
            return None;
        }
        let service_name = cluster
            .eds_cluster_config
            .as_ref()
            .map(|config| config.service_name.as_str())
            .filter(|name| !name.is_empty());
        Some(service_name.unwrap_or(&cluster.name))
    }
}

/// The endpoint names a proxy must be sent again after `updated_clusters`: Envoy re-warms
/// every EDS cluster it receives and waits for its endpoints, even unchanged ones.
pub(crate) fn rewarmed_endpoints<'a>(
    updated_clusters: impl Iterator<Item = &'a Arc<VersionedResource>>,
) -> BTreeSet<String> {
    updated_clusters
        .filter_map(|cluster| cluster.eds_service_name())
        .map(str::to_string)
        .collect()
}

/// Resources of one type by name.
pub(crate) type ResourcesByName = BTreeMap<String, Arc<VersionedResource>>;

/// Everything one proxy should have, per type, encoded and versioned.
/// Names that may have changed in a push, per type: all a stream needs to look at.
pub(crate) type ChangeHint = BTreeMap<ResourceType, BTreeSet<String>>;

#[derive(Debug, Default)]
pub(crate) struct ProxyResources {
    listeners: ResourcesByName,
    routes: ResourcesByName,
    clusters: ResourcesByName,
    endpoints: ResourcesByName,
    /// The generator generation these were built from, when it tracks its changes.
    pub(crate) generation: Option<u64>,
    /// Which resources are this proxy's own (not shared), so a push replaces them.
    own: BTreeMap<ResourceType, BTreeSet<String>>,
}

impl ProxyResources {
    /// Encodes `set`, reusing the encoding and version of every resource unchanged since
    /// `previous`.
    pub(crate) fn build(set: EncodedSet, previous: &ProxyResources) -> Self {
        let EncodedSet {
            listeners,
            routes,
            clusters,
            endpoints,
        } = set;
        Self {
            listeners: index(listeners, &previous.listeners),
            routes: index(routes, &previous.routes),
            clusters: index(clusters, &previous.clusters),
            endpoints: index(endpoints, &previous.endpoints),
            generation: None,
            own: BTreeMap::new(),
        }
    }

    /// A full build from a generator that tracks its changes: the shared resources plus
    /// the proxy's own, remembering which are which.
    pub(crate) fn build_split(
        shared: EncodedSet,
        own: EncodedSet,
        generation: u64,
        previous: &ProxyResources,
    ) -> Self {
        let own_names = own.names();
        let mut all = shared;
        all.append(own);
        let mut built = Self::build(all, previous);
        built.generation = Some(generation);
        built.own = own_names;
        built
    }

    /// Applies one generation's shared changes and the proxy's own resources anew, in
    /// time proportional to the change rather than to the mesh. Returns the names that may
    /// have changed.
    pub(crate) fn apply(
        &mut self,
        changes: &SharedChanges,
        own: EncodedSet,
        generation: u64,
    ) -> ChangeHint {
        let mut hint = ChangeHint::new();
        for resource in changes.updated.iter() {
            let resource_type = resource.typed.resource_type();
            hint.entry(resource_type)
                .or_default()
                .insert(resource.name.clone());
            upsert(self.of_mut(resource_type), Arc::clone(resource));
        }
        for (resource_type, name) in &changes.removed {
            self.of_mut(*resource_type).remove(name);
            hint.entry(*resource_type).or_default().insert(name.clone());
        }
        for (resource_type, names) in std::mem::take(&mut self.own) {
            let resources = self.of_mut(resource_type);
            for name in &names {
                resources.remove(name);
            }
            hint.entry(resource_type).or_default().extend(names);
        }
        self.own = own.names();
        for resource in own.into_iter() {
            let resource_type = resource.typed.resource_type();
            hint.entry(resource_type)
                .or_default()
                .insert(resource.name.clone());
            upsert(self.of_mut(resource_type), resource);
        }
        self.generation = Some(generation);
        hint
    }

    fn of_mut(&mut self, resource_type: ResourceType) -> &mut ResourcesByName {
        match resource_type {
            ResourceType::Listener => &mut self.listeners,
            ResourceType::Route => &mut self.routes,
            ResourceType::Cluster => &mut self.clusters,
            ResourceType::Endpoint => &mut self.endpoints,
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
}

fn index(resources: Vec<Arc<VersionedResource>>, previous: &ResourcesByName) -> ResourcesByName {
    let mut indexed = ResourcesByName::new();
    for resource in resources {
        if resource.name.is_empty() {
            tracing::warn!(type = %resource.typed.resource_type(), "generator produced a resource without a name; skipped");
            continue;
        }
        if indexed.contains_key(&resource.name) {
            tracing::warn!(type = %resource.typed.resource_type(), name = %resource.name, "generator produced a duplicate resource name; the first one is kept");
            continue;
        }
        // The same content keeps the version the proxy already has: by identity (a shared
        // resource), by version, or by message (equal messages can encode differently).
        let resource = match previous.get(&resource.name) {
            Some(unchanged)
                if Arc::ptr_eq(unchanged, &resource)
                    || unchanged.version == resource.version
                    || unchanged.typed == resource.typed =>
            {
                Arc::clone(unchanged)
            }
            _ => resource,
        };
        indexed.insert(resource.name.clone(), resource);
    }
    indexed
}

/// Inserts `resource`, keeping the one already there when the content is the same.
fn upsert(resources: &mut ResourcesByName, resource: Arc<VersionedResource>) {
    match resources.get(&resource.name) {
        Some(existing) if existing.version == resource.version => {}
        _ => {
            resources.insert(resource.name.clone(), resource);
        }
    }
}

/// What changed among the resources every proxy shares, from one generation to the next.
#[derive(Debug, Default, Clone)]
pub struct SharedChanges {
    /// Changed or new shared resources.
    pub updated: EncodedSet,
    /// Shared resources that are gone.
    pub removed: Vec<(ResourceType, String)>,
}

/// A proxy's resources, encoded: what a [`crate::Generator`] hands the server.
#[derive(Debug, Default, Clone)]
pub struct EncodedSet {
    pub listeners: Vec<Arc<VersionedResource>>,
    pub routes: Vec<Arc<VersionedResource>>,
    pub clusters: Vec<Arc<VersionedResource>>,
    pub endpoints: Vec<Arc<VersionedResource>>,
}

impl EncodedSet {
    /// Every resource, whatever its type.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VersionedResource>> {
        self.listeners
            .iter()
            .chain(&self.routes)
            .chain(&self.clusters)
            .chain(&self.endpoints)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn into_iter(self) -> impl Iterator<Item = Arc<VersionedResource>> {
        self.listeners
            .into_iter()
            .chain(self.routes)
            .chain(self.clusters)
            .chain(self.endpoints)
    }

    pub fn append(&mut self, other: EncodedSet) {
        self.listeners.extend(other.listeners);
        self.routes.extend(other.routes);
        self.clusters.extend(other.clusters);
        self.endpoints.extend(other.endpoints);
    }

    fn names(&self) -> BTreeMap<ResourceType, BTreeSet<String>> {
        let mut names: BTreeMap<ResourceType, BTreeSet<String>> = BTreeMap::new();
        for resource in self.iter() {
            names
                .entry(resource.typed.resource_type())
                .or_default()
                .insert(resource.name.clone());
        }
        names
    }

    /// Encodes every resource of `set` (for generators that share nothing).
    pub fn encode(set: ResourceSet) -> Self {
        let encode = |typed| Arc::new(VersionedResource::encode(typed));
        Self {
            listeners: set
                .listeners
                .into_iter()
                .map(|l| encode(TypedResource::Listener(Box::new(l))))
                .collect(),
            routes: set
                .routes
                .into_iter()
                .map(|r| encode(TypedResource::Route(Box::new(r))))
                .collect(),
            clusters: set
                .clusters
                .into_iter()
                .map(|c| encode(TypedResource::Cluster(Box::new(c))))
                .collect(),
            endpoints: set
                .endpoints
                .into_iter()
                .map(|e| encode(TypedResource::Endpoint(Box::new(e))))
                .collect(),
        }
    }
}

fn content_version(bytes: &[u8]) -> String {
    // `DefaultHasher::new()` has fixed keys, unlike `RandomState`.
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A version for a whole set of resources: a hash of their names and versions.
pub(crate) fn set_version<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = DefaultHasher::new();
    for (name, version) in entries {
        name.hash(&mut hasher);
        version.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let version =
            |r: &ProxyResources, name: &str| r.of(ResourceType::Cluster)[name].version.clone();
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
        let TypedResource::Cluster(kept) = &clusters["one"].typed else {
            panic!("not a cluster");
        };
        assert_eq!(**kept, cluster_with_metadata("one", &["first"]));
    }
}
