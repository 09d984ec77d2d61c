//! `envoy.filters.http.ext_authz` and `envoy.filters.network.ext_authz`: a request (or a
//! connection) is let through only when an external authorizer says so.
//!
//! The filter asks only when its `filter_enabled_metadata` matches what the filters
//! before it wrote (istiod: when a CUSTOM policy's shadow rules matched). The authorizer
//! is an HTTP service (a copy of the request's head; 200 allows) or Envoy's ext_authz v3
//! gRPC API; either may add headers to the request and to the response. With
//! `with_request_body` the check also carries the body, read ahead of the router and
//! kept for it (bounded: a longer body is cut, or answered 413). When it cannot be
//! asked, `failure_mode_allow` decides; a refusal without an answer is `status_on_error`.

mod grpc;
mod http_service;

use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Collected, Either, Full, Limited};

use super::{Answer, LocalReply};
use crate::rbac::{MetadataMatch, Subject};
use crate::routing::ValueMatch;
use crate::snapshot::Snapshot;
use crate::telemetry::ResponseFlag;
use crate::upstream::{self, BodyPrefix, UpstreamBody};

pub use grpc::GrpcService;
pub use http_service::HttpService;

pub const EXT_AUTHZ_FILTER: &str = bosun_wire::http_filters::EXT_AUTHZ;

/// The most of an authorizer's answer body the proxy reads (a denial's body).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One ext_authz filter.
#[derive(Debug, Clone)]
pub struct ExtAuthzFilter {
    pub name: String,
    pub service: CheckService,
    pub failure_mode_allow: bool,
    pub status_on_error: StatusCode,
    /// Asks only when this matches the metadata of the filters before; always, unset.
    pub enabled_by: Option<MetadataMatch>,
    /// The request headers the authorizer gets (unset: the HTTP service's defaults only,
    /// every header for the gRPC API).
    pub allowed_headers: Option<HeaderPatterns>,
    /// `with_request_body`: the check carries the request body, read ahead.
    pub with_body: Option<BodyLimit>,
}

/// How much of the request body a check carries (Envoy's `BufferSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    pub max_bytes: usize,
    /// A longer body is cut to `max_bytes` for the check (else answered 413).
    pub allow_partial: bool,
    /// gRPC checks: the body as bytes (`raw_body`) rather than text (`body`).
    pub pack_as_bytes: bool,
}

/// The header telling the authorizer whether it got the whole body (Envoy's).
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// How the authorizer is asked.
#[derive(Debug, Clone)]
pub enum CheckService {
    Http(HttpService),
    Grpc(GrpcService),
}

/// Header names matched by any of a list of patterns (Envoy's `ListStringMatcher`).
#[derive(Debug, Clone, Default)]
pub struct HeaderPatterns(pub Vec<ValueMatch>);

impl HeaderPatterns {
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(name))
    }
}

/// What the authorizer decided.
#[derive(Debug, Default)]
pub struct Allowed {
    /// Headers set on the request on its way to the app (`true`: appended instead).
    pub request_headers: Vec<(HeaderName, HeaderValue, bool)>,
    pub remove_request_headers: Vec<HeaderName>,
    /// Headers added to the response on its way back.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// A refusal the authorizer wrote.
#[derive(Debug)]
pub struct Denied {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// The outcome of one check.
#[derive(Debug)]
pub enum Verdict {
    Allow(Allowed),
    Deny(Denied),
    /// The authorizer could not be asked, or failed.
    Error(String),
}

impl ExtAuthzFilter {
    /// Whether this request is to be checked.
    pub fn enabled(&self, metadata: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.enabled_by
            .as_ref()
            .is_none_or(|matcher| matcher.matches(Some(metadata)))
    }

    /// Checks a request; `Ok` says what to change in the request and the response. The
    /// clusters are read only here, when a check is made.
    pub async fn on_request(
        &self,
        subject: &Subject<'_>,
        body: Option<&BodyPrefix>,
        upstream: &ArcSwap<Snapshot>,
    ) -> Result<Allowed, Answer> {
        let upstream = upstream.load_full();
        let verdict = match &self.service {
            CheckService::Http(service) => service.check(self, subject, body, &upstream).await,
            CheckService::Grpc(service) => service.check(self, subject, body, &upstream).await,
        };
        match verdict {
            Verdict::Allow(allowed) => Ok(allowed),
            Verdict::Deny(denied) => {
                tracing::debug!(filter = %self.name, status = %denied.status, "ext_authz denied");
                let mut response = Response::new(Either::Right(Full::new(denied.body)));
                *response.status_mut() = denied.status;
                let headers = response.headers_mut();
                for (name, value) in denied.headers {
                    headers.insert(name, value);
                }
                Err(Answer::Response(response))
            }
            Verdict::Error(error) if self.failure_mode_allow => {
                tracing::debug!(filter = %self.name, %error, "ext_authz failed; failing open");
                Ok(Allowed::default())
            }
            Verdict::Error(error) => {
                tracing::debug!(filter = %self.name, %error, "ext_authz failed");
                Err(Answer::Local(LocalReply::new(
                    self.status_on_error,
                    "",
                    ResponseFlag::UnauthorizedExternalService,
                )))
            }
        }
    }

    /// Checks a connection (the network filter, gRPC API only): `true` lets it through.
    pub async fn on_connection(&self, subject: &Subject<'_>, upstream: &ArcSwap<Snapshot>) -> bool {
        let CheckService::Grpc(service) = &self.service else {
            return true;
        };
        match service
            .check(self, subject, None, &upstream.load_full())
            .await
        {
            Verdict::Allow(_) => true,
            Verdict::Deny(_) => false,
            Verdict::Error(error) => {
                tracing::debug!(filter = %self.name, %error, "ext_authz failed");
                self.failure_mode_allow
            }
        }
    }
}

/// Sends a check to the authorizer's cluster and reads its whole answer (bounded),
/// within `timeout` (none when it is zero).
async fn ask(
    upstream: &Snapshot,
    cluster: &str,
    request: http::Request<UpstreamBody>,
    timeout: Option<Duration>,
) -> Result<(http::response::Parts, Collected<Bytes>), String> {
    let cluster = upstream
        .clusters
        .get(cluster)
        .ok_or_else(|| format!("no cluster {cluster}"))?;
    let exchange = async {
        let response = upstream::call(cluster, request, None)
            .await
            .map_err(|e| e.to_string())?;
        let (head, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the authorizer's answer: {e}"))?;
        Ok((head, body))
    };
    match timeout.filter(|timeout| !timeout.is_zero()) {
        Some(timeout) => tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err("the check timed out".into())),
        None => exchange.await,
    }
}
