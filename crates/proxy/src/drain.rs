//! Graceful drain as a type: a trigger signals every watcher, then waits (up to a
//! deadline) until all of them are gone. Listeners and each of their connections
//! hold a watcher, so "all watchers dropped" means "all in-flight work finished".

use std::time::Duration;

use tokio::sync::watch;

pub fn channel() -> (DrainTrigger, DrainWatcher) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger { tx }, DrainWatcher { rx })
}

#[derive(Debug)]
pub struct DrainTrigger {
    tx: watch::Sender<bool>,
}

impl DrainTrigger {
    /// Signals the drain and waits for every watcher to be dropped. Returns `false`
    /// when the deadline passed first (remaining work is then abandoned).
    pub async fn drain(self, deadline: Duration) -> bool {
        self.tx.send_replace(true);
        tokio::time::timeout(deadline, self.tx.closed())
            .await
            .is_ok()
    }
}

#[derive(Debug, Clone)]
pub struct DrainWatcher {
    rx: watch::Receiver<bool>,
}

impl DrainWatcher {
    /// Resolves once the drain has started (or the trigger is gone).
    pub async fn signaled(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger was dropped: treat it as a drain.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_watchers() {
        let (trigger, watcher) = channel();
        let worker = tokio::spawn(async move {
            watcher.signaled().await;
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
}
