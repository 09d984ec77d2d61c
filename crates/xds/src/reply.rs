//! A response as it goes on the wire: its few small fields encoded once, its resources as
//! references to the encodings every proxy shares, written out in bounded chunks.
//!
//! A full push sends each proxy every resource of the mesh. Were each response a message
//! holding its own copy of those bytes, every connected stream would hold a copy of the
//! mesh until its proxy had read it (1,000 proxies × 7 MiB at 10k services). A reply
//! holds a pointer per resource instead, and is turned into bytes a chunk at a time, as
//! the stream can take them: HTTP/2 asks for the next chunk only once it has room to send.
//!
//! Protobuf lets a message's fields come in any order, so a reply is its other fields
//! first (as `prost` encodes them), then its resources as field 2, one record each.

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::versioned::VersionedResource;

/// `resources`, in both `DiscoveryResponse` (as `Any`) and `DeltaDiscoveryResponse` (as
/// `Resource`).
const RESOURCES_FIELD: u32 = 2;

/// The fields of a delta `Resource` a reply writes.
const RESOURCE_VERSION_FIELD: u32 = 1;
const RESOURCE_ANY_FIELD: u32 = 2;
const RESOURCE_NAME_FIELD: u32 = 3;

/// gRPC's length prefix: a compression flag and a big-endian length.
pub(crate) const GRPC_PREFIX_LEN: usize = 5;

/// Resources at least this large are handed to the connection as they are (a reference
/// to the shared bytes) instead of being copied into a chunk.
const SHARE_THRESHOLD: usize = 4096;

/// How each resource is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// State of the world: the resource's `Any`.
    Any,
    /// Delta: a `Resource` with the name, the version and the `Any`.
    Resource,
}

/// One ADS response, ready to be framed.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Every field but the resources, encoded.
    head: Bytes,
    resources: Vec<Arc<VersionedResource>>,
    form: Form,
}

/// A reply that does not fit gRPC's 4 GiB length prefix.
#[derive(Debug, thiserror::Error)]
#[error("a response of {0} bytes is larger than gRPC can frame")]
pub(crate) struct TooLarge(usize);

impl Reply {
    /// A delta response; `head` carries every field but `resources`.
    pub(crate) fn delta(
        head: &DeltaDiscoveryResponse,
        resources: Vec<Arc<VersionedResource>>,
    ) -> Self {
        debug_assert!(head.resources.is_empty(), "resources go in `resources`");
        Self {
            head: head.encode_to_vec().into(),
            resources,
            form: Form::Resource,
        }
    }

    /// A state-of-the-world response; `head` carries every field but `resources`.
    pub(crate) fn sotw(head: &DiscoveryResponse, resources: Vec<Arc<VersionedResource>>) -> Self {
        debug_assert!(head.resources.is_empty(), "resources go in `resources`");
        Self {
            head: head.encode_to_vec().into(),
            resources,
            form: Form::Any,
        }
    }

    /// The resources the reply carries.
    pub(crate) fn resources(&self) -> &[Arc<VersionedResource>] {
        &self.resources
    }

    /// The length of the encoded message (without gRPC's prefix).
    pub(crate) fn encoded_len(&self) -> usize {
        self.head.len()
            + self
                .resources
                .iter()
                .map(|resource| {
                    let len = self.entry_len(resource);
                    key_len(RESOURCES_FIELD) + encoded_len_varint(len as u64) + len
                })
                .sum::<usize>()
    }

    /// The length of one resource's record, without its key and length.
    fn entry_len(&self, resource: &VersionedResource) -> usize {
        match self.form {
            Form::Any => resource.any.len(),
            Form::Resource => {
                let field =
                    |field: u32, len: usize| key_len(field) + encoded_len_varint(len as u64) + len;
                field(RESOURCE_VERSION_FIELD, resource.version.len())
                    + field(RESOURCE_ANY_FIELD, resource.any.len())
                    + field(RESOURCE_NAME_FIELD, resource.name.len())
            }
        }
    }

