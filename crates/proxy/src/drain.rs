//! Graceful drain as a type. A trigger moves its watchers through two phases, then waits
//! (up to a deadline) until all of them are gone. Listeners and each of their connections
//! hold a watcher, so "all watchers dropped" means "all in-flight work finished".
//!
//! - **Draining**: the listener keeps accepting; connections are told to wind down (HTTP/2
//!   gets GOAWAY, HTTP/1.1 answers carry `Connection: close`), so clients move elsewhere
//!   without a request lost. This is Envoy's drain with Istio's `immediate` strategy.
//! - **Closing**: the listener stops accepting and idle connections close; requests
//!   still in flight may finish until the deadline.
//!
//! A listener removed by config goes straight to closing; a proxy shutting down drains
//! first ([`DrainTrigger::drain_gracefully`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How often a graceful drain looks whether requests are still arriving.
const QUIET_CHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    Draining,
    Closing,
}

pub fn channel() -> (DrainTrigger, DrainWatcher) {
    let (tx, rx) = watch::channel(Phase::Serving);
    let draining = Arc::new(AtomicBool::new(false));
    (
        DrainTrigger {
            tx,
            draining: Arc::clone(&draining),
        },
        DrainWatcher { rx, draining },
    )
}

#[derive(Debug)]
pub struct DrainTrigger {
    tx: watch::Sender<Phase>,
    /// The phase is past serving, readable per request without a lock.
    draining: Arc<AtomicBool>,
}

impl DrainTrigger {
    /// Closes now (stop accepting) and waits for every watcher to be dropped. Returns
    /// `false` when the deadline passed first (remaining work is then abandoned).
    pub async fn drain(self, deadline: Duration) -> bool {
        self.enter(Phase::Closing);
        tokio::time::timeout(deadline, self.tx.closed())
            .await
            .is_ok()
    }

    /// Drains for up to `period` while still accepting, then closes and waits for what
    /// is in flight until the period ends. The draining phase ends early once `idle`
    /// has said so for `quiet` in a row: no request has arrived in that time, so no
    /// client is still sending here. Returns `false` if work was left at the end.
    pub async fn drain_gracefully(
        self,
        period: Duration,
        quiet: Duration,
        idle: impl Fn() -> bool,
    ) -> bool {
        let deadline = Instant::now() + period;
        self.enter(Phase::Draining);
        let mut quiet_since: Option<Instant> = None;
        while Instant::now() < deadline {
            if idle() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    break;
                }
            } else {
                quiet_since = None;
            }
            tokio::time::sleep_until(deadline.min(Instant::now() + QUIET_CHECK)).await;
        }
        self.enter(Phase::Closing);
        tokio::time::timeout_at(deadline, self.tx.closed())
            .await
            .is_ok()
    }

    fn enter(&self, phase: Phase) {
        self.draining.store(true, Relaxed);
        self.tx.send_replace(phase);
    }
}

#[derive(Debug, Clone)]
pub struct DrainWatcher {
    rx: watch::Receiver<Phase>,
    draining: Arc<AtomicBool>,
}

impl DrainWatcher {
    /// Resolves once the drain has started (or the trigger is gone): time to tell
    /// clients to go elsewhere.
    pub async fn signaled(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Resolves once the listener is to stop accepting and close idle connections.
    pub async fn closing(&self) {
        self.reached(Phase::Closing).await;
    }

    /// Whether the drain has started: answers should close their connection.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        // An error means the trigger was dropped: treat it as closing.
        let _ = rx.wait_for(|now| *now >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_watchers() {
        let (trigger, watcher) = channel();
        let worker = tokio::spawn(async move {
            watcher.closing().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(watcher);
        });
        assert!(trigger.drain(Duration::from_secs(5)).await);
        worker.await.expect("worker");
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_deadline() {
        let (trigger, watcher) = channel();
        assert!(!trigger.drain(Duration::from_millis(20)).await);
        drop(watcher);
    }

    #[tokio::test(start_paused = true)]
    async fn a_graceful_drain_keeps_accepting_while_requests_arrive() {
        let (trigger, watcher) = channel();
        let started = Instant::now();
        let busy_until = started + Duration::from_secs(2);
        let listener = tokio::spawn({
            let watcher = watcher.clone();
            async move {
                watcher.signaled().await;
                let draining_at = started.elapsed();
                assert!(watcher.is_draining());
                watcher.closing().await;
                (draining_at, started.elapsed())
            }
        });
        drop(watcher);
        let idle = move || Instant::now() >= busy_until;
        let finished = trigger
            .drain_gracefully(Duration::from_secs(5), Duration::from_millis(500), idle)
            .await;
        assert!(finished);
        let (draining_at, closing_at) = listener.await.unwrap();
        assert!(draining_at < Duration::from_millis(10), "{draining_at:?}");
        // Busy for 2 s, then quiet for 0.5 s: closed then, not at the 5 s deadline.
        assert!(
            closing_at >= Duration::from_millis(2500) && closing_at < Duration::from_millis(2700),
            "{closing_at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_graceful_drain_ends_at_its_period_when_never_quiet() {
        let (trigger, watcher) = channel();
        let started = Instant::now();
        let finished = trigger
            .drain_gracefully(Duration::from_secs(5), Duration::from_millis(500), || false)
            .await;
        assert!(!finished, "the watcher is still there");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(5) && elapsed < Duration::from_millis(5100),
            "{elapsed:?}"
        );
        drop(watcher);
    }
}
