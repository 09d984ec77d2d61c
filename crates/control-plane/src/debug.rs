//! The control plane's debug HTTP endpoint: readiness, what each proxy has acked or
//! NACKed, and the config as the control plane understood it.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config_status::ConfigStatus;

/// Reports per-proxy xDS sync state as JSON (the ADS server's view).
pub type SyncStatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the debug endpoint reads; every field is cheap to read concurrently.
#[derive(Clone)]
pub struct DebugState {
    pub config: Arc<ArcSwap<ConfigStatus>>,
    pub sync_status: SyncStatusFn,
}

/// Serves the debug endpoint on `listener` until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, state: DebugState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "debug endpoint accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request)) }
            });
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %peer, "debug connection ended");
            }
        });
    }
}

fn handle(state: &DebugState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match request.uri().path() {
        // The endpoint listens only once the first config is loaded, and the control plane
        // exits (to be restarted) if it stops following its folder or serving xDS.
        "/ready" => text(StatusCode::OK, "ready\n"),
        "/debug/syncz" => json(&(state.sync_status)()),
        "/debug/configz" => json(&**state.config.load()),
        "/" => text(
            StatusCode::OK,
            "GET /ready           readiness (first config loaded)\n\
             GET /debug/syncz     per proxy: what was sent, acked and NACKed\n\
             GET /debug/configz   the loaded resources, errors and warnings\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown path; GET / lists the endpoints\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode status\n"),
    }
}
