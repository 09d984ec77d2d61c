//! A connector that always dials one endpoint, whatever the request's authority, in
//! plaintext or Istio mutual TLS as the cluster's transport socket says.
//!
//! Each endpoint owns its own pool, so the request URI can keep the original
//! authority (`reviews:9080`, sent upstream as `Host` / `:authority`) while the TCP
//! connection goes to the endpoint's address chosen by load balancing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::pool::{PoolOptions, TcpKeepalive};
use crate::compile::UpstreamTls;
use crate::telemetry::Principal;
use crate::telemetry::labels::principal;
use crate::tls::{TlsContexts, spiffe_identity};

/// Mutual TLS to an endpoint: the shared client config and the name sent as SNI.
#[derive(Debug)]
pub struct TlsConnect {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsConnect {
    pub fn new(contexts: &TlsContexts, upstream: &UpstreamTls) -> Self {
        // Identities are checked by URI SAN, so the name only travels as SNI; a name
        // that is not a valid DNS name (or none) is replaced by a neutral one.
        let server_name = ServerName::try_from(upstream.sni.clone())
            .unwrap_or_else(|_| ServerName::try_from("outbound.mesh").expect("a valid DNS name"));
        Self {
            config: contexts.client(&upstream.identities, &upstream.alpn),
            server_name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EndpointConnector {
    address: SocketAddr,
    connect_timeout: Duration,
    tcp_keepalive: Option<TcpKeepalive>,
    source_ip: Option<std::net::IpAddr>,
    /// Connections carry their use, for a pool that retires them by use.
    track_use: bool,
    tls: Option<Arc<TlsConnect>>,
}

impl EndpointConnector {
    pub fn new(address: SocketAddr, pool: &PoolOptions, tls: Option<Arc<TlsConnect>>) -> Self {
        EndpointConnector {
            address,
            connect_timeout: pool.connect_timeout,
            tcp_keepalive: pool.tcp_keepalive,
            source_ip: pool.source_ip,
            track_use: pool.retires_connections(),
            tls,
        }
    }
}

/// How much a connection has served: requests and age, handed to every response on it.
#[derive(Debug, Clone)]
pub struct ConnectionUse(Arc<(AtomicU32, Instant)>);

impl ConnectionUse {
    fn new() -> Self {
        ConnectionUse(Arc::new((AtomicU32::new(0), Instant::now())))
    }

    /// Counts one more request; `true` when the connection has served its share.
    pub fn served(&self, pool: &PoolOptions) -> bool {
        let (requests, opened) = &*self.0;
        let count = requests.fetch_add(1, Relaxed) + 1;
        pool.max_requests_per_connection
            .is_some_and(|max| count >= max)
            || pool
                .max_connection_duration
                .is_some_and(|max| opened.elapsed() >= max)
    }
}

/// Connects to `address`, from `source` when given (a source of the other IP family than
/// the address is left to the system).
async fn dial(address: SocketAddr, source: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source.filter(|source| source.is_ipv4() == address.is_ipv4()) else {
        return TcpStream::connect(address).await;
    };
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(address).await
}

fn set_keepalive(stream: &TcpStream, keepalive: &TcpKeepalive) -> io::Result<()> {
    let mut probes = socket2::TcpKeepalive::new();
    if let Some(time) = keepalive.time {
        probes = probes.with_time(time);
    }
    if let Some(interval) = keepalive.interval {
        probes = probes.with_interval(interval);
    }
    if let Some(count) = keepalive.probes {
        probes = probes.with_retries(count);
    }
    socket2::SockRef::from(stream).set_tcp_keepalive(&probes)
}

impl tower::Service<Uri> for EndpointConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let address = self.address;
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        let keepalive = self.tcp_keepalive;
        let source_ip = self.source_ip;
        let usage = self.track_use.then(ConnectionUse::new);
        Box::pin(async move {
            let connect = async {
                let stream = dial(address, source_ip).await?;
                stream.set_nodelay(true)?;
                if let Some(keepalive) = &keepalive {
                    set_keepalive(&stream, keepalive)?;
                }
                match tls {
                    None => Ok::<_, io::Error>(Transport::Plain(stream)),
                    Some(tls) => {
                        let connector = TlsConnector::from(Arc::clone(&tls.config));
                        let stream = connector
                            .connect(tls.server_name.clone(), stream)
                            .await
                            .map_err(|error| {
                                io::Error::new(
                                    error.kind(),
                                    format!("mTLS handshake with {address} failed: {error}"),
                                )
                            })?;
                        let principal = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(spiffe_identity)
                            .map(|uri| UpstreamPrincipal(principal(&uri)));
                        Ok(Transport::Tls(Box::new(stream), principal))
                    }
                }
            };
            let stream = tokio::time::timeout(timeout, connect).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {address} timed out after {timeout:?}"),
                )
            })??;
            Ok(TokioIo::new(UpstreamStream {
                transport: stream,
                usage,
            }))
        })
    }
}

/// The SPIFFE identity of the server's sidecar an upstream mTLS connection reached,
/// handed to every response on that connection (hyper's connection extras).
#[derive(Debug, Clone)]
pub struct UpstreamPrincipal(pub Principal);

/// An upstream connection, with its use when the pool retires connections by use.
#[derive(Debug)]
pub struct UpstreamStream {
    transport: Transport,
    usage: Option<ConnectionUse>,
}

/// Plaintext or mutual TLS (with the peer's identity).
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>, Option<UpstreamPrincipal>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        let connected = match &self.transport {
            Transport::Plain(stream) => stream.connected(),
            Transport::Tls(stream, principal) => {
                let mut connected = stream.get_ref().0.connected();
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    connected = connected.negotiated_h2();
                }
                match principal {
                    Some(principal) => connected.extra(principal.clone()),
                    None => connected,
                }
            }
        };
        match &self.usage {
            Some(usage) => connected.extra(usage.clone()),
            None => connected,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.transport.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_shutdown(cx)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream, _) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream, _) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream, _) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream, _) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream, _) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream, _) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
