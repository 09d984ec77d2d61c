//! A DestinationRule's traffic policy on a cluster, as istiod writes it: the load
//! balancer, the circuit-breaker thresholds and connection options of `connectionPool`,
//! and `outlierDetection` with the panic threshold it implies.

use bosun_model::{
    ClientTls, ConnectionPool, OriginatedTls, OutlierDetection, Protocol, ServerVerification,
    TcpKeepalive, TrafficPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as ProtoOutlierDetection, UpstreamConnectionOptions,
    circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    HttpProtocolOptions as CommonHttpProtocolOptions, KeepaliveSettings, RoutingPriority,
    TcpKeepalive as ProtoTcpKeepalive, UpstreamHttpProtocolOptions,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};

use super::load_balancer;
use super::resilience::duration;

/// Istio's mesh-wide connect timeout, for inbound clusters.
pub(super) const CONNECT_TIMEOUT: Duration = Duration {
    seconds: 10,
    nanos: 0,
};

/// What a cluster's HTTP protocol options carry from the policy.
#[derive(Debug, Default)]
pub(super) struct HttpOptions {
    /// The cluster speaks HTTP/2 upstream (the port's protocol, or `h2UpgradePolicy`).
    pub http2: bool,
    pub common: Option<CommonHttpProtocolOptions>,
    pub http2_keepalive: Option<KeepaliveSettings>,
    /// Originated TLS without its own `sni`: the request's host is sent as SNI (and,
    /// without `subjectAltNames`, the server's certificate is checked against it).
    pub upstream: Option<UpstreamHttpProtocolOptions>,
}

/// Sets the policy's load balancer, limits, timeouts and outlier detection on `cluster`,
/// and returns the HTTP protocol options the cluster needs.
pub(super) fn apply(
    cluster: &mut Cluster,
    policy: &TrafficPolicy,
    protocol: Protocol,
    mesh_connect_timeout: std::time::Duration,
) -> HttpOptions {
    load_balancer::apply(cluster, policy.load_balancer.as_ref());
    let mut options = apply_connection_pool(
        cluster,
        policy.connection_pool.as_ref(),
        protocol,
        mesh_connect_timeout,
    );
    if let Some(ClientTls::Originate(tls)) = &policy.tls {
        options.upstream = auto_sni(tls);
    }
    if let Some(outlier) = &policy.outlier_detection {
        cluster.outlier_detection = Some(outlier_detection(outlier));
        // istiod turns Envoy's panic mode (50 %) off unless minHealthPercent says more.
        cluster.common_lb_config = Some(cluster::CommonLbConfig {
            healthy_panic_threshold: Some(Percent {
                value: f64::from(outlier.min_health_percent),
            }),
            ..Default::default()
        });
    }
    options
}

/// istiod's auto SNI and SAN validation for TLS a rule originates: SNI from the request's
/// host when the rule names none, and the certificate checked against that host when it
/// also names no `subjectAltNames` and verifies at all.
fn auto_sni(tls: &OriginatedTls) -> Option<UpstreamHttpProtocolOptions> {
    let auto_sni = tls.sni.is_none();
    let auto_san_validation = auto_sni
        && tls.subject_alt_names.is_empty()
        && tls.verification != ServerVerification::Skip;
    (auto_sni || auto_san_validation).then(|| UpstreamHttpProtocolOptions {
        auto_sni,
        auto_san_validation,
        ..Default::default()
    })
}

/// Sets the pool's limits, connect timeout and TCP keepalive on `cluster` (outbound, or
/// inbound where istiod applies the connection pool too), and returns its HTTP options.
pub(super) fn apply_connection_pool(
    cluster: &mut Cluster,
    pool: Option<&ConnectionPool>,
    protocol: Protocol,
    mesh_connect_timeout: std::time::Duration,
) -> HttpOptions {
    cluster.circuit_breakers = Some(circuit_breakers(pool));
    cluster.connect_timeout = Some(
        pool.and_then(|pool| pool.connect_timeout)
            .map_or(duration(mesh_connect_timeout), duration),
    );
    if let Some(keepalive) = pool.and_then(|pool| pool.tcp_keepalive) {
        cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
            tcp_keepalive: Some(tcp_keepalive(keepalive)),
            ..Default::default()
        });
    }
    http_options(pool, protocol)
}

