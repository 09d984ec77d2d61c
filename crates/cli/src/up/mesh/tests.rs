//! Drives a mesh of plain processes (`proxy: none`, so no control plane or proxy binary is
//! needed) through start, failure and shutdown.

use std::time::Instant;

use super::*;
use crate::up::process::tests::is_running;

/// Writes `yaml` into a fresh folder.
fn folder(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("workloads.yaml"), yaml).unwrap();
    dir
}

fn options(run_dir: &Path) -> MeshOptions {
    let mut options = MeshOptions::new("/nonexistent/bosun");
    options.run_dir = Some(run_dir.to_path_buf());
    options.ready_timeout = Duration::from_secs(20);
    options.stop_grace = Duration::from_secs(3);
    options
}

/// A web server on `ip:9080` and a process without ports that starts a child of its own.
fn web_and_idle(ip_prefix: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web}}
spec:
  address: {ip_prefix}.1
  ports: {{http: 9080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: idle}}
spec:
  address: {ip_prefix}.2
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: idle}}
spec:
  workloadEntry: idle
  proxy: none
  command: [sh, -c, 'sleep 300 & echo $! > "$BOSUN_WORKLOAD_NAME.pid"; wait']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: web}}
spec:
  workloadEntry: web
  proxy: none
  command: [sh, -c, 'exec python3 -m http.server --bind "$BOSUN_WORKLOAD_IP" "$BOSUN_APP_PORT"']
"#
    )
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn starts_every_workload_and_leaves_nothing_behind() {
    let dir = folder(&web_and_idle("127.0.201"));
    let run_dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), options(run_dir.path()))
        .await
        .unwrap();

    // No proxies, so no control plane.
    assert_eq!(mesh.control_plane(), None);
    let names: Vec<&str> = mesh.processes().iter().map(|p| p.name()).collect();
    // The server first, then the process that only sends.
    assert_eq!(names, ["app web", "app idle"]);
    assert_eq!(mesh.workloads().len(), 2);
    assert_eq!(mesh.workload("web").unwrap().ports[0].app_port, 9080);
    assert_eq!(mesh.run_dir(), run_dir.path());
    assert!(mesh.stats_addresses().is_empty());
    // Ready means accepting connections.
    tokio::net::TcpStream::connect("127.0.201.1:9080")
        .await
        .unwrap();
    assert!(run_dir.path().join("web.app.log").is_file());

    let pid_file = dir.path().join("idle.pid");
    eventually("the idle workload's child", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|text| text.ends_with('\n'))
    })
    .await;
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<u32> = mesh.processes().iter().map(|p| p.pid()).collect();
    assert!(pids.iter().chain([&grandchild]).all(|pid| is_running(*pid)));

    mesh.shutdown().await;

    for pid in pids.iter().chain([&grandchild]) {
        eventually("every process to end", || !is_running(*pid)).await;
    }
}

/// Waits until the event log holds an event for which `accept` holds.
async fn event(events: &EventLog, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = events.texts().into_iter().find(|text| accept(text)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no event for {what}; events: {:#?}",
            events.texts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_process_that_dies_is_restarted_and_each_step_is_told() {
    // `idle` fails on its own the first time (it says why on its last line) and runs after.
    let yaml = web_and_idle("127.0.202").replace(
        r#"command: [sh, -c, 'sleep 300 & echo $! > "$BOSUN_WORKLOAD_NAME.pid"; wait']"#,
        r#"command: [sh, -c, 'if [ ! -e ran ]; then touch ran; echo "cannot reach the database" >&2; exit 3; fi; exec sleep 300']"#,
    );
    let dir = folder(&yaml);
    let run_dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(dir.path(), options(run_dir.path()))
        .await
        .unwrap();
    let events = EventLog::new();
    let web_pid = mesh.processes()[0].pid();
    let supervisor_events = events.clone();
    let killed = async {
        let group = rustix::process::Pid::from_raw(i32::try_from(web_pid).unwrap()).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
        let died = event(&events, "web's death", |text| {
            text.starts_with("app web exited")
        })
        .await;
        assert_eq!(
            died,
            "app web exited (signal: 9 (SIGKILL)); restarting it in 0.5s"
        );
        event(&events, "web's restart", |text| {
            text.starts_with("app web restarted (pid ")
        })
        .await;
        event(&events, "web ready", |text| {
            text.starts_with("app web is ready again")
        })
        .await;
        let failed = event(&events, "idle's failure", |text| {
            text.starts_with("app idle exited")
        })
        .await;
        assert_eq!(
            failed,
            "app idle exited (exit status: 3): cannot reach the database; restarting it in 0.5s"
        );
        event(&events, "idle's restart", |text| {
            text.starts_with("app idle restarted")
        })
        .await;
    };
    tokio::select! {
        () = mesh.supervise(&supervisor_events) => unreachable!("supervision never ends"),
        () = killed => {}
    }
    // The web server answers again, as a new process.
    tokio::net::TcpStream::connect("127.0.202.1:9080")
        .await
        .unwrap();
    let restarted: Vec<u32> = mesh.supervised().iter().map(Supervised::restarts).collect();
    assert_eq!(restarted, [1, 1]);
    assert_ne!(mesh.processes()[0].pid(), web_pid);
    let pids: Vec<u32> = mesh.processes().iter().map(|p| p.pid()).collect();
    mesh.shutdown().await;
    for pid in pids {
        eventually("every process to end", || !is_running(pid)).await;
    }
}

#[tokio::test]
async fn an_app_that_fails_to_start_stops_the_others_and_shows_why() {
    let yaml = web_and_idle("127.0.203").replace(
        "exec python3 -m http.server",
        r#"echo "port already taken" >&2; exit 7; exec python3 -m http.server"#,
    );
    let dir = folder(&yaml);
    let run_dir = tempfile::tempdir().unwrap();
    let error = LocalMesh::start(dir.path(), options(run_dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("app web exited (exit status: 7) before it was ready"),
        "{error}"
    );
    assert!(error.ends_with("port already taken"), "{error}");
}

#[tokio::test]
async fn a_folder_that_cannot_run_is_refused_with_file_and_line() {
    let yaml = web_and_idle("127.0.204").replace("workloadEntry: idle", "workloadEntry: idel");
    let dir = folder(&yaml);
    let run_dir = tempfile::tempdir().unwrap();
    let error = LocalMesh::start(dir.path(), options(run_dir.path()))
        .await
        .unwrap_err()
        .to_string();
    let file = dir.path().join("workloads.yaml");
    assert!(
        error.ends_with(&format!(
            "LocalWorkload default/idle ({}:15): workloadEntry \"idel\" is not defined in namespace default",
            file.display()
        )),
        "{error}"
    );
    // Nothing was started.
    assert!(!run_dir.path().join("web.app.log").exists());
}
