//! Envoy's slow start (Istio's `warmup`): an endpoint that joined the cluster less than
//! `window` ago takes a share of its weight that grows with its age, so a new instance
//! is not flooded while it warms its caches.

use std::time::Duration;

/// Slow start of a round-robin or least-request cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    /// Above 1 the share grows fast at first; 1 is linear.
    pub aggression: f64,
    /// The least share of its weight an endpoint gets, as a fraction (Envoy's 10 %).
    pub min_weight: f64,
}

// Compiling refuses NaN and non-positive values, so equality is total.
impl Eq for SlowStart {}

/// How often the weights of endpoints warming up are brought up to date.
const MIN_TICK: Duration = Duration::from_millis(50);
const MAX_TICK: Duration = Duration::from_secs(1);

impl SlowStart {
    /// The share of its weight an endpoint `age` old takes: Envoy's
    /// `max(min_weight, (age / window) ^ (1 / aggression))`; `None` once it is warm.
    pub fn factor(&self, age: Duration) -> Option<f64> {
        if age >= self.window {
            return None;
        }
        let time = age.max(Duration::from_millis(1)).as_secs_f64() / self.window.as_secs_f64();
        let grown = if self.aggression == 1.0 {
            time
        } else {
            time.powf(1.0 / self.aggression)
        };
        Some(grown.max(self.min_weight))
    }

    /// The interval between weight updates while some endpoint warms up.
    pub fn tick(&self) -> Duration {
        (self.window / 20).clamp(MIN_TICK, MAX_TICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINEAR: SlowStart = SlowStart {
        window: Duration::from_secs(10),
        aggression: 1.0,
        min_weight: 0.1,
    };

    #[test]
    fn the_share_grows_from_the_minimum_to_full_weight() {
        assert_eq!(LINEAR.factor(Duration::ZERO), Some(0.1));
        assert_eq!(LINEAR.factor(Duration::from_secs(5)), Some(0.5));
        assert_eq!(LINEAR.factor(Duration::from_secs(10)), None);
        let eager = SlowStart {
            aggression: 2.0,
            ..LINEAR
        };
        let share = eager.factor(Duration::from_millis(2_500)).expect("warming");
        assert!((share - 0.5).abs() < 1e-9, "{share}");
    }
}
