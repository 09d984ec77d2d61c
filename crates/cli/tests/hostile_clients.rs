//! Hostile and broken clients, straight at a sidecar: malformed and ambiguous HTTP/1.1
//! (oversized heads, request smuggling, invalid chunked bodies, an h2c upgrade, garbage
//! on a PERMISSIVE port), HTTP/2 floods (rapid reset, CONTINUATION, PING, SETTINGS, an
//! oversized HPACK table) and TLS handshakes that stall. Each case runs against Bosun's
//! proxy and a real Envoy as the sidecars, with the same expected answer; through it all
//! the proxy stays up, its memory stays bounded, and everyone else is served.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_proxy::ConnectionLimits;
use bosun_xds::StreamKind;
use support::mesh::{ClientProxy, MeshSpec, TestMesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a client waits for more of an answer before it calls the connection idle.
const QUIET: Duration = Duration::from_millis(1500);

/// What a raw HTTP/1.1 exchange came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// An answer with this status; whether the proxy closed the connection after it.
    Answered { status: u16, closed: bool },
    /// Closed without a byte of answer.
    Closed,
    /// Neither answered nor closed.
    Silent,
    /// More than one answer to what was one request: a request was smuggled through.
    Smuggled(usize),
}

/// Sends `bytes` on a new connection and reads what comes back until the proxy closes
/// the connection or goes quiet.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A proxy may refuse before it has read everything; what it answered still counts.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let answers = answer
        .windows(11)
        .filter(|window| window == b"\r\nHTTP/1.1 ")
        .count()
        + usize::from(answer.starts_with(b"HTTP/1.1 "));
    if answers > 1 {
        return Outcome::Smuggled(answers);
    }
    match status_of(&answer) {
        Some(status) => Outcome::Answered { status, closed },
        None if closed => Outcome::Closed,
        None => Outcome::Silent,
    }
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

fn request(head: &str) -> Vec<u8> {
    format!("{head}\n").replace('\n', "\r\n").into_bytes()
}

/// One case of the HTTP/1.1 table: what is sent, and the answer both proxies give.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expected: Outcome,
    /// Where Envoy answers otherwise, its answer and why both are sound.
    envoy: Option<(Outcome, &'static str)>,
}

impl Case {
    fn expected(&self, proxy: ClientProxy) -> Outcome {
        match (proxy, self.envoy) {
            (ClientProxy::Envoy(_), Some((outcome, _))) => outcome,
            _ => self.expected,
        }
    }
}

const fn refused(status: u16) -> Outcome {
    Outcome::Answered {
        status,
        closed: true,
    }
}

const SERVED: Outcome = Outcome::Answered {
    status: 200,
    closed: false,
};

