//! Outlier detection (Envoy's consecutive-error kinds): an endpoint that fails
//! `consecutive_5xx` times in a row, or `consecutive_gateway` times with 502/503/504 or
//! a connection failure, leaves the load-balancing set for `base_ejection_time` times
//! the number of its ejections. The cluster's membership carries out the ejection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Envoy's outlier detection settings, its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSettings {
    pub consecutive_5xx: u32,
    /// Percent chance an endpoint found failing is ejected (istiod: 100 or 0).
    pub enforcing_5xx: u32,
    pub consecutive_gateway: u32,
    pub enforcing_gateway: u32,
    /// Connection failures, resets and timeouts are counted apart from responses.
    pub split_local_origin: bool,
    pub consecutive_local_origin: u32,
    pub enforcing_local_origin: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// The first endpoint may be ejected whatever `max_ejection_percent` says.
    pub always_eject_one: bool,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        OutlierSettings {
            consecutive_5xx: 5,
            enforcing_5xx: 100,
            consecutive_gateway: 5,
            enforcing_gateway: 0,
            split_local_origin: false,
            consecutive_local_origin: 5,
            enforcing_local_origin: 100,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one: false,
        }
    }
}

impl OutlierSettings {
    /// How long an endpoint ejected for the `times`-th time in a row stays out.
    pub fn ejection_time(&self, times: u32) -> Duration {
        let cap = self.max_ejection_time.max(self.base_ejection_time);
        self.base_ejection_time
            .saturating_mul(times.max(1))
            .min(cap)
    }
}

/// What an attempt to an endpoint came to, for its outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer: the connection failed, was reset, or the attempt timed out.
    LocalOriginFailure,
}

/// An endpoint's consecutive errors and ejection state.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local_origin: AtomicU32,
    ejected: AtomicBool,
    ejection: Mutex<Ejection>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ejection {
    pub since: Option<Instant>,
    /// Ejections in a row; an interval without one takes one off.
    pub times: u32,
}

impl EndpointHealth {
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Relaxed)
    }

    /// Counts `observation` in; `true` when the endpoint has just reached a limit and
    /// should be ejected (the draw of the enforcing percentage included).
    pub fn observe(&self, settings: &OutlierSettings, observation: Observation) -> bool {
        let status = match observation {
            Observation::LocalOriginFailure if settings.split_local_origin => {
                return reached(
                    &self.consecutive_local_origin,
                    settings.consecutive_local_origin,
                    settings.enforcing_local_origin,
                );
            }
            // Unsplit, a failure without an answer counts as a 503.
            Observation::LocalOriginFailure => 503,
            Observation::Status(status) => {
                if settings.split_local_origin {
                    self.consecutive_local_origin.store(0, Relaxed);
                }
                status
            }
        };
        if !(500..600).contains(&status) {
            self.consecutive_5xx.store(0, Relaxed);
            self.consecutive_gateway.store(0, Relaxed);
            return false;
        }
        let gateway = if matches!(status, 502..=504) {
            reached(
                &self.consecutive_gateway,
                settings.consecutive_gateway,
                settings.enforcing_gateway,
            )
        } else {
            self.consecutive_gateway.store(0, Relaxed);
            false
        };
        let server = reached(
            &self.consecutive_5xx,
            settings.consecutive_5xx,
            settings.enforcing_5xx,
        );
        gateway || server
    }

    /// Marks the endpoint ejected now; `false` when it already was.
    pub(super) fn eject(&self, now: Instant) -> bool {
        let mut ejection = self.ejection.lock().unwrap_or_else(|e| e.into_inner());
        if ejection.since.is_some() {
            return false;
        }
        ejection.since = Some(now);
        ejection.times += 1;
        self.ejected.store(true, Relaxed);
        for counter in [
            &self.consecutive_5xx,
            &self.consecutive_gateway,
            &self.consecutive_local_origin,
        ] {
            counter.store(0, Relaxed);
        }
        true
    }

    /// One interval passed: brings the endpoint back when its time is up, and takes one
    /// off the ejections in a row of an endpoint that stayed in. `true` when it came back.
    pub(super) fn sweep(&self, settings: &OutlierSettings, now: Instant) -> bool {
        let mut ejection = self.ejection.lock().unwrap_or_else(|e| e.into_inner());
        match ejection.since {
            Some(since) if now.duration_since(since) >= settings.ejection_time(ejection.times) => {
                ejection.since = None;
                self.ejected.store(false, Relaxed);
                true
            }
            Some(_) => false,
            None => {
                ejection.times = ejection.times.saturating_sub(1);
                false
            }
        }
    }

    /// Still ejected, or with ejections in a row left to forgive.
    pub(super) fn needs_sweeping(&self) -> bool {
        let ejection = self.ejection.lock().unwrap_or_else(|e| e.into_inner());
        ejection.since.is_some() || ejection.times > 0
    }
}

