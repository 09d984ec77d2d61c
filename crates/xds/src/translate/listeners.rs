//! Listeners: the outbound HTTP proxy port and one inbound listener per workload port.

use std::net::{IpAddr, Ipv4Addr};

use bosun_model::{
    MtlsMode, PathNormalization, Protocol, Service, ServicePort, Snapshot, service::selects,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http1ProtocolOptions, SocketAddress,
    TrafficDirection, address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use http_connection_manager::{ForwardClientCertDetails, SetCurrentClientCertDetails};

use bosun_wire::http_filters;

use super::DEFAULT_APP_PORT_OFFSET;
use super::clusters::{protocol_options, static_cluster, telemetry_metadata};
use super::connect;
use super::names::{OUTBOUND_ROUTE_CONFIG, VIRTUAL_OUTBOUND_LISTENER, inbound_cluster_name};
use super::resilience::NO_TIMEOUT;
use super::tls;
use super::traffic_policy;
use super::{authentication, authorization, ext_authz};
use crate::ProxyNode;

const HCM_FILTER: &str = bosun_wire::network_filters::HTTP_CONNECTION_MANAGER;

/// The proxy's own address: its workload IP, or loopback when it did not say.
pub(super) fn proxy_ip(node: &ProxyNode) -> IpAddr {
    node.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The outbound HTTP proxy listener the app sends its requests to.
pub(super) fn virtual_outbound(snapshot: &Snapshot, node: &ProxyNode) -> Listener {
    let hcm = http_connection_manager(
        "outbound_0.0.0.0_15001",
        http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: OUTBOUND_ROUTE_CONFIG.to_string(),
        }),
        Vec::new(),
        snapshot.mesh().path_normalization,
    );
    Listener {
        traffic_direction: TrafficDirection::Outbound as i32,
        ..listener(
            VIRTUAL_OUTBOUND_LISTENER.to_string(),
            proxy_ip(node),
            node.outbound_port,
            hcm,
        )
    }
}

/// One inbound port: its listener and the cluster that reaches the local app.
pub(super) struct InboundPort {
    pub listener: Listener,
    pub cluster: Cluster,
}

