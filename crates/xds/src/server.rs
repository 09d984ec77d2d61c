//! The ADS server: the streams of `envoy.service.discovery.v3.AggregatedDiscoveryService`
//! (the gRPC service that carries them is in `frames.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_ca::{Authenticate, Caller};
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
    /// When set, every stream must carry a workload credential, and its node must be that
    /// workload (Istio's XDS_AUTH); unset only where a user asks for plaintext xDS.
    authenticate: Option<Arc<dyn Authenticate>>,
}

impl AdsServer {
    /// `generators` carries the latest snapshot's generator; each new value is a config
    /// change (already debounced by the caller) and is pushed to every connected proxy.
    pub fn new(generators: watch::Receiver<Arc<dyn Generator>>) -> Self {
        Self {
            generators,
            registry: Arc::default(),
            next_connection_id: Arc::new(AtomicU64::new(1)),
            authenticate: None,
        }
    }

    /// The same server (the same proxies' status), whose streams must prove with
    /// `authenticate` the workload their node claims to be.
    pub fn authenticated_by(&self, authenticate: Arc<dyn Authenticate>) -> Self {
        Self {
            authenticate: Some(authenticate),
            ..self.clone()
        }
    }

    /// Who opened a stream, from its request headers: `Ok(None)` when this server does not
    /// authenticate.
    pub(crate) fn caller(&self, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        match &self.authenticate {
            None => Ok(None),
            Some(authenticate) => match authenticate.authenticate(headers) {
                Ok(caller) => Ok(Some(caller)),
                Err(error) => {
                    tracing::warn!(%error, "refused an unauthenticated ADS stream");
                    Err(error.to_status())
                }
            },
        }
    }

    /// Per connected proxy: per type, what was sent, acknowledged and rejected.
    pub fn status(&self) -> Vec<ProxySyncStatus> {
        self.registry.snapshot()
    }

    pub(crate) fn open_stream<P>(
        &self,
        caller: Option<Caller>,
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
            caller,
        };
        tokio::spawn(connection::serve::<P, _>(requests, responses, ctx));
        ReceiverStream::new(outbound)
    }
}
