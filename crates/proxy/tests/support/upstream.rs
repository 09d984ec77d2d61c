//! Tiny upstream HTTP servers (HTTP/1.1 + h2c) that say who they are.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::Notify;

/// A running upstream. Its body is its name; headers echo what it received.
pub struct Upstream {
    pub address: SocketAddr,
    pub name: String,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// Requests currently held (see [`Upstream::start_holding`]).
    pub held: Arc<AtomicUsize>,
    pub release: Arc<Notify>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::spawn(name, false).await
    }

    /// An upstream that keeps every request waiting until `release` is notified.
    pub async fn start_holding(name: &str) -> Upstream {
        Self::spawn(name, true).await
    }

    async fn spawn(name: &str, hold: bool) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream = Upstream {
            address: listener.local_addr().expect("address"),
            name: name.to_owned(),
            connections: Arc::default(),
            requests: Arc::default(),
            held: Arc::default(),
            release: Arc::default(),
        };
        let (name, connections, requests, held, release) = (
            upstream.name.clone(),
            upstream.connections.clone(),
            upstream.requests.clone(),
            upstream.held.clone(),
            upstream.release.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, SeqCst);
                let (name, requests, held, release) = (
                    name.clone(),
                    requests.clone(),
                    held.clone(),
                    release.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (name, requests, held, release) = (
                            name.clone(),
                            requests.clone(),
                            held.clone(),
                            release.clone(),
                        );
                        async move {
                            requests.fetch_add(1, SeqCst);
                            if hold {
                                held.fetch_add(1, SeqCst);
                                release.notified().await;
                                held.fetch_sub(1, SeqCst);
                            }
                            let authority = req
                                .uri()
                                .authority()
                                .map(|a| a.to_string())
                                .or_else(|| {
                                    req.headers()
                                        .get("host")
                                        .and_then(|h| h.to_str().ok())
                                        .map(str::to_owned)
                                })
                                .unwrap_or_default();
                            let mut resp = Response::builder()
                                .header("x-upstream", name.as_str())
                                .header("x-upstream-version", format!("{:?}", req.version()))
                                .header("x-upstream-authority", authority)
                                .header("x-upstream-path", req.uri().path());
                            for echo in [
                                "x-request-id",
                                "x-forwarded-proto",
                                "connection",
                                "x-secret",
                            ] {
                                if let Some(v) = req.headers().get(echo) {
                                    resp = resp.header(format!("x-echo-{echo}"), v);
                                }
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from(name))).expect("response"),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }
}
