//! Which of a cluster's endpoints take requests: the healthy ones outlier detection has
//! not ejected, or all of them when too few are left (Envoy's panic threshold). The set
//! is rebuilt when endpoints change, are ejected or come back, so picking never looks at
//! health.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::endpoint::{Endpoint, EndpointSet};
use super::hashing::HashingKind;
use super::outlier::{Observation, OutlierSettings};
use super::slow_start::SlowStart;
use crate::stats::ClusterStats;

/// Envoy's healthy panic threshold when a cluster sets none, in percent.
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// One configured endpoint, healthy or not.
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub endpoint: Arc<Endpoint>,
    pub weight: u32,
    pub healthy: bool,
}

/// What decides the active set beside the endpoints' own health.
#[derive(Debug, Clone)]
pub(super) struct MembershipSettings {
    pub panic_threshold: u32,
    pub outlier: Option<OutlierSettings>,
    /// The consistent-hashing table each active set is built with.
    pub hashing: Option<HashingKind>,
    pub slow_start: Option<SlowStart>,
}

#[derive(Debug)]
pub(super) struct Membership {
    configured: Mutex<Vec<Member>>,
    active: ArcSwap<EndpointSet>,
    panic_threshold: u32,
    outlier: Option<OutlierSettings>,
    hashing: Option<HashingKind>,
    slow_start: Option<SlowStart>,
    /// A sweep task is running (only while an endpoint is ejected or being forgiven).
    sweeping: AtomicBool,
    /// A warming task is running (only while an endpoint is in its slow start).
    warming: AtomicBool,
    stats: Arc<ClusterStats>,
}

/// Weights are scaled up before slow start multiplies them, so a small share stays
/// distinct from none.
const SLOW_START_SCALE: f64 = 1000.0;

impl Membership {
    pub fn new(settings: MembershipSettings, stats: Arc<ClusterStats>) -> Self {
        Membership {
            configured: Mutex::default(),
            active: ArcSwap::from_pointee(EndpointSet::default()),
            panic_threshold: settings.panic_threshold,
            outlier: settings.outlier,
            hashing: settings.hashing,
            slow_start: settings.slow_start,
            sweeping: AtomicBool::new(false),
            warming: AtomicBool::new(false),
            stats,
        }
    }

    pub fn active(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.active.load()
    }

    pub fn configured(&self) -> Vec<Member> {
        self.lock().clone()
    }

    pub fn replace(self: &Arc<Self>, members: Vec<Member>) {
        let mut configured = self.lock();
        *configured = members;
        self.rebuild(&configured);
        if let Some(slow_start) = self.slow_start
            && configured
                .iter()
                .any(|m| slow_start.factor(m.endpoint.age()).is_some())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.warming.swap(true, Relaxed)
        {
            runtime.spawn(warm_up(Arc::downgrade(self), slow_start));
        }
    }

    /// Counts an attempt's result against its endpoint, ejecting it when it has failed
    /// too often in a row.
    pub fn observe(self: &Arc<Self>, endpoint: &Endpoint, observation: Observation) {
        let Some(settings) = &self.outlier else {
            return;
        };
        if !endpoint.health().observe(settings, observation) {
            return;
        }
        let configured = self.lock();
        let ejected = configured
            .iter()
            .filter(|m| m.endpoint.health().is_ejected())
            .count();
        // Never more than max_ejection_percent, unless the first one may always go.
        let share = (ejected + 1) as f64 * 100.0 / configured.len().max(1) as f64;
        let allowed = share <= f64::from(settings.max_ejection_percent)
            || (settings.always_eject_one && ejected == 0);
        if !allowed {
            return;
        }
        if !endpoint.health().eject(Instant::now()) {
            return;
        }
        self.stats.ejections.fetch_add(1, Relaxed);
        tracing::info!(endpoint = %endpoint.address, "outlier detection ejected an endpoint");
        self.rebuild(&configured);
        drop(configured);
        if !self.sweeping.swap(true, Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self), settings.interval));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.configured.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rebuild(&self, configured: &[Member]) {
        let serving: Vec<_> = configured
            .iter()
            .filter(|m| m.healthy && !m.endpoint.health().is_ejected())
            .map(|m| (Arc::clone(&m.endpoint), self.weight(m)))
            .collect();
        let panic = !configured.is_empty()
            && serving.len() * 100 < self.panic_threshold as usize * configured.len();
        let members = if panic {
            configured
                .iter()
                .map(|m| (Arc::clone(&m.endpoint), self.weight(m)))
                .collect()
        } else {
            serving
        };
        self.active
            .store(Arc::new(EndpointSet::hashed(members, self.hashing)));
    }
}

impl Membership {
    /// A member's weight now: its own, or under slow start a share of it that grows
    /// with its age (healthy endpoints only, as Envoy's).
    fn weight(&self, member: &Member) -> u32 {
        let Some(slow_start) = self.slow_start else {
            return member.weight;
        };
        let factor = if member.healthy {
            slow_start.factor(member.endpoint.age()).unwrap_or(1.0)
        } else {
            1.0
        };
        (f64::from(member.weight.max(1)) * SLOW_START_SCALE * factor)
            .round()
            .max(1.0) as u32
    }
}

/// Every tick while some endpoint is warming up: rebuilds the active set with its
/// grown weight, then once more at full weight when the last one is warm.
async fn warm_up(membership: Weak<Membership>, slow_start: SlowStart) {
    let mut ticks = tokio::time::interval(slow_start.tick());
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(membership) = membership.upgrade() else {
            return;
        };
        let configured = membership.lock();
        membership.rebuild(&configured);
        let warming = configured
            .iter()
            .any(|m| slow_start.factor(m.endpoint.age()).is_some());
        if !warming {
            membership.warming.store(false, Relaxed);
            return;
        }
    }
}

/// Every interval: brings back endpoints whose ejection is over, until none is out and
/// none has ejections left to forgive.
async fn sweep(membership: Weak<Membership>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        let Some(membership) = membership.upgrade() else {
            return;
        };
        let Some(settings) = &membership.outlier else {
            return;
        };
        let configured = membership.lock();
        let now = Instant::now();
        let returned = configured
            .iter()
            .filter(|m| m.endpoint.health().sweep(settings, now))
            .count();
        if returned > 0 {
            tracing::info!(returned, "outlier detection brought endpoints back");
            membership.rebuild(&configured);
        }
        if !configured
            .iter()
            .any(|m| m.endpoint.health().needs_sweeping())
        {
            membership.sweeping.store(false, Relaxed);
            return;
        }
    }
}
