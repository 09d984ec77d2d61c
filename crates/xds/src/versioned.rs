//! Resources encoded once and versioned by content.
//!
//! Each resource is encoded to an `Any` when it first appears and versioned by a hash of
//! its bytes. A resource that comes back equal from the next generation keeps its encoding
//! and version, so a proxy is only sent what really changed. Only the bytes are kept (the
//! typed messages of a 10k-service mesh are ten times their encoding): equal bytes are
//! equal content, and where bytes differ both are decoded and compared, because protobuf
//! map fields (e.g. `Struct` metadata) encode in hash-map order.

use std::collections::BTreeSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
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

/// Bytes that do not decode as the resource they were encoded from.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode a {resource_type} resource: {source}")]
pub struct DecodeError {
    resource_type: ResourceType,
    source: prost::DecodeError,
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

    fn decode(resource_type: ResourceType, value: &[u8]) -> Result<Self, prost::DecodeError> {
        Ok(match resource_type {
            ResourceType::Listener => Self::Listener(Box::new(Listener::decode(value)?)),
            ResourceType::Route => Self::Route(Box::new(RouteConfiguration::decode(value)?)),
            ResourceType::Cluster => Self::Cluster(Box::new(Cluster::decode(value)?)),
            ResourceType::Endpoint => {
                Self::Endpoint(Box::new(ClusterLoadAssignment::decode(value)?))
            }
        })
    }

    /// For a cluster whose endpoints come from EDS, the name they are requested under.
    fn eds_service_name(&self) -> Option<&str> {
        let Self::Cluster(cluster) = self else {
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
    pub(crate) resource_type: ResourceType,
    /// The encoded `Any`, shared by every response that carries the resource.
    pub(crate) any: Bytes,
    /// For a cluster whose endpoints come from EDS, the name they are requested under.
    eds_service_name: Option<String>,
}

impl VersionedResource {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The message, decoded from its encoding.
    pub fn decode(&self) -> Result<TypedResource, DecodeError> {
        let decode = || {
            let any = Any::decode(self.any.clone())?;
            TypedResource::decode(self.resource_type, &any.value)
        };
        decode().map_err(|source| DecodeError {
            resource_type: self.resource_type,
            source,
        })
    }

    /// Encodes `typed`, unless `previous` already holds the same message: then that
    /// encoding (and its version) is reused, so equal content keeps its version.
    pub fn encode_reusing(typed: TypedResource, previous: Option<&Arc<Self>>) -> Arc<Self> {
        let encoded = Self::encode(typed);
        match previous {
            Some(previous) if previous.same_content(&encoded) => Arc::clone(previous),
            _ => Arc::new(encoded),
        }
    }

    pub fn encode(typed: TypedResource) -> Self {
        let value = typed.encode_to_vec();
        let resource_type = typed.resource_type();
        Self {
            name: typed.name().to_string(),
            version: content_version(&value),
            resource_type,
            any: Any {
                type_url: resource_type.type_url().to_string(),
                value,
            }
            .encode_to_vec()
            .into(),
            eds_service_name: typed.eds_service_name().map(str::to_string),
        }
    }

    /// Whether `other` holds the same message, however its map fields were ordered.
    pub(crate) fn same_content(&self, other: &Self) -> bool {
        if self.any == other.any {
            return true;
        }
        match (self.decode(), other.decode()) {
            (Ok(mine), Ok(theirs)) => mine == theirs,
            _ => false,
        }
    }
}

impl VersionedResource {
    /// For a cluster whose endpoints come from EDS, the name they are requested under.
    pub(crate) fn eds_service_name(&self) -> Option<&str> {
        self.eds_service_name.as_deref()
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
