use std::os::unix::process::ExitStatusExt as _;
use std::time::Instant;

use super::*;

fn shell(name: &str, dir: &Path, script: &str) -> ProcessSpec {
    ProcessSpec::new(name, "/bin/sh", dir.join(format!("{name}.log")))
        .arg("-c")
        .arg(script)
}

/// Polls `condition` every 20 ms until it holds, failing the test after 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process is still running (a zombie nobody reaped yet counts as gone).
pub(crate) fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[tokio::test]
async fn output_goes_to_the_log_and_the_exit_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let spec = shell("exits", dir.path(), "echo one; echo two >&2; exit 3");
    let process = ManagedProcess::spawn(&spec).unwrap();
    let status = process.exited().await;
    assert_eq!(status.code(), Some(3));
    assert_eq!(process.exit_status(), Some(status));
    let log = std::fs::read_to_string(process.log_path()).unwrap();
    assert!(log.starts_with("# /bin/sh -c echo one;"), "{log}");
    assert_eq!(process.log_tail(2), "one\ntwo");
}

#[tokio::test]
async fn stop_ends_the_process_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let process = ManagedProcess::spawn(&shell("parent", dir.path(), &script)).unwrap();
    eventually("the grandchild's pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|text| text.ends_with('\n'))
    })
    .await;
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_running(process.pid()));
    assert!(is_running(grandchild));

    process.stop(Duration::from_secs(5)).await;

    assert!(process.exit_status().is_some());
    eventually("the grandchild to end", || !is_running(grandchild)).await;
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap '' TERM; echo started; while true; do sleep 0.05; done";
    let process = ManagedProcess::spawn(&shell("stubborn", dir.path(), script)).unwrap();
    let log_path = process.log_path().to_owned();
    eventually("the trap to be set", || {
        // The first line is the command itself, which names "started" too.
        std::fs::read_to_string(&log_path)
            .is_ok_and(|log| log.lines().any(|line| line == "started"))
    })
    .await;
    let started = Instant::now();
    process.stop(Duration::from_millis(300)).await;
    let status = process.exit_status().expect("stopped");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!is_running(process.pid()));
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ProcessSpec::new("ghost", "/nonexistent/ghost", dir.path().join("ghost.log"));
    let error = ManagedProcess::spawn(&spec).unwrap_err().to_string();
    assert!(
        error.starts_with("cannot start ghost (/nonexistent/ghost)"),
        "{error}"
    );
}

#[test]
fn log_tail_of_a_missing_file_says_so() {
    let tail = log_tail(Path::new("/nonexistent/log"), 5);
    assert!(tail.starts_with("(cannot read /nonexistent/log"), "{tail}");
}
