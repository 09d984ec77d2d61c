//! A DestinationRule's `loadBalancer` as istiod writes it: the cluster's policy and its
//! config (ring hash, maglev, slow start for `warmup`), and the routes' hash policy,
//! which tells a hashing cluster what each request is hashed on.

use bosun_model::{ConsistentHash, HashKey, HashTable, LoadBalancer, LoadBalancing, Warmup};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
use envoy_types::pb::envoy::config::route::v3::route_action::{HashPolicy, hash_policy};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::UInt64Value;

use super::resilience::duration;

/// The runtime key istiod names for the warmup aggression.
const AGGRESSION_RUNTIME_KEY: &str = "cluster.lb.slow_start.aggression";

/// Sets the cluster's load-balancing policy and its config.
pub(super) fn apply(cluster: &mut Cluster, balancing: Option<&LoadBalancing>) {
    let default = LoadBalancing::default();
    let balancing = balancing.unwrap_or(&default);
    cluster.lb_policy = lb_policy(&balancing.algorithm) as i32;
    cluster.lb_config = match &balancing.algorithm {
        LoadBalancer::RoundRobin => balancing.warmup.map(|warmup| {
            cluster::LbConfig::RoundRobinLbConfig(cluster::RoundRobinLbConfig {
                slow_start_config: Some(slow_start(warmup)),
            })
        }),
        LoadBalancer::LeastRequest => balancing.warmup.map(|warmup| {
            cluster::LbConfig::LeastRequestLbConfig(cluster::LeastRequestLbConfig {
                slow_start_config: Some(slow_start(warmup)),
                ..Default::default()
            })
        }),
        // istiod warms up only the round-robin and least-request balancers.
        LoadBalancer::Random => None,
        LoadBalancer::ConsistentHash(hash) => hash_table_config(hash.table),
    };
}

pub(super) fn lb_policy(algorithm: &LoadBalancer) -> cluster::LbPolicy {
    match algorithm {
        LoadBalancer::RoundRobin => cluster::LbPolicy::RoundRobin,
        LoadBalancer::LeastRequest => cluster::LbPolicy::LeastRequest,
        LoadBalancer::Random => cluster::LbPolicy::Random,
        LoadBalancer::ConsistentHash(hash) => match hash.table {
            HashTable::RingHash { .. } => cluster::LbPolicy::RingHash,
            HashTable::Maglev { .. } => cluster::LbPolicy::Maglev,
        },
    }
}

fn hash_table_config(table: HashTable) -> Option<cluster::LbConfig> {
    match table {
        HashTable::RingHash { minimum_ring_size } => minimum_ring_size.map(|size| {
            cluster::LbConfig::RingHashLbConfig(cluster::RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value { value: size }),
                ..Default::default()
            })
        }),
        HashTable::Maglev { table_size } => table_size.map(|size| {
            cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: Some(UInt64Value { value: size }),
            })
        }),
    }
}

fn slow_start(warmup: Warmup) -> cluster::SlowStartConfig {
    cluster::SlowStartConfig {
        slow_start_window: Some(duration(warmup.duration)),
        aggression: Some(RuntimeDouble {
            default_value: warmup.aggression,
            runtime_key: AGGRESSION_RUNTIME_KEY.to_string(),
        }),
        min_weight_percent: Some(Percent {
            value: warmup.minimum_percent,
        }),
    }
}

/// The consistent hash a destination's policy sets, if any.
pub(super) fn consistent_hash(balancing: Option<&LoadBalancing>) -> Option<&ConsistentHash> {
    match &balancing?.algorithm {
        LoadBalancer::ConsistentHash(hash) => Some(hash),
        _ => None,
    }
}

