//! Cluster → [`ClusterSpec`], ClusterLoadAssignment → endpoint list.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{HealthStatus, TypedExtensionConfig};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};

use super::load_balancer;
use super::{
    CompileError, Reason, decode_any, duration, require_ads, socket_host, telemetry, tls,
    type_url_of,
};
use crate::resource::ResourceType;
use crate::upstream::{
    CircuitLimits, ClusterSpec, DEFAULT_PANIC_THRESHOLD, DEFAULT_REFRESH_RATE, Discovery,
    DnsDiscovery, DnsTarget, EndpointSpec, Http2Keepalive, LookupFamily, OutlierSettings,
    PoolOptions, TcpKeepalive, UpstreamProtocol,
};

const CARES: &str = "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig";
const GETADDRINFO: &str =
    "envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig";
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Envoy's default when a cluster sets no connect_timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn compile_cluster(c: &Cluster) -> Result<ClusterSpec, CompileError> {
    compile(c).map_err(|reason| CompileError::new(ResourceType::Cluster, &c.name, reason))
}

// Deprecated fields still change behaviour when set, so they are checked.
#[allow(deprecated)]
fn compile(c: &Cluster) -> Result<ClusterSpec, Reason> {
    let unsupported = [
        (!c.health_checks.is_empty(), "health_checks"),
        (c.lb_subset_config.is_some(), "lb_subset_config"),
        (c.load_balancing_policy.is_some(), "load_balancing_policy"),
        (!c.filters.is_empty(), "filters"),
        (
            c.upstream_http_protocol_options.is_some(),
            "upstream_http_protocol_options",
        ),
        (
            c.max_requests_per_connection.is_some(),
            "max_requests_per_connection",
        ),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("{field} is not supported yet"));
    }
    #[allow(deprecated)]
    if c.http2_protocol_options.is_some() {
        return Err(
            "http2_protocol_options is deprecated; use typed_extension_protocol_options".into(),
        );
    }
    let discovery = match &c.cluster_discovery_type {
        None => static_endpoints(c)?,
        Some(cluster::ClusterDiscoveryType::Type(t)) => {
            match cluster::DiscoveryType::try_from(*t) {
                Ok(cluster::DiscoveryType::Static) => static_endpoints(c)?,
                Ok(cluster::DiscoveryType::OriginalDst) => original_destination(c)?,
                Ok(cluster::DiscoveryType::Eds) => {
                    let eds = c.eds_cluster_config.as_ref();
                    require_ads(
                        eds.and_then(|e| e.eds_config.as_ref()),
                        "eds_cluster_config.eds_config",
                    )?;
                    let service_name = eds
                        .map(|e| e.service_name.clone())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| c.name.clone());
                    Discovery::Eds { service_name }
                }
                Ok(cluster::DiscoveryType::StrictDns) => dns(c, false)?,
                Ok(cluster::DiscoveryType::LogicalDns) => dns(c, true)?,
                Err(_) => return Err(format!("type {t} is not a cluster discovery type")),
            }
        }
        Some(cluster::ClusterDiscoveryType::ClusterType(t)) => {
            return Err(format!("cluster_type {} is not supported yet", t.name));
        }
    };
    let (lb_policy, slow_start) = load_balancer::compile(c, &discovery)?;
    Ok(ClusterSpec {
        name: c.name.clone(),
        discovery,
        lb_policy,
        pool: pool_options(c)?,
        transport: tls::transport_sockets(
            c.transport_socket.as_ref(),
            &c.transport_socket_matches,
        )?,
        service: telemetry::cluster_service(c.metadata.as_ref())?,
        limits: circuit_limits(c.circuit_breakers.as_ref())?,
        outlier: c
            .outlier_detection
            .as_ref()
            .map(outlier_settings)
            .transpose()?,
        panic_threshold: panic_threshold(c.common_lb_config.as_ref())?,
        slow_start,
    })
}

