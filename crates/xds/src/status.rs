//! What each connected proxy has been sent and has accepted: the data behind the debug
//! endpoint and `proxy-status`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use crate::node::ProxyNode;
use crate::resources::ResourceType;

/// Which ADS flavour a proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// `StreamAggregatedResources`: state of the world.
    Sotw,
    /// `DeltaAggregatedResources`: incremental.
    Delta,
}

/// A rejected response, as the proxy reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The version the proxy rejected.
    pub version: String,
    pub nonce: String,
    /// The proxy's explanation (`error_detail.message`).
    pub message: String,
    pub at: SystemTime,
}

/// istioctl's words for a proxy's state on one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// The proxy accepted the latest response.
    Synced,
    /// A response is in flight, not yet acknowledged.
    Stale,
    /// The proxy rejected the latest response.
    Nacked,
    /// The proxy asked for this type but nothing has been sent yet.
    NotSent,
}

/// One proxy's state for one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeSyncStatus {
    pub resource_type: ResourceType,
    pub type_url: &'static str,
    pub sent_version: Option<String>,
    pub sent_nonce: Option<String>,
    pub acked_version: Option<String>,
    /// The most recent rejection, kept after later ACKs so the cause stays visible.
    pub last_nack: Option<Nack>,
    /// How many resources of this type the proxy should have after the latest response.
    pub resource_count: usize,
}

impl TypeSyncStatus {
    pub(crate) fn new(resource_type: ResourceType) -> Self {
        Self {
            resource_type,
            type_url: resource_type.type_url(),
            sent_version: None,
            sent_nonce: None,
            acked_version: None,
            last_nack: None,
            resource_count: 0,
        }
    }

    pub fn state(&self) -> SyncState {
        match (&self.sent_nonce, &self.last_nack) {
            (None, _) => SyncState::NotSent,
            (Some(sent), Some(nack)) if *sent == nack.nonce => SyncState::Nacked,
            _ if self.acked_version.is_some() && self.acked_version == self.sent_version => {
                SyncState::Synced
            }
            _ => SyncState::Stale,
        }
    }

    pub(crate) fn record_sent(&mut self, version: String, nonce: String, resource_count: usize) {
        self.sent_version = Some(version);
        self.sent_nonce = Some(nonce);
        self.resource_count = resource_count;
    }

    /// Records an ACK or NACK of the latest response; an answer to an older nonce is stale
    /// and ignored, as istiod does. Returns false for a stale answer.
    pub(crate) fn record_answer(&mut self, nonce: &str, error: Option<&str>) -> bool {
        if self.sent_nonce.as_deref() != Some(nonce) {
            return false;
        }
        match error {
            None => self.acked_version = self.sent_version.clone(),
            Some(message) => {
                self.last_nack = Some(Nack {
                    version: self.sent_version.clone().unwrap_or_default(),
                    nonce: nonce.to_string(),
                    message: message.to_string(),
                    at: SystemTime::now(),
                })
            }
        }
        true
    }
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxySyncStatus {
    /// Distinguishes two streams from the same proxy id (e.g. during a reconnect).
    pub connection_id: u64,
    pub proxy: ProxyNode,
    pub stream: StreamKind,
    pub connected_since: SystemTime,
    /// Per requested type, in push order.
    pub types: Vec<TypeSyncStatus>,
}

/// The live status of every connection; each connection publishes its own entry and
/// removes it when it ends.
#[derive(Debug, Default)]
pub(crate) struct StatusRegistry {
    connections: Mutex<BTreeMap<u64, ProxySyncStatus>>,
}

impl StatusRegistry {
    pub(crate) fn snapshot(&self) -> Vec<ProxySyncStatus> {
        self.lock().values().cloned().collect()
    }

    /// Registers a connection; the returned guard removes it when dropped, however the
    /// connection ends.
    pub(crate) fn register(self: &Arc<Self>, status: ProxySyncStatus) -> Registration {
        let connection_id = status.connection_id;
        self.lock().insert(connection_id, status);
        Registration {
            registry: Arc::clone(self),
            connection_id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxySyncStatus>> {
        // The map stays consistent even if a holder panicked: every write is one insert.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Registration {
    registry: Arc<StatusRegistry>,
    connection_id: u64,
}

impl Registration {
    pub(crate) fn update(&self, types: Vec<TypeSyncStatus>) {
        if let Some(entry) = self.registry.lock().get_mut(&self.connection_id) {
            entry.types = types;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.connection_id);
    }
}