fn http1_cases() -> Vec<Case> {
    let long = "a".repeat(70 * 1024);
    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\n")).collect();
    let smuggled = "GET http://reviews:9080/smuggled HTTP/1.1\r\nHost: reviews:9080\r\n\r\n";
    vec![
        Case {
            name: "a well-formed request",
            bytes: request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n"),
            expected: SERVED,
            envoy: None,
        },
        Case {
            name: "a request line over 60 KiB",
            bytes: request(&format!("GET http://reviews:9080/{long} HTTP/1.1\nHost: reviews:9080\n")),
            expected: refused(431),
            envoy: None,
        },
        Case {
            name: "a header over 60 KiB",
            bytes: request(&format!("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nx-long: {long}\n")),
            expected: refused(431),
            envoy: None,
        },
        Case {
            name: "101 headers",
            bytes: request(&format!("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n{many_headers}")),
            expected: refused(431),
            envoy: None,
        },
        Case {
            name: "Content-Length and Transfer-Encoding (CL.TE)",
            bytes: [
                request(
                    "POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nContent-Length: 4\nTransfer-Encoding: chunked\n",
                ),
                format!("0\r\n\r\n{smuggled}").into_bytes(),
            ]
            .concat(),
            // RFC 9112 6.3: Transfer-Encoding wins, Content-Length is dropped, and the
            // connection closes after the answer, so what follows is never read as a
            // request. Envoy refuses the message (allow_chunked_length is off).
            expected: Outcome::Answered {
                status: 200,
                closed: true,
            },
            envoy: Some((refused(400), "refuses both framings at once")),
        },
        Case {
            name: "Transfer-Encoding and Content-Length (TE.CL)",
            bytes: [
                request(
                    "POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nTransfer-Encoding: chunked\nContent-Length: 40\n",
                ),
                format!("0\r\n\r\n{smuggled}").into_bytes(),
            ]
            .concat(),
            // RFC 9112 6.3: Transfer-Encoding wins, Content-Length is dropped, and the
            // connection closes after the answer, so what follows is never read as a
            // request. Envoy refuses the message (allow_chunked_length is off).
            expected: Outcome::Answered {
                status: 200,
                closed: true,
            },
            envoy: Some((refused(400), "refuses both framings at once")),
        },
        Case {
            name: "two different Content-Lengths",
            bytes: [
                request("POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nContent-Length: 2\nContent-Length: 40\n"),
                format!("ab{smuggled}").into_bytes(),
            ]
            .concat(),
            expected: refused(400),
            envoy: None,
        },
        Case {
            name: "a negative Content-Length",
            bytes: request("POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nContent-Length: -1\n"),
            expected: refused(400),
            envoy: None,
        },
        Case {
            name: "a folded header (obs-fold)",
            bytes: request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nx-folded: a\n b\n"),
            // RFC 9112 5.2 lets a server refuse obs-fold or unfold it.
            expected: refused(400),
            envoy: Some((SERVED, "unfolds the header")),
        },
        Case {
            name: "Transfer-Encoding: chunked, identity",
            bytes: [
                request(
                    "POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nTransfer-Encoding: chunked, identity\n",
                ),
                b"0\r\n\r\n".to_vec(),
            ]
            .concat(),
            expected: refused(400),
            envoy: Some((refused(501), "answers an unknown coding 501 Not Implemented")),
        },
        Case {
            name: "Transfer-Encoding: identity",
            bytes: request("POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nTransfer-Encoding: identity\n"),
            expected: refused(400),
            envoy: Some((refused(501), "answers an unknown coding 501 Not Implemented")),
        },
        Case {
            name: "a space before the colon of Transfer-Encoding",
            bytes: [
                request("POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nTransfer-Encoding : chunked\n"),
                b"0\r\n\r\n".to_vec(),
            ]
            .concat(),
            expected: refused(400),
            envoy: None,
        },
        Case {
            name: "an invalid chunk size",
            bytes: [
                request("POST http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nTransfer-Encoding: chunked\n"),
                b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
            ]
            .concat(),
            expected: refused(400),
            envoy: None,
        },
        Case {
            name: "a NUL byte in a header value",
            bytes: request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nx-nul: a\0b\n"),
            expected: refused(400),
            envoy: None,
        },
        Case {
            name: "an h2c upgrade on an HTTP/1.1 connection",
            bytes: request(
                "GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\n",
            ),
            expected: SERVED,
            envoy: None,
        },
        Case {
            name: "garbage",
            bytes: b"\x01\x02\x03 not http at all\r\n\r\n".to_vec(),
            expected: refused(400),
            envoy: None,
        },
    ]
}