/// Counts one error in; `true` exactly when the count reaches `threshold` (a threshold of
/// 0 turns the kind off) and the enforcing draw says to eject.
fn reached(counter: &AtomicU32, threshold: u32, enforcing: u32) -> bool {
    let count = counter.fetch_add(1, Relaxed) + 1;
    threshold > 0 && count == threshold && enforced(enforcing)
}

fn enforced(percent: u32) -> bool {
    percent >= 100 || (percent > 0 && rand::random_range(0..100) < percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(consecutive_5xx: u32) -> OutlierSettings {
        OutlierSettings {
            consecutive_5xx,
            base_ejection_time: Duration::from_secs(30),
            ..OutlierSettings::default()
        }
    }

    #[test]
    fn consecutive_5xx_reach_the_limit_and_a_success_resets_the_count() {
        let health = EndpointHealth::default();
        let settings = settings(3);
        assert!(!health.observe(&settings, Observation::Status(500)));
        assert!(!health.observe(&settings, Observation::Status(503)));
        assert!(!health.observe(&settings, Observation::Status(200)));
        assert!(!health.observe(&settings, Observation::Status(500)));
        assert!(!health.observe(&settings, Observation::LocalOriginFailure));
        assert!(health.observe(&settings, Observation::Status(502)));
    }

    #[test]
    fn gateway_errors_count_only_when_enforced() {
        let health = EndpointHealth::default();
        let settings = OutlierSettings {
            consecutive_5xx: 0,
            consecutive_gateway: 2,
            enforcing_gateway: 100,
            ..OutlierSettings::default()
        };
        assert!(!health.observe(&settings, Observation::Status(504)));
        assert!(
            !health.observe(&settings, Observation::Status(500)),
            "a 500 resets"
        );
        assert!(!health.observe(&settings, Observation::Status(502)));
        assert!(health.observe(&settings, Observation::LocalOriginFailure));
    }

    #[test]
    fn ejection_time_grows_with_ejections_in_a_row_and_is_forgiven() {
        let health = EndpointHealth::default();
        let settings = settings(1);
        let start = Instant::now();
        assert!(health.eject(start));
        assert!(!health.eject(start), "already out");
        assert!(!health.sweep(&settings, start + Duration::from_secs(29)));
        assert!(health.sweep(&settings, start + Duration::from_secs(30)));
        let again = start + Duration::from_secs(31);
        assert!(health.eject(again));
        assert!(!health.sweep(&settings, again + Duration::from_secs(59)));
        assert!(health.sweep(&settings, again + Duration::from_secs(60)));
        assert!(health.needs_sweeping());
        health.sweep(&settings, again + Duration::from_secs(61));
        health.sweep(&settings, again + Duration::from_secs(62));
        assert!(!health.needs_sweeping());
        assert_eq!(settings.ejection_time(100), Duration::from_secs(300));
    }
}
