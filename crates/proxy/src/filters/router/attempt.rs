//! One attempt: a request sent to one endpoint, timed, and what came of it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;

use super::Forwarding;
use crate::filters::LocalReply;
use crate::routing::{AttemptFailure, RetryPolicy};
use crate::telemetry::ResponseFlag;
use crate::upstream::{
    ActiveRequest, Cluster, ConnectionSlot, ConnectionUse, Endpoint, Observation, ReplayError,
    UpstreamBody,
};

/// How an attempt ended.
pub(super) enum Outcome {
    /// The upstream's answer, and the connection slot its body holds until it ends.
    Response(Response<Incoming>, Option<ConnectionSlot>),
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// No response: the connection failed, the stream was refused or reset, or the
    /// attempt's own timeout passed.
    Upstream(AttemptFailure),
    /// The route's timeout passed.
    RouteTimeout,
    /// The cluster's connections were all busy and its pending queue full.
    Overflow,
    /// The upstream closed the connection after the request went out and before any
    /// answer: most often a keep-alive connection it was closing as the request came.
    ClosedBeforeResponse,
    /// The caller's own request body broke off or was malformed (an invalid chunk):
    /// nothing an upstream or a retry can fix.
    DownstreamBody,
}

impl Failure {
    pub(super) fn retriable_by(self, policy: &RetryPolicy) -> bool {
        match self {
            Failure::Upstream(failure) => policy.retries_failure(failure),
            Failure::ClosedBeforeResponse => policy.retries_failure(AttemptFailure::Reset),
            // Envoy does not retry a request its own circuit breaker refused.
            Failure::RouteTimeout | Failure::Overflow | Failure::DownstreamBody => false,
        }
    }
}

pub(super) struct Attempt<'c> {
    cluster: &'c Cluster,
    /// Taken by the response body when the endpoint answers.
    active: Option<ActiveRequest>,
    /// When the attempt gives up: the sooner of the route's deadline and its own timeout.
    limit: Option<(Instant, bool)>,
    /// Sent on a new connection, not one of the pool's.
    fresh: bool,
}

impl<'c> Attempt<'c> {
    pub(super) fn new(
        cluster: &'c Cluster,
        endpoint: std::sync::Arc<Endpoint>,
        route_deadline: Option<Instant>,
        per_try_timeout: Option<Duration>,
    ) -> Self {
        let per_try = per_try_timeout.map(|timeout| Instant::now() + timeout);
        // `true`: the limit is the route's own deadline.
        let limit = match (route_deadline, per_try) {
            (Some(route), Some(own)) if own < route => Some((own, false)),
            (Some(route), _) => Some((route, true)),
            (None, Some(own)) => Some((own, false)),
            (None, None) => None,
        };
        Attempt {
            cluster,
            active: Some(ActiveRequest::new(endpoint)),
            limit,
            fresh: false,
        }
    }

    /// The attempt goes on a connection of its own: the pool's last one was closed
    /// under the request.
    pub(super) fn on_new_connection(mut self) -> Self {
        self.fresh = true;
        self
    }

    /// The endpoint's place in the least-request count, for the response body to hold.
    pub(super) fn take_active(&mut self) -> Option<ActiveRequest> {
        self.active.take()
    }

    pub(super) async fn send(
        &mut self,
        request: Request<UpstreamBody>,
        forwarding: &mut Forwarding<'_>,
    ) -> Outcome {
        let Some(endpoint) = self
            .active
            .as_ref()
            .map(|active| Arc::clone(active.endpoint()))
        else {
            return Outcome::Failed(Failure::Upstream(AttemptFailure::Reset));
        };
        let outcome = self.exchange(&endpoint, request, forwarding).await;
        let observation = match &outcome {
            Outcome::Response(resp, _) => Some(Observation::Status(resp.status().as_u16())),
            Outcome::Failed(Failure::Overflow) => None,
            Outcome::Failed(_) => Some(Observation::LocalOriginFailure),
        };
        if let Some(observation) = observation {
            self.cluster.observe(&endpoint, observation);
        }
        outcome
    }

