//! A mesh written as Istio YAML, for the translation's tests: reviews (one v1 workload, a
//! v1 subset) plus whatever a test adds, or reviews with a DestinationRule of the test's.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bosun_model::Snapshot;
use envoy_types::pb::envoy::config::route::v3::{Route, RouteAction, route};

use super::{DEFAULT_TRUST_DOMAIN, generate};
use crate::ProxyNode;

const SERVICES: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec:
  address: 127.0.10.3
  ports: {http: 9080}
  labels: {app: reviews, version: v1}
";

const REVIEWS_SUBSETS: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
";

/// reviews with its v1 subset, and `extra`.
pub(super) fn snapshot(extra: &str) -> Snapshot {
    snapshot_with_rule(&format!("{REVIEWS_SUBSETS}---\n{extra}"))
}

/// reviews with `rule` as its DestinationRule (and whatever else `rule` holds).
pub(super) fn snapshot_with_rule(rule: &str) -> Snapshot {
    let yaml = format!("{SERVICES}---\n{rule}");
    let loaded = bosun_api::load_str(&yaml, Path::new("resources.yaml"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let (snapshot, warnings) = bosun_model::build::build(&loaded.resources);
    assert!(warnings.is_empty(), "{warnings:?}");
    snapshot
}

/// reviews with a DestinationRule of `traffic_policy` (YAML indented under
/// `trafficPolicy:`), and `subsets` after it (indented under `spec:`, may be empty).
pub(super) fn snapshot_with_policy(traffic_policy: &str, subsets: &str) -> Snapshot {
    snapshot_with_rule(&format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  trafficPolicy:
{traffic_policy}{subsets}"
    ))
}

pub(super) fn node(ip: [u8; 4], name: &str) -> ProxyNode {
    let mut node = ProxyNode::sidecar(IpAddr::V4(Ipv4Addr::from(ip)), name, "default");
    node.labels.insert("app".into(), "reviews".into());
    node.labels.insert("version".into(), "v1".into());
    node
}

pub(super) fn outbound_routes(snapshot: &Snapshot) -> Vec<Route> {
    let set = generate(
        snapshot,
        &node([127, 0, 10, 1], "client"),
        DEFAULT_TRUST_DOMAIN,
    );
    set.routes[0].virtual_hosts[0].routes.clone()
}

pub(super) fn action(route: &Route) -> &RouteAction {
    match &route.action {
        Some(route::Action::Route(action)) => action,
        other => panic!("expected a route action, got {other:?}"),
    }
}
