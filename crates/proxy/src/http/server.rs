//! Accept loop and per-connection serving: HTTP/1.1 and h2c on one port, and behind
//! Istio mutual TLS when the listener has a TLS chain (both at once in PERMISSIVE mode,
//! told apart by the first byte, as Envoy's TLS inspector does).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

use super::connection::ConnectionInfo;
use super::connection_manager;
use super::watched::Watched;
use super::wind_down::WindDown;
use crate::compile::{NetworkFilter, TcpProxySpec};
use crate::drain::DrainWatcher;
use crate::filters::connection;
use crate::listeners::ListenerContext;
use crate::rbac::Subject;
use crate::tcp;
use crate::tls::PeerCertificate;

/// How long a caller gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How large a request's headers may be (Envoy's `max_request_headers_kb` default, which
/// istiod keeps): larger ones are answered 431 rather than buffered.
const MAX_REQUEST_HEADERS_BYTES: usize = 60 * 1024;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves `listener` until `drain` fires; then stops accepting and lets every
/// connection finish its in-flight requests (the drain trigger waits for them).
pub async fn serve(listener: TcpListener, ctx: Arc<ListenerContext>, drain: DrainWatcher) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_REQUEST_HEADERS_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_REQUEST_HEADERS_BYTES as u32);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // While draining it keeps accepting: connections made now are served and
            // told to close, rather than refused.
            () = drain.closing() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let stats = Arc::clone(&ctx.config.load().stats);
        stats.connections.fetch_add(1, Relaxed);
        // Over a cap, the connection is closed here, before it costs a task.
        let counted = match ctx.connections.admit(&stats, ctx.connection_limit) {
            Ok(counted) => counted,
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "connection over its cap closed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let builder = builder.clone();
        let drain = drain.clone();
        let addresses = stream.local_addr().ok().map(|local| (peer, local));
        tokio::spawn(async move {
            let opened = match open(stream, addresses, &ctx).await {
                Ok(opened) => opened,
                Err(error) => {
                    tracing::debug!(%peer, %error, "connection refused before HTTP");
                    return;
                }
            };
            let info = opened.info();
            let Some(tcp_proxy) = admitted(&ctx, &info).await else {
                return;
            };
            let result = match (opened, tcp_proxy) {
                (Opened::Plain(stream, _), Some(tcp)) => {
                    proxy_tcp(stream, &tcp, &ctx).await;
                    Ok(())
                }
                (Opened::Tls(stream, _), Some(tcp)) => {
                    proxy_tcp(*stream, &tcp, &ctx).await;
                    Ok(())
                }
                (Opened::Plain(stream, info), None) => {
                    let stats = Arc::clone(&ctx.config.load().stats);
                    let stream = Watched::new(stream, Arc::clone(&info.head), false, stats);
                    serve_connection(&builder, TokioIo::new(stream), ctx, info, &drain).await
                }
                (Opened::Tls(stream, info), None) => {
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let stats = Arc::clone(&ctx.config.load().stats);
                    let stream = Watched::new(*stream, Arc::clone(&info.head), http2, stats);
                    serve_connection(&builder, TokioIo::new(stream), ctx, info, &drain).await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(drain);
            drop(counted);
        });
    }
}

/// Whether the connection's chain takes it: `None` closes it (no chain, or the chain's
/// `envoy.filters.network.rbac` refuses it); `Some(None)` serves HTTP; `Some(Some(_))`
/// proxies its bytes.
async fn admitted(ctx: &ListenerContext, info: &ConnectionInfo) -> Option<Option<TcpProxySpec>> {
    let runtime = ctx.config.load_full();
    let chain = runtime.spec.chain_for(info.is_tls)?;
    if !chain.connection_filters.is_empty() {
        let subject = Subject {
            peer: info.peer.as_ref(),
            addresses: info.addresses,
            remote: info.addresses.map(|(remote, _)| remote.ip()),
            sni: info.sni.as_deref().unwrap_or_default(),
            request: None,
            metadata: None,
        };
        if let Err(refused) =
            connection::admit(&chain.connection_filters, &subject, &ctx.snapshot).await
        {
            tracing::debug!(filter = %refused, "connection refused by access control");
            return None;
        }
    }
    match &chain.network {
        NetworkFilter::Tcp(tcp) => Some(Some(tcp.clone())),
        NetworkFilter::Http(_) => Some(None),
    }
}

/// Proxies a connection's bytes to the chain's cluster (Envoy's `tcp_proxy`).
async fn proxy_tcp<S>(stream: S, spec: &TcpProxySpec, ctx: &ListenerContext)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let cluster = ctx
        .snapshot
        .load()
        .clusters
        .get(spec.cluster.as_ref())
        .cloned();
    let Some(cluster) = cluster else {
        tracing::debug!(cluster = %spec.cluster, "tcp_proxy: no such cluster; connection closed");
        return;
    };
    match tcp::connect(&cluster).await {
        Ok(upstream) => tcp::splice(stream, upstream).await,
        Err(error) => tracing::debug!(%error, "tcp_proxy: connection closed"),
    }
}

