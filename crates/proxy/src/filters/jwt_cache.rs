//! Tokens already verified, so a caller that sends the same token again does not pay for
//! its signature again (Envoy's `jwt_cache_config`, on here by default: verifying a
//! signature costs tens of microseconds, more than the rest of a request).
//!
//! A token is kept by its exact text (a tampered token is another key and misses) with
//! its claims; its time limits are checked again at every use. The cache is bounded and
//! forgets everything when full, so a flood of distinct tokens costs no more memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How many verified tokens a provider keeps.
const CAPACITY: usize = 256;

#[derive(Debug, Default)]
pub struct VerifiedTokens {
    tokens: Mutex<HashMap<Arc<str>, Arc<Value>>>,
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified before and its time limits still hold
    /// (with `skew` seconds of allowance).
    pub fn get(&self, token: &str, skew: u64) -> Option<Arc<Value>> {
        let claims = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()?;
        let now = unix_now();
        let expired = claims["exp"]
            .as_u64()
            .is_some_and(|exp| now > exp.saturating_add(skew));
        let early = claims["nbf"]
            .as_u64()
            .is_some_and(|nbf| now.saturating_add(skew) < nbf);
        (!expired && !early).then_some(claims)
    }

    pub fn insert(&self, token: &str, claims: Arc<Value>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(Arc::from(token), claims);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_token_is_not_served_from_the_cache() {
        let cache = VerifiedTokens::default();
        cache.insert(
            "fresh",
            Arc::new(serde_json::json!({"exp": unix_now() + 3600})),
        );
        cache.insert(
            "stale",
            Arc::new(serde_json::json!({"exp": unix_now() - 3600})),
        );
        assert!(cache.get("fresh", 60).is_some());
        assert!(cache.get("stale", 60).is_none());
        assert!(cache.get("other", 60).is_none());
    }
}
