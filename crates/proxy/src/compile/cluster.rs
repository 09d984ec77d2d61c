//! Cluster → [`ClusterSpec`], ClusterLoadAssignment → endpoint list.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};

use super::{
    CompileError, Reason, decode_any, duration, require_ads, socket_addr, telemetry, tls,
    type_url_of,
};
use crate::resource::ResourceType;
use crate::upstream::{
    CircuitLimits, ClusterSpec, Discovery, EndpointSpec, LbPolicy, UpstreamProtocol,
};

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
        (c.outlier_detection.is_some(), "outlier_detection"),
        (c.lb_subset_config.is_some(), "lb_subset_config"),
        (c.load_balancing_policy.is_some(), "load_balancing_policy"),
        (c.lb_config.is_some(), "lb_config"),
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
                _ => {
                    return Err(format!(
                        "type {t} is not supported yet (STATIC and EDS are)"
                    ));
                }
            }
        }
        Some(cluster::ClusterDiscoveryType::ClusterType(t)) => {
            return Err(format!("cluster_type {} is not supported yet", t.name));
        }
    };
    let lb_policy = match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
        Ok(cluster::LbPolicy::Random) => LbPolicy::Random,
        Ok(other) => {
            return Err(format!(
                "lb_policy {} is not supported yet",
                other.as_str_name()
            ));
        }
        Err(_) => return Err(format!("lb_policy {} is unknown", c.lb_policy)),
    };
    Ok(ClusterSpec {
        name: c.name.clone(),
        discovery,
        lb_policy,
        protocol: upstream_protocol(c)?,
        transport: tls::transport_sockets(
            c.transport_socket.as_ref(),
            &c.transport_socket_matches,
        )?,
        connect_timeout: c
            .connect_timeout
            .as_ref()
            .map_or(DEFAULT_CONNECT_TIMEOUT, duration),
        service: telemetry::cluster_service(c.metadata.as_ref())?,
        limits: circuit_limits(c.circuit_breakers.as_ref())?,
    })
}

/// The DEFAULT priority's thresholds. Connection and pending-request limits need a pool
/// that queues, which the proxy does not have yet: only "unlimited" (istiod's default) is
/// taken for them.
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
        for (value, name) in [
            (thresholds.max_connections, "max_connections"),
            (thresholds.max_pending_requests, "max_pending_requests"),
        ] {
            if let Some(value) = value
                && value.value != u32::MAX
            {
                return Err(format!(
                    "{field}.{name} {} is not supported yet (only {} is)",
                    value.value,
                    u32::MAX
                ));
            }
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

fn static_endpoints(c: &Cluster) -> Result<Discovery, Reason> {
    let assignment = c
        .load_assignment
        .as_ref()
        .ok_or("a STATIC cluster needs load_assignment")?;
    Ok(Discovery::Static(
        endpoints(assignment).map_err(|r| format!("load_assignment: {r}"))?,
    ))
}

fn upstream_protocol(c: &Cluster) -> Result<UpstreamProtocol, Reason> {
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
        return Ok(UpstreamProtocol::Http1);
    };
    let field = format!("typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS}]");
    let options: HttpProtocolOptions = decode_any(any, &type_url_of(HTTP_PROTOCOL_OPTIONS))?;
    if !options.http_filters.is_empty() || options.header_validation_config.is_some() {
        return Err(format!(
            "{field}: upstream http_filters / header validation are not supported yet"
        ));
    }
    match &options.upstream_protocol_options {
        None => Ok(UpstreamProtocol::Http1),
        Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
            match explicit.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(_)) => Ok(UpstreamProtocol::Http2),
                Some(ProtocolConfig::HttpProtocolOptions(_)) | None => Ok(UpstreamProtocol::Http1),
                Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                    Err(format!("{field}: HTTP/3 is not supported"))
                }
            }
        }
        Some(_) => Err(format!(
            "{field}: only explicit_http_config is supported (use_downstream_protocol_config / auto_config are not yet)"
        )),
    }
}

pub fn compile_endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointSpec>, CompileError> {
    endpoints(cla)
        .map_err(|reason| CompileError::new(ResourceType::Endpoints, &cla.cluster_name, reason))
}

fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointSpec>, Reason> {
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
            let address = socket_addr(
                endpoint.address.as_ref(),
                &format!("{field}.endpoint.address"),
            )?;
            let health = HealthStatus::try_from(lb.health_status).unwrap_or(HealthStatus::Unknown);
            let socket_match = tls::endpoint_socket_match(lb.metadata.as_ref())
                .map_err(|r| format!("{field}.{r}"))?;
            let workload = telemetry::endpoint_workload(lb.metadata.as_ref())
                .map_err(|r| format!("{field}.{r}"))?;
            out.push(EndpointSpec {
                address,
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
            });
        }
    }
    Ok(out)
}