    async fn exchange(
        &self,
        endpoint: &Arc<Endpoint>,
        mut request: Request<UpstreamBody>,
        forwarding: &mut Forwarding<'_>,
    ) -> Outcome {
        if let Some(record) = forwarding.record.as_deref_mut() {
            record.set_destination(endpoint.workload());
            // A sidecar is there: tell it who is calling (Istio's metadata exchange).
            if endpoint.tls().is_some_and(|tls| tls.is_mesh()) {
                forwarding
                    .telemetry
                    .exchange()
                    .insert_into(request.headers_mut());
            }
        }
        let started = Instant::now();
        let pool = &self.cluster.spec.pool;
        let connection = pool
            .retires_connections()
            .then(|| capture_connection(&mut request));
        // Waiting for a connection slot counts against the attempt's time, as in Envoy.
        let sent = async {
            let slot = self.cluster.connection().await?;
            let client = if self.fresh {
                endpoint.fresh_client()
            } else {
                endpoint.client()
            };
            Ok::<_, crate::upstream::Overflow>((client.request(request).await, slot))
        };
        let sent = match self.limit {
            None => sent.await,
            Some((at, is_route_deadline)) => match tokio::time::timeout_at(at.into(), sent).await {
                Ok(sent) => sent,
                Err(_) => {
                    self.cluster.stats.timeouts.fetch_add(1, Relaxed);
                    return Outcome::Failed(if is_route_deadline {
                        Failure::RouteTimeout
                    } else {
                        Failure::Upstream(AttemptFailure::PerTryTimeout)
                    });
                }
            },
        };
        let Ok((result, slot)) = sent else {
            return Outcome::Failed(Failure::Overflow);
        };
        self.cluster.stats.latency.record(started.elapsed());
        match result {
            Ok(resp) => {
                // A connection that has served its share goes when this response ends.
                if let Some(connection) = connection
                    && resp
                        .extensions()
                        .get::<ConnectionUse>()
                        .is_some_and(|usage| usage.served(pool))
                    && let Some(connected) = connection.connection_metadata().as_ref()
                {
                    connected.poison();
                }
                Outcome::Response(resp, slot)
            }
            Err(error) if closed_before_response(&error) => {
                self.cluster.stats.upstream_errors.fetch_add(1, Relaxed);
                tracing::debug!(
                    cluster = %self.cluster.spec.name,
                    endpoint = %endpoint.address,
                    %error,
                    "upstream closed the connection before answering"
                );
                Outcome::Failed(Failure::ClosedBeforeResponse)
            }
            Err(error) if downstream_body_failed(&error) => {
                tracing::debug!(
                    cluster = %self.cluster.spec.name,
                    %error,
                    "the downstream request body failed"
                );
                Outcome::Failed(Failure::DownstreamBody)
            }
            Err(error) => {
                let failure = classify(&error);
                match failure {
                    AttemptFailure::ConnectFailure => {
                        self.cluster.stats.connect_failures.fetch_add(1, Relaxed)
                    }
                    _ => self.cluster.stats.upstream_errors.fetch_add(1, Relaxed),
                };
                tracing::debug!(
                    cluster = %self.cluster.spec.name,
                    endpoint = %endpoint.address,
                    %error,
                    "upstream attempt failed"
                );
                Outcome::Failed(Failure::Upstream(failure))
            }
        }
    }

    /// The answer the downstream gets when this attempt was the last.
    pub(super) fn reply(&self, failure: Failure) -> LocalReply {
        let stats = &self.cluster.stats;
        let reply = match failure {
            Failure::RouteTimeout | Failure::Upstream(AttemptFailure::PerTryTimeout) => {
                LocalReply::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout",
                    ResponseFlag::UpstreamTimeout,
                )
            }
            Failure::Upstream(AttemptFailure::ConnectFailure) => LocalReply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                ResponseFlag::UpstreamConnectFailure,
            ),
            Failure::Upstream(AttemptFailure::RefusedStream) => LocalReply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset",
                ResponseFlag::UpstreamReset,
            ),
            Failure::Upstream(AttemptFailure::Reset) | Failure::ClosedBeforeResponse => {
                LocalReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect error or disconnect/reset before headers",
                    ResponseFlag::UpstreamReset,
                )
            }
            Failure::Overflow => {
                stats.overflows.fetch_add(1, Relaxed);
                overflow()
            }
            // Envoy's answer to a codec error in the request, before any response.
            Failure::DownstreamBody => {
                return LocalReply::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    ResponseFlag::DownstreamProtocolError,
                );
            }
        };
        stats.responses.record(reply.status.as_u16());
        reply
    }
}

/// Envoy's answer when a circuit breaker refuses a request.
pub(super) fn overflow() -> LocalReply {
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ResponseFlag::UpstreamOverflow,
    )
}

/// The connection ended after the request was sent and before a byte of the answer.
fn closed_before_response(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message();
        }
        source = cause.source();
    }
    false
}

/// The request failed because reading its body from the caller failed, not because of
/// the upstream: the client's error carries the body's own.
fn downstream_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(ReplayError::Source(_)) = cause.downcast_ref::<ReplayError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Which way a request failed without a response, from the client's error.
fn classify(error: &hyper_util::client::legacy::Error) -> AttemptFailure {
    if error.is_connect() {
        return AttemptFailure::ConnectFailure;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return AttemptFailure::RefusedStream;
        }
        source = cause.source();
    }
    AttemptFailure::Reset
}
