//! The admin API: `/ready`, `/config_dump`, `/certs`, `/stats`, `/stats/prometheus`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config_dump::CertificatesDump;
use crate::drain::DrainWatcher;
use crate::state::ConfigStore;
use crate::stats::StatsRegistry;
use crate::telemetry::IstioMetrics;
use crate::tls::WorkloadCertificates;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<ConfigStore>,
    pub stats: Arc<StatsRegistry>,
    pub certificates: Arc<WorkloadCertificates>,
    pub istio_metrics: Arc<IstioMetrics>,
}

pub async fn serve(listener: TcpListener, state: AdminState, drain: DrainWatcher) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    continue;
                }
            },
            () = drain.signaled() => return,
        };
        let state = state.clone();
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| handle(state.clone(), req)),
            )
            .into_owned();
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "admin connection error");
            }
        });
    }
}

async fn handle(
    state: AdminState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is supported\n",
        ));
    }
    let response = match req.uri().path() {
        "/ready" => {
            if state.store.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else if state.store.is_ready() {
                text(StatusCode::OK, "LIVE\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n")
            }
        }
        "/config_dump" => json(&state.store.dump().await),
        "/certs" => json(&CertificatesDump::of(&state.certificates)),
        "/stats" => json(&state.stats.snapshot()),
        "/stats/prometheus" => prometheus(&state),
        "/" => text(
            StatusCode::OK,
            "bosun proxy admin\n  /ready\n  /config_dump\n  /certs\n  /stats\n  /stats/prometheus\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode: {err}\n"),
        ),
    }
}

/// Istio's standard metrics, then the proxy's own listener and cluster counters, in
/// Prometheus' text format.
fn prometheus(state: &AdminState) -> Response<Full<Bytes>> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Arc::clone(&state.istio_metrics)));
    let mut body = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut body, &registry).is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    body.push_str(&state.stats.snapshot().to_prometheus());
    let mut response = text(StatusCode::OK, &body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