/// The inbound listeners of the proxy's workload: one per WorkloadEntry port (or per
/// app port the proxy declared, when the snapshot does not know its workload).
pub(super) fn inbound(snapshot: &Snapshot, node: &ProxyNode) -> Vec<InboundPort> {
    let ip = proxy_ip(node);
    let workload = snapshot.workload(&node.namespace, &node.workload_name);
    let policies = snapshot.authorization_policies(&node.namespace, &node.labels);
    let jwt_rules = snapshot.jwt_rules(&node.namespace, &node.labels);
    // istiod's inbound order: CUSTOM authorization, authentication, then authorization.
    let security_filters: Vec<HttpFilter> = ext_authz::http_filters(snapshot, &policies)
        .into_iter()
        .chain(authentication::http_filter(
            &jwt_rules,
            snapshot.request_authentications(),
        ))
        .chain(authorization::http_filters(&policies))
        .collect();
    let ports: Vec<(Option<&str>, u16)> = match workload {
        Some(workload) => workload
            .ports
            .iter()
            .map(|(name, port)| (Some(name.as_str()), *port))
            .collect(),
        None => node.app_ports.keys().map(|port| (None, *port)).collect(),
    };
    ports
        .into_iter()
        .map(|(port_name, port)| {
            let app_port = node
                .app_ports
                .get(&port)
                .copied()
                .unwrap_or_else(|| port.saturating_add(DEFAULT_APP_PORT_OFFSET));
            let services = inbound_services(snapshot, node, port_name, port);
            let protocol = services
                .first()
                .map_or(Protocol::Http, |(_, service_port)| service_port.protocol);
            let cluster_name = inbound_cluster_name(port);
            let route_config = RouteConfiguration {
                name: cluster_name.clone(),
                virtual_hosts: vec![VirtualHost {
                    name: format!("inbound|http|{port}"),
                    domains: vec!["*".to_string()],
                    routes: vec![Route {
                        name: "default".to_string(),
                        r#match: Some(RouteMatch {
                            path_specifier: Some(route_match::PathSpecifier::Prefix(
                                "/".to_string(),
                            )),
                            ..Default::default()
                        }),
                        action: Some(route::Action::Route(RouteAction {
                            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                                cluster_name.clone(),
                            )),
                            // istiod: the caller's sidecar owns the deadline.
                            timeout: Some(NO_TIMEOUT),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let stat_prefix = format!("inbound_0.0.0.0_{port}");
            let plaintext = http_connection_manager(
                &stat_prefix,
                http_connection_manager::RouteSpecifier::RouteConfig(route_config),
                security_filters.clone(),
                snapshot.mesh().path_normalization,
            );
            let mut cluster = Cluster {
                metadata: Some(telemetry_metadata(
                    &services
                        .iter()
                        .map(|(service, _)| *service)
                        .collect::<Vec<_>>(),
                )),
                ..static_cluster(&cluster_name, ip, app_port, protocol)
            };
            // istiod applies the service's connection pool to the inbound cluster too
            // (not its load balancer, outlier detection or TLS, nor an h2 upgrade).
            if let Some(pool) = services.first().and_then(|(service, service_port)| {
                snapshot
                    .traffic_policy(&service.hostname, service_port.number, None)
                    .connection_pool
            }) {
                let mut options = traffic_policy::apply_connection_pool(
                    &mut cluster,
                    Some(&pool),
                    protocol,
                    snapshot.mesh().connect_timeout,
                );
                options.http2 = protocol == Protocol::Http2;
                cluster.typed_extension_protocol_options = protocol_options(options);
            }
            let name = format!("inbound|{port}");
            let mode = snapshot.mtls_mode(&node.namespace, &node.labels, port);
            let listener = if protocol.is_tunnelled() {
                let mut filters = ext_authz::network_filters(snapshot, &policies);
                filters.extend(authorization::network_filters(&policies));
                filters.push(connect::tcp_proxy_filter(&stat_prefix, &cluster_name));
                inbound_listener(name, ip, port, mode, filters.clone(), filters)
            } else {
                let mtls = with_client_cert_details(plaintext.clone());
                inbound_listener(
                    name,
                    ip,
                    port,
                    mode,
                    vec![hcm_filter(mtls)],
                    vec![hcm_filter(plaintext)],
                )
            };
            InboundPort { listener, cluster }
        })
        .collect()
}

/// The services that reach a workload port, with the service port that targets it: the
/// first decides the port's protocol, and all of them label its metrics.
fn inbound_services<'a>(
    snapshot: &'a Snapshot,
    node: &ProxyNode,
    port_name: Option<&str>,
    port: u16,
) -> Vec<(&'a Service, &'a ServicePort)> {
    snapshot
        .services()
        .filter(|service| service.namespace == node.namespace)
        .filter(|service| {
            service
                .workload_selector
                .as_ref()
                .is_some_and(|selector| selects(selector, &node.labels))
        })
        .filter_map(|service| {
            let service_port = service.ports.iter().find(|service_port| {
                port_name == Some(service_port.name.as_str())
                    || service_port.target_port == Some(port)
                    || service_port.number == port
            })?;
            Some((service.as_ref(), service_port))
        })
        .collect()
}

fn ads_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// A connection manager with istiod's filters: the inbound side's authorization first
/// (`authorization` is empty outbound), then fault and CORS, then the router.
fn http_connection_manager(
    stat_prefix: &str,
    routes: http_connection_manager::RouteSpecifier,
    authorization: Vec<HttpFilter>,
    paths: PathNormalization,
) -> HttpConnectionManager {
    use http_connection_manager::PathWithEscapedSlashesAction as EscapedSlashes;
    // istiod's settings per meshConfig.pathNormalization.
    let (normalize, merge_slashes, escaped_slashes) = match paths {
        PathNormalization::None => (false, false, EscapedSlashes::KeepUnchanged),
        PathNormalization::Base => (true, false, EscapedSlashes::KeepUnchanged),
        PathNormalization::MergeSlashes => (true, true, EscapedSlashes::KeepUnchanged),
        PathNormalization::DecodeAndMergeSlashes => {
            (true, true, EscapedSlashes::UnescapeAndForward)
        }
    };
    HttpConnectionManager {
        normalize_path: Some(BoolValue { value: normalize }),
        merge_slashes,
        path_with_escaped_slashes_action: escaped_slashes as i32,
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(routes),
        // Apps reach the outbound port as their HTTP_PROXY: absolute-form requests.
        http_protocol_options: Some(Http1ProtocolOptions {
            allow_absolute_url: Some(BoolValue { value: true }),
            ..Default::default()
        }),
        // istiod's order: the fault and CORS filters (configured per route), the router.
        http_filters: authorization
            .into_iter()
            .chain([
                HttpFilter {
                    name: http_filters::FAULT.to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                        HttpFault::default(),
                    ))),
                    ..Default::default()
                },
                HttpFilter {
                    name: http_filters::CORS.to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                        Cors::default(),
                    ))),
                    ..Default::default()
                },
                HttpFilter {
                    name: http_filters::ROUTER.to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                        Router::default(),
                    ))),
                    ..Default::default()
                },
            ])
            .collect(),
        // istiod lets WebSocket upgrades through every HTTP connection manager.
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: bosun_wire::upgrades::WEBSOCKET.to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn listener(name: String, ip: IpAddr, port: u16, hcm: HttpConnectionManager) -> Listener {
    Listener {
        name,
        address: Some(socket_address(ip, port)),
        filter_chains: vec![FilterChain {
            filters: vec![hcm_filter(hcm)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Behind mTLS the app is told who called in `x-forwarded-client-cert`, as Istio does.
fn with_client_cert_details(plaintext: HttpConnectionManager) -> HttpConnectionManager {
    HttpConnectionManager {
        forward_client_cert_details: ForwardClientCertDetails::AppendForward as i32,
        set_current_client_cert_details: Some(SetCurrentClientCertDetails {
            subject: Some(BoolValue { value: true }),
            uri: true,
            dns: true,
            ..Default::default()
        }),
        ..plaintext
    }
}

/// An inbound port under its PeerAuthentication mode: mutual TLS from other sidecars
/// (STRICT), plaintext (DISABLE), or both told apart by the TLS inspector (PERMISSIVE,
/// Istio's default), each chain with its network filters. A connection no chain takes
/// is closed.
fn inbound_listener(
    name: String,
    ip: IpAddr,
    port: u16,
    mode: MtlsMode,
    mtls: Vec<Filter>,
    plaintext: Vec<Filter>,
) -> Listener {
    let mtls_chain = FilterChain {
        name: "inbound-mtls".to_string(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "tls".to_string(),
            ..Default::default()
        }),
        transport_socket: Some(tls::downstream_mtls()),
        filters: mtls,
        ..Default::default()
    };
    let plaintext_chain = FilterChain {
        name: "inbound-plaintext".to_string(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "raw_buffer".to_string(),
            ..Default::default()
        }),
        filters: plaintext,
        ..Default::default()
    };
    let filter_chains = match mode {
        MtlsMode::Strict => vec![mtls_chain],
        MtlsMode::Disable => vec![plaintext_chain],
        MtlsMode::Permissive => vec![mtls_chain, plaintext_chain],
    };
    Listener {
        name,
        traffic_direction: TrafficDirection::Inbound as i32,
        address: Some(socket_address(ip, port)),
        listener_filters: vec![tls::tls_inspector()],
        filter_chains,
        ..Default::default()
    }
}

fn socket_address(ip: IpAddr, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn hcm_filter(hcm: HttpConnectionManager) -> Filter {
    Filter {
        name: HCM_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}
