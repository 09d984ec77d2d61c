//! The ADS server: the streams of `envoy.service.discovery.v3.AggregatedDiscoveryService`
//! (the gRPC service that carries them is in `frames.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::connection::{self, StreamContext, StreamProtocol};
use crate::generator::Generator;
use crate::reply::Reply;
use crate::status::{ProxySyncStatus, StatusRegistry};

/// Responses queued per stream before the stream's task waits for the proxy to read.
const RESPONSE_BUFFER: usize = 8;

/// Serves per-proxy resources over ADS, state-of-the-world and delta.
#[derive(Clone)]
pub struct AdsServer {
    generators: watch::Receiver<Arc<dyn Generator>>,
    registry: Arc<StatusRegistry>,
    next_connection_id: Arc<AtomicU64>,
}

impl AdsServer {
    /// `generators` carries the latest snapshot's generator; each new value is a config
    /// change (already debounced by the caller) and is pushed to every connected proxy.
    pub fn new(generators: watch::Receiver<Arc<dyn Generator>>) -> Self {
        Self {
            generators,
            registry: Arc::default(),
            next_connection_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Per connected proxy: per type, what was sent, acknowledged and rejected.
    pub fn status(&self) -> Vec<ProxySyncStatus> {
        self.registry.snapshot()
    }

    pub(crate) fn open_stream<P>(
        &self,
        requests: impl Stream<Item = Result<P::Request, Status>> + Send + Unpin + 'static,
    ) -> ReceiverStream<Result<Reply, Status>>
    where
        P: StreamProtocol,
        P::Request: prost::Message + Default,
    {
        let (responses, outbound) = mpsc::channel(RESPONSE_BUFFER);
        let ctx = StreamContext {
            generators: self.generators.clone(),
            registry: Arc::clone(&self.registry),
            connection_id: self.next_connection_id.fetch_add(1, Ordering::Relaxed),
        };
        tokio::spawn(connection::serve::<P, _>(requests, responses, ctx));
        ReceiverStream::new(outbound)
    }
}
