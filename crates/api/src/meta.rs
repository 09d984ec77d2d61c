//! Kubernetes-style object metadata and the typed wrapper every resource shares.

use std::collections::BTreeMap;
use std::fmt;

use crate::origin::Origin;

/// The namespace of a resource whose `metadata.namespace` is absent, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The parts of `metadata` Bosun uses. Other metadata fields (uid, resourceVersion, ...)
/// are accepted and ignored, so resources exported from a cluster load unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub name: String,
    /// `default` when the document does not say.
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A typed, loaded resource: its metadata, its `spec`, and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Config<T> {
    pub meta: ObjectMeta,
    pub api_version: String,
    pub spec: T,
    pub origin: Origin,
}

/// Names one resource in messages: `VirtualService default/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}