enum Opened {
    Plain(TcpStream, Arc<ConnectionInfo>),
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        Arc<ConnectionInfo>,
    ),
}

impl Opened {
    fn info(&self) -> Arc<ConnectionInfo> {
        match self {
            Opened::Plain(_, info) | Opened::Tls(_, info) => Arc::clone(info),
        }
    }
}

/// Picks the chain for a new connection and, for the TLS chain, completes the handshake.
/// A connection no chain takes (plaintext to a port that takes only mutual TLS) is
/// refused before a byte is answered, as Envoy closes one no filter chain matches.
async fn open(
    stream: TcpStream,
    addresses: Option<(SocketAddr, SocketAddr)>,
    ctx: &ListenerContext,
) -> std::io::Result<Opened> {
    let runtime = ctx.config.load_full();
    let spec = &runtime.spec;
    let Some(server_tls) = &runtime.server_tls else {
        return Ok(Opened::Plain(
            stream,
            Arc::new(ConnectionInfo::plain(addresses)),
        ));
    };
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first))
        .await
        .map_err(|_| timed_out("the first byte"))??;
    if read == 0 || first[0] != TLS_HANDSHAKE_RECORD {
        if spec.plaintext_chain.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a plaintext connection to a port that takes only mutual TLS",
            ));
        }
        return Ok(Opened::Plain(
            stream,
            Arc::new(ConnectionInfo::plain(addresses)),
        ));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(server_tls));
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| timed_out("the TLS handshake"))??;
    let connection = stream.get_ref().1;
    let peer = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(PeerCertificate::of);
    let sni = connection.server_name().map(str::to_owned);
    Ok(Opened::Tls(
        Box::new(stream),
        Arc::new(ConnectionInfo::mutual_tls(peer, sni, addresses)),
    ))
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} did not arrive within {HANDSHAKE_TIMEOUT:?}"),
    )
}

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    ctx: Arc<ListenerContext>,
    info: Arc<ConnectionInfo>,
    drain: &DrainWatcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let headers_timeout = ctx
        .config
        .load()
        .spec
        .http_chain_for(info.is_tls)
        .and_then(|chain| chain.request_headers_timeout);
    let head = Arc::clone(&info.head);
    let wind_down = Arc::new(WindDown::new(drain.clone()));
    let service = {
        let wind_down = Arc::clone(&wind_down);
        service_fn(move |req: Request<Incoming>| {
            let version = req.version();
            let answer = connection_manager::handle(ctx.clone(), info.clone(), req);
            let wind_down = Arc::clone(&wind_down);
            async move {
                let mut response = answer.await?;
                wind_down.answering(version, &mut response);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let served = async {
        tokio::select! {
            result = conn.as_mut() => result,
            () = wind_down.time_to_close() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    let Some(timeout) = headers_timeout else {
        return served.await;
    };
    // The watch runs on its own task, so a request's wake-ups do not poll its timers.
    let mut watchdog = tokio::spawn(async move { head.expired(timeout).await });
    tokio::select! {
        result = served => {
            watchdog.abort();
            result
        }
        // Dropping the connection closes it.
        _ = &mut watchdog => {
            tracing::debug!("closed a connection whose request headers did not complete in time");
            Ok(())
        }
    }
}