    /// The reply as a gRPC message: its prefix and bytes, in chunks of about
    /// `chunk_size` (a resource of [`SHARE_THRESHOLD`] or more is a chunk of its own,
    /// shared, not copied).
    pub(crate) fn into_grpc_chunks(self, chunk_size: usize) -> Result<GrpcChunks, TooLarge> {
        let len = self.encoded_len();
        let prefix = u32::try_from(len).map_err(|_| TooLarge(len))?;
        let started_len = GRPC_PREFIX_LEN + self.head.len();
        let unwritten = GRPC_PREFIX_LEN + len - started_len;
        let mut first = BytesMut::with_capacity(started_len + capacity(chunk_size, unwritten));
        first.put_u8(0);
        first.put_u32(prefix);
        first.put_slice(&self.head);
        Ok(GrpcChunks {
            reply: self,
            next: 0,
            chunk_size,
            unwritten,
            started: Some(first),
            shared: None,
        })
    }
}

/// The chunks of one framed reply, made as they are asked for.
#[derive(Debug)]
pub(crate) struct GrpcChunks {
    reply: Reply,
    /// The next resource to write.
    next: usize,
    chunk_size: usize,
    /// Bytes of the message not yet put in a chunk: a small reply gets a small buffer.
    unwritten: usize,
    /// Bytes written but not yet handed out.
    started: Option<BytesMut>,
    /// A large resource's bytes, handed out after the chunk that holds its header.
    shared: Option<Bytes>,
}

impl Iterator for GrpcChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(shared) = self.shared.take() {
            return Some(shared);
        }
        let mut chunk = self
            .started
            .take()
            .unwrap_or_else(|| BytesMut::with_capacity(capacity(self.chunk_size, self.unwritten)));
        let before = chunk.len();
        while chunk.len() < self.chunk_size {
            let Some(resource) = self.reply.resources.get(self.next) else {
                break;
            };
            self.next += 1;
            self.write_header(resource, &mut chunk);
            if resource.any.len() >= SHARE_THRESHOLD {
                self.shared = Some(resource.any.clone());
                break;
            }
            chunk.put_slice(&resource.any);
        }
        self.unwritten -= chunk.len() - before + self.shared.as_ref().map_or(0, Bytes::len);
        if chunk.is_empty() {
            debug_assert_eq!(self.unwritten, 0, "every byte of the message written");
            return None;
        }
        Some(chunk.freeze())
    }
}

/// The buffer for the next chunk: what is left, up to a chunk and the largest resource
/// that is copied rather than shared.
fn capacity(chunk_size: usize, unwritten: usize) -> usize {
    unwritten.min(chunk_size + SHARE_THRESHOLD)
}

