//! The HTTP connection manager: one request through a listener's filter chain.
//!
//! Inbound and outbound requests take the same steps, told apart only where Istio tells
//! them apart (who is reported as calling, and how the caller's certificate reaches the
//! app): the listener's chain is chosen, the request is routed, each HTTP filter sees it
//! in order, and the router forwards it. Config is read with lock-free `ArcSwap` loads;
//! only the `Arc`s kept across awaits are cloned.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::connection::ConnectionInfo;
use super::upgrade::{self, Requested, Upgrade};
use crate::compile::{ClientCertHeader, HttpChainSpec, RouteSource};
use crate::filters::router::{self, Forwarding, Mirror};
use crate::filters::{Answer, LocalReply, ProxyBody, StagedRequest, is_grpc, text_reply};
use crate::headers::{X_FORWARDED_CLIENT_CERT, take_connection_nominated};
use crate::in_flight::{CountedBody, InFlight};
use crate::listeners::ListenerContext;
use crate::rbac::Subject;
use crate::routing::{RedirectFrom, RequestView, Route, RouteAction};
use crate::snapshot::Snapshot;
use crate::stats::ListenerStats;
use crate::telemetry::{Direction, MeteredBody, RequestRecord, ResponseFlag, exchange};
use crate::upstream::RequestBody;

/// What a listener answers with: the proxied body, reported when it ends and counted in
/// flight until then.
pub type ResponseBody = CountedBody<MeteredBody<ProxyBody>>;

pub async fn handle(
    ctx: Arc<ListenerContext>,
    connection: Arc<ConnectionInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let _answering = connection.head.request_started();
    let listener = ctx.config.load_full();
    let stats = &listener.stats;
    stats.requests.fetch_add(1, Relaxed);
    let in_flight = InFlight::enter(stats);
    let version = req.version();
    let mut record = begin_record(
        &ctx,
        listener.spec.direction,
        &connection,
        &mut req,
        started,
    );
    // The listener may have lost this connection's chain in an update since it opened.
    let Some(chain) = listener.spec.http_chain_for(connection.is_tls) else {
        let response = text_reply(StatusCode::SERVICE_UNAVAILABLE, "listener changed");
        stats.responses.record(response.status().as_u16());
        return Ok(metered(record, response, in_flight));
    };
    // Before the proxy adds headers of its own: a caller's `Connection` cannot remove them.
    take_connection_nominated(req.headers_mut());
    set_client_cert_header(
        req.headers_mut(),
        chain.client_cert_header,
        &connection,
        &ctx,
    );
    let grpc = is_grpc(req.headers());
    let request = Downstream {
        req: req.map(RequestBody::from),
        grpc,
        connection: connection.addresses,
    };
    let routed = route_and_forward(&ctx, chain, &connection, stats, request, record.as_mut()).await;
    let mut response = match routed {
        Ok(response) => response,
        Err(reply) => reply.answer(grpc, record.as_mut()),
    };
    stats.responses.record(response.status().as_u16());
    if version != Version::HTTP_2 {
        *response.version_mut() = Version::HTTP_11;
    }
    Ok(metered(record, response, in_flight))
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

fn metered(
    record: Option<RequestRecord>,
    response: Response<ProxyBody>,
    in_flight: InFlight<ListenerStats>,
) -> Response<ResponseBody> {
    let (parts, body) = response.into_parts();
    let body = match record {
        Some(record) => record.respond(parts.status.as_u16(), &parts.headers, body),
        None => MeteredBody::unmetered(body),
    };
    Response::from_parts(parts, CountedBody::new(body, in_flight))
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

/// A request as it came from downstream: whether it speaks gRPC, and on which connection.
struct Downstream {
    req: Request<RequestBody>,
    grpc: bool,
    connection: Option<(SocketAddr, SocketAddr)>,
}

/// Routes the request, runs it through the chain's filters, and hands it to the router.
async fn route_and_forward(
    ctx: &ListenerContext,
    chain: &HttpChainSpec,
    connection: &ConnectionInfo,
    stats: &ListenerStats,
    downstream: Downstream,
    mut record: Option<&mut RequestRecord>,
) -> Result<Response<ProxyBody>, LocalReply> {
    let Downstream {
        mut req,
        grpc,
        connection: addresses,
    } = downstream;
    // Envoy refuses an upgrade no upgrade config allows before routing it.
    let upgrade = match upgrade::requested(&req) {
        Requested::None | Requested::H2c => None,
        Requested::WebSocket(protocol) if chain.websocket => {
            Some(Upgrade::take(&mut req, protocol))
        }
        Requested::WebSocket(_) | Requested::Other => {
            return Err(LocalReply::new(
                StatusCode::FORBIDDEN,
                "",
                ResponseFlag::None,
            ));
        }
    };
    if !chain.path_normalization.is_off() {
        normalize_path(&mut req, chain.path_normalization)?;
    }
    let Some(authority) = request_authority(&req) else {
        return Err(LocalReply::new(
            StatusCode::BAD_REQUEST,
            "missing host",
            ResponseFlag::None,
        ));
    };
    // The head and the body apart: a stage may read the body ahead while the request's
    // head is looked at.
    let (parts, mut body) = req.into_parts();
    let view = RequestView {
        authority: authority.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        method: &parts.method,
        scheme: "http",
        headers: &parts.headers,
    };
    let route = {
        let snapshot: arc_swap::Guard<Arc<Snapshot>> = ctx.snapshot.load();
        let table = match &chain.routes {
            RouteSource::Inline(table) => Some(table),
            RouteSource::Rds(name) => snapshot.routes.get(name),
        };
        table.and_then(|table| table.route(&view)).cloned()
    };
    let Some(route) = route else {
        stats.no_route.fetch_add(1, Relaxed);
        if let Some(record) = record.as_deref_mut() {
            record.set_requested_service(authority.host());
        }
        return Err(LocalReply::new(
            StatusCode::NOT_FOUND,
            "",
            ResponseFlag::NoRoute,
        ));
    };
    let selected = route.select_cluster();
    let subject = Subject {
        peer: connection.peer.as_ref(),
        addresses,
        remote: if chain.http_filters.needs_subject() {
            original_client(&view, addresses)
        } else {
            None
        },
        sni: connection.sni.as_deref().unwrap_or_default(),
        request: Some(&view),
        metadata: None,
    };
    let work = match chain
        .http_filters
        .on_request(
            StagedRequest {
                head: &view,
                body: &mut body,
            },
            &subject,
            &route,
            selected.as_ref().map(|selected| selected.name.as_ref()),
            &ctx.snapshot,
            record.as_deref_mut(),
        )
        .await
    {
        Ok(work) => work,
        Err(Answer::Local(reply)) => return Err(reply),
        Err(Answer::Response(response)) => return Ok(response),
    };
    let mut req = Request::from_parts(parts, body);
    work.edit_request(req.headers_mut());
    // The router.
    let Some(selected) = selected else {
        let mut response = answer_in_place(&route, &authority, req.uri())
            .ok_or_else(|| LocalReply::new(StatusCode::NOT_FOUND, "", ResponseFlag::NoRoute))?;
        work.apply(response.headers_mut());
        return Ok(response);
    };
    let (cluster, mirrors) = {
        let snapshot = ctx.snapshot.load();
        let mirrors: Vec<Mirror> = route
            .mirrors
            .iter()
            // An upgraded connection is not copied.
            .filter(|_| upgrade.is_none())
            .filter(|mirror| mirror.share.roll())
            .filter_map(|mirror| {
                Some(Mirror {
                    cluster: snapshot.clusters.get(mirror.cluster.as_ref())?.clone(),
                    shadow_suffix: mirror.shadow_suffix,
                })
            })
            .collect();
        (
            snapshot.clusters.get(selected.name.as_ref()).cloned(),
            mirrors,
        )
    };
    let Some(cluster) = cluster else {
        if let Some(record) = record.as_deref_mut() {
            record.set_requested_service(authority.host());
        }
        return Err(LocalReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster not found",
            ResponseFlag::NoCluster,
        ));
    };
    if let Some(record) = record.as_deref_mut() {
        match &cluster.spec.service {
            Some(service) => record.set_service(service.clone()),
            None => record.set_requested_service(authority.host()),
        }
    }
    if route.tunnels() {
        let mut response = router::tunnel(&cluster, req).await?;
        work.apply(response.headers_mut());
        return Ok(response);
    }
    let forwarding = Forwarding {
        telemetry: &ctx.telemetry,
        record,
        grpc,
        entry: selected.headers,
        mirrors,
        downstream_tls: connection.is_tls,
        connection: addresses,
        upgrade,
    };
    let mut response = router::forward(&cluster, &route, authority, req, forwarding).await;
    work.apply(response.headers_mut());
    Ok(response)
}

/// Makes the request's path canonical (Envoy's path normalization): what routes,
/// authorization and the app all see. A path that cannot be is answered 400.
fn normalize_path(
    req: &mut Request<RequestBody>,
    normalization: crate::http::path::PathNormalization,
) -> Result<(), LocalReply> {
    let bad_request =
        || LocalReply::new(StatusCode::BAD_REQUEST, "Bad Request", ResponseFlag::None);
    let uri = req.uri();
    let normalized = normalization.apply(uri.path()).map_err(|_| bad_request())?;
    if normalized == uri.path() {
        return Ok(());
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized.into_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| bad_request())?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| bad_request())?;
    Ok(())
}

