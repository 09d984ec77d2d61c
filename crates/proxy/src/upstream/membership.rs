//! Which of a cluster's endpoints take requests: the healthy ones outlier detection has
//! not ejected, or all of them when too few are left (Envoy's panic threshold). The set
//! is rebuilt when endpoints change, are ejected or come back, so picking never looks at
//! health.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::endpoint::{Endpoint, EndpointSet};
use super::outlier::{Observation, OutlierSettings};
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

#[derive(Debug)]
pub(super) struct Membership {
    configured: Mutex<Vec<Member>>,
    active: ArcSwap<EndpointSet>,
    panic_threshold: u32,
    outlier: Option<OutlierSettings>,
    /// A sweep task is running (only while an endpoint is ejected or being forgiven).
    sweeping: AtomicBool,
    stats: Arc<ClusterStats>,
}

impl Membership {
    pub fn new(
        panic_threshold: u32,
        outlier: Option<OutlierSettings>,
        stats: Arc<ClusterStats>,
    ) -> Self {
        Membership {
            configured: Mutex::default(),
            active: ArcSwap::from_pointee(EndpointSet::default()),
            panic_threshold,
            outlier,
            sweeping: AtomicBool::new(false),
            stats,
        }
    }

    pub fn active(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.active.load()
    }

    pub fn configured(&self) -> Vec<Member> {
        self.lock().clone()
    }

    pub fn replace(&self, members: Vec<Member>) {
        let mut configured = self.lock();
        *configured = members;
        self.rebuild(&configured);
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
            .map(|m| (Arc::clone(&m.endpoint), m.weight))
            .collect();
        let panic = !configured.is_empty()
            && serving.len() * 100 < self.panic_threshold as usize * configured.len();
        let members = if panic {
            configured
                .iter()
                .map(|m| (Arc::clone(&m.endpoint), m.weight))
                .collect()
        } else {
            serving
        };
        self.active.store(Arc::new(EndpointSet::new(members)));
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