/// The HTTP/1.1 table, at the client's outbound listener and at reviews v1's inbound
/// (PERMISSIVE) port; then the sidecars still serve.
async fn malformed_http1_is_refused(proxy: ClientProxy) {
    let spec = MeshSpec {
        client: proxy,
        backend_proxy: proxy,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    let targets = [
        ("outbound", mesh.client_outbound()),
        ("inbound", mesh.reviews_inbound("v1")),
    ];
    let mut wrong = Vec::new();
    for (side, addr) in targets {
        for case in http1_cases() {
            let got = exchange(addr, &case.bytes).await;
            let want = case.expected(proxy);
            if got != want {
                wrong.push(format!("{side}: {}: got {got:?}, want {want:?}", case.name));
            }
        }
        // A TLS record header, then garbage: Bosun's proxy takes the first byte for TLS
        // and its TLS chain refuses the rest; Envoy's TLS inspector finds no ClientHello
        // and its plaintext chain answers 400.
        if side == "inbound" {
            let got = exchange(addr, b"\x16\x03\x01\x00\x05garbagegarbage").await;
            let want = match proxy {
                ClientProxy::Bosun => Outcome::Closed,
                ClientProxy::Envoy(_) => refused(400),
            };
            if got != want {
                wrong.push(format!(
                    "{side}: a broken TLS record: got {got:?}, want {want:?}"
                ));
            }
        }
        let after = exchange(
            addr,
            &request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n"),
        )
        .await;
        assert_eq!(after, SERVED, "{side}: served after the table");
    }
    assert!(
        wrong.is_empty(),
        "{proxy:?}:\n{}\n{}",
        wrong.join("\n"),
        mesh.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_is_refused_by_bosun() {
    malformed_http1_is_refused(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_is_refused_by_envoy() {
    malformed_http1_is_refused(ClientProxy::Envoy(StreamKind::Sotw)).await;
}

// ---- HTTP/2 ------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /` for reviews in HPACK, from the static table and literals never indexed.
fn get_block() -> Vec<u8> {
    let authority = b"reviews:9080";
    // :method GET, :scheme http, :path /, then :authority as a literal (name index 1).
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority);
    block
}

/// A literal header with a new name, never indexed: `name: value` (both < 127 bytes).
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

/// What an HTTP/2 attack came to.
#[derive(Debug, Default)]
struct H2Outcome {
    /// The error code of a GOAWAY the proxy sent, if it sent one.
    goaway: Option<u32>,
    /// Whether the proxy closed the connection.
    closed: bool,
    /// How many of the attack's bytes were written before the proxy stopped reading.
    written: usize,
}

/// Opens an h2c connection and writes `attack` in pieces while reading what comes back;
/// stops at the proxy's close, after `budget`, or once it all went out and the proxy is
/// quiet.
async fn h2_attack(addr: SocketAddr, attack: Vec<Vec<u8>>, budget: Duration) -> H2Outcome {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let outcome = Arc::new(std::sync::Mutex::new(H2Outcome::default()));
    let done = Arc::new(AtomicBool::new(false));
    let read = {
        let outcome = Arc::clone(&outcome);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while pending.len() >= 9 {
                    let len = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]) as usize;
                    if pending.len() < 9 + len {
                        break;
                    }
                    if pending[3] == GOAWAY && len >= 8 {
                        let code = u32::from_be_bytes(pending[13..17].try_into().unwrap());
                        outcome.lock().unwrap().goaway = Some(code);
                    }
                    pending.drain(..9 + len);
                }
            }
            outcome.lock().unwrap().closed = true;
            done.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    let mut written = 0;
    let _ = writer.write_all(PREFACE).await;
    let _ = writer.write_all(&frame(SETTINGS, 0, 0, &[])).await;
    for piece in attack {
        if done.load(Ordering::SeqCst) || started.elapsed() > budget {
            break;
        }
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, writer.write_all(&piece)).await {
            Ok(Ok(())) => written += piece.len(),
            _ => break,
        }
    }
    let left = budget.saturating_sub(started.elapsed()).max(QUIET);
    let _ = tokio::time::timeout(left, read).await;
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap());
    outcome.written = written;
    outcome
}

/// HEADERS then RST_STREAM for `streams` streams, a hundred per write (CVE-2023-44487).
fn rapid_reset(streams: u32) -> Vec<Vec<u8>> {
    let block = get_block();
    (0..streams)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|i| {
                    let id = 2 * i + 1;
                    [
                        frame(HEADERS, END_STREAM | END_HEADERS, id, &block),
                        frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()),
                    ]
                    .concat()
                })
                .collect()
        })
        .collect()
}

