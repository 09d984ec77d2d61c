//! One attempt: a request sent to one endpoint, timed, and what came of it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Forwarding;
use crate::filters::LocalReply;
use crate::routing::{AttemptFailure, RetryPolicy};
use crate::telemetry::ResponseFlag;
use crate::upstream::{ActiveRequest, Cluster, Endpoint, UpstreamBody};

/// How an attempt ended.
pub(super) enum Outcome {
    Response(Response<Incoming>),
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// No response: the connection failed, the stream was refused or reset, or the
    /// attempt's own timeout passed.
    Upstream(AttemptFailure),
    /// The route's timeout passed.
    RouteTimeout,
}

impl Failure {
    pub(super) fn retriable_by(self, policy: &RetryPolicy) -> bool {
        match self {
            Failure::Upstream(failure) => policy.retries_failure(failure),
            Failure::RouteTimeout => false,
        }
    }
}

pub(super) struct Attempt<'c> {
    cluster: &'c Cluster,
    active: ActiveRequest,
    /// When the attempt gives up: the sooner of the route's deadline and its own timeout.
    limit: Option<(Instant, bool)>,
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
            active: ActiveRequest::new(endpoint),
            limit,
        }
    }

    pub(super) async fn send(
        &self,
        mut request: Request<UpstreamBody>,
        forwarding: &mut Forwarding<'_>,
    ) -> Outcome {
        let endpoint = self.active.endpoint();
        if let Some(record) = forwarding.record.as_deref_mut() {
            record.set_destination(endpoint.workload());
            // A sidecar is there: tell it who is calling (Istio's metadata exchange).
            if endpoint.tls().is_some() {
                forwarding
                    .telemetry
                    .exchange()
                    .insert_into(request.headers_mut());
            }
        }
        let started = Instant::now();
        let sent = endpoint.client().request(request);
        let result = match self.limit {
            None => sent.await,
            Some((at, is_route_deadline)) => match tokio::time::timeout_at(at.into(), sent).await {
                Ok(result) => result,
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
        self.cluster.stats.latency.record(started.elapsed());
        match result {
            Ok(resp) => Outcome::Response(resp),
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
            Failure::Upstream(AttemptFailure::Reset) => LocalReply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers",
                ResponseFlag::UpstreamReset,
            ),
        };
        stats.responses.record(reply.status.as_u16());
        reply
    }
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
