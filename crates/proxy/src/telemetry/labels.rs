//! The label values of Istio's standard metrics: who is at each end of a request, and
//! which service it was for. Values are made once (per endpoint, per connection, per
//! proxy) and shared, so recording a request hashes a few numbers, not strings.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

/// Istio's value for a label it cannot fill.
pub const UNKNOWN: &str = "unknown";
/// Istio's canonical revision when a workload has none.
pub const LATEST: &str = "latest";
/// Istio's cluster name when none is configured.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// A shared value with its hash computed once: equal values hash alike wherever they
/// were made, and two handles of one value compare by pointer first.
#[derive(Debug)]
pub struct Shared<T: ?Sized> {
    value: Arc<T>,
    hash: u64,
}

impl<T: ?Sized + Hash> Shared<T> {
    pub fn new(value: Arc<T>) -> Self {
        // A fixed-key hasher: the same value gets the same hash in every instance.
        let hash =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(&*value);
        Self { value, hash }
    }
}

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            hash: self.hash,
        }
    }
}

impl<T: ?Sized> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ?Sized> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<T: ?Sized + PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
            || (self.hash == other.hash && *self.value == *other.value)
    }
}

impl<T: ?Sized + Eq> Eq for Shared<T> {}

/// A SPIFFE identity, as `source_principal` / `destination_principal` show it.
pub type Principal = Shared<str>;

pub fn principal(uri: &str) -> Principal {
    Shared::new(Arc::from(uri))
}

/// One end of a request as Istio's `source_*` / `destination_*` labels describe it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerWorkload {
    pub name: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

/// The peer of a request that said nothing about itself.
pub static UNKNOWN_WORKLOAD: LazyLock<Shared<PeerWorkload>> = LazyLock::new(|| {
    Shared::new(Arc::new(PeerWorkload {
        name: UNKNOWN.into(),
        namespace: UNKNOWN.into(),
        app: UNKNOWN.into(),
        version: UNKNOWN.into(),
        canonical_service: UNKNOWN.into(),
        canonical_revision: LATEST.into(),
        cluster: UNKNOWN.into(),
    }))
});

pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION_LABEL: &str = "service.istio.io/canonical-revision";

impl PeerWorkload {
    /// A workload known by its name, namespace and labels: Istio's canonical service is
    /// the `service.istio.io/canonical-name` label, else `app.kubernetes.io/name`, else
    /// `app`, else the workload's name; its revision likewise, else `latest`.
    pub fn from_labels(
        name: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        cluster: &str,
    ) -> Self {
        let first = |keys: &[&str]| keys.iter().find_map(|key| labels.get(*key)).cloned();
        let canonical_service = first(&[CANONICAL_NAME_LABEL, "app.kubernetes.io/name", "app"])
            .unwrap_or_else(|| name.to_owned());
        let canonical_revision = first(&[
            CANONICAL_REVISION_LABEL,
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or_else(|| LATEST.to_owned());
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            app: first(&["app"]).unwrap_or_else(|| UNKNOWN.into()),
            version: first(&["version"]).unwrap_or_else(|| UNKNOWN.into()),
            canonical_service,
            canonical_revision,
            cluster: non_empty(cluster),
        }
    }

    /// Istio's endpoint metadata `istio.workload`:
    /// `<name>;<namespace>;<canonical service>;<canonical revision>;<cluster>`, five
    /// fields, an empty revision meaning `latest`. It carries no app or version label.
    pub fn from_endpoint_metadata(value: &str) -> Option<Self> {
        let fields: Vec<&str> = value.split(';').collect();
        let [name, namespace, service, revision, cluster] = fields.as_slice() else {
            return None;
        };
        Some(Self {
            name: non_empty(name),
            namespace: non_empty(namespace),
            app: UNKNOWN.into(),
            version: UNKNOWN.into(),
            canonical_service: non_empty(service),
            canonical_revision: if revision.is_empty() {
                LATEST.into()
            } else {
                (*revision).to_owned()
            },
            cluster: non_empty(cluster),
        })
    }
}

fn non_empty(value: &str) -> String {
    if value.is_empty() {
        UNKNOWN.to_owned()
    } else {
        value.to_owned()
    }
}

/// The service a request was for: `destination_service` (its host),
/// `destination_service_name` and `destination_service_namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceLabels {
    pub host: String,
    pub name: String,
    pub namespace: String,
}

/// The service of a request that never reached one.
pub static UNKNOWN_SERVICE: LazyLock<Shared<ServiceLabels>> = LazyLock::new(|| {
    Shared::new(Arc::new(ServiceLabels {
        host: UNKNOWN.into(),
        name: UNKNOWN.into(),
        namespace: UNKNOWN.into(),
    }))
});

impl ServiceLabels {
    /// A service known only by the host the request asked for.
    pub fn of_host(host: &str) -> Shared<Self> {
        Shared::new(Arc::new(Self {
            host: host.to_owned(),
            name: host.to_owned(),
            namespace: UNKNOWN.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_made_apart_are_one_key() {
        let a = Shared::new(Arc::new(ServiceLabels {
            host: "reviews".into(),
            name: "reviews".into(),
            namespace: UNKNOWN.into(),
        }));
        let b = ServiceLabels::of_host("reviews");
        assert_eq!(a, b);
        let c = ServiceLabels::of_host("ratings");
        assert_ne!(a, c);
    }

    #[test]
    fn canonical_names_follow_istio_precedence() {
        let labels = BTreeMap::from([
            ("app".to_string(), "reviews".to_string()),
            ("version".to_string(), "v2".to_string()),
        ]);
        let peer = PeerWorkload::from_labels("reviews-v2", "default", &labels, "Kubernetes");
        assert_eq!(peer.canonical_service, "reviews");
        assert_eq!(peer.canonical_revision, "v2");
        assert_eq!(
            (peer.app.as_str(), peer.version.as_str()),
            ("reviews", "v2")
        );

        let bare = PeerWorkload::from_labels("batch", "jobs", &BTreeMap::new(), "");
        assert_eq!(bare.canonical_service, "batch");
        assert_eq!(bare.canonical_revision, "latest");
        assert_eq!(bare.app, UNKNOWN);
        assert_eq!(bare.cluster, UNKNOWN);

        let explicit = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            (CANONICAL_NAME_LABEL.to_string(), "storefront".to_string()),
        ]);
        let peer = PeerWorkload::from_labels("web-1", "shop", &explicit, "east");
        assert_eq!(peer.canonical_service, "storefront");
    }

    #[test]
    fn endpoint_metadata_reads_all_five_fields() {
        let peer = PeerWorkload::from_endpoint_metadata("reviews-v1;default;reviews;v1;Kubernetes")
            .expect("parses");
        assert_eq!(peer.name, "reviews-v1");
        assert_eq!(peer.namespace, "default");
        assert_eq!(peer.canonical_service, "reviews");
        assert_eq!(peer.canonical_revision, "v1");
        assert_eq!(peer.cluster, "Kubernetes");
        assert_eq!(peer.app, UNKNOWN, "the metadata has no labels");
        let latest = PeerWorkload::from_endpoint_metadata("ratings;default;ratings;;Kubernetes")
            .expect("parses");
        assert_eq!(latest.canonical_revision, LATEST);
        assert!(PeerWorkload::from_endpoint_metadata("ratings;default").is_none());
    }
}