/// The route's hash policy for a destination hashed on `key`.
pub(super) fn hash_policy(key: &HashKey) -> HashPolicy {
    let specifier =
        match key {
            HashKey::Header(name) => hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: name.clone(),
                ..Default::default()
            }),
            HashKey::Cookie(cookie) => hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: cookie.name.clone(),
                ttl: cookie.ttl.map(duration),
                path: cookie.path.clone().unwrap_or_default(),
                attributes: cookie
                    .attributes
                    .iter()
                    .map(|(name, value)| hash_policy::CookieAttribute {
                        name: name.clone(),
                        value: value.clone().unwrap_or_default(),
                    })
                    .collect(),
            }),
            HashKey::SourceIp => hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true },
            ),
            HashKey::QueryParameter(name) => {
                hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
                    name: name.clone(),
                })
            }
        };
    HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bosun_model::HashCookie;

    use super::*;

    fn cluster_with(balancing: LoadBalancing) -> Cluster {
        let mut cluster = Cluster::default();
        apply(&mut cluster, Some(&balancing));
        cluster
    }

    #[test]
    fn consistent_hash_is_a_ring_of_1024_unless_maglev_is_asked_for() {
        let ring = cluster_with(LoadBalancing::simple(LoadBalancer::ConsistentHash(
            ConsistentHash {
                key: Some(HashKey::SourceIp),
                table: HashTable::RingHash {
                    minimum_ring_size: Some(1024),
                },
            },
        )));
        assert_eq!(ring.lb_policy, cluster::LbPolicy::RingHash as i32);
        let Some(cluster::LbConfig::RingHashLbConfig(config)) = ring.lb_config else {
            panic!("no ring hash config: {:?}", ring.lb_config);
        };
        assert_eq!(config.minimum_ring_size.map(|size| size.value), Some(1024));

        let maglev = cluster_with(LoadBalancing::simple(LoadBalancer::ConsistentHash(
            ConsistentHash {
                key: None,
                table: HashTable::Maglev { table_size: None },
            },
        )));
        assert_eq!(maglev.lb_policy, cluster::LbPolicy::Maglev as i32);
        assert_eq!(maglev.lb_config, None, "Envoy's default table size");
    }

    #[test]
    fn warmup_is_slow_start_on_least_request_with_istio_defaults() {
        let cluster = cluster_with(LoadBalancing {
            algorithm: LoadBalancer::LeastRequest,
            warmup: Some(Warmup {
                duration: Duration::from_secs(30),
                minimum_percent: 10.0,
                aggression: 1.0,
            }),
        });
        let Some(cluster::LbConfig::LeastRequestLbConfig(config)) = cluster.lb_config else {
            panic!("no least-request config: {:?}", cluster.lb_config);
        };
        let slow_start = config.slow_start_config.expect("slow start");
        assert_eq!(slow_start.slow_start_window.map(|d| d.seconds), Some(30));
        assert_eq!(slow_start.min_weight_percent.map(|p| p.value), Some(10.0));
        assert_eq!(slow_start.aggression.map(|a| a.default_value), Some(1.0));
    }

    /// istiod's routes: each hashed destination adds its key; a single hashed destination
    /// drops the previous-hosts predicate from the retries, so retries stay on its endpoint.
    #[test]
    fn routes_carry_the_destination_hash_and_retry_in_place() {
        use crate::translate::test_mesh::{action, outbound_routes, snapshot_with_policy};
        let policy = "    loadBalancer:
      consistentHash: {httpHeaderName: X-User}
";
        let subsets = "  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
";
        let default_route = outbound_routes(&snapshot_with_policy(policy, subsets));
        let hashed = action(&default_route[0]);
        let Some(hash_policy::PolicySpecifier::Header(header)) =
            &hashed.hash_policy[0].policy_specifier
        else {
            panic!("no header hash: {:?}", hashed.hash_policy);
        };
        assert_eq!(header.header_name, "x-user");
        let retries = hashed.retry_policy.as_ref().expect("default retries");
        assert!(retries.retry_host_predicate.is_empty());

        let split = format!(
            "{subsets}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: 50
    - destination: {{host: reviews, subset: v2}}
      weight: 50
"
        );
        let routes = outbound_routes(&snapshot_with_policy(policy, &split));
        let weighted = action(&routes[0]);
        // v1 inherits the rule's hash; v2's own RANDOM replaces it.
        assert_eq!(weighted.hash_policy.len(), 1);
        let retries = weighted.retry_policy.as_ref().expect("default retries");
        assert_eq!(retries.retry_host_predicate.len(), 1);
    }

    #[test]
    fn warmup_reaches_the_cluster() {
        use crate::translate::test_mesh::{node, snapshot_with_policy};
        let snapshot = snapshot_with_policy(
            "    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 8s}
",
            "",
        );
        let set = crate::translate::generate(
            &snapshot,
            &node([127, 0, 10, 1], "client"),
            crate::translate::DEFAULT_TRUST_DOMAIN,
        );
        let cluster = set
            .clusters
            .iter()
            .find(|c| c.name == "outbound|9080||reviews.default.svc.cluster.local")
            .expect("reviews cluster");
        assert!(
            matches!(
                cluster.lb_config,
                Some(cluster::LbConfig::RoundRobinLbConfig(_))
            ),
            "{:?}",
            cluster.lb_config
        );
    }

    #[test]
    fn cookie_key_names_its_ttl_and_path() {
        let policy = hash_policy(&HashKey::Cookie(HashCookie {
            name: "user".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(60)),
            attributes: vec![("SameSite".into(), Some("Strict".into()))],
        }));
        let Some(hash_policy::PolicySpecifier::Cookie(cookie)) = policy.policy_specifier else {
            panic!("not a cookie policy");
        };
        assert_eq!(cookie.name, "user");
        assert_eq!(cookie.path, "/");
        assert_eq!(cookie.ttl.map(|ttl| ttl.seconds), Some(60));
        assert_eq!(cookie.attributes[0].value, "Strict");
    }
}
