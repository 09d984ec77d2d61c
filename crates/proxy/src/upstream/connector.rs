//! A connector that always dials one endpoint, whatever the request's authority, in
//! plaintext, Istio mutual TLS or TLS of the destination's own, as the cluster's
//! transport socket says (the authority is only the SNI of originated TLS).
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
use crate::compile::{UpstreamTls, UpstreamTrust};
use crate::telemetry::Principal;
use crate::telemetry::labels::principal;
use crate::tls::{TlsContexts, origination, spiffe_identity};

/// TLS to an endpoint: the client config and the name sent as SNI.
#[derive(Debug)]
pub struct TlsConnect {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// Originated TLS under auto SNI: the config for connections named after the
    /// request's host (sent as SNI, and checked under auto SAN validation).
    by_host: Option<Arc<ClientConfig>>,
    /// Originated TLS for bytes proxied as they are: only the ALPN the context lists.
    raw: Option<Arc<ClientConfig>>,
    mesh: bool,
}

impl TlsConnect {
    pub fn new(contexts: &TlsContexts, upstream: &UpstreamTls, pool: &PoolOptions) -> Self {
        // Without a valid DNS name (or any) the handshake still needs one: a neutral
        // name, not sent (originated TLS) or not checked (mesh identities are URIs).
        let named = ServerName::try_from(upstream.sni.clone()).ok();
        let server_name = named
            .clone()
            .unwrap_or_else(|| ServerName::try_from("outbound.mesh").expect("a valid DNS name"));
        match &upstream.trust {
            UpstreamTrust::Mesh { identities } => Self {
                config: contexts.client(identities, &upstream.alpn),
                server_name,
                by_host: None,
                raw: None,
                mesh: true,
            },
            UpstreamTrust::Own(own) => {
                // As Envoy's HTTP connection pools: a context listing no ALPN offers the
                // pool's protocol.
                let http_alpn = if upstream.alpn.is_empty() {
                    vec![pool.protocol.alpn().to_string()]
                } else {
                    upstream.alpn.clone()
                };
                let send_sni = named.is_some();
                Self {
                    config: origination::client_config(own, &http_alpn, send_sni, false),
                    server_name,
                    by_host: (pool.auto_sni && upstream.sni.is_empty()).then(|| {
                        origination::client_config(own, &http_alpn, true, pool.auto_san_validation)
                    }),
                    raw: Some(origination::client_config(
                        own,
                        &upstream.alpn,
                        send_sni,
                        false,
                    )),
                    mesh: false,
                }
            }
        }
    }

    /// Istio mutual TLS, to a sidecar.
    pub fn is_mesh(&self) -> bool {
        self.mesh
    }

    /// The config and server name for a connection made for `uri`: an HTTP request's
    /// (absolute, with the request's authority), or raw bytes' (no authority).
    fn for_uri(&self, uri: &Uri) -> (Arc<ClientConfig>, ServerName<'static>) {
        let Some(host) = uri.host() else {
            let config = self.raw.as_ref().unwrap_or(&self.config);
            return (Arc::clone(config), self.server_name.clone());
        };
        let host = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        );
        match (&self.by_host, host) {
            (Some(config), Ok(host)) => (Arc::clone(config), host),
            _ => (Arc::clone(&self.config), self.server_name.clone()),
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

    fn call(&mut self, uri: Uri) -> Self::Future {
        let address = self.address;
        let timeout = self.connect_timeout;
        let tls = self.tls.as_ref().map(|tls| (tls.for_uri(&uri), tls.mesh));
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
                    Some(((config, server_name), mesh)) => {
                        let stream = TlsConnector::from(config)
                            .connect(server_name, stream)
                            .await
                            .map_err(|error| {
                                let kind = if mesh { "mTLS" } else { "TLS" };
                                io::Error::new(
                                    error.kind(),
                                    format!("{kind} handshake with {address} failed: {error}"),
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
