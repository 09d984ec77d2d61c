//! TCP services on one machine. No connection is redirected to the sidecar, so an app
//! reaches a TCP service by asking its sidecar's outbound HTTP port for a tunnel:
//! `CONNECT db:27017` (what `curl --proxytunnel`, `nc -X connect` or an `HTTPS_PROXY`
//! client sends). The virtual host of a TCP service port has one route, matching
//! CONNECT, which terminates the tunnel and proxies its bytes to the destinations of the
//! VirtualService's `tcp` rule for the port (or to the service itself). Inbound, the
//! listener of a TCP port proxies bytes to the app with `tcp_proxy` rather than an HTTP
//! connection manager, behind mutual TLS or not.

use bosun_model::{RouteDestination, Service, ServicePort, Snapshot};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteMatch, VirtualHost, WeightedCluster, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;

use super::caller::{Caller, domains};
use super::destinations::destination_cluster;
use super::resilience::NO_TIMEOUT;

use bosun_wire::network_filters::TCP_PROXY;
use bosun_wire::upgrades::CONNECT;

/// The virtual host of a TCP service port: CONNECT to `host:port` (or a short name).
pub(super) fn virtual_host(
    snapshot: &Snapshot,
    service: &Service,
    port: &ServicePort,
    caller: Caller<'_>,
) -> VirtualHost {
    let destinations = destinations(snapshot, service, port, caller);
    VirtualHost {
        name: format!("{}:{}", service.hostname, port.number),
        domains: domains(service, port.number, false, caller.namespace),
        routes: vec![Route {
            name: "tcp".to_string(),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::ConnectMatcher(
                    route_match::ConnectMatcher {},
                )),
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(cluster_specifier(snapshot, &destinations, port.number)),
                timeout: Some(NO_TIMEOUT),
                upgrade_configs: vec![route_action::UpgradeConfig {
                    upgrade_type: CONNECT.to_string(),
                    connect_config: Some(route_action::upgrade_config::ConnectConfig::default()),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Where connections to the port go: the first `tcp` rule that takes them, else the
/// service's own cluster.
fn destinations(
    snapshot: &Snapshot,
    service: &Service,
    port: &ServicePort,
    caller: Caller<'_>,
) -> Vec<RouteDestination> {
    let rule = snapshot.routes_for(&service.hostname).and_then(|routes| {
        routes
            .tcp
            .iter()
            .find(|rule| rule.takes(port.number, |source| caller.admits(source)))
    });
    match rule {
        Some(rule) if !rule.destinations.is_empty() => rule.destinations.clone(),
        _ => vec![RouteDestination {
            host: service.hostname.clone(),
            subset: None,
            port: Some(port.number),
            weight: 100,
            headers: Default::default(),
        }],
    }
}

/// One destination's cluster, or the weighted clusters of several (those of weight 0
/// left out unless all are, as for HTTP routes).
fn cluster_specifier(
    snapshot: &Snapshot,
    destinations: &[RouteDestination],
    incoming_port: u16,
) -> route_action::ClusterSpecifier {
    let mut clusters: Vec<(String, u32)> = destinations
        .iter()
        .map(|destination| {
            (
                destination_cluster(snapshot, destination, incoming_port),
                destination.weight,
            )
        })
        .collect();
    if clusters.iter().any(|(_, weight)| *weight > 0) {
        clusters.retain(|(_, weight)| *weight > 0);
    }
    if let [(only, _)] = clusters.as_slice() {
        return route_action::ClusterSpecifier::Cluster(only.clone());
    }
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: clusters
            .into_iter()
            .map(|(name, weight)| weighted_cluster::ClusterWeight {
                name,
                weight: Some(UInt32Value { value: weight }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// The network filter of an inbound TCP port: bytes to the app's cluster.
pub(super) fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::config::route::v3::{route, route_action, route_match};
    use prost::Message;

    use super::*;
    use crate::translate::test_mesh::{node, snapshot};
    use crate::translate::{DEFAULT_TRUST_DOMAIN, generate};

    const DB: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-postgres, protocol: TCP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432, sourceLabels: {app: nobody}}]
    route: [{destination: {host: reviews}}]
  - match: [{port: 5432}]
    route:
    - {destination: {host: db, subset: v1}, weight: 70}
    - {destination: {host: db}, weight: 30}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets: [{name: v1, labels: {version: v1}}]
";

    #[test]
    fn a_tcp_port_is_a_connect_route_outbound_and_a_tcp_proxy_inbound() {
        let set = generate(
            &snapshot(DB),
            &node([127, 0, 10, 1], "client"),
            DEFAULT_TRUST_DOMAIN,
        );
        let host = set.routes[0]
            .virtual_hosts
            .iter()
            .find(|host| host.name == "db.default.svc.cluster.local:5432")
            .expect("the TCP port's virtual host");
        assert!(host.domains.contains(&"db:5432".to_string()));
        let route = &host.routes[0];
        assert!(matches!(
            route
                .r#match
                .as_ref()
                .and_then(|m| m.path_specifier.as_ref()),
            Some(route_match::PathSpecifier::ConnectMatcher(_))
        ));
        let Some(route::Action::Route(action)) = &route.action else {
            panic!("a route action");
        };
        assert_eq!(action.upgrade_configs[0].upgrade_type, "CONNECT");
        assert!(action.upgrade_configs[0].connect_config.is_some());
        // The rule for other callers is skipped: the split is the second rule's.
        let Some(route_action::ClusterSpecifier::WeightedClusters(weighted)) =
            &action.cluster_specifier
        else {
            panic!("weighted clusters: {:?}", action.cluster_specifier);
        };
        let split: Vec<(&str, u32)> = weighted
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.weight.as_ref().map_or(0, |w| w.value)))
            .collect();
        assert_eq!(
            split,
            [
                ("outbound|5432|v1|db.default.svc.cluster.local", 70),
                ("outbound|5432||db.default.svc.cluster.local", 30)
            ]
        );

        // The first rule's caller: reviews has one port, and a destination without a
        // port goes there, as Istio resolves it (not to the connection's port).
        let mut nobody = node([127, 0, 10, 8], "nobody");
        nobody.labels.insert("app".into(), "nobody".into());
        let set = generate(&snapshot(DB), &nobody, DEFAULT_TRUST_DOMAIN);
        let host = set.routes[0]
            .virtual_hosts
            .iter()
            .find(|host| host.name == "db.default.svc.cluster.local:5432")
            .expect("the TCP port's virtual host");
        let Some(route::Action::Route(action)) = &host.routes[0].action else {
            panic!("a route action");
        };
        assert_eq!(
            action.cluster_specifier,
            Some(route_action::ClusterSpecifier::Cluster(
                "outbound|9080||reviews.default.svc.cluster.local".to_string()
            ))
        );

        // A workload the service selects (here known by its node) takes the port with
        // tcp_proxy, on both chains.
        let mut server = node([127, 0, 10, 9], "db-1");
        server.app_ports.insert(5432, 15432);
        let set = generate(&snapshot(DB), &server, DEFAULT_TRUST_DOMAIN);
        let listener = set
            .listeners
            .iter()
            .find(|l| l.name == "inbound|5432")
            .expect("the inbound TCP listener");
        assert_eq!(listener.filter_chains.len(), 2);
        for chain in &listener.filter_chains {
            let filter = &chain.filters[0];
            assert_eq!(filter.name, TCP_PROXY);
            let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                panic!("a typed config");
            };
            let proxy = TcpProxy::decode(any.value.as_slice()).expect("a TcpProxy");
            assert_eq!(
                proxy.cluster_specifier,
                Some(tcp_proxy::ClusterSpecifier::Cluster(
                    "inbound|5432||".to_string()
                ))
            );
        }
    }
}
