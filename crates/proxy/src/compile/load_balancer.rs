//! A cluster's load-balancing policy and its `lb_config`: the ring hash and maglev
//! tables, and the slow start of round robin and least request.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};

use super::{Reason, duration};
use crate::upstream::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MAXIMUM_RING_SIZE, DEFAULT_MINIMUM_RING_SIZE, Discovery,
    HashingKind, LbPolicy, SlowStart,
};

/// The cluster's policy, and its slow start when it has one.
pub(super) fn compile(
    c: &Cluster,
    discovery: &Discovery,
) -> Result<(LbPolicy, Option<SlowStart>), Reason> {
    let policy = match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
        Ok(cluster::LbPolicy::Random) => LbPolicy::Random,
        Ok(cluster::LbPolicy::RingHash) => LbPolicy::Hashing(ring_hash(c.lb_config.as_ref())?),
        Ok(cluster::LbPolicy::Maglev) => LbPolicy::Hashing(maglev(c.lb_config.as_ref())?),
        Ok(cluster::LbPolicy::ClusterProvided)
            if matches!(discovery, Discovery::OriginalDestination { .. }) =>
        {
            LbPolicy::ClusterProvided
        }
        Ok(other) => {
            return Err(format!(
                "lb_policy {} is not supported yet",
                other.as_str_name()
            ));
        }
        Err(_) => return Err(format!("lb_policy {} is unknown", c.lb_policy)),
    };
    let slow_start = lb_config_of(c.lb_config.as_ref(), policy)?;
    Ok((policy, slow_start))
}

/// Envoy's ring bounds, checked as Envoy checks them.
fn ring_hash(config: Option<&cluster::LbConfig>) -> Result<HashingKind, Reason> {
    let Some(cluster::LbConfig::RingHashLbConfig(ring)) = config else {
        return Ok(HashingKind::Ring {
            minimum: DEFAULT_MINIMUM_RING_SIZE,
            maximum: DEFAULT_MAXIMUM_RING_SIZE,
        });
    };
    if ring.hash_function != cluster::ring_hash_lb_config::HashFunction::XxHash as i32 {
        return Err("ring_hash_lb_config.hash_function MURMUR_HASH_2 is not supported yet".into());
    }
    let minimum = ring
        .minimum_ring_size
        .map_or(DEFAULT_MINIMUM_RING_SIZE, |size| size.value);
    let maximum = ring
        .maximum_ring_size
        .map_or(DEFAULT_MAXIMUM_RING_SIZE, |size| size.value);
    if maximum > DEFAULT_MAXIMUM_RING_SIZE || minimum == 0 || minimum > maximum {
        return Err(format!(
            "ring_hash_lb_config: minimum_ring_size {minimum} must be at least 1 and at most \
             maximum_ring_size {maximum}, itself at most {DEFAULT_MAXIMUM_RING_SIZE}"
        ));
    }
    Ok(HashingKind::Ring { minimum, maximum })
}

/// Maglev's table size must be a prime (Envoy's limit: 5,000,011).
fn maglev(config: Option<&cluster::LbConfig>) -> Result<HashingKind, Reason> {
    let table_size = match config {
        Some(cluster::LbConfig::MaglevLbConfig(maglev)) => maglev
            .table_size
            .map_or(DEFAULT_MAGLEV_TABLE_SIZE, |size| size.value),
        _ => DEFAULT_MAGLEV_TABLE_SIZE,
    };
    if table_size > MAX_MAGLEV_TABLE_SIZE || !is_prime(table_size) {
        return Err(format!(
            "maglev_lb_config.table_size {table_size} must be a prime at most {MAX_MAGLEV_TABLE_SIZE}"
        ));
    }
    Ok(HashingKind::Maglev { table_size })
}

const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The cluster's `lb_config`, which must be the one its policy reads: what the ring
/// hash and maglev configs say is read with the policy; round robin and least request
/// bring their slow start.
fn lb_config_of(
    config: Option<&cluster::LbConfig>,
    policy: LbPolicy,
) -> Result<Option<SlowStart>, Reason> {
    use cluster::LbConfig;
    match (config, policy) {
        (None, _)
        | (Some(LbConfig::OriginalDstLbConfig(_)), LbPolicy::ClusterProvided)
        | (Some(LbConfig::RingHashLbConfig(_)), LbPolicy::Hashing(HashingKind::Ring { .. }))
        | (Some(LbConfig::MaglevLbConfig(_)), LbPolicy::Hashing(HashingKind::Maglev { .. })) => {
            Ok(None)
        }
        (Some(LbConfig::RoundRobinLbConfig(config)), LbPolicy::RoundRobin) => config
            .slow_start_config
            .as_ref()
            .map_or(Ok(None), slow_start),
        (Some(LbConfig::LeastRequestLbConfig(config)), LbPolicy::LeastRequest) => {
            if config.choice_count.is_some_and(|count| count.value != 2)
                || config.active_request_bias.is_some()
            {
                return Err(
                    "least_request_lb_config: only two choices and the default bias are supported yet"
                        .into(),
                );
            }
            config
                .slow_start_config
                .as_ref()
                .map_or(Ok(None), slow_start)
        }
        _ => Err(format!(
            "lb_config is not supported yet for lb_policy {}",
            policy.as_str()
        )),
    }
}