/// One HEADERS without END_HEADERS, then `frames` CONTINUATIONs of 16 KiB of headers.
fn continuation_flood(frames: usize) -> Vec<Vec<u8>> {
    let mut attack = vec![frame(HEADERS, END_STREAM, 1, &get_block())];
    let mut block = Vec::new();
    let mut i = 0;
    while block.len() < 16 * 1024 - 64 {
        block.extend(literal(&format!("x-flood-{i}"), &"v".repeat(100)));
        i += 1;
    }
    attack.extend((0..frames).map(|_| frame(CONTINUATION, 0, 1, &block)));
    attack
}

/// `count` frames of `kind` (PING or SETTINGS), none of their acks read... unless the
/// proxy answers them, which the reader drains.
fn control_flood(kind: u8, count: usize) -> Vec<Vec<u8>> {
    let payload: &[u8] = if kind == PING { &[0u8; 8] } else { &[] };
    let one = frame(kind, 0, 0, payload);
    (0..count / 1000)
        .map(|_| one.iter().copied().cycle().take(one.len() * 1000).collect())
        .collect()
}

/// A header block that starts by raising the HPACK table to 1 GiB, past what the proxy
/// allowed (4 KiB): a COMPRESSION_ERROR.
fn oversized_hpack_table() -> Vec<Vec<u8>> {
    // Dynamic table size update: 001 prefix, 5-bit integer 31 then 2^30 - 31 in 7-bit groups.
    let mut block = vec![0x3f];
    let mut rest = (1u32 << 30) - 31;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(get_block());
    vec![frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)]
}

