//! One request through the proxy: route → pick cluster → load balance → forward.
//!
//! Reads config with lock-free `ArcSwap` loads and clones only the `Arc`s it must
//! keep across the upstream await.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::connection::ConnectionInfo;
use super::headers::{
    X_ENVOY_UPSTREAM_SERVICE_TIME, X_FORWARDED_CLIENT_CERT, remove_hop_by_hop,
    set_forwarding_headers,
};
use crate::compile::{ClientCertHeader, RouteSource};
use crate::listeners::ListenerContext;
use crate::routing::{RequestView, RouteAction};
use crate::snapshot::Snapshot;
use crate::stats::{ClusterStats, ListenerStats};
use crate::telemetry::{Direction, MeteredBody, RequestRecord, ResponseFlag, exchange};
use crate::upstream::{ActiveRequest, Cluster, UpstreamPrincipal, UpstreamProtocol};

pub type ProxyBody = Either<Incoming, Full<Bytes>>;
/// What a listener answers with: the proxied body, reported when it ends.
pub type ResponseBody = MeteredBody<ProxyBody>;

/// Decrements a gauge when the request finishes, however it finishes.
struct InFlight<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a std::sync::atomic::AtomicI64) -> Self {
        gauge.fetch_add(1, Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

pub async fn handle(
    ctx: Arc<ListenerContext>,
    connection: Arc<ConnectionInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let listener = ctx.config.load_full();
    let stats = &listener.stats;
    stats.requests.fetch_add(1, Relaxed);
    let _in_flight = InFlight::enter(&stats.in_flight);
    let version = req.version();
    let mut record = begin_record(
        &ctx,
        listener.spec.direction,
        &connection,
        &mut req,
        started,
    );
    // The listener may have lost this connection's chain in an update since it opened.
    let Some(chain) = listener.spec.chain_for(connection.is_tls) else {
        let response = local_reply(StatusCode::SERVICE_UNAVAILABLE, "listener changed");
        stats.responses.record(response.status().as_u16());
        return Ok(metered(record, response));
    };
    set_client_cert_header(
        req.headers_mut(),
        chain.client_cert_header,
        &connection,
        &ctx,
    );
    let mut response = route_and_forward(&ctx, &chain.routes, stats, req, record.as_mut()).await;
    stats.responses.record(response.status().as_u16());
    if version != Version::HTTP_2 {
        *response.version_mut() = Version::HTTP_11;
    }
    Ok(metered(record, response))
}

/// Starts the Istio metrics record of a request on a listener with a direction. The
/// server's sidecar takes the caller's metadata-exchange headers out: they are for it,
/// not for the app.
fn begin_record(
    ctx: &ListenerContext,
    direction: Option<Direction>,
    connection: &ConnectionInfo,
    req: &mut Request<Incoming>,
    started: Instant,
) -> Option<RequestRecord> {
    let mut record = match direction? {
        Direction::Inbound => {
            let caller = connection.caller(exchange::take(req.headers_mut()));
            ctx.telemetry.inbound(
                req.headers(),
                caller,
                connection.principal.clone(),
                connection.is_tls,
                started,
            )
        }
        Direction::Outbound => ctx.telemetry.outbound(req.headers(), started),
    };
    // "GET /path HTTP/1.1\r\n" and the blank line after the headers.
    let request_line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + 13;
    record.request_size(request_line, &http_body::Body::size_hint(req.body()));
    Some(record)
}

fn metered(record: Option<RequestRecord>, response: Response<ProxyBody>) -> Response<ResponseBody> {
    let (parts, body) = response.into_parts();
    let body = match record {
        Some(record) => record.respond(parts.status.as_u16(), &parts.headers, body),
        None => MeteredBody::unmetered(body),
    };
    Response::from_parts(parts, body)
}

/// Envoy's `forward_client_cert_details`: the app behind an mTLS chain learns who
/// called; a header that arrives any other way is removed.
fn set_client_cert_header(
    headers: &mut http::HeaderMap,
    mode: ClientCertHeader,
    connection: &ConnectionInfo,
    ctx: &ListenerContext,
) {
    let (details, append) = match mode {
        ClientCertHeader::AppendForward(details) => (details, true),
        ClientCertHeader::SanitizeSet(details) => (details, false),
        ClientCertHeader::Sanitize => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
            return;
        }
    };
    // No element on a plaintext connection: the header is removed then too.
    let element = connection.forwarded_element(details, || {
        ctx.certificates
            .current()
            .map(|certificate| certificate.identity.uri())
    });
    let Some(element) = element else {
        headers.remove(&X_FORWARDED_CLIENT_CERT);
        return;
    };
    let value = match headers.get(&X_FORWARDED_CLIENT_CERT) {
        Some(existing) if append => {
            let mut joined = existing.as_bytes().to_vec();
            joined.push(b',');
            joined.extend_from_slice(element.as_bytes());
            HeaderValue::from_bytes(&joined).ok()
        }
        _ => Some(element),
    };
    match value {
        Some(value) => {
            headers.insert(X_FORWARDED_CLIENT_CERT.clone(), value);
        }
        None => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
}

async fn route_and_forward(
    ctx: &ListenerContext,
    routes: &RouteSource,
    stats: &ListenerStats,
    req: Request<Incoming>,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    let Some(authority) = request_authority(&req) else {
        return local_reply(StatusCode::BAD_REQUEST, "missing host");
    };
    let (cluster, timeout) = {
        let snapshot: arc_swap::Guard<Arc<Snapshot>> = ctx.snapshot.load();
        let table = match routes {
            RouteSource::Inline(table) => Some(table),
            RouteSource::Rds(name) => snapshot.routes.get(name),
        };
        let view = RequestView {
            authority: authority.as_str(),
            path: req.uri().path(),
            method: req.method(),
            scheme: "http",
            headers: req.headers(),
        };
        let Some(route) = table.and_then(|t| t.route(&view)) else {
            stats.no_route.fetch_add(1, Relaxed);
            if let Some(record) = record {
                record.set_flag(ResponseFlag::NoRoute);
                record.set_requested_service(authority.host());
            }
            return local_reply(StatusCode::NOT_FOUND, "");
        };
        let cluster_name = match &route.action {
            RouteAction::Cluster(name) => name,
            RouteAction::Weighted(weighted) => weighted.select(),
            RouteAction::Direct(direct) => {
                let mut resp = Response::new(Either::Right(Full::new(direct.body.clone())));
                *resp.status_mut() = direct.status;
                return resp;
            }
        };
        let Some(cluster) = snapshot.clusters.get(cluster_name.as_ref()) else {
            if let Some(record) = record {
                record.set_flag(ResponseFlag::NoCluster);
                record.set_requested_service(authority.host());
            }
            return local_reply(StatusCode::SERVICE_UNAVAILABLE, "cluster not found");
        };
        (cluster.clone(), route.timeout)
    };
    if let Some(record) = record.as_deref_mut() {
        match &cluster.spec.service {
            Some(service) => record.set_service(service.clone()),
            None => record.set_requested_service(authority.host()),
        }
    }
    forward(ctx, &cluster, authority, timeout, req, record).await
}

/// The request's target host: the absolute-form URI's authority, else `Host`
/// (HTTP/1) or `:authority` (HTTP/2, which hyper puts into the URI).
fn request_authority(req: &Request<Incoming>) -> Option<Authority> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.clone());
    }
    let host = req.headers().get(HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

async fn forward(
    ctx: &ListenerContext,
    cluster: &Cluster,
    authority: Authority,
    timeout: Option<std::time::Duration>,
    req: Request<Incoming>,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    let stats: &ClusterStats = &cluster.stats;
    stats.requests.fetch_add(1, Relaxed);
    let _in_flight = InFlight::enter(&stats.in_flight);
    let Some(endpoint) = cluster.pick() else {
        stats.no_healthy_upstream.fetch_add(1, Relaxed);
        stats.responses.record(503);
        if let Some(record) = record {
            record.set_flag(ResponseFlag::NoHealthyUpstream);
        }
        return local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
    };
    let active = ActiveRequest::new(endpoint);
    let mut upstream_req = match upstream_request(req, authority, cluster.spec.protocol) {
        Ok(r) => r,
        Err(status) => return local_reply(status, "invalid request"),
    };
    let mesh_endpoint = active.endpoint().tls().is_some();
    if let Some(record) = record.as_deref_mut() {
        record.set_destination(active.endpoint().workload());
        // A sidecar is there: tell it who is calling (Istio's metadata exchange).
        if mesh_endpoint {
            ctx.telemetry
                .exchange()
                .insert_into(upstream_req.headers_mut());
        }
    }
    let started = Instant::now();
    let sent = active.endpoint().client().request(upstream_req);
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(result) => result,
            Err(_) => {
                stats.timeouts.fetch_add(1, Relaxed);
                stats.responses.record(504);
                if let Some(record) = record {
                    record.set_flag(ResponseFlag::UpstreamTimeout);
                }
                return local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout");
            }
        },
        None => sent.await,
    };
    let elapsed = started.elapsed();
    stats.latency.record(elapsed);
    match result {
        Ok(resp) => {
            stats.responses.record(resp.status().as_u16());
            let (mut parts, body) = resp.into_parts();
            if let Some(record) = record
                && mesh_endpoint
            {
                let peer = parts.extensions.get::<UpstreamPrincipal>();
                record.set_upstream_principals(
                    ctx.telemetry.own_principal(),
                    peer.map(|UpstreamPrincipal(principal)| principal),
                );
            }
            remove_hop_by_hop(&mut parts.headers);
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            parts
                .headers
                .insert(X_ENVOY_UPSTREAM_SERVICE_TIME.clone(), HeaderValue::from(ms));
            Response::from_parts(parts, Either::Left(body))
        }
        Err(err) if err.is_connect() => {
            stats.connect_failures.fetch_add(1, Relaxed);
            stats.responses.record(503);
            if let Some(record) = record {
                record.set_flag(ResponseFlag::UpstreamConnectFailure);
            }
            tracing::debug!(cluster = %cluster.spec.name, endpoint = %active.endpoint().address, error = %err, "upstream connect failure");
            local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            )
        }
        Err(err) => {
            stats.upstream_errors.fetch_add(1, Relaxed);
            stats.responses.record(503);
            if let Some(record) = record {
                record.set_flag(ResponseFlag::UpstreamReset);
            }
            tracing::debug!(cluster = %cluster.spec.name, endpoint = %active.endpoint().address, error = %err, "upstream request failed");
            local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers",
            )
        }
    }
}

/// Rewrites the downstream request for the upstream: the URI carries the original
/// authority (each endpoint has its own pool, so the connector ignores it), the
/// version matches the cluster's protocol, connection headers go.
fn upstream_request(
    req: Request<Incoming>,
    authority: Authority,
    protocol: UpstreamProtocol,
) -> Result<Request<Incoming>, StatusCode> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    remove_hop_by_hop(&mut parts.headers);
    set_forwarding_headers(&mut parts.headers);
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

pub fn local_reply(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    resp
}
