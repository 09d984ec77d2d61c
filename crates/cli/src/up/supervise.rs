//! Keeps a local mesh's processes running, as Kubernetes keeps a pod's containers: a
//! process that exits, for whatever reason, is started again with the same command after
//! a backoff (0.5 s, doubling to 30 s while it keeps dying soon after starting), and each
//! step (what died and why, the restart, ready again) is told to the [`EventLog`] the live
//! view shows. Proxies keep serving with their last config while the control plane is
//! away and reconnect on their own when it is back.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt as _};

use super::events::EventLog;
use super::process::{ManagedProcess, ProcessSpec};
use super::readiness::{self, Readiness};

/// The first restart's delay, doubled for each further one in a row.
const RESTART_INITIAL: Duration = Duration::from_millis(500);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long before exiting is restarted from the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One process of the mesh: how to start it, how to tell it is ready, and the current run.
#[derive(Debug)]
pub struct Supervised {
    spec: ProcessSpec,
    readiness: Readiness,
    current: Arc<ManagedProcess>,
    started: Instant,
    restarts: u32,
    /// Exits in a row that came soon after a start.
    crashes: u32,
}

impl Supervised {
    pub fn spawn(
        spec: ProcessSpec,
        readiness: Readiness,
    ) -> Result<Self, super::process::ProcessError> {
        let current = Arc::new(ManagedProcess::spawn(&spec)?);
        tracing::debug!(process = %spec.name, pid = current.pid(), command = %spec.command_line(), "started");
        Ok(Self {
            spec,
            readiness,
            current,
            started: Instant::now(),
            restarts: 0,
            crashes: 0,
        })
    }

    pub fn process(&self) -> &ManagedProcess {
        &self.current
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// How many times it was started again.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Records an exit and says how long to wait before the next start.
    fn exited(&mut self) -> Duration {
        if self.started.elapsed() >= STABLE_AFTER {
            self.crashes = 0;
        }
        self.crashes += 1;
        restart_delay(self.crashes)
    }

    fn restart(&mut self) -> Result<(), super::process::ProcessError> {
        let process = ManagedProcess::spawn(&self.spec)?;
        self.current = Arc::new(process);
        self.started = Instant::now();
        self.restarts += 1;
        Ok(())
    }
}

/// The delay before restarting a process that has exited `crashes` times in a row.
fn restart_delay(crashes: u32) -> Duration {
    let doublings = crashes.saturating_sub(1).min(16);
    RESTART_INITIAL
        .saturating_mul(1 << doublings)
        .min(RESTART_MAX)
}

/// What woke the supervisor.
enum Wake {
    Exited(usize, ExitStatus),
    RestartDue(usize),
    /// A restarted process (by pid) got ready, or did not within the timeout.
    Ready(usize, u32, Result<Duration, readiness::ReadinessError>),
}

/// Restarts whatever exits, forever; stop it by dropping the future (then stop the
/// processes). `ready_timeout` bounds the wait for a restarted process to be ready.
pub async fn supervise(processes: &mut [Supervised], events: &EventLog, ready_timeout: Duration) {
    let mut timers: FuturesUnordered<BoxFuture<'static, Wake>> = FuturesUnordered::new();
    // Processes that exited and wait for their restart.
    let mut down = vec![false; processes.len()];
    loop {
        let exits: Vec<BoxFuture<'static, Wake>> = processes
            .iter()
            .enumerate()
            .filter(|(index, _)| !down[*index])
            .map(|(index, supervised)| {
                let process = Arc::clone(&supervised.current);
                let exit: BoxFuture<'static, Wake> =
                    Box::pin(async move { Wake::Exited(index, process.exited().await) });
                exit
            })
            .collect();
        let any_exit = async {
            if exits.is_empty() {
                std::future::pending().await
            } else {
                futures::future::select_all(exits).await.0
            }
        };
        let wake = tokio::select! {
            wake = any_exit => wake,
            Some(wake) = timers.next() => wake,
        };
        match wake {
            Wake::Exited(index, status) => {
                let supervised = &mut processes[index];
                let delay = supervised.exited();
                down[index] = true;
                events.push(format!(
                    "{} exited ({}){}; restarting it in {}",
                    supervised.spec.name,
                    status,
                    why(&supervised.current, status),
                    seconds(delay)
                ));
                timers.push(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Wake::RestartDue(index)
                }));
            }
            Wake::RestartDue(index) => {
                let supervised = &mut processes[index];
                match supervised.restart() {
                    Ok(()) => {
                        down[index] = false;
                        let process = Arc::clone(&supervised.current);
                        let pid = process.pid();
                        events.push(format!(
                            "{} restarted (pid {pid}, restart {})",
                            supervised.spec.name, supervised.restarts
                        ));
                        let readiness = supervised.readiness.clone();
                        timers.push(Box::pin(async move {
                            let ready =
                                readiness::wait_until_ready(&process, &readiness, ready_timeout)
                                    .await;
                            Wake::Ready(index, pid, ready)
                        }));
                    }
                    Err(error) => {
                        let delay = supervised.exited();
                        events.push(format!(
                            "cannot restart {}: {error}; trying again in {}",
                            supervised.spec.name,
                            seconds(delay)
                        ));
                        timers.push(Box::pin(async move {
                            tokio::time::sleep(delay).await;
                            Wake::RestartDue(index)
                        }));
                    }
                }
            }
            Wake::Ready(index, pid, ready) => {
                let supervised = &processes[index];
                if supervised.current.pid() != pid {
                    continue;
                }
                match ready {
                    Ok(took) => events.push(format!(
                        "{} is ready again ({})",
                        supervised.spec.name,
                        seconds(took)
                    )),
                    // An exit is seen (and restarted) on its own.
                    Err(readiness::ReadinessError::Exited { .. }) => {}
                    Err(error @ readiness::ReadinessError::Timeout { .. }) => {
                        let first_line = error.to_string();
                        let first_line = first_line.lines().next().unwrap_or_default();
                        events.push(first_line.to_owned());
                    }
                }
            }
        }
    }
}

/// For a process that exited on its own with a failure, the last line of its log, which
/// usually says why; nothing for a signal, whose sender knows why.
fn why(process: &ManagedProcess, status: ExitStatus) -> String {
    if status.code().is_none_or(|code| code == 0) {
        return String::new();
    }
    let tail = process.log_tail(1);
    let line = tail.trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_to_a_cap() {
        let delays: Vec<Duration> = (1..=9).map(restart_delay).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(delays[6], Duration::from_secs(30));
        assert_eq!(delays[8], Duration::from_secs(30));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(30));
    }
}