impl GrpcChunks {
    /// What comes before a resource's `Any` bytes in its record.
    fn write_header(&self, resource: &VersionedResource, chunk: &mut BytesMut) {
        let entry_len = self.reply.entry_len(resource);
        encode_key(RESOURCES_FIELD, WireType::LengthDelimited, chunk);
        encode_varint(entry_len as u64, chunk);
        if self.reply.form == Form::Resource {
            for (field, value) in [
                (RESOURCE_VERSION_FIELD, resource.version.as_bytes()),
                (RESOURCE_NAME_FIELD, resource.name.as_bytes()),
            ] {
                encode_key(field, WireType::LengthDelimited, chunk);
                encode_varint(value.len() as u64, chunk);
                chunk.put_slice(value);
            }
            encode_key(RESOURCE_ANY_FIELD, WireType::LengthDelimited, chunk);
            encode_varint(resource.any.len() as u64, chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioned::TypedResource;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;
    use envoy_types::pb::google::protobuf::Any;

    /// A cluster whose encoding is about `size` bytes.
    fn cluster(name: &str, size: usize) -> Arc<VersionedResource> {
        Arc::new(VersionedResource::encode(TypedResource::Cluster(Box::new(
            Cluster {
                name: name.to_string(),
                alt_stat_name: "x".repeat(size),
                ..Default::default()
            },
        ))))
    }

    fn any_of(resource: &VersionedResource) -> Any {
        Any::decode(resource.any.clone()).expect("an encoded Any")
    }

    /// Every resource size around the thresholds, and many small ones.
    fn resources() -> Vec<Arc<VersionedResource>> {
        let mut resources: Vec<_> = (0..300).map(|i| cluster(&format!("c{i}"), i * 7)).collect();
        resources.push(cluster("large", SHARE_THRESHOLD));
        resources.push(cluster("larger", 100_000));
        resources.push(cluster("after", 10));
        resources
    }

    /// The message the chunks make, checked against gRPC's prefix.
    fn message(chunks: GrpcChunks) -> Vec<u8> {
        let mut wire = Vec::new();
        for chunk in chunks {
            assert!(!chunk.is_empty());
            wire.extend_from_slice(&chunk);
        }
        assert_eq!(wire[0], 0, "not compressed");
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len, wire.len() - GRPC_PREFIX_LEN);
        wire.split_off(GRPC_PREFIX_LEN)
    }

    #[test]
    fn a_delta_reply_decodes_to_the_response_prost_would_write() {
        let resources = resources();
        let head = DeltaDiscoveryResponse {
            system_version_info: "3".into(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            removed_resources: vec!["gone".into()],
            nonce: "7".into(),
            ..Default::default()
        };
        let expected = DeltaDiscoveryResponse {
            resources: resources
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(any_of(r)),
                    ..Default::default()
                })
                .collect(),
            ..head.clone()
        };
        let reply = Reply::delta(&head, resources);
        assert_eq!(reply.encoded_len(), expected.encoded_len());
        for chunk_size in [1, 100, 16 * 1024] {
            let reply = Reply::delta(&head, reply.resources().to_vec());
            let wire = message(reply.into_grpc_chunks(chunk_size).unwrap());
            let decoded = DeltaDiscoveryResponse::decode(wire.as_slice()).expect("decode");
            assert_eq!(decoded, expected, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn a_sotw_reply_decodes_to_the_response_prost_would_write() {
        let resources = resources();
        let head = DiscoveryResponse {
            version_info: "abc".into(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            nonce: "2".into(),
            ..Default::default()
        };
        let expected = DiscoveryResponse {
            resources: resources.iter().map(|r| any_of(r)).collect(),
            ..head.clone()
        };
        let reply = Reply::sotw(&head, resources);
        assert_eq!(reply.encoded_len(), expected.encoded_len());
        let wire = message(reply.into_grpc_chunks(16 * 1024).unwrap());
        let decoded = DiscoveryResponse::decode(wire.as_slice()).expect("decode");
        assert_eq!(decoded, expected);
    }

    #[test]
    fn small_resources_are_copied_into_chunks_of_about_the_asked_size() {
        let small: Vec<_> = (0..1000).map(|i| cluster(&format!("c{i}"), 200)).collect();
        let reply = Reply::delta(&DeltaDiscoveryResponse::default(), small);
        let len = reply.encoded_len();
        let chunks: Vec<Bytes> = reply.into_grpc_chunks(16 * 1024).unwrap().collect();
        assert!(
            chunks.len() >= len / (16 * 1024 + 300),
            "{} chunks",
            chunks.len()
        );
        for chunk in &chunks {
            assert!(
                chunk.len() < 16 * 1024 + 300,
                "a chunk of {} bytes",
                chunk.len()
            );
        }
    }

    #[test]
    fn large_resources_are_shared_not_copied() {
        let large = cluster("large", 100_000);
        let reply = Reply::sotw(&DiscoveryResponse::default(), vec![Arc::clone(&large)]);
        let chunks: Vec<Bytes> = reply.into_grpc_chunks(16 * 1024).unwrap().collect();
        assert_eq!(chunks.len(), 2, "prefix and header, then the resource");
        assert_eq!(chunks[1].as_ptr(), large.any.as_ptr(), "the shared bytes");
    }

    #[test]
    fn an_empty_reply_is_one_chunk_with_its_fields() {
        let head = DeltaDiscoveryResponse {
            nonce: "1".into(),
            ..Default::default()
        };
        let chunks: Vec<Bytes> = Reply::delta(&head, Vec::new())
            .into_grpc_chunks(16 * 1024)
            .unwrap()
            .collect();
        assert_eq!(chunks.len(), 1);
        let decoded = DeltaDiscoveryResponse::decode(&chunks[0][GRPC_PREFIX_LEN..]).unwrap();
        assert_eq!(decoded, head);
    }
}
