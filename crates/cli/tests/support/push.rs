//! Writing a case's config into a running control plane's folder and waiting until
//! every proxy has acknowledged what it was sent: the corpus runners' shared step.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::get;
use super::mesh::READY_TIMEOUT;

/// Longer than the control plane's debounce: a reload has happened by then.
const RELOAD_GRACE: Duration = Duration::from_millis(400);
/// The file cases are written to.
const CASE_FILE: &str = "case.yaml";

pub async fn configz(debug: SocketAddr) -> Value {
    let reply = get(debug, "/debug/configz")
        .await
        .expect("the control plane answers");
    serde_json::from_str(&reply.body).expect("configz is JSON")
}

/// Writes (or, with `None`, removes) the case's file in `dir` and waits until the control
/// plane has loaded the change and all `proxies` have acknowledged what they were sent.
/// Returns the control plane's warnings and errors about the file, each prefixed
/// `warnings:` or `errors:`.
pub async fn apply(
    debug: SocketAddr,
    dir: &Path,
    proxies: usize,
    config: Option<&str>,
) -> Vec<String> {
    let before = configz(debug).await["generation"].as_u64().unwrap_or(0);
    let path = dir.join(CASE_FILE);
    match config {
        Some(config) => std::fs::write(&path, config).expect("write the case"),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
    let written = Instant::now();
    let status = loop {
        let status = configz(debug).await;
        if status["generation"].as_u64().unwrap_or(0) > before {
            break status;
        }
        // A config that changes nothing proxies get keeps the generation: the file being
        // (or no longer being) among the loaded resources is the sign then.
        let loaded = status["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["origin"].as_str().is_some_and(|o| o.contains(CASE_FILE)));
        let settled = loaded == config.is_some() && written.elapsed() > RELOAD_GRACE;
        if settled || written.elapsed() > Duration::from_secs(5) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    until_synced(debug, proxies).await;
    let mut notes: Vec<String> = Vec::new();
    for field in ["warnings", "errors"] {
        notes.extend(
            status[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|note| note.contains(CASE_FILE))
                .map(|note| format!("{field}: {note}")),
        );
    }
    notes
}

/// Waits until `proxies` proxies are connected and each has acknowledged every type at
/// the version it was sent.
pub async fn until_synced(debug: SocketAddr, proxies: usize) {
    let deadline = Instant::now() + READY_TIMEOUT;
    tokio::time::sleep(Duration::from_millis(200)).await;
    while Instant::now() < deadline {
        if let Some(reply) = get(debug, "/debug/syncz").await
            && let Ok(Value::Array(connected)) = serde_json::from_str::<Value>(&reply.body)
            && connected.len() == proxies
            && connected.iter().all(|proxy| {
                proxy["types"].as_array().into_iter().flatten().all(|t| {
                    t["acked_version"].is_string() && t["acked_version"] == t["sent_version"]
                })
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
