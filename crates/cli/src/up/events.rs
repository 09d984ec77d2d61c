//! What happened to the mesh while it ran (a process died, was restarted, got ready
//! again), kept for the live view and written to `bosun up`'s log.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many events the log keeps; the view shows the newest few.
const KEPT: usize = 100;

/// One thing that happened, with when (since the mesh started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshEvent {
    pub after: Duration,
    pub text: String,
}

impl fmt::Display for MeshEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.after.as_secs();
        write!(
            f,
            "[{:02}:{:02}:{:02}] {}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            self.text
        )
    }
}

/// The mesh's events, shared by the supervisor that adds them and the view that shows
/// them.
#[derive(Debug, Clone)]
pub struct EventLog {
    started: Instant,
    inner: Arc<Mutex<Kept>>,
}

#[derive(Debug, Default)]
struct Kept {
    recent: VecDeque<MeshEvent>,
    /// Every event ever added, so a reader can ask for what it has not seen.
    total: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            inner: Arc::default(),
        }
    }

    pub fn push(&self, text: impl Into<String>) {
        let event = MeshEvent {
            after: self.started.elapsed(),
            text: text.into(),
        };
        tracing::warn!("{}", event.text);
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.recent.len() == KEPT {
            kept.recent.pop_front();
        }
        kept.recent.push_back(event);
        kept.total += 1;
    }

    /// The newest `count` events, oldest first.
    pub fn newest(&self, count: usize) -> Vec<MeshEvent> {
        let kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = kept.recent.len().saturating_sub(count);
        kept.recent.iter().skip(skip).cloned().collect()
    }

    /// The events added after the first `seen`, and the new count to pass next time.
    pub fn since(&self, seen: u64) -> (Vec<MeshEvent>, u64) {
        let kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let unseen = usize::try_from(kept.total.saturating_sub(seen)).unwrap_or(usize::MAX);
        let skip = kept.recent.len().saturating_sub(unseen);
        (kept.recent.iter().skip(skip).cloned().collect(), kept.total)
    }

    /// Every event kept, oldest first (for tests).
    #[cfg(test)]
    pub fn texts(&self) -> Vec<String> {
        let kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        kept.recent.iter().map(|event| event.text.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_what_they_have_not_seen() {
        let log = EventLog::new();
        log.push("one");
        log.push("two");
        let (first, seen) = log.since(0);
        assert_eq!(first.len(), 2);
        log.push("three");
        let (next, seen) = log.since(seen);
        assert_eq!(
            next.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            ["three"]
        );
        assert!(log.since(seen).0.is_empty());
        assert_eq!(log.newest(2).len(), 2);
        assert_eq!(log.newest(2)[1].text, "three");
    }

    #[test]
    fn only_the_newest_are_kept() {
        let log = EventLog::new();
        for index in 0..(KEPT + 5) {
            log.push(format!("event {index}"));
        }
        let (all, seen) = log.since(0);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].text, "event 5");
        assert_eq!(seen, (KEPT + 5) as u64);
    }

    #[test]
    fn shows_the_time_since_start() {
        let event = MeshEvent {
            after: Duration::from_secs(3725),
            text: "control plane restarted".into(),
        };
        assert_eq!(event.to_string(), "[01:02:05] control plane restarted");
    }
}
