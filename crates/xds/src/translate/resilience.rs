//! What Istio writes for resilience: route retry policies (its default on every outbound
//! route, or the VirtualService's `retries`) and per-route faults for the fault filter.
//! A cluster's circuit breakers are its traffic policy's (traffic_policy.rs).

use std::collections::HashMap;

use bosun_model::{AbortWith, Fault, Retries, RetryPolicy as MeshRetryPolicy, Share};
use bosun_wire::{http_filters, retry};
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, retry_policy};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay as ProtoFaultDelay, fault_delay,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort as ProtoFaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use envoy_types::util::pack_any;

/// Istio disables Envoy's default 15 s route timeout unless a VirtualService sets one.
pub(super) const NO_TIMEOUT: Duration = Duration {
    seconds: 0,
    nanos: 0,
};

/// Istio's conditions when a VirtualService sets none.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RETRIABLE_STATUS_CODES: [u32; 1] = [503];
/// How many picks a retry makes to find an endpoint not tried yet (istiod's).
const HOST_SELECTION_ATTEMPTS: i64 = 5;

/// The retry policy of an outbound route, as istiod writes it.
///
/// A route to one consistently hashed destination retries without the previous-hosts
/// predicate, as istiod writes it: the hash keeps choosing the same endpoint.
pub(super) fn retry_policy(retries: &Retries, consistent_hash: bool) -> Option<RetryPolicy> {
    let mut policy = match retries {
        Retries::MeshDefault => default_retry_policy(),
        Retries::Disabled => return None,
        Retries::Policy(policy) => configured_retry_policy(policy),
    };
    if consistent_hash {
        policy.retry_host_predicate.clear();
    }
    Some(policy)
}

fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value {
            value: DEFAULT_RETRIES,
        }),
        retriable_status_codes: DEFAULT_RETRIABLE_STATUS_CODES.to_vec(),
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: HOST_SELECTION_ATTEMPTS,
        ..Default::default()
    }
}

/// Istio's conversion: the default, overridden field by field. Numbers in `retryOn` are
/// retriable status codes.
fn configured_retry_policy(policy: &MeshRetryPolicy) -> RetryPolicy {
    let mut out = default_retry_policy();
    out.num_retries = Some(UInt32Value {
        value: policy.attempts,
    });
    if let Some(retry_on) = &policy.retry_on {
        let (codes, conditions): (Vec<&str>, Vec<&str>) = retry_on
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .partition(|item| item.parse::<u32>().is_ok());
        let mut conditions: Vec<String> = conditions.into_iter().map(str::to_string).collect();
        out.retriable_status_codes = codes.iter().filter_map(|code| code.parse().ok()).collect();
        if !out.retriable_status_codes.is_empty()
            && !conditions.iter().any(|c| c == "retriable-status-codes")
        {
            conditions.push("retriable-status-codes".to_string());
        }
        out.retry_on = conditions.join(",");
    }
    out.per_try_timeout = policy.per_try_timeout.map(duration);
    if policy.retry_remote_localities {
        out.retry_priority = Some(retry_policy::RetryPriority {
            name: retry::PREVIOUS_PRIORITIES.to_string(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(
                pack_any(PreviousPrioritiesConfig {
                    update_frequency: 2,
                }),
            )),
        });
    }
    if !policy.avoid_previous_hosts {
        out.retry_host_predicate.clear();
    }
    if let Some(backoff) = policy.backoff {
        out.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(duration(backoff)),
            ..Default::default()
        });
    }
    out
}

fn previous_hosts() -> retry_policy::RetryHostPredicate {
    retry_policy::RetryHostPredicate {
        name: retry::PREVIOUS_HOSTS_PREDICATE.to_string(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            pack_any(PreviousHostsPredicate {}),
        )),
    }
}

/// A route's settings for the fault filter, when its rule injects a fault.
pub(super) fn fault_config(fault: Option<&Fault>) -> HashMap<String, Any> {
    let Some(fault) = fault else {
        return HashMap::new();
    };
    let delay = fault.delay.as_ref().map(|delay| ProtoFaultDelay {
        percentage: fraction(delay.share),
        fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(
            delay.fixed_delay,
        ))),
    });
    let abort = fault.abort.as_ref().map(|abort| ProtoFaultAbort {
        percentage: fraction(abort.share),
        error_type: Some(match abort.with {
            AbortWith::HttpStatus(status) => fault_abort::ErrorType::HttpStatus(u32::from(status)),
            AbortWith::GrpcStatus(status) => fault_abort::ErrorType::GrpcStatus(status),
        }),
        ..Default::default()
    });
    let config = HttpFault {
        delay,
        abort,
        ..Default::default()
    };
    HashMap::from([(http_filters::FAULT.to_string(), pack_any(config))])
}