/// Envoy's slow start: aggression 1.0 and 10 % unless set.
fn slow_start(config: &cluster::SlowStartConfig) -> Result<Option<SlowStart>, Reason> {
    let Some(window) = config.slow_start_window.as_ref().map(duration) else {
        return Ok(None);
    };
    let aggression = config.aggression.as_ref().map_or(1.0, |a| a.default_value);
    if !(aggression.is_finite() && aggression > 0.0) {
        return Err(format!(
            "slow_start_config.aggression {aggression} must be above 0"
        ));
    }
    let percent = config.min_weight_percent.as_ref().map_or(10.0, |p| p.value);
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!(
            "slow_start_config.min_weight_percent {percent} must be within 0-100"
        ));
    }
    Ok((!window.is_zero()).then_some(SlowStart {
        window,
        aggression,
        min_weight: percent / 100.0,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt64Value};

    use super::*;
    use crate::compile::compile_cluster;
    use crate::upstream::ClusterSpec;

    /// The whole cluster compiled, its refusal as the user reads it.
    fn compile(c: &Cluster) -> Result<ClusterSpec, String> {
        compile_cluster(c).map_err(|error| error.to_string())
    }

    fn eds(policy: cluster::LbPolicy, config: Option<cluster::LbConfig>) -> Cluster {
        Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            )),
            load_assignment: Some(ClusterLoadAssignment::default()),
            lb_policy: policy as i32,
            lb_config: config,
            ..Default::default()
        }
    }

    #[test]
    fn hashing_policies_read_their_table_and_refuse_a_size_envoy_refuses() {
        let ring = compile(&eds(cluster::LbPolicy::RingHash, None)).expect("ring");
        assert_eq!(
            ring.lb_policy,
            LbPolicy::Hashing(HashingKind::Ring {
                minimum: DEFAULT_MINIMUM_RING_SIZE,
                maximum: DEFAULT_MAXIMUM_RING_SIZE,
            })
        );
        let maglev = |size| {
            compile(&eds(
                cluster::LbPolicy::Maglev,
                Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                    table_size: Some(UInt64Value { value: size }),
                })),
            ))
        };
        assert_eq!(
            maglev(251).expect("a prime").lb_policy,
            LbPolicy::Hashing(HashingKind::Maglev { table_size: 251 })
        );
        let refused = maglev(250).expect_err("not a prime");
        assert!(refused.contains("must be a prime"), "{refused}");
        // A config the policy does not read is refused, not ignored.
        let mismatched = compile(&eds(
            cluster::LbPolicy::Random,
            Some(cluster::LbConfig::MaglevLbConfig(
                cluster::MaglevLbConfig::default(),
            )),
        ))
        .expect_err("maglev config on RANDOM");
        assert!(mismatched.contains("not supported yet"), "{mismatched}");
    }

    #[test]
    fn slow_start_comes_with_round_robin_and_least_request() {
        let slow_start = |aggression| cluster::SlowStartConfig {
            slow_start_window: Some(ProtoDuration {
                seconds: 30,
                nanos: 0,
            }),
            aggression: Some(RuntimeDouble {
                default_value: aggression,
                runtime_key: String::new(),
            }),
            min_weight_percent: None,
        };
        let spec = compile(&eds(
            cluster::LbPolicy::LeastRequest,
            Some(cluster::LbConfig::LeastRequestLbConfig(
                cluster::LeastRequestLbConfig {
                    slow_start_config: Some(slow_start(2.0)),
                    ..Default::default()
                },
            )),
        ))
        .expect("least request with slow start");
        assert_eq!(
            spec.slow_start,
            Some(SlowStart {
                window: Duration::from_secs(30),
                aggression: 2.0,
                min_weight: 0.1,
            })
        );
        let refused = compile(&eds(
            cluster::LbPolicy::RoundRobin,
            Some(cluster::LbConfig::RoundRobinLbConfig(
                cluster::RoundRobinLbConfig {
                    slow_start_config: Some(slow_start(0.0)),
                },
            )),
        ))
        .expect_err("aggression 0");
        assert!(refused.contains("aggression"), "{refused}");
    }
}