/// How the cluster's endpoints connect: protocol, timeouts, keepalives, retirement.
fn pool_options(c: &Cluster) -> Result<PoolOptions, Reason> {
    let (protocol, options) = upstream_protocol(c)?;
    let mut pool = PoolOptions::new(
        protocol,
        c.connect_timeout
            .as_ref()
            .map_or(DEFAULT_CONNECT_TIMEOUT, duration),
    );
    if let Some(options) = options {
        if let Some(common) = &options.common_http_protocol_options {
            let field = "typed_extension_protocol_options.common_http_protocol_options";
            let unsupported = [
                (
                    common.max_connection_duration_jitter.is_some(),
                    "max_connection_duration_jitter",
                ),
                (common.max_headers_count.is_some(), "max_headers_count"),
                (
                    common.max_response_headers_kb.is_some(),
                    "max_response_headers_kb",
                ),
                (common.max_stream_duration.is_some(), "max_stream_duration"),
                (
                    common.headers_with_underscores_action != 0,
                    "headers_with_underscores_action",
                ),
            ];
            if let Some((_, name)) = unsupported.iter().find(|(set, _)| *set) {
                return Err(format!("{field}.{name} is not supported yet"));
            }
            // Envoy: zero turns the idle timeout off.
            if let Some(idle) = common.idle_timeout.as_ref().map(duration) {
                pool.idle_timeout = if idle.is_zero() { Duration::MAX } else { idle };
            }
            pool.max_requests_per_connection = common
                .max_requests_per_connection
                .map(|max| max.value)
                .filter(|max| *max > 0);
            pool.max_connection_duration = common
                .max_connection_duration
                .as_ref()
                .map(duration)
                .filter(|d| !d.is_zero());
        }
        pool.http2_keepalive = http2_keepalive(&options)?;
        if let Some(upstream) = &options.upstream_http_protocol_options {
            if !upstream.override_auto_sni_header.is_empty() {
                return Err(
                    "upstream_http_protocol_options.override_auto_sni_header is not supported yet"
                        .into(),
                );
            }
            pool.auto_sni = upstream.auto_sni;
            pool.auto_san_validation = upstream.auto_san_validation;
        }
    }
    if let Some(connection) = &c.upstream_connection_options {
        let field = "upstream_connection_options";
        if connection.set_local_interface_name_on_upstream_connections
            || connection.happy_eyeballs_config.is_some()
        {
            return Err(format!("{field}: only tcp_keepalive is supported"));
        }
        pool.tcp_keepalive = connection.tcp_keepalive.as_ref().map(|keepalive| {
            let seconds = |value: &envoy_types::pb::google::protobuf::UInt32Value| {
                Duration::from_secs(u64::from(value.value))
            };
            TcpKeepalive {
                probes: keepalive.keepalive_probes.map(|value| value.value),
                time: keepalive.keepalive_time.as_ref().map(seconds),
                interval: keepalive.keepalive_interval.as_ref().map(seconds),
            }
        });
    }
    Ok(pool)
}

/// HTTP/2 PINGs from `connection_keepalive` (Envoy's default timeout is 5 s when the
/// interval is set without one).
fn http2_keepalive(options: &HttpProtocolOptions) -> Result<Option<Http2Keepalive>, Reason> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    let Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) =
        &options.upstream_protocol_options
    else {
        return Ok(None);
    };
    let Some(ProtocolConfig::Http2ProtocolOptions(http2)) = &explicit.protocol_config else {
        return Ok(None);
    };
    let Some(keepalive) = &http2.connection_keepalive else {
        return Ok(None);
    };
    if keepalive.interval_jitter.is_some() || keepalive.connection_idle_interval.is_some() {
        return Err(
            "http2_protocol_options.connection_keepalive: only interval and timeout are supported"
                .into(),
        );
    }
    let interval = keepalive.interval.as_ref().map(duration);
    Ok(interval
        .filter(|d| !d.is_zero())
        .map(|interval| Http2Keepalive {
            interval,
            timeout: keepalive
                .timeout
                .as_ref()
                .map_or(Duration::from_secs(5), duration),
        }))
}

