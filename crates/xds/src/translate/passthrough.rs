//! Where a request for a host the mesh does not know goes, as istiod writes it: with
//! `outboundTrafficPolicy: ALLOW_ANY` (the default) the catch-all virtual host
//! `allow_any` sends it to PassthroughCluster, the address it names; with
//! `REGISTRY_ONLY` the catch-all `block_all` answers 502.
//!
//! On one machine there is no redirected connection whose original destination could be
//! read, so PassthroughCluster takes the address from the request's authority (an
//! absolute URL or Host of `ip:port`, as an app behind an HTTP proxy sends it).

use bosun_model::OutboundPolicy;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteMatch, VirtualHost, route, route_action,
    route_match,
};

use super::resilience::NO_TIMEOUT;
use super::traffic_policy;

pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
const ALLOW_ANY: &str = "allow_any";
const BLOCK_ALL: &str = "block_all";
/// Where the passthrough reads the destination: the request's authority.
const DESTINATION_HEADER: &str = ":authority";

/// The catch-all virtual host of the outbound route table.
pub(super) fn catch_all(policy: OutboundPolicy) -> VirtualHost {
    let (name, action) = match policy {
        OutboundPolicy::AllowAny => (
            ALLOW_ANY,
            route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    PASSTHROUGH_CLUSTER.to_string(),
                )),
                timeout: Some(NO_TIMEOUT),
                ..Default::default()
            }),
        ),
        OutboundPolicy::RegistryOnly => (
            BLOCK_ALL,
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            action: Some(action),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// PassthroughCluster: an original-destination cluster reading the request's authority.
pub(super) fn passthrough_cluster(connect_timeout: std::time::Duration) -> Cluster {
    let mut cluster = Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        connect_timeout: Some(super::resilience::duration(connect_timeout)),
        circuit_breakers: Some(traffic_policy::circuit_breakers(None)),
        ..Default::default()
    };
    to_original_destination(&mut cluster);
    cluster
}

/// Makes `cluster` send each request where it says (its authority), as istiod's
/// ORIGINAL_DST clusters do.
pub(super) fn to_original_destination(cluster: &mut Cluster) {
    cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::OriginalDst as i32,
    ));
    cluster.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
    cluster.lb_config = Some(cluster::LbConfig::OriginalDstLbConfig(
        cluster::OriginalDstLbConfig {
            use_http_header: true,
            http_header_name: DESTINATION_HEADER.to_string(),
            ..Default::default()
        },
    ));
}
