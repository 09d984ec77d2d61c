//! A minimal HTTP/1.1 upstream and client for end-to-end tests.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("HTTP exchange failed: {0}")]
    Exchange(#[from] hyper::Error),
    #[error("response body is not UTF-8")]
    NotUtf8,
}

/// An HTTP server answering every request with `200` and a fixed body; stops when dropped.
pub struct HttpUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpUpstream {
    /// Listens on `ip:0`.
    pub async fn start(ip: std::net::IpAddr, body: &'static str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        service_fn(move |_request: Request<hyper::body::Incoming>| async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                body.as_bytes(),
                            ))))
                        });
                    // A peer hanging up mid-request is not the test's concern.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET path` on `addr` with the given `Host`; returns the status code and the body.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, String), HttpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, host)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await;
    let result = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            String::from_utf8(body.to_vec())
                .map(|body| (status, body))
                .map_err(|_| HttpError::NotUtf8)
        }
        Err(error) => Err(error.into()),
    };
    driver.abort();
    result
}
