//! A connector that always dials one endpoint, whatever the request's authority.
//!
//! Each endpoint owns its own pool, so the request URI can keep the original
//! authority (`reviews:9080`, sent upstream as `Host` / `:authority`) while the TCP
//! connection goes to the endpoint's address chosen by load balancing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct EndpointConnector {
    address: SocketAddr,
    connect_timeout: Duration,
}

impl EndpointConnector {
    pub fn new(address: SocketAddr, connect_timeout: Duration) -> Self {
        EndpointConnector {
            address,
            connect_timeout,
        }
    }
}

impl tower::Service<Uri> for EndpointConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let address = self.address;
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {address} timed out after {timeout:?}"),
                    )
                })??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}
