//! `bosun sample serve`: the sample workload.
//!
//! An echo service on one port (HTTP/1.1 and h2c). For each request it waits its
//! configured latency, fails a configured fraction of requests with 503, calls each of its
//! downstream services through the sidecar (propagating the routing and tracing headers),
//! and answers with an [`EchoReport`]: who answered and the whole tree of calls below it.
//! A failed downstream call is noted in the report and the answer is still 200, as
//! bookinfo's productpage does. `GET /ws` opens a WebSocket echo.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::client::{self, HttpClient};
use super::duration::{parse_duration, parse_ratio};
use super::http_server::{self, Handler};
use super::report::{CallReport, ECHOED_HEADERS, EchoReport, PROPAGATED_HEADERS, TlsReport};

mod tcp_echo;
mod websocket;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on [default: $BOSUN_WORKLOAD_IP:$BOSUN_APP_PORT].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The service name this workload reports.
    #[arg(long, default_value = "sample")]
    service: String,
    /// The version this workload reports.
    #[arg(long, default_value = "v1")]
    version: String,
    /// A downstream service to call for each request (repeatable), e.g.
    /// `http://reviews:9080/reviews`.
    #[arg(long = "call", value_name = "URL")]
    calls: Vec<Uri>,
    /// Delay added to every answer, e.g. `50ms`.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    latency: Duration,
    /// Fraction of requests answered 503, between 0 and 1.
    #[arg(long, value_parser = parse_ratio, default_value = "0")]
    error_rate: f64,
    /// Report every request header, not only the propagated and forwarding ones (a
    /// header sent several times as its values joined by `, `).
    #[arg(long)]
    echo_headers: bool,
    /// HTTP proxy for downstream calls (the sidecar's outbound listener)
    /// [default: $HTTP_PROXY].
    #[arg(long, value_name = "ADDRESS")]
    via: Option<String>,
    /// How long a downstream call may take.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    call_timeout: Duration,
    /// How many times a downstream call is tried when it times out or cannot connect
    /// (bookinfo's productpage tries reviews twice, 3 s each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    call_attempts: u32,
    /// Treat keep-alive connections idle this long as closed, e.g. `1s`: the next request
    /// on one is dropped with the connection, unanswered (a keep-alive race, made certain).
    #[arg(long, value_parser = parse_duration)]
    keep_alive_timeout: Option<Duration>,
    /// Close each connection after this many requests (the last answer says so).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_per_connection: Option<u32>,
    /// Also echo TCP on this port of the same address: each connection is greeted with
    /// `<service> <version>` and gets back every byte it sends.
    #[arg(long)]
    tcp_port: Option<u16>,
    /// Serve HTTPS with this PEM certificate chain (and `--tls-key`): an external
    /// service for a sidecar to originate TLS to. Answers say what SNI, ALPN and client
    /// certificate came.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in this PEM file (mutual TLS).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// What the sample workload is, once its command line and environment are read.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub service: String,
    pub version: String,
    /// The workload name reported (`BOSUN_WORKLOAD_NAME`, else the service name).
    pub workload: String,
    pub calls: Vec<Uri>,
    pub latency: Duration,
    pub error_rate: f64,
    pub echo_headers: bool,
    pub proxy: Option<Uri>,
    pub call_timeout: Duration,
    pub call_attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no address to listen on: pass --listen or set BOSUN_APP_PORT (and BOSUN_WORKLOAD_IP)")]
    NoListenAddress,
    #[error("{name} is {value:?}, which is not {expected}")]
    InvalidEnvironment {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("downstream URL {0} has no host")]
    CallWithoutHost(Uri),
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listen = match args.listen {
        Some(address) => address,
        None => listen_address_from_environment()?,
    };
    let proxy = match args.via.or_else(client::proxy_from_environment) {
        Some(address) => client::parse_proxy(&address)?,
        None => None,
    };
    for url in &args.calls {
        if url.host().is_none() {
            return Err(ServeError::CallWithoutHost(url.clone()).into());
        }
    }
    let config = ServeConfig {
        workload: std::env::var("BOSUN_WORKLOAD_NAME").unwrap_or_else(|_| args.service.clone()),
        service: args.service,
        version: args.version,
        calls: args.calls,
        latency: args.latency,
        error_rate: args.error_rate,
        echo_headers: args.echo_headers,
        proxy,
        call_timeout: args.call_timeout,
        call_attempts: args.call_attempts,
    };
    let keep_alive = http_server::KeepAlive {
        idle_timeout: args.keep_alive_timeout,
        max_requests: args.max_requests_per_connection,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key, args.tls_client_ca.as_deref())?),
        _ => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listen,
        service = %config.service,
        version = %config.version,
        calls = ?config.calls.iter().map(Uri::to_string).collect::<Vec<_>>(),
        via = ?config.proxy.as_ref().map(Uri::to_string),
        "sample workload serving"
    );
    match args.tcp_port {
        None => serve_with(listener, config, keep_alive, tls).await?,
        Some(port) => {
            let who = format!("{} {}", config.service, config.version);
            let echo = tcp_echo::serve(SocketAddr::new(listen.ip(), port), who);
            tokio::select! {
                served = serve_with(listener, config, keep_alive, tls) => served?,
                echoed = echo => echoed?,
            }
        }
    }
    Ok(())
}

/// Serves the sample workload on `listener`, over TLS when `tls` is given, until the
/// task is dropped.
pub async fn serve_with(
    listener: TcpListener,
    config: ServeConfig,
    keep_alive: http_server::KeepAlive,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let client = HttpClient::new(config.proxy.clone(), config.call_timeout);
    http_server::serve_with(
        listener,
        Arc::new(SampleWorkload { config, client }),
        keep_alive,
        tls,
    )
    .await
}

