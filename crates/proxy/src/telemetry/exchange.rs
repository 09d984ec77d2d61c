//! Istio's HTTP metadata exchange: a client sidecar tells the server's sidecar who it is
//! in two request headers, so the server can report `source_workload` and its friends.
//!
//! `x-envoy-peer-metadata` is a `google.protobuf.Struct` of the node's metadata in
//! base64; `x-envoy-peer-metadata-id` is the node id. Both are made once per proxy; the
//! server decodes them once per connection and removes them before the app sees them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use std::collections::BTreeMap;

use super::labels::{CANONICAL_NAME_LABEL, CANONICAL_REVISION_LABEL, PeerWorkload, UNKNOWN};

pub static PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
pub static PEER_METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

const NAME: &str = "NAME";
const NAMESPACE: &str = "NAMESPACE";
const WORKLOAD_NAME: &str = "WORKLOAD_NAME";
const CLUSTER_ID: &str = "CLUSTER_ID";
const LABELS: &str = "LABELS";

/// What this proxy says of itself on the requests it sends into the mesh.
#[derive(Debug, Clone)]
pub struct OwnMetadata {
    pub metadata: HeaderValue,
    pub id: HeaderValue,
}

impl OwnMetadata {
    /// The node's id, its instance name and its workload, with the four labels Istio's
    /// stats read (canonical name and revision, app, version): the header stays short.
    pub fn new(node_id: &str, instance: &str, own: &PeerWorkload) -> Self {
        let text = |s: &str| Value {
            kind: Some(value::Kind::StringValue(s.to_owned())),
        };
        let mut labels = vec![
            (CANONICAL_NAME_LABEL, &own.canonical_service),
            (CANONICAL_REVISION_LABEL, &own.canonical_revision),
        ];
        labels.extend(
            [("app", &own.app), ("version", &own.version)]
                .into_iter()
                .filter(|(_, value)| value.as_str() != UNKNOWN),
        );
        let labels = Struct {
            fields: labels
                .into_iter()
                .map(|(key, value)| (key.to_owned(), text(value)))
                .collect(),
        };
        let fields = [
            (NAME, text(instance)),
            (NAMESPACE, text(&own.namespace)),
            (WORKLOAD_NAME, text(&own.name)),
            (CLUSTER_ID, text(&own.cluster)),
            (
                LABELS,
                Value {
                    kind: Some(value::Kind::StructValue(labels)),
                },
            ),
        ];
        let metadata = Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        };
        let encoded = STANDARD.encode(metadata.encode_to_vec());
        Self {
            metadata: HeaderValue::try_from(encoded).expect("base64 is a valid header value"),
            id: HeaderValue::try_from(node_id)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        }
    }

    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(PEER_METADATA.clone(), self.metadata.clone());
        headers.insert(PEER_METADATA_ID.clone(), self.id.clone());
    }
}

/// Removes the exchange headers, returning the metadata one's value.
pub fn take(headers: &mut HeaderMap) -> Option<HeaderValue> {
    headers.remove(&PEER_METADATA_ID);
    headers.remove(&PEER_METADATA)
}

/// The peer a metadata header describes; `None` when it is not one.
pub fn decode(header: &HeaderValue) -> Option<PeerWorkload> {
    let bytes = STANDARD.decode(header.as_bytes()).ok()?;
    let metadata = Struct::decode(bytes.as_slice()).ok()?;
    let text = |fields: &std::collections::HashMap<String, Value>, key: &str| match fields
        .get(key)
        .and_then(|v| v.kind.as_ref())
    {
        Some(value::Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    };
    let labels: BTreeMap<String, String> =
        match metadata.fields.get(LABELS).and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::StructValue(labels)) => labels
                .fields
                .keys()
                .filter_map(|key| Some((key.clone(), text(&labels.fields, key)?)))
                .collect(),
            _ => BTreeMap::new(),
        };
    let workload =
        text(&metadata.fields, WORKLOAD_NAME).or_else(|| text(&metadata.fields, NAME))?;
    let namespace = text(&metadata.fields, NAMESPACE).unwrap_or_default();
    let cluster = text(&metadata.fields, CLUSTER_ID).unwrap_or_default();
    Some(PeerWorkload::from_labels(
        &workload, &namespace, &labels, &cluster,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_proxy_sends_the_other_reads() {
        let labels = BTreeMap::from([
            ("app".to_string(), "productpage".to_string()),
            ("version".to_string(), "v1".to_string()),
            ("team".to_string(), "books".to_string()),
        ]);
        let own = PeerWorkload::from_labels("productpage-v1", "default", &labels, "Kubernetes");
        let own = OwnMetadata::new(
            "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local",
            "productpage-v1",
            &own,
        );
        let mut headers = HeaderMap::new();
        own.insert_into(&mut headers);
        let header = take(&mut headers).expect("sent");
        assert!(headers.is_empty(), "both exchange headers are removed");
        let peer = decode(&header).expect("decodes");
        assert_eq!(peer.name, "productpage-v1");
        assert_eq!(peer.namespace, "default");
        assert_eq!(peer.app, "productpage");
        assert_eq!(peer.version, "v1");
        assert_eq!(peer.canonical_service, "productpage");
        assert_eq!(peer.canonical_revision, "v1");
        assert_eq!(peer.cluster, "Kubernetes");
    }

    #[test]
    fn garbage_is_no_peer() {
        assert!(decode(&HeaderValue::from_static("not base64!")).is_none());
        let empty = HeaderValue::try_from(STANDARD.encode(Struct::default().encode_to_vec()))
            .expect("header");
        assert!(decode(&empty).is_none(), "a struct without a workload name");
    }
}
