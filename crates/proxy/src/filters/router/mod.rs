//! `envoy.filters.http.router`, the last filter: sends the request to the route's
//! cluster and brings back the answer, within the route's timeout, retrying as the
//! route's retry policy says.

mod attempt;
mod mirror;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use self::attempt::{Attempt, Failure, Outcome};
pub use self::mirror::Mirror;
pub use self::tunnel::tunnel;
use super::{LocalReply, ProxyBody};
use crate::headers::{X_ENVOY_UPSTREAM_SERVICE_TIME, remove_hop_by_hop, set_forwarding_headers};
use crate::http::upgrade::Upgrade;
use crate::in_flight::InFlight;
use crate::routing::{HashInput, HeaderRules, RetryPolicy, Route, rewrite_path};
use crate::telemetry::{RequestRecord, ResponseFlag, Telemetry};
use crate::upstream::{
    Admitted, Cluster, Held, Replay, RequestBody, RetryAdmitted, UpstreamBody, UpstreamPrincipal,
    UpstreamProtocol, UpstreamResponseBody,
};

pub const ROUTER_FILTER: &str = bosun_wire::http_filters::ROUTER;

/// What the router needs besides the request: how the sidecar names itself to the
/// sidecars it calls (Istio's metadata exchange), where the request is reported, whether
/// the caller speaks gRPC (for the router's own answers), and the header changes of the
/// weighted cluster chosen.
pub struct Forwarding<'a> {
    pub telemetry: &'a Telemetry,
    pub record: Option<&'a mut RequestRecord>,
    pub grpc: bool,
    pub entry: Option<&'a Arc<HeaderRules>>,
    /// The route's mirrors this request is copied to.
    pub mirrors: Vec<Mirror>,
    /// The request came over TLS (`x-forwarded-proto: https` when it says none).
    pub downstream_tls: bool,
    /// The downstream connection's remote and local address (for hashing on them).
    pub connection: Option<(SocketAddr, SocketAddr)>,
    /// The WebSocket upgrade the request asks for, which the connection manager allowed.
    pub upgrade: Option<Upgrade>,
}

