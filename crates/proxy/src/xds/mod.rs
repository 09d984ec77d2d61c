//! The ADS client: one gRPC stream to the control plane, delta (default) or state
//! of the world, reconnecting with capped exponential backoff and jitter. While the
//! control plane is away the proxy keeps serving with the last applied config.

mod delta;
mod node;
mod sotw;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

pub use node::node;

use crate::compile::CompileError;
use crate::config::{Backoff, ProxyConfig, XdsMode};
use crate::control_plane::{ControlPlaneError, ControlPlaneLink};
use crate::state::ConfigStore;
use crate::stats::ControlPlaneStats;

#[derive(Debug, Error)]
pub enum XdsError {
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    #[error("cannot connect to the control plane: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("ADS stream failed: {0}")]
    Stream(#[from] tonic::Status),
    #[error("the control plane closed the ADS stream")]
    Closed,
    #[error("the ADS request channel closed")]
    RequestChannelClosed,
}

/// gRPC `INVALID_ARGUMENT`, the code Envoy puts in a NACK.
const INVALID_ARGUMENT: i32 = 3;

pub struct AdsClient {
    endpoint: Endpoint,
    link: ControlPlaneLink,
    mode: XdsMode,
    node: Node,
    store: Arc<ConfigStore>,
    backoff: Backoff,
}

impl AdsClient {
    pub fn new(
        config: &ProxyConfig,
        link: ControlPlaneLink,
        store: Arc<ConfigStore>,
    ) -> Result<Self, XdsError> {
        let endpoint = link.endpoint(&config.xds_address)?;
        Ok(AdsClient {
            endpoint,
            link,
            mode: config.xds_mode,
            node: node(&config.node),
            store,
            backoff: config.xds_backoff,
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let mut delay = self.backoff.initial;
        let mut sotw_state = sotw::Versions::default();
        let control_plane = self.store.stats().control_plane();
        loop {
            let mut progress = StreamProgress {
                made: false,
                control_plane: &control_plane,
            };
            let result = match self.connect().await {
                Ok(client) => match self.mode {
                    XdsMode::Delta => {
                        delta::run(client, &self.link, &self.node, &self.store, &mut progress).await
                    }
                    XdsMode::Sotw => {
                        sotw::run(
                            client,
                            &self.link,
                            &self.node,
                            &self.store,
                            &mut sotw_state,
                            &mut progress,
                        )
                        .await
                    }
                },
                Err(e) => Err(e),
            };
            control_plane.set_connected(false);
            if let Err(err) = result {
                tracing::warn!(error = %err, retry_in = ?delay, "ADS stream ended; serving with the last config");
            }
            if progress.made {
                delay = self.backoff.initial;
            }
            tokio::time::sleep(jittered(delay)).await;
            delay = (delay * 2).min(self.backoff.max);
        }
    }

    async fn connect(&self) -> Result<AggregatedDiscoveryServiceClient<Channel>, XdsError> {
        let channel = self.endpoint.connect().await.map_err(XdsError::Connect)?;
        Ok(AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024))
    }
}

/// What one ADS stream got done, for the reconnect backoff and the connected gauge.
pub(crate) struct StreamProgress<'a> {
    /// A response arrived: the next reconnect starts from the initial delay again.
    made: bool,
    control_plane: &'a ControlPlaneStats,
}

impl StreamProgress<'_> {
    /// The control plane accepted the stream.
    fn established(&self) {
        self.control_plane.set_connected(true);
    }
}

/// The stream's opening request, carrying the workload's token.
fn stream_request<T>(link: &ControlPlaneLink, stream: T) -> Result<tonic::Request<T>, XdsError> {
    let mut request = tonic::Request::new(stream);
    link.authorize(&mut request)?;
    Ok(request)
}

/// Between half and the full delay, so proxies do not reconnect in lockstep.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..=1.0))
}

/// The NACK detail for a set of rejected resources, if any.
fn error_detail(errors: &[CompileError]) -> Option<Status> {
    if errors.is_empty() {
        return None;
    }
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    tracing::warn!(%message, "rejected configuration");
    Some(Status {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    })
}

/// Names to add and to drop to go from `current` to `wanted`.
fn diff(current: &BTreeSet<String>, wanted: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        wanted.difference(current).cloned().collect(),
        current.difference(wanted).cloned().collect(),
    )
}
