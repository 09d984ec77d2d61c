//! Hand-built xDS resources, shaped like the control plane's.

use std::collections::HashMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Http2ProtocolOptions, SocketAddress, address,
    config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher, route, route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use prost::{Message, Name};

pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn named<M: Message + Name>(name: &str, m: &M) -> (String, Any) {
    (name.to_owned(), any(m))
}

fn socket(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

pub fn http_filter(name: &str, typed: Option<Any>) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: typed.map(http_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

pub fn router() -> HttpFilter {
    http_filter("envoy.filters.http.router", Some(any(&Router::default())))
}

fn listener(
    name: &str,
    addr: SocketAddr,
    routes: http_connection_manager::RouteSpecifier,
    filters: Vec<HttpFilter>,
) -> (String, Any) {
    listener_with(name, addr, routes, filters, |_| {})
}

fn listener_with(
    name: &str,
    addr: SocketAddr,
    routes: http_connection_manager::RouteSpecifier,
    filters: Vec<HttpFilter>,
    edit: impl FnOnce(&mut HttpConnectionManager),
) -> (String, Any) {
    let mut hcm = HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: name.to_owned(),
        route_specifier: Some(routes),
        http_filters: filters,
        ..Default::default()
    };
    edit(&mut hcm);
    named(
        name,
        &Listener {
            name: name.to_owned(),
            address: Some(socket(addr)),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".to_owned(),
                    config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

/// A listener with inline routes whose connection manager `edit` changes.
#[allow(dead_code)]
pub fn inline_listener_with(
    name: &str,
    addr: SocketAddr,
    routes: RouteConfiguration,
    edit: impl FnOnce(&mut HttpConnectionManager),
) -> (String, Any) {
    listener_with(
        name,
        addr,
        http_connection_manager::RouteSpecifier::RouteConfig(routes),
        vec![router()],
        edit,
    )
}

/// A listener whose routes come over ADS (RDS).
pub fn rds_listener(name: &str, addr: SocketAddr, route_name: &str) -> (String, Any) {
    rds_listener_with_filters(name, addr, route_name, vec![router()])
}

pub fn rds_listener_with_filters(
    name: &str,
    addr: SocketAddr,
    route_name: &str,
    filters: Vec<HttpFilter>,
) -> (String, Any) {
    let rds = http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads()),
        route_config_name: route_name.to_owned(),
    });
    listener(name, addr, rds, filters)
}

/// A listener with an inline route configuration.
pub fn inline_listener(name: &str, addr: SocketAddr, routes: RouteConfiguration) -> (String, Any) {
    listener(
        name,
        addr,
        http_connection_manager::RouteSpecifier::RouteConfig(routes),
        vec![router()],
    )
}

pub fn route_config(name: &str, vhosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vhosts,
        ..Default::default()
    }
}

pub fn route_resource(config: &RouteConfiguration) -> (String, Any) {
    named(&config.name, config)
}

pub fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        routes,
        ..Default::default()
    }
}

fn action(cluster_specifier: route_action::ClusterSpecifier) -> Option<route::Action> {
    Some(route::Action::Route(RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..Default::default()
    }))
}

pub fn prefix_route(prefix: &str, cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_owned())),
            ..Default::default()
        }),
        action: action(route_action::ClusterSpecifier::Cluster(cluster.to_owned())),
        ..Default::default()
    }
}

pub fn path_route(path: &str, cluster: &str) -> Route {
    let mut r = prefix_route("/", cluster);
    if let Some(m) = r.r#match.as_mut() {
        m.path_specifier = Some(route_match::PathSpecifier::Path(path.to_owned()));
    }
    r
}

pub fn header_route(header: &str, value: &str, cluster: &str) -> Route {
    let mut r = prefix_route("/", cluster);
    if let Some(m) = r.r#match.as_mut() {
        m.headers.push(HeaderMatcher {
            name: header.to_owned(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_owned())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
    }
    r
}

pub fn weighted_route(prefix: &str, clusters: &[(&str, u32)]) -> Route {
    let mut r = prefix_route(prefix, "unused");
    r.action = action(route_action::ClusterSpecifier::WeightedClusters(
        WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| weighted_cluster::ClusterWeight {
                    name: (*name).to_owned(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    ));
    r
}

fn protocol_options(h2: bool) -> HashMap<String, Any> {
    let mut options = HashMap::new();
    if h2 {
        let http2 = HttpProtocolOptions {
            upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            )),
            ..Default::default()
        };
        options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            any(&http2),
        );
    }
    options
}

pub fn eds_cluster(name: &str, lb: cluster::LbPolicy, h2: bool) -> (String, Any) {
    named(
        name,
        &Cluster {
            name: name.to_owned(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: name.to_owned(),
            }),
            lb_policy: lb as i32,
            connect_timeout: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
            typed_extension_protocol_options: protocol_options(h2),
            ..Default::default()
        },
    )
}

pub fn static_cluster(name: &str, endpoints: &[SocketAddr], h2: bool) -> (String, Any) {
    static_cluster_with(name, endpoints, h2, |_| {})
}

/// A static cluster that `edit` changes before it is sent.
pub fn static_cluster_with(
    name: &str,
    endpoints: &[SocketAddr],
    h2: bool,
    edit: impl FnOnce(&mut Cluster),
) -> (String, Any) {
    let mut cluster = Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(assignment(
            name,
            &endpoints.iter().map(|a| (*a, 1)).collect::<Vec<_>>(),
        )),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        typed_extension_protocol_options: protocol_options(h2),
        ..Default::default()
    };
    edit(&mut cluster);
    named(name, &cluster)
}

fn assignment(name: &str, endpoints: &[(SocketAddr, u32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|(addr, weight)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(*addr)),
                        ..Default::default()
                    })),
                    load_balancing_weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn endpoints(name: &str, endpoints: &[SocketAddr]) -> (String, Any) {
    named(
        name,
        &assignment(name, &endpoints.iter().map(|a| (*a, 1)).collect::<Vec<_>>()),
    )
}