/// Sends `req` to `cluster` as `route` says, retrying failed attempts, and answers with
/// the upstream's response or the router's own, with the route's response headers.
pub async fn forward(
    cluster: &Cluster,
    route: &Route,
    authority: Authority,
    req: Request<RequestBody>,
    mut forwarding: Forwarding<'_>,
) -> Response<ProxyBody> {
    let entry = forwarding.entry;
    let hashed = route.hash_policy.as_deref().map(|policy| {
        let input = HashInput {
            query: req.uri().query(),
            connection: forwarding.connection,
        };
        policy.hash(req.headers(), input)
    });
    let hash = hashed.as_ref().and_then(|hashed| hashed.hash);
    let mut response = match send(cluster, route, authority, req, hash, &mut forwarding).await {
        Ok(mut response) => {
            // The cookie the hash policy made goes back with the upstream's answer.
            if let Some(cookie) = hashed.and_then(|hashed| hashed.set_cookie) {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            response
        }
        Err(reply) => reply.answer(forwarding.grpc, forwarding.record.as_deref_mut()),
    };
    apply_response_rules(route, entry, response.headers_mut());
    response
}

/// The response header changes of the weighted cluster, then of the route and its outer
/// levels (the least specific last, so it wins).
pub fn apply_response_rules(
    route: &Route,
    entry: Option<&Arc<HeaderRules>>,
    headers: &mut http::HeaderMap,
) {
    for rules in entry.into_iter().chain(route.headers.iter()) {
        rules.response.apply(headers);
    }
}

async fn send(
    cluster: &Cluster,
    route: &Route,
    authority: Authority,
    req: Request<RequestBody>,
    hash: Option<u64>,
    forwarding: &mut Forwarding<'_>,
) -> Result<Response<ProxyBody>, LocalReply> {
    let stats = &cluster.stats;
    stats.requests.fetch_add(1, Relaxed);
    // Counted until the response body ends: it travels with the response.
    let mut in_flight = Some(InFlight::enter(stats));
    let Some(admitted) = cluster.admit() else {
        stats.overflows.fetch_add(1, Relaxed);
        stats.responses.record(503);
        return Err(attempt::overflow());
    };
    // Upgrades are HTTP/1.1's: an HTTP/2 upstream cannot switch protocols.
    if forwarding.upgrade.is_some() && cluster.spec.pool.protocol != UpstreamProtocol::Http1 {
        return Err(LocalReply::new(
            StatusCode::FORBIDDEN,
            "upgrade to an HTTP/2 upstream",
            ResponseFlag::None,
        ));
    }
    // A DNS cluster that has not resolved its names yet is waited for, as Envoy warms one.
    if cluster.awaits_first_lookup() {
        cluster
            .first_lookup_done(cluster.spec.pool.connect_timeout)
            .await;
    }
    // An original-destination cluster (PassthroughCluster) goes where the request says.
    let destination = cluster
        .original_destination(&authority, req.headers())
        .map_err(|_| no_healthy_upstream(cluster))?;
    let (parts, body) = upstream_request(
        req,
        authority,
        route,
        forwarding,
        cluster.spec.pool.protocol,
    )
    .map(Request::into_parts)
    .map_err(|status| LocalReply::new(status, "invalid request", ResponseFlag::None))?;
    // A request with no body the upstream can take again is sent again, once, when the
    // upstream closes the connection before answering (a keep-alive race).
    let resendable = is_resendable(&parts.method) && http_body::Body::is_end_stream(&body);
    let mirrors = std::mem::take(&mut forwarding.mirrors);
    let body = mirror::send_copies(mirrors, &parts, body, route.timeout);
    let started = Instant::now();
    let deadline = route.timeout.map(|timeout| started + timeout);
    let pick = |tried: &[SocketAddr], attempts: u32| {
        destination
            .map(|address| cluster.endpoint_at(address))
            .or_else(|| cluster.pick_avoiding(tried, attempts, hash))
            .ok_or_else(|| no_healthy_upstream(cluster))
    };
    let Some(policy) = route.retry.as_deref() else {
        let spare = resendable.then(|| clone_parts(&parts));
        let request = Request::from_parts(parts, UpstreamBody::Streaming(body));
        let mut attempt = Attempt::new(cluster, pick(&[], 1)?, deadline, None);
        let mut outcome = attempt.send(request, forwarding).await;
        if let (Outcome::Failed(Failure::ClosedBeforeResponse), Some(parts)) = (&outcome, spare) {
            stats.retries.fetch_add(1, Relaxed);
            let request = Request::from_parts(parts, UpstreamBody::Empty);
            attempt = Attempt::new(cluster, pick(&[], 1)?, deadline, None).on_new_connection();
            outcome = attempt.send(request, forwarding).await;
        }
        return match outcome {
            Outcome::Response(resp, slot) => {
                let held = Held {
                    active: attempt.take_active(),
                    admitted: Some(admitted),
                    slot,
                    in_flight: in_flight.take(),
                };
                Ok(finish(cluster, resp, held, started, forwarding))
            }
            Outcome::Failed(failure) => Err(attempt.reply(failure)),
        };
    };
    let mut admitted: Option<Admitted> = Some(admitted);
    let mut resent = false;
    let mut resending = false;
    let (first_body, replay) = UpstreamBody::replayable(body);
    let mut retries = Retries::new(policy, replay);
    let mut body = Some(first_body);
    // The retry being made holds its place in the cluster's retry budget.
    let mut _retry_admitted: Option<RetryAdmitted<'_>> = None;
    loop {
        let endpoint = pick(&retries.tried, policy.host_selection_attempts)?;
        let address = endpoint.address;
        let mut attempt = Attempt::new(cluster, endpoint, deadline, policy.per_try_timeout);
        if std::mem::take(&mut resending) {
            attempt = attempt.on_new_connection();
        }
        let request = Request::from_parts(
            clone_parts(&parts),
            body.take().unwrap_or(UpstreamBody::Empty),
        );
        let outcome = attempt.send(request, forwarding).await;
        if resendable
            && !resent
            && matches!(outcome, Outcome::Failed(Failure::ClosedBeforeResponse))
        {
            // Not one of the policy's retries: the upstream never saw the request.
            resent = true;
            resending = true;
            stats.retries.fetch_add(1, Relaxed);
            body = Some(UpstreamBody::Empty);
            continue;
        }
        let retriable = match &outcome {
            Outcome::Response(resp, _) => {
                policy.retries_response(resp.status().as_u16(), grpc_status(resp.headers()))
            }
            Outcome::Failed(failure) => failure.retriable_by(policy),
        };
        let next = if retriable {
            retries.next(address, cluster, deadline)
        } else {
            None
        };
        let Some((next_body, admitted, wait)) = next else {
            if retriable && let Some(record) = forwarding.record.as_deref_mut() {
                record.set_flag(ResponseFlag::UpstreamRetryLimitExceeded);
            }
            return match outcome {
                Outcome::Response(resp, slot) => {
                    let held = Held {
                        active: attempt.take_active(),
                        admitted: admitted.take(),
                        slot,
                        in_flight: in_flight.take(),
                    };
                    Ok(finish(cluster, resp, held, started, forwarding))
                }
                Outcome::Failed(failure) => Err(attempt.reply(failure)),
            };
        };
        drop(outcome);
        _retry_admitted = Some(admitted);
        stats.retries.fetch_add(1, Relaxed);
        tokio::time::sleep(wait).await;
        body = Some(next_body);
    }
}

/// The retries a request has made and may still make.
struct Retries<'p> {
    policy: &'p RetryPolicy,
    replay: Replay,
    made: u32,
    /// The endpoints tried so far, for the previous-hosts predicate.
    tried: Vec<SocketAddr>,
}