/// Istio's percentages: a percent with a fraction in millionths, the deprecated integer
/// in hundredths.
pub(super) fn fraction(share: Share) -> Option<FractionalPercent> {
    use fractional_percent::DenominatorType;
    match share {
        Share::Percentage(value) => Some(FractionalPercent {
            numerator: (value * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
            denominator: DenominatorType::Million as i32,
        }),
        Share::Percent(percent) => Some(FractionalPercent {
            numerator: percent.min(100),
            denominator: DenominatorType::Hundred as i32,
        }),
        Share::Unset => None,
    }
}

pub(super) fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;

    use super::*;
    use crate::translate::test_mesh::{action, node, outbound_routes, snapshot};
    use crate::translate::{DEFAULT_TRUST_DOMAIN, generate};

    #[test]
    fn every_outbound_route_gets_istios_default_retries_and_no_timeout() {
        let routes = outbound_routes(&snapshot(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
",
        ));
        let policy = action(&routes[0])
            .retry_policy
            .as_ref()
            .expect("a retry policy");
        assert_eq!(policy.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(policy.num_retries, Some(UInt32Value { value: 2 }));
        assert_eq!(policy.retriable_status_codes, vec![503]);
        assert_eq!(
            policy.retry_host_predicate[0].name,
            retry::PREVIOUS_HOSTS_PREDICATE
        );
        assert_eq!(policy.host_selection_retry_max_attempts, 5);
        assert_eq!(action(&routes[0]).timeout, Some(Duration::default()));
        // And with no VirtualService at all.
        let routes = outbound_routes(&snapshot(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other}
spec:
  hosts: [other.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
",
        ));
        assert_eq!(
            action(&routes[0])
                .retry_policy
                .as_ref()
                .map(|p| p.retry_on.as_str()),
            Some(DEFAULT_RETRY_ON)
        );
    }

    #[test]
    fn a_virtual_service_sets_timeout_retries_and_faults_as_istiod_does() {
        let routes = outbound_routes(&snapshot("apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 1.5s
    retries: {attempts: 4, perTryTimeout: 0.25s, retryOn: 'gateway-error,409', retryRemoteLocalities: true}
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 12.5}}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v1}}]
  - retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: v1}}]
"));
        let first = action(&routes[0]);
        assert_eq!(
            first.timeout,
            Some(Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let policy = first.retry_policy.as_ref().expect("retries");
        assert_eq!(policy.retry_on, "gateway-error,retriable-status-codes");
        assert_eq!(policy.retriable_status_codes, vec![409]);
        assert_eq!(policy.num_retries, Some(UInt32Value { value: 4 }));
        assert_eq!(
            policy.per_try_timeout,
            Some(Duration {
                seconds: 0,
                nanos: 250_000_000
            })
        );
        assert_eq!(
            policy.retry_priority.as_ref().map(|p| p.name.as_str()),
            Some(retry::PREVIOUS_PRIORITIES)
        );
        let fault = routes[0].typed_per_filter_config[http_filters::FAULT].clone();
        let fault = HttpFault::decode(fault.value.as_slice()).expect("HTTPFault");
        let delay = fault.delay.expect("delay");
        assert_eq!(
            delay.percentage,
            Some(FractionalPercent {
                numerator: 125_000,
                denominator: fractional_percent::DenominatorType::Million as i32
            })
        );
        assert_eq!(
            fault.abort.and_then(|a| a.error_type),
            Some(fault_abort::ErrorType::GrpcStatus(14))
        );
        assert!(
            action(&routes[1]).retry_policy.is_none(),
            "attempts: 0 turns retries off"
        );
        assert!(routes[1].typed_per_filter_config.is_empty());
    }

    #[test]
    fn inbound_routes_never_time_out_and_every_cluster_is_unlimited() {
        let set = generate(
            &snapshot(""),
            &node([127, 0, 10, 3], "reviews-v1"),
            DEFAULT_TRUST_DOMAIN,
        );
        let inbound = set
            .listeners
            .iter()
            .find(|listener| listener.name == "inbound|9080")
            .expect("inbound listener");
        use envoy_types::pb::envoy::config::listener::v3::filter;
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
            HttpConnectionManager, http_connection_manager::RouteSpecifier,
        };
        for chain in &inbound.filter_chains {
            let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
                panic!("an HCM");
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("HCM");
            let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(
                filters,
                [
                    http_filters::FAULT,
                    http_filters::CORS,
                    http_filters::ROUTER
                ]
            );
            let Some(RouteSpecifier::RouteConfig(config)) = &hcm.route_specifier else {
                panic!("an inline route");
            };
            let route = &config.virtual_hosts[0].routes[0];
            assert_eq!(
                action(route).timeout,
                Some(Duration::default()),
                "{}",
                chain.name
            );
            assert!(
                action(route).retry_policy.is_none(),
                "inbound routes do not retry"
            );
        }
        let check = |cluster: &Cluster| {
            let thresholds = &cluster
                .circuit_breakers
                .as_ref()
                .expect("circuit breakers")
                .thresholds[0];
            assert_eq!(
                thresholds.max_retries,
                Some(UInt32Value { value: u32::MAX }),
                "{}",
                cluster.name
            );
            assert_eq!(
                thresholds.max_requests,
                Some(UInt32Value { value: u32::MAX })
            );
        };
        set.clusters.iter().for_each(check);
        // Istio's default load balancer.
        let outbound = set
            .clusters
            .iter()
            .find(|c| c.name == "outbound|9080||reviews.default.svc.cluster.local")
            .expect("outbound cluster");
        assert_eq!(
            outbound.lb_policy,
            envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy::LeastRequest as i32
        );
    }
}