/// istiod's thresholds: no limit unless the pool sets one, so Envoy's small defaults (3
/// retries in flight) never turn a rollout's failed attempts into client errors.
pub(super) fn circuit_breakers(pool: Option<&ConnectionPool>) -> CircuitBreakers {
    let limit = |value: Option<u32>| {
        Some(UInt32Value {
            value: value.unwrap_or(u32::MAX),
        })
    };
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: limit(pool.and_then(|pool| pool.max_connections)),
            max_pending_requests: limit(pool.and_then(|pool| pool.http1_max_pending_requests)),
            max_requests: limit(pool.and_then(|pool| pool.http2_max_requests)),
            max_retries: limit(pool.and_then(|pool| pool.max_retries)),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tcp_keepalive(keepalive: TcpKeepalive) -> ProtoTcpKeepalive {
    let seconds = |d: std::time::Duration| UInt32Value {
        value: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
    };
    ProtoTcpKeepalive {
        keepalive_probes: keepalive.probes.map(|value| UInt32Value { value }),
        keepalive_time: keepalive.time.map(seconds),
        keepalive_interval: keepalive.interval.map(seconds),
    }
}

fn http_options(pool: Option<&ConnectionPool>, protocol: Protocol) -> HttpOptions {
    let upgrade = pool.and_then(|pool| pool.h2_upgrade);
    // UPGRADE makes any port speak HTTP/2 upstream; the mesh default is not to upgrade.
    let http2 = upgrade == Some(true) || protocol == Protocol::Http2;
    let Some(pool) = pool else {
        return HttpOptions {
            http2,
            ..HttpOptions::default()
        };
    };
    let common = (pool.idle_timeout.is_some()
        || pool.max_requests_per_connection.is_some()
        || pool.max_connection_duration.is_some())
    .then(|| CommonHttpProtocolOptions {
        idle_timeout: pool.idle_timeout.map(duration),
        max_requests_per_connection: pool
            .max_requests_per_connection
            .map(|value| UInt32Value { value }),
        max_connection_duration: pool.max_connection_duration.map(duration),
        ..Default::default()
    });
    let http2_keepalive =
        pool.http2_keepalive
            .filter(|_| http2)
            .map(|keepalive| KeepaliveSettings {
                interval: keepalive.interval.map(duration),
                timeout: keepalive.timeout.map(duration),
                ..Default::default()
            });
    HttpOptions {
        http2,
        common,
        http2_keepalive,
        upstream: None,
    }
}

/// istiod's conversion: success-rate ejection off; a count set to 0 turns its kind off.
fn outlier_detection(outlier: &OutlierDetection) -> ProtoOutlierDetection {
    let enforcing = |count: u32| UInt32Value {
        value: if count > 0 { 100 } else { 0 },
    };
    let mut out = ProtoOutlierDetection {
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        interval: outlier.interval.map(duration),
        base_ejection_time: outlier.base_ejection_time.map(duration),
        max_ejection_percent: outlier
            .max_ejection_percent
            .map(|value| UInt32Value { value }),
        ..Default::default()
    };
    if let Some(count) = outlier.consecutive_5xx {
        out.consecutive_5xx = Some(UInt32Value { value: count });
        out.enforcing_consecutive_5xx = Some(enforcing(count));
    }
    if let Some(count) = outlier.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(UInt32Value { value: count });
        out.enforcing_consecutive_gateway_failure = Some(enforcing(count));
    }
    if outlier.split_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(count) = outlier.consecutive_local_origin_failures {
            out.consecutive_local_origin_failure = Some(UInt32Value { value: count });
            out.enforcing_consecutive_local_origin_failure = Some(UInt32Value { value: 100 });
        }
        out.enforcing_local_origin_success_rate = Some(UInt32Value { value: 0 });
    }
    out
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use prost::Message;

    use super::*;
    use crate::translate::test_mesh::{node, snapshot, snapshot_with_policy};
    use crate::translate::{DEFAULT_TRUST_DOMAIN, generate};

    const RATINGS: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.10.7}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 2, maxRequestsPerConnection: 1, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {http: {h2UpgradePolicy: UPGRADE}}
