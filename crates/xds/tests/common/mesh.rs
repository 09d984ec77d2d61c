//! Valid Envoy resources built by hand, and a generator whose output varies by proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bosun_xds::{Generator, ProxyNode, ResourceSet};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
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

/// An HTTP listener on `addr` whose routes come over ADS as `route_name`.
pub fn http_listener(name: &str, addr: SocketAddr, route_name: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_name.to_string(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        address: Some(socket(addr)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A route configuration sending everything to `cluster`.
pub fn route_to(name: &str, cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.to_string(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A cluster whose endpoints come over ADS under its own name.
pub fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

pub fn endpoints(cluster: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addrs
                .iter()
                .map(|addr| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(*addr)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A small mesh: clusters `a` and `b` (plus `c` when present) with their endpoints, the
/// route `outbound` to `route_target`, and per proxy a listener named after its workload
/// (plus `inbound|9080` for proxies labelled `app=reviews`).
#[derive(Debug, Clone)]
pub struct TestMesh {
    pub route_target: String,
    pub endpoints: BTreeMap<String, Vec<SocketAddr>>,
    pub connect_timeout_secs: i64,
}

impl TestMesh {
    pub fn new() -> Self {
        let mut endpoints = BTreeMap::new();
        endpoints.insert("a".to_string(), vec!["127.0.0.1:1001".parse().unwrap()]);
        endpoints.insert("b".to_string(), vec!["127.0.0.1:1002".parse().unwrap()]);
        Self {
            route_target: "a".into(),
            endpoints,
            connect_timeout_secs: 1,
        }
    }

    pub fn with_endpoints(mut self, cluster: &str, addrs: &[&str]) -> Self {
        self.endpoints.insert(
            cluster.to_string(),
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
        );
        self
    }

    pub fn without_cluster(mut self, cluster: &str) -> Self {
        self.endpoints.remove(cluster);
        self
    }

    /// Changes every cluster, but none of their endpoints.
    pub fn with_connect_timeout(mut self, secs: i64) -> Self {
        self.connect_timeout_secs = secs;
        self
    }

    pub fn routing_to(mut self, cluster: &str) -> Self {
        self.route_target = cluster.to_string();
        self
    }
}

impl Generator for TestMesh {
    fn generate(&self, node: &ProxyNode) -> ResourceSet {
        let mut listeners = vec![http_listener(
            &format!("outbound-{}", node.workload_name),
            "127.0.0.1:15001".parse().unwrap(),
            "outbound",
        )];
        if node.labels.get("app").map(String::as_str) == Some("reviews") {
            listeners.push(http_listener(
                "inbound|9080",
                "127.0.0.1:9080".parse().unwrap(),
                "inbound|9080",
            ));
        }
        ResourceSet {
            listeners,
            routes: vec![
                route_to("outbound", &self.route_target),
                route_to("inbound|9080", "a"),
            ],
            clusters: self
                .endpoints
                .keys()
                .map(|name| {
                    let mut cluster = eds_cluster(name);
                    if let Some(timeout) = cluster.connect_timeout.as_mut() {
                        timeout.seconds = self.connect_timeout_secs;
                    }
                    cluster
                })
                .collect(),
            endpoints: self
                .endpoints
                .iter()
                .map(|(name, addrs)| endpoints(name, addrs))
                .collect(),
        }
    }
}
