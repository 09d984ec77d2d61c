//! A cluster's circuit breakers (Envoy's `circuit_breakers` thresholds): how many requests
//! and how many retries may be in flight to it at once. A request past the limit is
//! answered 503 with the flag UO; a retry past it is not made.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Envoy's thresholds when a cluster sets none.
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
pub const DEFAULT_MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitLimits {
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitLimits {
    fn default() -> Self {
        CircuitLimits {
            max_requests: DEFAULT_MAX_REQUESTS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

/// What is in flight to a cluster, against its limits.
#[derive(Debug, Default)]
pub struct CircuitState {
    requests: AtomicU32,
    retries: AtomicU32,
}

impl CircuitState {
    /// Counts a request in, unless the cluster already has `max` in flight.
    pub fn admit(&self, max: u32) -> Option<Admitted<'_>> {
        take(&self.requests, max).then_some(Admitted(&self.requests))
    }

    /// Counts a retry in, unless `max` retries are already in flight.
    pub fn admit_retry(&self, max: u32) -> Option<RetryAdmitted<'_>> {
        take(&self.retries, max).then_some(RetryAdmitted(&self.retries))
    }
}

fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Relaxed, Relaxed, |current| {
            (current < max).then_some(current + 1)
        })
        .is_ok()
}

/// A request counted against the cluster's `max_requests` until dropped.
#[derive(Debug)]
pub struct Admitted<'a>(&'a AtomicU32);

impl Drop for Admitted<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_limit_are_refused_until_one_ends() {
        let state = CircuitState::default();
        let first = state.admit(2).expect("first");
        let _second = state.admit(2).expect("second");
        assert!(state.admit(2).is_none());
        drop(first);
        assert!(state.admit(2).is_some());
        let _retry = state.admit_retry(1).expect("retry");
        assert!(state.admit_retry(1).is_none());
    }
}