/// Envoy's consecutive-error outlier detection; the kinds it computes over time windows
/// (success rate, failure percentage) are refused unless turned off, as istiod does.
fn outlier_settings(
    outlier: &envoy_types::pb::envoy::config::cluster::v3::OutlierDetection,
) -> Result<OutlierSettings, Reason> {
    let field = "outlier_detection";
    let value = |v: Option<envoy_types::pb::google::protobuf::UInt32Value>, default: u32| {
        v.map_or(default, |v| v.value)
    };
    if value(outlier.enforcing_success_rate, 100) != 0 {
        return Err(format!(
            "{field}: success-rate ejection is not supported yet; set enforcing_success_rate to 0 (istiod does)"
        ));
    }
    if value(outlier.enforcing_failure_percentage, 0) != 0
        || value(outlier.enforcing_failure_percentage_local_origin, 0) != 0
    {
        return Err(format!(
            "{field}: failure-percentage ejection is not supported yet"
        ));
    }
    if outlier.split_external_local_origin_errors
        && value(outlier.enforcing_local_origin_success_rate, 100) != 0
    {
        return Err(format!(
            "{field}: local-origin success-rate ejection is not supported yet; set enforcing_local_origin_success_rate to 0 (istiod does)"
        ));
    }
    let unsupported = [
        (
            outlier.max_ejection_time_jitter.is_some(),
            "max_ejection_time_jitter",
        ),
        (!outlier.monitors.is_empty(), "monitors"),
        (
            outlier.detect_degraded_hosts.is_some_and(|v| v.value),
            "detect_degraded_hosts",
        ),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("{field}.{name} is not supported yet"));
    }
    let defaults = OutlierSettings::default();
    let time = |d: &Option<envoy_types::pb::google::protobuf::Duration>, default: Duration| {
        d.as_ref().map_or(default, duration)
    };
    let interval = time(&outlier.interval, defaults.interval);
    if interval.is_zero() {
        return Err(format!("{field}.interval must be greater than 0"));
    }
    Ok(OutlierSettings {
        consecutive_5xx: value(outlier.consecutive_5xx, defaults.consecutive_5xx),
        enforcing_5xx: value(outlier.enforcing_consecutive_5xx, defaults.enforcing_5xx),
        consecutive_gateway: value(
            outlier.consecutive_gateway_failure,
            defaults.consecutive_gateway,
        ),
        enforcing_gateway: value(
            outlier.enforcing_consecutive_gateway_failure,
            defaults.enforcing_gateway,
        ),
        split_local_origin: outlier.split_external_local_origin_errors,
        consecutive_local_origin: value(
            outlier.consecutive_local_origin_failure,
            defaults.consecutive_local_origin,
        ),
        enforcing_local_origin: value(
            outlier.enforcing_consecutive_local_origin_failure,
            defaults.enforcing_local_origin,
        ),
        interval,
        base_ejection_time: time(&outlier.base_ejection_time, defaults.base_ejection_time),
        max_ejection_time: time(&outlier.max_ejection_time, defaults.max_ejection_time),
        max_ejection_percent: value(outlier.max_ejection_percent, defaults.max_ejection_percent)
            .min(100),
        always_eject_one: outlier.always_eject_one_host.is_some_and(|v| v.value),
    })
}

/// `common_lb_config`: only the healthy panic threshold is taken.
fn panic_threshold(config: Option<&cluster::CommonLbConfig>) -> Result<u32, Reason> {
    let Some(config) = config else {
        return Ok(DEFAULT_PANIC_THRESHOLD);
    };
    let only_threshold = cluster::CommonLbConfig {
        healthy_panic_threshold: config.healthy_panic_threshold,
        ..Default::default()
    };
    if *config != only_threshold {
        return Err("common_lb_config: only healthy_panic_threshold is supported yet".into());
    }
    Ok(config
        .healthy_panic_threshold
        .map_or(DEFAULT_PANIC_THRESHOLD, |percent| {
            percent.value.clamp(0.0, 100.0) as u32
        }))
}

