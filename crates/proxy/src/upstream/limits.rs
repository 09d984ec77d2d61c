//! A cluster's circuit breakers (Envoy's `circuit_breakers` thresholds): how many
//! requests, retries and HTTP/1.1 connections may be in flight to it at once, and how
//! many requests may wait for a connection. A request past a limit is answered 503 with
//! the flag UO; a retry past its limit is not made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Envoy's thresholds when a cluster sets none.
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
pub const DEFAULT_MAX_PENDING_REQUESTS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitLimits {
    pub max_requests: u32,
    pub max_retries: u32,
    pub max_connections: u32,
    pub max_pending_requests: u32,
}

impl Default for CircuitLimits {
    fn default() -> Self {
        CircuitLimits {
            max_requests: DEFAULT_MAX_REQUESTS,
            max_retries: DEFAULT_MAX_RETRIES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
        }
    }
}

/// What is in flight to a cluster, against its limits.
#[derive(Debug)]
pub struct CircuitState {
    requests: Arc<AtomicU32>,
    retries: AtomicU32,
    /// HTTP/1.1 connections in use, when `max_connections` is a real limit.
    connections: Option<ConnectionSlots>,
}

impl CircuitState {
    /// `http1`: the cluster's requests hold a connection each for as long as they run,
    /// so `max_connections` bounds them and the ones that wait are pending requests.
    pub fn new(limits: &CircuitLimits, http1: bool) -> Self {
        CircuitState {
            requests: Arc::default(),
            retries: AtomicU32::new(0),
            connections: (http1 && limits.max_connections != u32::MAX).then(|| ConnectionSlots {
                free: Arc::new(Semaphore::new(limits.max_connections as usize)),
                pending: AtomicU32::new(0),
                max_pending: limits.max_pending_requests,
            }),
        }
    }

    /// Counts a request in, unless the cluster already has `max` in flight.
    pub fn admit(&self, max: u32) -> Option<Admitted> {
        take(&self.requests, max).then(|| Admitted(Arc::clone(&self.requests)))
    }

    /// Counts a retry in, unless `max` retries are already in flight.
    pub fn admit_retry(&self, max: u32) -> Option<RetryAdmitted<'_>> {
        take(&self.retries, max).then_some(RetryAdmitted(&self.retries))
    }

    /// A connection for one attempt: at once when one is free, after a wait when the
    /// pending queue has room, else `Err(Overflow)`. `Ok(None)`: no limit to keep.
    pub async fn connection(&self) -> Result<Option<ConnectionSlot>, Overflow> {
        let Some(slots) = &self.connections else {
            return Ok(None);
        };
        if let Ok(permit) = Arc::clone(&slots.free).try_acquire_owned() {
            return Ok(Some(ConnectionSlot(permit)));
        }
        if !take(&slots.pending, slots.max_pending) {
            return Err(Overflow);
        }
        let _pending = Pending(&slots.pending);
        let permit = Arc::clone(&slots.free)
            .acquire_owned()
            .await
            .map_err(|_| Overflow)?;
        Ok(Some(ConnectionSlot(permit)))
    }
}

#[derive(Debug)]
struct ConnectionSlots {
    free: Arc<Semaphore>,
    pending: AtomicU32,
    max_pending: u32,
}

/// The pending queue was full (or the cluster went away while waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Relaxed, Relaxed, |current| {
            (current < max).then_some(current + 1)
        })
        .is_ok()
}

/// A request counted against the cluster's `max_requests` until dropped; it travels with
/// the response body, so a streaming response counts until it ends.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicU32>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A retry counted against the cluster's `max_retries` until dropped.
#[derive(Debug)]
pub struct RetryAdmitted<'a>(&'a AtomicU32);

impl Drop for RetryAdmitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// One of the cluster's HTTP/1.1 connections, held until the response body ends.
#[derive(Debug)]
pub struct ConnectionSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A request waiting for a connection, counted against `max_pending_requests`.
struct Pending<'a>(&'a AtomicU32);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: u32, max_pending_requests: u32) -> CircuitLimits {
        CircuitLimits {
            max_connections,
            max_pending_requests,
            ..CircuitLimits::default()
        }
    }

    #[test]
    fn requests_past_the_limit_are_refused_until_one_ends() {
        let state = CircuitState::new(&CircuitLimits::default(), true);
        let first = state.admit(2).expect("first");
        let _second = state.admit(2).expect("second");
        assert!(state.admit(2).is_none());
        drop(first);
        assert!(state.admit(2).is_some());
        let _retry = state.admit_retry(1).expect("retry");
        assert!(state.admit_retry(1).is_none());
    }

    #[tokio::test]
    async fn a_busy_pool_queues_up_to_max_pending_then_overflows() {
        let state = Arc::new(CircuitState::new(&limits(1, 1), true));
        let held = state.connection().await.expect("a free connection");
        let waiting = tokio::spawn({
            let state = Arc::clone(&state);
            async move { state.connection().await.map(|slot| slot.is_some()) }
        });
        tokio::task::yield_now().await;
        while state
            .connections
            .as_ref()
            .expect("slots")
            .pending
            .load(Relaxed)
            == 0
        {
            tokio::task::yield_now().await;
        }
        assert_eq!(state.connection().await.err(), Some(Overflow));
        drop(held);
        assert_eq!(waiting.await.expect("task"), Ok(true));
    }

    #[tokio::test]
    async fn unlimited_and_http2_pools_never_wait() {
        for state in [
            CircuitState::new(&limits(u32::MAX, 1), true),
            CircuitState::new(&limits(1, 1), false),
        ] {
            let _a = state.connection().await.expect("no limit");
            let b = state.connection().await.expect("no limit");
            assert!(b.is_none());
        }
    }
}