/// The original client, as Envoy finds it on a connection manager that does not use the
/// remote address (a sidecar's): the last address `x-forwarded-for` names, else the
/// connection's peer.
fn original_client(
    view: &RequestView<'_>,
    addresses: Option<(SocketAddr, SocketAddr)>,
) -> Option<std::net::IpAddr> {
    let forwarded = view
        .headers
        .get_all(&crate::headers::X_FORWARDED_FOR)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok());
    forwarded.or(addresses.map(|(remote, _)| remote.ip()))
}

/// The answer of a route that answers itself (Envoy's direct response or redirect), with
/// the route's response headers.
fn answer_in_place(
    route: &Route,
    authority: &Authority,
    uri: &http::Uri,
) -> Option<Response<ProxyBody>> {
    let mut response = match &route.action {
        RouteAction::Direct(direct) => {
            let mut resp = Response::new(Either::Right(Full::new(direct.body.clone())));
            *resp.status_mut() = direct.status;
            if !direct.body.is_empty() {
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            resp
        }
        RouteAction::Redirect(redirect) => {
            let from = RedirectFrom {
                scheme: "http",
                authority,
                path: uri.path(),
                query: uri.query(),
                matched_prefix: route.matched_prefix(),
            };
            let mut resp = Response::new(Either::Right(Full::new(bytes::Bytes::new())));
            *resp.status_mut() = redirect.status;
            *resp.headers_mut() = redirect.response_headers(&from);
            resp
        }
        RouteAction::Cluster(_) | RouteAction::Weighted(_) => return None,
    };
    router::apply_response_rules(route, None, response.headers_mut());
    Some(response)
}

/// The request's target host: the absolute-form URI's authority, else `Host`
/// (HTTP/1) or `:authority` (HTTP/2, which hyper puts into the URI).
fn request_authority<B>(req: &Request<B>) -> Option<Authority> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.clone());
    }
    let host = req.headers().get(HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}