/// Keeps well-formed requests going through the client's sidecar while an attack runs;
/// counts those that were not answered 200.
struct Bystander {
    failed: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    fn start(addr: SocketAddr) -> Self {
        let failed = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (failed, served, stop) = (failed.clone(), served.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match support::get_via(addr, "reviews:9080", "/").await {
                        Some(200) => served.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            failed,
            served,
            stop,
            task,
        }
    }

    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        (
            self.served.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// How much more memory a proxy may hold after the floods than before them.
const MEMORY_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

async fn http2_floods_are_contained(proxy: ClientProxy) {
    let spec = MeshSpec {
        client: proxy,
        backend_proxy: proxy,
        ..MeshSpec::default()
    };
    let Some(mut mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    let addr = mesh.client_outbound();
    let name = match proxy {
        ClientProxy::Bosun => "client-proxy",
        ClientProxy::Envoy(_) => "client-envoy",
    };
    let before = mesh.process(name).rss_kib().expect("the sidecar's memory");
    let bystander = Bystander::start(addr);
    let budget = Duration::from_secs(8);

    let started = Instant::now();
    let reset = h2_attack(addr, rapid_reset(20_000), budget).await;
    let continuation = h2_attack(addr, continuation_flood(1024), budget).await;
    let ping = h2_attack(addr, control_flood(PING, 200_000), budget).await;
    let settings = h2_attack(addr, control_flood(SETTINGS, 200_000), budget).await;
    let hpack = h2_attack(addr, oversized_hpack_table(), budget).await;

    let attacked_for = started.elapsed();
    // And after them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (served, failed) = bystander.stop().await;
    let after = mesh.process(name).rss_kib().expect("the sidecar's memory");
    let report = format!(
        "{proxy:?}: rapid reset {reset:?}\ncontinuation {continuation:?}\nping {ping:?}\n\
         settings {settings:?}\nhpack {hpack:?}\nbystander served {served}, failed {failed} \
         in {attacked_for:?}\n\
         rss {before} KiB -> {after} KiB"
    );
    eprintln!("{report}");
    assert!(mesh.process(name).running(), "{report}\n{}", mesh.logs());
    // Each attack ends with the proxy closing the connection: rapid reset (Bosun's proxy
    // sends GOAWAY ENHANCE_YOUR_CALM), a header block without end, PING and SETTINGS
    // floods, and an HPACK table raised past the limit (a GOAWAY with an error: Bosun's
    // proxy says PROTOCOL_ERROR, Envoy COMPRESSION_ERROR).
    for (attack, outcome) in [
        ("rapid reset", &reset),
        ("CONTINUATION flood", &continuation),
        ("PING flood", &ping),
        ("SETTINGS flood", &settings),
        ("HPACK table", &hpack),
    ] {
        assert!(outcome.closed, "{attack} left open\n{report}");
    }
    assert!(hpack.goaway.is_some_and(|code| code != 0), "{report}");
    assert_eq!(failed, 0, "{report}\n{}", mesh.logs());
    assert!(served > 0, "{report}");
    assert!(
        after.saturating_sub(before) < MEMORY_GROWTH_LIMIT_KIB,
        "{report}"
    );
    let after_all = exchange(
        addr,
        &request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n"),
    )
    .await;
    assert_eq!(after_all, SERVED, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_are_contained_by_bosun() {
    http2_floods_are_contained(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_are_contained_by_envoy() {
    http2_floods_are_contained(ClientProxy::Envoy(StreamKind::Sotw)).await;
}

// ---- connection caps and idle connections ------------------------------------------

/// Opens `count` keep-alive connections to the client's sidecar, each served once.
async fn served_connections(addr: SocketAddr, count: usize) -> Vec<support::ProxyClient> {
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = support::ProxyClient::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let reply = client.send("/", "reviews:9080", &[]).await;
        assert_eq!(
            reply.map(|r| r.status).ok(),
            Some(200),
            "connection {i} under the cap"
        );
        clients.push(client);
    }
    clients
}

/// With `limits` on the client's sidecar, `cap` connections are served, the next is
/// closed at once, and a place freed by a closed connection is taken again.
async fn connections_over_a_cap_are_closed(
    proxy: ClientProxy,
    limits: ConnectionLimits,
    cap: usize,
) {
    let spec = MeshSpec {
        client: proxy,
        client_limits: limits,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    let addr = mesh.client_outbound();
    let mut open = served_connections(addr, cap).await;
    let over = exchange(
        addr,
        &request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n"),
    )
    .await;
    assert_eq!(
        over,
        Outcome::Closed,
        "{proxy:?}: the connection over the cap\n{}",
        mesh.logs()
    );
    drop(open.pop());
    // The proxy learns of the close when it reads the end of the stream.
    let mut again = Outcome::Silent;
    for _ in 0..50 {
        again = exchange(
            addr,
            &request("GET http://reviews:9080/ HTTP/1.1\nHost: reviews:9080\n"),
        )
        .await;
        if again == SERVED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, SERVED);
}

fn listener_cap(cap: u64) -> ConnectionLimits {
    ConnectionLimits {
        global: None,
        per_listener: [("virtualOutbound".to_string(), cap)].into(),
    }
}

fn global_cap(cap: u64) -> ConnectionLimits {
    ConnectionLimits {
        global: Some(cap),
        per_listener: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_a_listener_cap_are_closed_by_bosun() {
    connections_over_a_cap_are_closed(ClientProxy::Bosun, listener_cap(10), 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_a_listener_cap_are_closed_by_envoy() {
    connections_over_a_cap_are_closed(ClientProxy::Envoy(StreamKind::Sotw), listener_cap(10), 10)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_global_cap_are_closed_by_bosun() {
    connections_over_a_cap_are_closed(ClientProxy::Bosun, global_cap(12), 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_global_cap_are_closed_by_envoy() {
    connections_over_a_cap_are_closed(ClientProxy::Envoy(StreamKind::Sotw), global_cap(12), 12)
        .await;
}

const IDLE_CONNECTIONS: usize = 10_000;

/// The idle-connection tests take turns: each needs ten thousand of this process's
/// file descriptors.
static IDLE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Ten thousand connections that never send a byte: the sidecar keeps serving others,
/// and what each costs it in memory is reported.
async fn idle_connections_cost_little(proxy: ClientProxy) {
    let _turn = IDLE_TURN.lock().await;
    let spec = MeshSpec {
        client: proxy,
        ..MeshSpec::default()
    };
    let Some(mut mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    let addr = mesh.client_outbound();
    let name = match proxy {
        ClientProxy::Bosun => "client-proxy",
        ClientProxy::Envoy(_) => "client-envoy",
    };
    let before = mesh.process(name).rss_kib().expect("memory");
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = support::get_via(addr, "reviews:9080", "/").await;
    let after = mesh.process(name).rss_kib().expect("memory");
    let per_connection = (after.saturating_sub(before) * 1024) / IDLE_CONNECTIONS as u64;
    eprintln!(
        "{proxy:?}: {IDLE_CONNECTIONS} idle connections: rss {before} KiB -> {after} KiB, \
         {per_connection} bytes each"
    );
    assert_eq!(
        status,
        Some(200),
        "{proxy:?}: served beside the idle connections"
    );
    // Every idle connection is still open: none was dropped to make room.
    let mut closed = 0;
    for stream in &idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 0, "{proxy:?}: idle connections closed");
    if proxy == ClientProxy::Bosun {
        assert!(
            per_connection < IDLE_CONNECTION_BUDGET,
            "{per_connection} bytes per idle connection"
        );
    }
}

/// What an idle connection may cost Bosun's proxy.
const IDLE_CONNECTION_BUDGET: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_in_bosun() {
    idle_connections_cost_little(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_in_envoy() {
    idle_connections_cost_little(ClientProxy::Envoy(StreamKind::Sotw)).await;
}

// ---- TLS handshakes that stall -----------------------------------------------------

const STALLED_HANDSHAKES: usize = 200;

/// Connections that start a TLS handshake at a server's PERMISSIVE port and never finish
/// it: mutual-TLS callers through the client's sidecar are served all along, and Bosun's
/// proxy closes the stalled ones at its 10 s handshake deadline.
async fn stalled_tls_handshakes_do_not_stop_others(proxy: ClientProxy) {
    let spec = MeshSpec {
        client: proxy,
        backend_proxy: proxy,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        return;
    };
    let inbound = mesh.reviews_inbound("v1");
    // A record header for a 512-byte ClientHello, and its first bytes only.
    let partial_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let mut stalled = Vec::with_capacity(STALLED_HANDSHAKES);
    for _ in 0..STALLED_HANDSHAKES {
        let mut stream = TcpStream::connect(inbound).await.expect("connect");
        stream.write_all(partial_hello).await.expect("write");
        stalled.push(stream);
    }
    let started = Instant::now();
    let bystander = Bystander::start(mesh.client_outbound());
    let closed = Arc::new(AtomicUsize::new(0));
    let watchers: Vec<_> = stalled
        .into_iter()
        .map(|mut stream| {
            let closed = Arc::clone(&closed);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let limit = Duration::from_secs(13);
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(limit, stream.read(&mut buf)).await
                {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for watcher in watchers {
        let _ = watcher.await;
    }
    let waited = started.elapsed();
    let (served, failed) = bystander.stop().await;
    let closed = closed.load(Ordering::SeqCst);
    eprintln!(
        "{proxy:?}: {closed} of {STALLED_HANDSHAKES} stalled handshakes closed within {waited:?}; \
         bystander served {served}, failed {failed}"
    );
    assert_eq!(failed, 0, "{proxy:?}\n{}", mesh.logs());
    assert!(served > 0);
    if proxy == ClientProxy::Bosun {
        assert_eq!(
            closed, STALLED_HANDSHAKES,
            "closed at the handshake deadline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_do_not_stop_others_on_bosun() {
    stalled_tls_handshakes_do_not_stop_others(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_do_not_stop_others_on_envoy() {
    stalled_tls_handshakes_do_not_stop_others(ClientProxy::Envoy(StreamKind::Sotw)).await;
}
