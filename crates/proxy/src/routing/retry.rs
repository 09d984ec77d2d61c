//! A route's retry policy (Envoy's `RetryPolicy`): when an attempt's outcome is worth
//! another attempt, how many there may be, how long each may take and how long to wait
//! between them.

use std::time::Duration;

/// Envoy's default base interval between retries (its backoff doubles up to 10x that).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// The `retry_on` conditions, Envoy's names, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const SERVER_ERROR: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 7);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 9);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 10);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 11);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 12);

    /// The condition an Envoy `retry_on` name stands for; `None` for one this proxy does
    /// not act on.
    pub fn parse(name: &str) -> Option<RetryOn> {
        Some(match name {
            "5xx" => Self::SERVER_ERROR,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "internal" => Self::GRPC_INTERNAL,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            _ => return None,
        })
    }

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    fn any(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for RetryOn {
    fn bitor_assign(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }
}

/// How an attempt ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection could not be made.
    ConnectFailure,
    /// The stream was refused (HTTP/2 REFUSED_STREAM): the upstream did not process it.
    RefusedStream,
    /// The connection or stream ended before a response came.
    Reset,
    /// The attempt took longer than its per-try timeout.
    PerTryTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    pub num_retries: u32,
    /// Each attempt's limit; `None`: only the route's timeout applies.
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// Envoy's previous-hosts predicate: a retry avoids the endpoints already tried.
    pub avoid_previous_hosts: bool,
    /// How many picks a retry makes to find an endpoint not tried yet.
    pub host_selection_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Whether a response with this status (and gRPC status, for a trailers-only gRPC
    /// response) is worth another attempt.
    pub fn retries_response(&self, status: u16, grpc_status: Option<u32>) -> bool {
        let on = self.retry_on;
        if on.contains(RetryOn::SERVER_ERROR) && status >= 500 {
            return true;
        }
        if on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_STATUS_CODES)
            && self.retriable_status_codes.contains(&status)
        {
            return true;
        }
        let grpc = match grpc_status {
            Some(1) => RetryOn::GRPC_CANCELLED,
            Some(4) => RetryOn::GRPC_DEADLINE_EXCEEDED,
            Some(8) => RetryOn::GRPC_RESOURCE_EXHAUSTED,
            Some(13) => RetryOn::GRPC_INTERNAL,
            Some(14) => RetryOn::GRPC_UNAVAILABLE,
            _ => return false,
        };
        on.contains(grpc)
    }

    /// Whether an attempt that ended without a response is worth another (Envoy's rules:
    /// `5xx`, `gateway-error` and `reset` cover every way; the others their own).
    pub fn retries_failure(&self, failure: AttemptFailure) -> bool {
        let on = self.retry_on;
        if on.any(RetryOn::SERVER_ERROR | RetryOn::GATEWAY_ERROR | RetryOn::RESET) {
            return true;
        }
        match failure {
            AttemptFailure::ConnectFailure => {
                on.any(RetryOn::CONNECT_FAILURE | RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::RefusedStream => {
                on.any(RetryOn::REFUSED_STREAM | RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => false,
        }
    }

    /// The wait before retry number `retry` (1 for the first): Envoy's fully jittered
    /// exponential backoff, a random time up to `base * 2^(retry-1)`, capped at the maximum.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
            .min(self.backoff_max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::random_range(0..nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_on: &str, codes: &[u16]) -> RetryPolicy {
        let mut on = RetryOn::default();
        for name in retry_on.split(',') {
            on |= RetryOn::parse(name).expect("known");
        }
        RetryPolicy {
            retry_on: on,
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: codes.to_vec(),
            avoid_previous_hosts: true,
            host_selection_attempts: 5,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
        }
    }

    #[test]
    fn istio_default_policy_retries_503_and_connection_trouble_only() {
        let p = policy(
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            &[503],
        );
        assert!(p.retries_response(503, None));
        assert!(!p.retries_response(500, None));
        assert!(!p.retries_response(504, None));
        assert!(p.retries_response(200, Some(14)), "grpc UNAVAILABLE");
        assert!(p.retries_response(200, Some(1)), "grpc CANCELLED");
        assert!(!p.retries_response(200, Some(13)), "grpc INTERNAL");
        assert!(p.retries_failure(AttemptFailure::ConnectFailure));
        assert!(p.retries_failure(AttemptFailure::RefusedStream));
        assert!(!p.retries_failure(AttemptFailure::Reset));
        assert!(!p.retries_failure(AttemptFailure::PerTryTimeout));
    }

    #[test]
    fn server_error_and_gateway_error_cover_resets_and_timeouts() {
        let p = policy("5xx", &[]);
        assert!(p.retries_response(500, None));
        assert!(p.retries_response(599, None));
        assert!(!p.retries_response(404, None));
        assert!(p.retries_failure(AttemptFailure::Reset));
        assert!(p.retries_failure(AttemptFailure::PerTryTimeout));
        let p = policy("gateway-error", &[]);
        assert!(!p.retries_response(500, None));
        assert!(p.retries_response(502, None) && p.retries_response(504, None));
        assert!(p.retries_failure(AttemptFailure::PerTryTimeout));
        let p = policy("retriable-4xx", &[]);
        assert!(p.retries_response(409, None) && !p.retries_response(404, None));
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let p = policy("5xx", &[]);
        for retry in 1..6 {
            let ceiling = (DEFAULT_BACKOFF_BASE * (1 << (retry - 1))).min(p.backoff_max);
            for _ in 0..50 {
                assert!(p.backoff(retry) < ceiling);
            }
        }
    }
}
