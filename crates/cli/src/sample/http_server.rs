//! A small HTTP/1.1 + h2c (prior knowledge) accept loop shared by the sample workload and
//! the traffic generator's statistics endpoint, optionally over TLS.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::report::TlsReport;

/// What answers each request.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// How the server keeps HTTP/1.1 connections, as servers that close them do.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepAlive {
    /// A request that comes on a connection idle this long finds it closed: the
    /// connection is dropped unanswered, as when a server's idle close crosses a request
    /// already on its way (a keep-alive race, made certain).
    pub idle_timeout: Option<std::time::Duration>,
    /// Close a connection after this many requests (the last answer says `connection:
    /// close`).
    pub max_requests: Option<u32>,
}

/// Accepts connections forever, serving each on its own task with HTTP/1.1 or HTTP/2
/// (prior knowledge), whichever the client speaks.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>) -> std::io::Result<()> {
    serve_keeping(listener, handler, KeepAlive::default()).await
}

/// [`serve`], closing HTTP/1.1 connections as `keep_alive` says.
pub async fn serve_keeping<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    keep_alive: KeepAlive,
) -> std::io::Result<()> {
    serve_with(listener, handler, keep_alive, None).await
}

/// [`serve_keeping`], over TLS when `tls` is given: each request then carries the
/// connection's [`TlsReport`] in its extensions.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    keep_alive: KeepAlive,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of file descriptors must not end the server: wait and retry.
            Err(error) if is_transient_accept_error(&error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return connection(stream, peer, None, handler, &builder, keep_alive).await;
            };
            match tls.accept(stream).await {
                Ok(stream) => {
                    let report = TlsReport::of(stream.get_ref().1);
                    connection(stream, peer, Some(report), handler, &builder, keep_alive).await;
                }
                Err(error) => tracing::info!(%peer, %error, "TLS handshake failed"),
            }
        });
    }
}

/// Serves one accepted connection until it ends.
async fn connection<H: Handler, S>(
    stream: S,
    peer: std::net::SocketAddr,
    tls: Option<TlsReport>,
    handler: Arc<H>,
    builder: &auto::Builder<TokioExecutor>,
    keep_alive: KeepAlive,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let last_answer = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let service = service_fn(move |mut request: Request<Incoming>| {
        let handler = handler.clone();
        let served = served.clone();
        let last_answer = last_answer.clone();
        if let Some(tls) = &tls {
            request.extensions_mut().insert(tls.clone());
        }
        async move {
            let idle = last_answer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|at| at.elapsed());
            if let (Some(idle), Some(limit)) = (idle, keep_alive.idle_timeout)
                && idle >= limit
            {
                return Err(IdleClosed);
            }
            let mut response = handler.handle(request).await;
            *last_answer.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
            let count = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if keep_alive.max_requests.is_some_and(|max| count >= max) {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, IdleClosed>(response)
        }
    });
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The connection was idle past the keep-alive timeout when a request came.
#[derive(Debug)]
struct IdleClosed;

impl std::fmt::Display for IdleClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection idle past the keep-alive timeout: closed unanswered")
    }
}

impl std::error::Error for IdleClosed {}

fn is_transient_accept_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    ) || error
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

/// A response with a body and a content type.
pub fn response(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A JSON response; serialization of our own report types cannot fail, but if it ever
/// did the client gets a 500 rather than a panic.
pub fn json_response<T: serde::Serialize>(
    status: http::StatusCode,
    value: &T,
) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => response(status, "application/json", body),
        Err(error) => response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("cannot encode the response: {error}\n"),
        ),
    }
}