/// The DEFAULT priority's thresholds.
fn circuit_limits(
    breakers: Option<&envoy_types::pb::envoy::config::cluster::v3::CircuitBreakers>,
) -> Result<CircuitLimits, Reason> {
    use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
    let mut limits = CircuitLimits::default();
    let Some(breakers) = breakers else {
        return Ok(limits);
    };
    if !breakers.per_host_thresholds.is_empty() {
        return Err("circuit_breakers.per_host_thresholds is not supported yet".into());
    }
    for (index, thresholds) in breakers.thresholds.iter().enumerate() {
        let field = format!("circuit_breakers.thresholds[{index}]");
        match RoutingPriority::try_from(thresholds.priority) {
            Ok(RoutingPriority::Default) => {}
            // Nothing routes at high priority here.
            Ok(RoutingPriority::High) => continue,
            Err(_) => {
                return Err(format!(
                    "{field}.priority {} is unknown",
                    thresholds.priority
                ));
            }
        }
        if let Some(max) = thresholds.max_connections {
            limits.max_connections = max.value;
        }
        if let Some(max) = thresholds.max_pending_requests {
            limits.max_pending_requests = max.value;
        }
        if thresholds.retry_budget.is_some() {
            return Err(format!("{field}.retry_budget is not supported yet"));
        }
        if let Some(max) = thresholds.max_requests {
            limits.max_requests = max.value;
        }
        if let Some(max) = thresholds.max_retries {
            limits.max_retries = max.value;
        }
    }
    Ok(limits)
}

/// ORIGINAL_DST: with no redirected connections to read an original destination from,
/// the destination comes from a request header (`use_http_header`), the authority when
/// that header is `:authority` or `host`.
fn original_destination(c: &Cluster) -> Result<Discovery, Reason> {
    let Some(cluster::LbConfig::OriginalDstLbConfig(config)) = &c.lb_config else {
        return Err(
            "an ORIGINAL_DST cluster needs original_dst_lb_config.use_http_header here (there are no redirected connections to read an original destination from)"
                .into(),
        );
    };
    if !config.use_http_header {
        return Err(
            "original_dst_lb_config.use_http_header must be true here (there are no redirected connections to read an original destination from)"
                .into(),
        );
    }
    if config.upstream_port_override.is_some() || config.metadata_key.is_some() {
        return Err(
            "original_dst_lb_config: upstream_port_override and metadata_key are not supported yet"
                .into(),
        );
    }
    if c.lb_policy != cluster::LbPolicy::ClusterProvided as i32 {
        return Err("an ORIGINAL_DST cluster needs lb_policy CLUSTER_PROVIDED".into());
    }
    let header = match config.http_header_name.to_ascii_lowercase().as_str() {
        ":authority" | "host" => None,
        "" => Some(http::HeaderName::from_static("x-envoy-original-dst-host")),
        name => Some(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!("original_dst_lb_config.http_header_name `{name}` is not a header name")
        })?),
    };
    Ok(Discovery::OriginalDestination { header })
}