impl<'p> Retries<'p> {
    fn new(policy: &'p RetryPolicy, replay: Replay) -> Self {
        Retries {
            policy,
            replay,
            made: 0,
            tried: Vec::new(),
        }
    }

    /// The next attempt's body, its place in the cluster's retry budget and the wait
    /// before it; `None` when no retry is left, the body cannot be sent again, the
    /// cluster has too many retries in flight, or the route's time is up.
    fn next<'c>(
        &mut self,
        tried: SocketAddr,
        cluster: &'c Cluster,
        deadline: Option<Instant>,
    ) -> Option<(UpstreamBody, RetryAdmitted<'c>, Duration)> {
        if self.made >= self.policy.num_retries {
            return None;
        }
        let wait = self.policy.backoff(self.made + 1);
        if deadline.is_some_and(|deadline| Instant::now() + wait >= deadline) {
            return None;
        }
        let Some(admitted) = cluster.admit_retry() else {
            cluster.stats.retry_overflows.fetch_add(1, Relaxed);
            return None;
        };
        let body = self.replay.next_attempt()?;
        self.made += 1;
        if self.policy.avoid_previous_hosts {
            self.tried.push(tried);
        }
        Some((body, admitted, wait))
    }
}

fn no_healthy_upstream(cluster: &Cluster) -> LocalReply {
    cluster.stats.no_healthy_upstream.fetch_add(1, Relaxed);
    cluster.stats.responses.record(503);
    LocalReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no healthy upstream",
        ResponseFlag::NoHealthyUpstream,
    )
}

/// The upstream's answer as the downstream gets it; its body holds the request's place
/// in the cluster until it ends.
fn finish(
    cluster: &Cluster,
    resp: Response<Incoming>,
    held: Held,
    started: Instant,
    forwarding: &mut Forwarding<'_>,
) -> Response<ProxyBody> {
    let elapsed = started.elapsed();
    cluster.stats.responses.record(resp.status().as_u16());
    let mut resp = resp;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(upgrade) = forwarding.upgrade.take()
    {
        upgrade.join(&mut resp, held);
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    }
    let (mut parts, body) = resp.into_parts();
    if let Some(record) = forwarding.record.as_deref_mut()
        && let Some(UpstreamPrincipal(peer)) = parts.extensions.get::<UpstreamPrincipal>()
    {
        record.set_upstream_principals(forwarding.telemetry.own_principal(), Some(peer));
    }
    remove_hop_by_hop(&mut parts.headers);
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    parts
        .headers
        .insert(X_ENVOY_UPSTREAM_SERVICE_TIME.clone(), HeaderValue::from(ms));
    Response::from_parts(parts, Either::Left(UpstreamResponseBody::new(body, held)))
}

/// The gRPC status of a trailers-only gRPC response.
fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Methods a request may be sent again with (RFC 9110's safe methods), when it has no body.
fn is_resendable(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    )
}

/// The request line and headers of another attempt.
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

/// Rewrites the downstream request for the upstream: the URI carries the authority
/// (the original, or the route's rewrite; each endpoint has its own pool, so the
/// connector ignores it) and the path (rewritten when the route says so), the version
/// matches the cluster's protocol, connection headers go, and the route's header
/// changes apply, the weighted cluster's first.
fn upstream_request(
    req: Request<RequestBody>,
    authority: Authority,
    route: &Route,
    forwarding: &Forwarding<'_>,
    protocol: UpstreamProtocol,
) -> Result<Request<RequestBody>, StatusCode> {
    let entry = forwarding.entry;
    let (mut parts, body) = req.into_parts();
    let authority = entry
        .and_then(|rules| rules.host_rewrite.clone())
        .or_else(|| route.host_rewrite.clone())
        .unwrap_or(authority);
    let path = match &route.path_rewrite {
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        Some(rewrite) => {
            let rewritten = rewrite_path(
                rewrite,
                parts.uri.path(),
                route.matched_prefix(),
                parts.uri.query(),
            );
            PathAndQuery::try_from(rewritten).map_err(|_| StatusCode::BAD_REQUEST)?
        }
    };
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    remove_hop_by_hop(&mut parts.headers);
    if let Some(upgrade) = &forwarding.upgrade {
        upgrade.ask(&mut parts.headers);
    }
    set_forwarding_headers(&mut parts.headers, forwarding.downstream_tls);
    for rules in entry.into_iter().chain(route.headers.iter()) {
        rules.request.apply(&mut parts.headers);
    }
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            let host =
                HeaderValue::from_str(authority.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
            parts.headers.insert(HOST, host);
        }
        UpstreamProtocol::Http2 => {
            // `:authority` comes from the URI; a Host header would duplicate it.
            parts.version = Version::HTTP_2;
            parts.headers.remove(HOST);
        }
    }
    Ok(Request::from_parts(parts, body))
}