/// HTTPS with the given chain and key (HTTP/2 and HTTP/1.1 by ALPN), requiring a client
/// certificate from `client_ca` when given.
fn tls_acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the client CA {}", path.display()))?
            {
                roots.add(certificate?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the certificate and key do not fit")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn listen_address_from_environment() -> Result<SocketAddr, ServeError> {
    let port = std::env::var("BOSUN_APP_PORT").map_err(|_| ServeError::NoListenAddress)?;
    let port: u16 = port.parse().map_err(|_| ServeError::InvalidEnvironment {
        name: "BOSUN_APP_PORT",
        value: port,
        expected: "a port number",
    })?;
    let ip = match std::env::var("BOSUN_WORKLOAD_IP") {
        Ok(ip) => ip.parse().map_err(|_| ServeError::InvalidEnvironment {
            name: "BOSUN_WORKLOAD_IP",
            value: ip,
            expected: "an IP address",
        })?,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    Ok(SocketAddr::new(ip, port))
}

struct SampleWorkload {
    config: ServeConfig,
    client: HttpClient,
}

impl Handler for SampleWorkload {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == "/healthz" {
            return http_server::response(StatusCode::OK, "text/plain", "ok\n");
        }
        if websocket::is_upgrade(&request) {
            let who = format!("{} {}", self.config.service, self.config.version);
            return websocket::accept(request, who);
        }
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let mut report = self.describe(&request);
        // The body is read (up to 1 MiB) and counted, so a test can tell it arrived whole.
        let (head, body) = request.into_parts();
        report.body_bytes = http_body_util::Limited::new(body, 1 << 20)
            .collect()
            .await
            .map_or(0, |body| body.to_bytes().len());
        if self.config.error_rate > 0.0 && rand::random::<f64>() < self.config.error_rate {
            report.error = Some(format!(
                "failed on purpose (--error-rate {})",
                self.config.error_rate
            ));
            return http_server::json_response(StatusCode::SERVICE_UNAVAILABLE, &report);
        }
        let propagated = propagated_headers(&head.headers);
        let calls = self.config.calls.iter().map(|url| {
            call(
                &self.client,
                url,
                propagated.clone(),
                self.config.call_attempts,
            )
        });
        report.calls = futures::future::join_all(calls).await;
        http_server::json_response(StatusCode::OK, &report)
    }
}

impl SampleWorkload {
    fn describe(&self, request: &Request<Incoming>) -> EchoReport {
        let headers = request.headers();
        let selected = if self.config.echo_headers {
            let mut all = BTreeMap::<String, String>::new();
            for (name, value) in headers {
                let Ok(value) = value.to_str() else { continue };
                all.entry(name.as_str().to_owned())
                    .and_modify(|joined| {
                        joined.push_str(", ");
                        joined.push_str(value);
                    })
                    .or_insert_with(|| value.to_owned());
            }
            all
        } else {
            PROPAGATED_HEADERS
                .iter()
                .chain(ECHOED_HEADERS)
                .filter_map(|name| {
                    let value = headers.get(*name)?.to_str().ok()?;
                    Some(((*name).to_owned(), value.to_owned()))
                })
                .collect::<BTreeMap<_, _>>()
        };
        // HTTP/2 carries the host as :authority (in the URI); HTTP/1.1 in `Host`.
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.to_string())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        EchoReport {
            service: self.config.service.clone(),
            version: self.config.version.clone(),
            workload: self.config.workload.clone(),
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |path| path.to_string()),
            host,
            headers: selected,
            protocol: format!("{:?}", request.version()),
            calls: Vec::new(),
            error: None,
            tls: request.extensions().get::<TlsReport>().cloned(),
            body_bytes: 0,
        }
    }
}

fn propagated_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut propagated = HeaderMap::new();
    for name in PROPAGATED_HEADERS {
        for value in incoming.get_all(*name) {
            propagated.append(HeaderName::from_static(name), value.clone());
        }
    }
    propagated
}

/// Calls one downstream service, trying again up to `attempts` in all when no answer
/// comes, and describes the outcome; never fails.
pub async fn call(client: &HttpClient, url: &Uri, headers: HeaderMap, attempts: u32) -> CallReport {
    let started = Instant::now();
    let mut outcome = client.get(url, headers.clone()).await;
    for _ in 1..attempts {
        if outcome.is_ok() {
            break;
        }
        outcome = client.get(url, headers.clone()).await;
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut report = CallReport {
        url: url.to_string(),
        status: None,
        service: None,
        version: None,
        duration_ms,
        calls: Vec::new(),
        error: None,
    };
    match outcome {
        Err(error) => report.error = Some(error_chain(&error)),
        Ok(response) => {
            report.status = Some(response.status.as_u16());
            match serde_json::from_slice::<EchoReport>(&response.body) {
                Ok(answer) => {
                    report.service = Some(answer.service);
                    report.version = Some(answer.version);
                    report.calls = answer.calls;
                    if !response.status.is_success() {
                        report.error = Some(
                            answer
                                .error
                                .unwrap_or_else(|| format!("answered {}", response.status)),
                        );
                    }
                }
                // Not a sample workload's answer: a proxy's own reply, say a 503 with
                // "no healthy upstream". Keep the start of it as the error.
                Err(_) if !response.status.is_success() => {
                    report.error = Some(format!(
                        "answered {}: {}",
                        response.status,
                        body_excerpt(&response.body)
                    ));
                }
                Err(_) => {}
            }
        }
    }
    report
}

/// An error and its causes, `outer: inner: root`, since the outer messages alone
/// ("client error (Connect)") do not say what went wrong.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn body_excerpt(body: &[u8]) -> String {
    const LIMIT: usize = 120;
    let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT)]);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests;