/// STRICT_DNS / LOGICAL_DNS: the names of `load_assignment`, resolved by the proxy.
// The cluster-level DNS fields are deprecated in Envoy but still what istiod sets.
#[allow(deprecated)]
fn dns(c: &Cluster, logical: bool) -> Result<Discovery, Reason> {
    if !c.dns_resolvers.is_empty() || c.dns_resolution_config.is_some() || c.use_tcp_for_dns_lookups
    {
        return Err(
            "dns_resolvers, dns_resolution_config and use_tcp_for_dns_lookups are not supported yet (the system's resolver is used)"
                .into(),
        );
    }
    if let Some(resolver) = &c.typed_dns_resolver_config {
        dns_resolver(resolver)?;
    }
    let assignment = c
        .load_assignment
        .as_ref()
        .ok_or("a DNS cluster needs load_assignment")?;
    let targets = each_endpoint(assignment)
        .map_err(|r| format!("load_assignment: {r}"))?
        .into_iter()
        .map(|(_, name, endpoint)| DnsTarget {
            name: name.to_owned(),
            endpoint,
        })
        .collect::<Vec<_>>();
    if logical && targets.len() != 1 {
        return Err(format!(
            "a LOGICAL_DNS cluster needs exactly one endpoint, not {}",
            targets.len()
        ));
    }
    let family = match cluster::DnsLookupFamily::try_from(c.dns_lookup_family) {
        Ok(cluster::DnsLookupFamily::Auto) => LookupFamily::V6Preferred,
        Ok(cluster::DnsLookupFamily::V4Only) => LookupFamily::V4Only,
        Ok(cluster::DnsLookupFamily::V6Only) => LookupFamily::V6Only,
        Ok(cluster::DnsLookupFamily::V4Preferred) => LookupFamily::V4Preferred,
        Ok(cluster::DnsLookupFamily::All) => LookupFamily::All,
        Err(_) => {
            return Err(format!(
                "dns_lookup_family {} is unknown",
                c.dns_lookup_family
            ));
        }
    };
    let refresh = c
        .dns_refresh_rate
        .as_ref()
        .map_or(DEFAULT_REFRESH_RATE, duration);
    if refresh < Duration::from_millis(1) {
        return Err("dns_refresh_rate must be at least 1ms".into());
    }
    let failure_refresh = c
        .dns_failure_refresh_rate
        .as_ref()
        .and_then(|rate| rate.base_interval.as_ref())
        .map_or(refresh, duration);
    Ok(Discovery::Dns(DnsDiscovery {
        logical,
        targets,
        family,
        refresh,
        failure_refresh: failure_refresh.max(Duration::from_millis(1)),
        jitter: c.dns_jitter.as_ref().map_or(Duration::ZERO, duration),
        respect_ttl: c.respect_dns_ttl,
    }))
}

/// The resolver a DNS cluster names: the system's, as c-ares or getaddrinfo would read
/// it (istiod names c-ares, tuning only how many queries share a socket).
fn dns_resolver(resolver: &TypedExtensionConfig) -> Result<(), Reason> {
    let field = "typed_dns_resolver_config";
    let Some(any) = &resolver.typed_config else {
        return Err(format!("{field} needs typed_config"));
    };
    match any.type_url.rsplit('/').next().unwrap_or_default() {
        CARES => {
            let config: CaresDnsResolverConfig = decode_any(any, &type_url_of(CARES))?;
            if !config.resolvers.is_empty() || config.dns_resolver_options.is_some() {
                return Err(format!(
                    "{field}: resolvers and dns_resolver_options are not supported yet (the system's resolver is used)"
                ));
            }
            Ok(())
        }
        GETADDRINFO => Ok(()),
        other => Err(format!("{field} {other} is not supported yet")),
    }
}

fn static_endpoints(c: &Cluster) -> Result<Discovery, Reason> {
    let assignment = c
        .load_assignment
        .as_ref()
        .ok_or("a STATIC cluster needs load_assignment")?;
    Ok(Discovery::Static(
        endpoints(assignment).map_err(|r| format!("load_assignment: {r}"))?,
    ))
}

/// The upstream protocol, and the cluster's HttpProtocolOptions when it has them.
fn upstream_protocol(
    c: &Cluster,
) -> Result<(UpstreamProtocol, Option<HttpProtocolOptions>), Reason> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    for key in c.typed_extension_protocol_options.keys() {
        if key != HTTP_PROTOCOL_OPTIONS {
            return Err(format!(
                "typed_extension_protocol_options[{key}] is not supported yet"
            ));
        }
    }
    let Some(any) = c
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
    else {
        return Ok((UpstreamProtocol::Http1, None));
    };
    let field = format!("typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS}]");
    let options: HttpProtocolOptions = decode_any(any, &type_url_of(HTTP_PROTOCOL_OPTIONS))?;
    if !options.http_filters.is_empty() || options.header_validation_config.is_some() {
        return Err(format!(
            "{field}: upstream http_filters / header validation are not supported yet"
        ));
    }
    let protocol = match &options.upstream_protocol_options {
        None => UpstreamProtocol::Http1,
        Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
            match explicit.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(_)) => UpstreamProtocol::Http2,
                Some(ProtocolConfig::HttpProtocolOptions(_)) | None => UpstreamProtocol::Http1,
                Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                    return Err(format!("{field}: HTTP/3 is not supported"));
                }
            }
        }
        Some(_) => {
            return Err(format!(
                "{field}: only explicit_http_config is supported (use_downstream_protocol_config / auto_config are not yet)"
            ));
        }
    };
    Ok((protocol, Some(options)))
}

