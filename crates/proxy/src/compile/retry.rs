//! A route's `retry_policy` → [`RetryPolicy`].

use envoy_types::pb::envoy::config::route::v3::RetryPolicy as ProtoRetryPolicy;

use super::{Reason, duration};
use crate::routing::{DEFAULT_BACKOFF_BASE, RetryOn, RetryPolicy};

use bosun_wire::retry::{PREVIOUS_HOSTS_PREDICATE, PREVIOUS_PRIORITIES};
use bosun_wire::type_urls::{
    PREVIOUS_HOSTS_PREDICATE as PREVIOUS_HOSTS_TYPE,
    PREVIOUS_PRIORITIES as PREVIOUS_PRIORITIES_TYPE,
};

pub fn compile_retry(policy: &ProtoRetryPolicy) -> Result<RetryPolicy, Reason> {
    let mut retry_on = RetryOn::default();
    for name in policy
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        retry_on |= RetryOn::parse(name)
            .ok_or_else(|| format!("retry_policy.retry_on {name:?} is not supported yet"))?;
    }
    let unsupported = [
        (
            policy.per_try_idle_timeout.is_some(),
            "per_try_idle_timeout",
        ),
        (
            !policy.retry_options_predicates.is_empty(),
            "retry_options_predicates",
        ),
        (
            policy.rate_limited_retry_back_off.is_some(),
            "rate_limited_retry_back_off",
        ),
        (!policy.retriable_headers.is_empty(), "retriable_headers"),
        (
            !policy.retriable_request_headers.is_empty(),
            "retriable_request_headers",
        ),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("retry_policy.{field} is not supported yet"));
    }
    if let Some(priority) = &policy.retry_priority {
        use envoy_types::pb::envoy::config::route::v3::retry_policy::retry_priority::ConfigType;
        let typed = priority
            .config_type
            .as_ref()
            .map(|ConfigType::TypedConfig(any)| any.type_url.as_str());
        // Every endpoint has priority 0 here, so preferring another priority changes nothing.
        if priority.name != PREVIOUS_PRIORITIES && typed != Some(PREVIOUS_PRIORITIES_TYPE) {
            return Err(format!(
                "retry_policy.retry_priority {} is not supported yet",
                priority.name
            ));
        }
    }
    let mut avoid_previous_hosts = false;
    for predicate in &policy.retry_host_predicate {
        use envoy_types::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType;
        let typed = predicate
            .config_type
            .as_ref()
            .map(|ConfigType::TypedConfig(any)| any.type_url.as_str());
        if predicate.name == PREVIOUS_HOSTS_PREDICATE || typed == Some(PREVIOUS_HOSTS_TYPE) {
            avoid_previous_hosts = true;
        } else {
            return Err(format!(
                "retry_policy.retry_host_predicate {} is not supported yet",
                predicate.name
            ));
        }
    }
    let (backoff_base, backoff_max) = match &policy.retry_back_off {
        None => (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_BASE * 10),
        Some(backoff) => {
            let base = backoff
                .base_interval
                .as_ref()
                .map(duration)
                .ok_or("retry_policy.retry_back_off needs base_interval")?;
            if base.is_zero() {
                return Err("retry_policy.retry_back_off.base_interval must be above 0".into());
            }
            let max = backoff.max_interval.as_ref().map_or(base * 10, duration);
            if max < base {
                return Err(
                    "retry_policy.retry_back_off.max_interval is below base_interval".into(),
                );
            }
            (base, max)
        }
    };
    let retriable_status_codes = policy
        .retriable_status_codes
        .iter()
        .map(|code| {
            u16::try_from(*code)
                .ok()
                .filter(|code| (100..600).contains(code))
                .ok_or_else(|| {
                    format!("retry_policy.retriable_status_codes {code} is not an HTTP status")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RetryPolicy {
        retry_on,
        // Envoy's default when a policy sets no count.
        num_retries: policy.num_retries.map_or(1, |n| n.value),
        per_try_timeout: policy
            .per_try_timeout
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero()),
        retriable_status_codes,
        avoid_previous_hosts,
        host_selection_attempts: u32::try_from(policy.host_selection_retry_max_attempts.max(1))
            .unwrap_or(u32::MAX),
        backoff_base,
        backoff_max,
    })
}
