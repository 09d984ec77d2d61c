//! Downstream connection limits, as Envoy sets them: a cap over every listener together
//! (the overload manager's `envoy.resource_monitors.global_downstream_max_connections`)
//! and a cap per listener (the runtime key
//! `envoy.resource_limits.listener.<name>.connection_limit`). A connection over either
//! cap is closed as soon as it is accepted and counted, so a flood of connections costs
//! a file descriptor for an instant, not a task and its buffers.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

pub use bosun_wire::limits::ConnectionLimits;

use crate::stats::ListenerStats;

/// Every listener's open downstream connections, against the global cap.
#[derive(Debug, Default)]
pub struct DownstreamConnections {
    open: AtomicU64,
    limit: Option<u64>,
}

/// Why an accepted connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The proxy's global cap (Envoy's `downstream_global_cx_overflow`).
    Global,
    /// The listener's own cap (Envoy's `downstream_cx_overflow`).
    Listener,
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    global: Arc<DownstreamConnections>,
    stats: Arc<ListenerStats>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.global.open.fetch_sub(1, Relaxed);
        self.stats.active_connections.fetch_sub(1, Relaxed);
    }
}

impl DownstreamConnections {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            open: AtomicU64::new(0),
            limit,
        }
    }

    /// Counts a connection just accepted on a listener with `stats` and `listener_limit`,
    /// or says which cap it is over (and counts the refusal).
    pub fn admit(
        self: &Arc<Self>,
        stats: &Arc<ListenerStats>,
        listener_limit: Option<u64>,
    ) -> Result<OpenConnection, Refused> {
        let global = self.open.fetch_add(1, Relaxed) + 1;
        let on_listener = stats.active_connections.fetch_add(1, Relaxed) + 1;
        // From here the guard undoes both counts, admitted or not.
        let open = OpenConnection {
            global: Arc::clone(self),
            stats: Arc::clone(stats),
        };
        if self.limit.is_some_and(|limit| global > limit) {
            stats.global_connection_overflows.fetch_add(1, Relaxed);
            return Err(Refused::Global);
        }
        if listener_limit.is_some_and(|limit| on_listener > limit) {
            stats.connection_overflows.fetch_add(1, Relaxed);
            return Err(Refused::Listener);
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cap_refuses_past_its_count_and_frees_a_place_when_a_connection_closes() {
        let global = Arc::new(DownstreamConnections::new(Some(3)));
        let a = Arc::new(ListenerStats::default());
        let b = Arc::new(ListenerStats::default());
        let first = global.admit(&a, Some(1)).expect("first on a");
        assert_eq!(global.admit(&a, Some(1)).unwrap_err(), Refused::Listener);
        let _second = global.admit(&b, None).expect("b has no cap of its own");
        let _third = global.admit(&b, None).expect("third in all");
        assert_eq!(global.admit(&b, None).unwrap_err(), Refused::Global);
        drop(first);
        let _again = global.admit(&a, Some(1)).expect("a place came free");
        assert_eq!(a.connection_overflows.load(Relaxed), 1);
        assert_eq!(b.global_connection_overflows.load(Relaxed), 1);
        assert_eq!(a.active_connections.load(Relaxed), 1);
        assert_eq!(b.active_connections.load(Relaxed), 2);
    }
}