";

    fn clusters() -> Vec<Cluster> {
        let set = generate(
            &snapshot(RATINGS),
            &node([127, 0, 10, 1], "client"),
            DEFAULT_TRUST_DOMAIN,
        );
        set.clusters
    }

    fn cluster<'a>(clusters: &'a [Cluster], name: &str) -> &'a Cluster {
        clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("cluster {name}"))
    }

    fn http_options(cluster: &Cluster) -> Option<HttpProtocolOptions> {
        cluster
            .typed_extension_protocol_options
            .values()
            .next()
            .map(|any| HttpProtocolOptions::decode(any.value.as_slice()).expect("options"))
    }

    #[test]
    fn the_inbound_cluster_takes_the_services_connection_pool_and_nothing_else() {
        let snapshot = snapshot_with_policy(
            "    connectionPool:
      tcp: {maxConnections: 7}
      http: {h2UpgradePolicy: UPGRADE, maxRequestsPerConnection: 3}
    outlierDetection: {consecutive5xxErrors: 1}
",
            "",
        );
        let set = generate(
            &snapshot,
            &node([127, 0, 10, 3], "reviews-v1"),
            DEFAULT_TRUST_DOMAIN,
        );
        let inbound = cluster(&set.clusters, "inbound|9080||");
        let thresholds = &inbound
            .circuit_breakers
            .as_ref()
            .expect("breakers")
            .thresholds[0];
        assert_eq!(thresholds.max_connections, Some(UInt32Value { value: 7 }));
        let options = http_options(inbound).expect("protocol options");
        assert_eq!(
            options
                .common_http_protocol_options
                .and_then(|common| common.max_requests_per_connection),
            Some(UInt32Value { value: 3 })
        );
        // No h2 upgrade toward the app, no ejection of the app.
        use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
            UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        };
        let Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) =
            options.upstream_protocol_options
        else {
            panic!("an explicit protocol");
        };
        assert!(matches!(
            explicit.protocol_config,
            Some(ProtocolConfig::HttpProtocolOptions(_))
        ));
        assert!(inbound.outlier_detection.is_none());
    }

    #[test]
    fn a_destination_rule_sets_limits_timeouts_and_ejection_as_istiod_does() {
        let clusters = clusters();
        let http = cluster(
            &clusters,
            "outbound|9080||ratings.default.svc.cluster.local",
        );
        let thresholds = &http.circuit_breakers.as_ref().expect("breakers").thresholds[0];
        assert_eq!(thresholds.max_connections, Some(UInt32Value { value: 1 }));
        assert_eq!(
            thresholds.max_pending_requests,
            Some(UInt32Value { value: 2 })
        );
        assert_eq!(
            thresholds.max_requests,
            Some(UInt32Value { value: u32::MAX })
        );
        assert_eq!(
            http.connect_timeout,
            Some(Duration {
                seconds: 0,
                nanos: 250_000_000
            })
        );
        let common = http_options(http)
            .and_then(|options| options.common_http_protocol_options)
            .expect("common options");
        assert_eq!(
            common.max_requests_per_connection,
            Some(UInt32Value { value: 1 })
        );
        assert_eq!(common.idle_timeout.map(|d| d.seconds), Some(30));
        let outlier = http.outlier_detection.as_ref().expect("outlier detection");
        assert_eq!(outlier.consecutive_5xx, Some(UInt32Value { value: 1 }));
        assert_eq!(
            outlier.enforcing_consecutive_5xx,
            Some(UInt32Value { value: 100 })
        );
        assert_eq!(
            outlier.enforcing_success_rate,
            Some(UInt32Value { value: 0 })
        );
        assert_eq!(outlier.base_ejection_time.map(|d| d.seconds), Some(180));
        assert_eq!(
            outlier.max_ejection_percent,
            Some(UInt32Value { value: 100 })
        );
        // Panic mode off, as istiod writes it with outlier detection.
        let panic = http
            .common_lb_config
            .as_ref()
            .and_then(|config| config.healthy_panic_threshold.as_ref())
            .expect("panic threshold");
        assert_eq!(panic.value, 0.0);
        assert_eq!(http.lb_policy, cluster::LbPolicy::LeastRequest as i32);

        // The port's settings replace the whole policy: no limits, no ejection there.
        let grpc = cluster(
            &clusters,
            "outbound|9090||ratings.default.svc.cluster.local",
        );
        assert_eq!(grpc.lb_policy, cluster::LbPolicy::RoundRobin as i32);
        assert!(grpc.outlier_detection.is_none());
        let thresholds = &grpc.circuit_breakers.as_ref().expect("breakers").thresholds[0];
        assert_eq!(
            thresholds.max_connections,
            Some(UInt32Value { value: u32::MAX })
        );

        // The subset's pool replaces the rule's; its outlier detection stays.
        let v2 = cluster(
            &clusters,
            "outbound|9080|v2|ratings.default.svc.cluster.local",
        );
        let options = http_options(v2).expect("protocol options");
        assert!(
            options.upstream_protocol_options.is_some(),
            "upgraded to h2"
        );
        let thresholds = &v2.circuit_breakers.as_ref().expect("breakers").thresholds[0];
        assert_eq!(
            thresholds.max_connections,
            Some(UInt32Value { value: u32::MAX })
        );
        assert!(v2.outlier_detection.is_some());
    }
}
