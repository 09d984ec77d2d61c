//! The processes of a local mesh: each started in its own process group with its output in
//! a log file, watched for exit, and stopped as a group (SIGTERM, a grace period, then
//! SIGKILL) so nothing it started is left behind.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot create the log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
}

/// How to start one process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// What the process is, for messages: `control plane`, `proxy reviews-v1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to (or replacing) the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Removed from the inherited environment.
    pub env_remove: Vec<OsString>,
    pub current_dir: Option<PathBuf>,
    /// Where stdout and stderr go.
    pub log_path: PathBuf,
}

impl ProcessSpec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, log_path: PathBuf) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            current_dir: None,
            log_path,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The command line, for the log file's first line and for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|part| part.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A running (or exited) child process and its process group.
pub struct ManagedProcess {
    name: String,
    /// The child's pid, which is also its process group id.
    group: Pid,
    log_path: PathBuf,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("pid", &self.group.as_raw_nonzero())
            .field("exit", &*self.exit.borrow())
            .finish()
    }
}

impl ManagedProcess {
    /// Starts the process in a new process group, stdin closed, output appended to its log.
    pub fn spawn(spec: &ProcessSpec) -> Result<Self, ProcessError> {
        let log_error = |source| ProcessError::LogFile {
            path: spec.log_path.clone(),
            source,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(log_error)?;
        {
            use std::io::Write as _;
            writeln!(log, "# {}", spec.command_line()).map_err(log_error)?;
        }
        let stderr = log.try_clone().map_err(log_error)?;

        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own group: a terminal's Ctrl-C reaches only `bosun up`, which then stops
            // each group in order, children of children included.
            .process_group(0)
            // If `bosun up` itself goes away abruptly, do not leave the child running.
            .kill_on_drop(true);
        for name in &spec.env_remove {
            command.env_remove(name);
        }
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        if let Some(dir) = &spec.current_dir {
            command.current_dir(dir);
        }
        let spawn_error = |source| ProcessError::Spawn {
            name: spec.name.clone(),
            program: spec.program.display().to_string(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| spawn_error(std::io::Error::other("the child has no pid")))?;

        let (exit_sender, exit) = watch::channel(None);
        let name = spec.name.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status,
                Err(error) => {
                    tracing::warn!(process = %name, %error, "cannot wait for the process");
                    return;
                }
            };
            let _ = exit_sender.send(Some(status));
        });
        Ok(Self {
            name: spec.name.clone(),
            group,
            log_path: spec.log_path.clone(),
            exit,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.group.as_raw_nonzero().get().unsigned_abs()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the process exits.
    pub async fn exited(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        let waited = exit.wait_for(Option::is_some).await.map(|status| *status);
        match waited {
            Ok(status) => status.unwrap_or_else(unknown_status),
            // The watcher task is gone without a status: it could not wait for the child;
            // there is nothing left to wait for.
            Err(_) => self.exit_status().unwrap_or_else(unknown_status),
        }
    }

    /// Stops the whole process group: SIGTERM, up to `grace` for the process to exit, then
    /// SIGKILL for whatever is left of the group.
    pub async fn stop(&self, grace: Duration) {
        if self.exit_status().is_none() {
            self.signal_group(Signal::TERM);
            if tokio::time::timeout(grace, self.exited()).await.is_err() {
                tracing::warn!(process = %self.name, ?grace, "did not stop in time; killing it");
            }
        }
        // The leader may have exited and left children of its own in the group.
        self.signal_group(Signal::KILL);
        let _ = tokio::time::timeout(grace, self.exited()).await;
    }

    fn signal_group(&self, signal: Signal) {
        match kill_process_group(self.group, signal) {
            Ok(()) => {}
            // Nothing left in the group.
            Err(rustix::io::Errno::SRCH) => {}
            Err(error) => {
                tracing::warn!(process = %self.name, %error, ?signal, "cannot signal the process group");
            }
        }
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

/// An exit status for "exited, status unknown" (the wait itself failed).
fn unknown_status() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    ExitStatus::from_raw(-1)
}

/// The last `lines` lines of a file (reading at most its last 64 KiB), or a note saying
/// why there is none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