pub fn compile_endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointSpec>, CompileError> {
    endpoints(cla)
        .map_err(|reason| CompileError::new(ResourceType::Endpoints, &cla.cluster_name, reason))
}

fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointSpec>, Reason> {
    each_endpoint(cla)?
        .into_iter()
        .map(|(field, host, endpoint)| {
            let ip: std::net::IpAddr = host
                .parse()
                .map_err(|_| format!("{field}.address {host:?} is not an IP address"))?;
            Ok(EndpointSpec {
                address: SocketAddr::new(ip, endpoint.address.port()),
                ..endpoint
            })
        })
        .collect()
}

/// Each endpoint of an assignment: the field it is in, its host as written (an IP, or a
/// name for DNS clusters) and its settings, with the port on an unspecified address.
fn each_endpoint(cla: &ClusterLoadAssignment) -> Result<Vec<(String, &str, EndpointSpec)>, Reason> {
    let mut out = Vec::new();
    for (l, locality) in cla.endpoints.iter().enumerate() {
        if locality.priority != 0 {
            return Err(format!(
                "endpoints[{l}].priority {} is not supported yet",
                locality.priority
            ));
        }
        for (i, lb) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("endpoints[{l}].lb_endpoints[{i}]");
            let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else {
                return Err(format!("{field} must be an endpoint with an address"));
            };
            let address_field = format!("{field}.endpoint.address");
            let (host, port) = socket_host(endpoint.address.as_ref(), &address_field)?;
            let health = HealthStatus::try_from(lb.health_status).unwrap_or(HealthStatus::Unknown);
            let socket_match = tls::endpoint_socket_match(lb.metadata.as_ref())
                .map_err(|r| format!("{field}.{r}"))?;
            let workload = telemetry::endpoint_workload(lb.metadata.as_ref())
                .map_err(|r| format!("{field}.{r}"))?;
            let endpoint = EndpointSpec {
                address: SocketAddr::from(([0, 0, 0, 0], port)),
                weight: lb
                    .load_balancing_weight
                    .as_ref()
                    .map_or(1, |w| w.value.max(1)),
                healthy: matches!(
                    health,
                    HealthStatus::Unknown | HealthStatus::Healthy | HealthStatus::Degraded
                ),
                health: health.as_str_name().to_owned(),
                socket_match,
                workload,
            };
            out.push((address_field, host, endpoint));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};

    use super::*;

    fn dns_cluster(kind: cluster::DiscoveryType, hosts: &[&str]) -> Cluster {
        let lb_endpoints = hosts
            .iter()
            .map(|host| LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: (*host).to_owned(),
                            port_specifier: Some(
                                envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(80),
                            ),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect();
        Cluster {
            name: "dns".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
            load_assignment: Some(ClusterLoadAssignment {
                cluster_name: "dns".into(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn dns_clusters_keep_their_names_and_envoys_rules() {
        let spec = compile(&dns_cluster(
            cluster::DiscoveryType::StrictDns,
            &["a.example", "192.0.2.1"],
        ))
        .expect("compiles");
        let Discovery::Dns(dns) = spec.discovery else {
            panic!("a DNS cluster");
        };
        let names: Vec<&str> = dns.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.example", "192.0.2.1"]);
        assert_eq!(dns.targets[0].endpoint.address.port(), 80);
        assert_eq!(dns.refresh, DEFAULT_REFRESH_RATE);
        assert_eq!(dns.family, LookupFamily::V6Preferred, "Envoy's AUTO");

        let two = compile(&dns_cluster(
            cluster::DiscoveryType::LogicalDns,
            &["a.example", "b.example"],
        ))
        .unwrap_err();
        assert!(two.contains("exactly one endpoint"), "{two}");

        // A name is refused where only addresses can be (STATIC).
        let named =
            compile(&dns_cluster(cluster::DiscoveryType::Static, &["a.example"])).unwrap_err();
        assert!(named.contains("is not an IP address"), "{named}");
    }
}
