//! The outbound RouteConfiguration: one virtual host per service port, with the
//! VirtualService rules for that host or a default route, and the catch-all for hosts
//! the mesh does not know.

use bosun_model::{
    ConsistentHash, HttpRouteRule, RequestMatch, Retries, RouteDestination, Service, ServicePort,
    Snapshot, StringMatch,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, WeightedCluster, header_matcher, query_parameter_matcher, route, route_action,
    route_match, weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::actions::{self, HeaderLists};
use super::caller::{Caller, domains};
use super::connect;
use super::destinations::{destination_cluster, resolved_port};
use super::load_balancer;
use super::matchers::string_matcher;
use super::names::{OUTBOUND_ROUTE_CONFIG, outbound_cluster_name};
use super::passthrough;
use super::resilience::{self, NO_TIMEOUT, fault_config, retry_policy};

/// The route table of the outbound HTTP proxy port, as `caller` sees it.
pub(super) fn outbound(snapshot: &Snapshot, caller: Caller<'_>) -> RouteConfiguration {
    let proxy_namespace = caller.namespace;
    let mut virtual_hosts = Vec::new();
    for service in snapshot.services() {
        let default_port = service.default_http_port().map(|port| port.number);
        for port in service
            .ports
            .iter()
            .filter(|port| caller.reaches(service, port.number))
        {
            if port.protocol.is_tunnelled() {
                virtual_hosts.push(connect::virtual_host(snapshot, service, port, caller));
                continue;
            }
            if !port.protocol.is_http() {
                continue;
            }
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.hostname, port.number),
                domains: domains(
                    service,
                    port.number,
                    default_port == Some(port.number),
                    proxy_namespace,
                ),
                routes: routes(snapshot, service, port, caller),
                ..Default::default()
            });
        }
    }
    // Last, for a host no service claims: on to it, or 502 (outboundTrafficPolicy).
    let outbound = caller
        .sidecar
        .and_then(|sidecar| sidecar.outbound)
        .unwrap_or(snapshot.mesh().outbound);
    virtual_hosts.push(passthrough::catch_all(outbound));
    RouteConfiguration {
        name: OUTBOUND_ROUTE_CONFIG.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

fn routes(
    snapshot: &Snapshot,
    service: &Service,
    port: &ServicePort,
    caller: Caller<'_>,
) -> Vec<Route> {
    let Some(virtual_routes) = snapshot.routes_for(&service.hostname) else {
        return vec![default_route(snapshot, service, port)];
    };
    let mut routes = Vec::new();
    for rule in &virtual_routes.http {
        let Some((action, headers)) = rule_action(snapshot, rule, port.number) else {
            continue;
        };
        let route = |request_match: &RequestMatch, action: route::Action| Route {
            name: rule.name.clone().unwrap_or_default(),
            r#match: Some(route_match(request_match)),
            action: Some(action),
            typed_per_filter_config: fault_config(rule.fault.as_ref())
                .into_iter()
                .chain(rule.cors.as_ref().map(actions::cors_config))
                .collect(),
            request_headers_to_add: headers.request_add.clone(),
            request_headers_to_remove: headers.request_remove.clone(),
            response_headers_to_add: headers.response_add.clone(),
            response_headers_to_remove: headers.response_remove.clone(),
            ..Default::default()
        };
        if rule.matches.is_empty() {
            routes.push(route(&RequestMatch::default(), action));
            continue;
        }
        // A rule none of whose matches admits the caller is not written for it at all.
        for request_match in &rule.matches {
            if request_match
                .port
                .is_some_and(|wanted| wanted != port.number)
                || !caller.admits(&request_match.source)
            {
                continue;
            }
            routes.push(route(request_match, action.clone()));
        }
    }
    routes
}

fn default_route(snapshot: &Snapshot, service: &Service, port: &ServicePort) -> Route {
    let cluster = outbound_cluster_name(port.number, None, &service.hostname);
    let policy = snapshot.traffic_policy(&service.hostname, port.number, None);
    let hash = load_balancer::consistent_hash(policy.load_balancer.as_ref());
    Route {
        name: "default".to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
            timeout: Some(NO_TIMEOUT),
            retry_policy: retry_policy(&Retries::MeshDefault, hash.is_some()),
            hash_policy: hash
                .and_then(|hash| hash.key.as_ref())
                .map(load_balancer::hash_policy)
                .into_iter()
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn route_match(request_match: &RequestMatch) -> RouteMatch {
    let path_specifier = match &request_match.uri {
        None => route_match::PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(path)) => route_match::PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => route_match::PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => route_match::PathSpecifier::SafeRegex(RegexMatcher {
            regex: regex.clone(),
            ..Default::default()
        }),
    };
    let headers = request_match
        .headers
        .iter()
        .map(|(name, value)| header_matcher(name, value, false))
        .chain(
            request_match
                .without_headers
                .iter()
                .map(|(name, value)| header_matcher(name, value, true)),
        )
        .collect();
    let query_parameters = request_match
        .query_params
        .iter()
        .map(|(name, value)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(
                query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(string_matcher(
                    value,
                )),
            ),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        headers,
        query_parameters,
        case_sensitive: request_match
            .ignore_uri_case
            .then_some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn header_matcher(name: &str, value: &StringMatch, invert: bool) -> HeaderMatcher {
    // istiod's: `regex: "*"` is no RE2 pattern but "the header is there".
    if matches!(value, StringMatch::Regex(pattern) if pattern == "*") {
        return HeaderMatcher {
            name: name.to_string(),
            invert_match: invert,
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
            ..Default::default()
        };
    }
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        // istiod's: a request without the header does not carry the value it must not.
        treat_missing_header_as_empty: invert,
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            string_matcher(value),
        )),
    }
}

/// What a rule does (forward, redirect or answer) and the header changes its routes
/// carry; `None` for a rule Envoy could not act on (a redirect code it has no name for).
fn rule_action(
    snapshot: &Snapshot,
    rule: &HttpRouteRule,
    incoming_port: u16,
) -> Option<(route::Action, HeaderLists)> {
    let rule_headers = HeaderLists::of(&rule.headers);
    if let Some(redirect) = &rule.redirect {
        let action = actions::redirect_action(redirect, incoming_port)?;
        return Some((route::Action::Redirect(action), rule_headers));
    }
    if let Some(direct) = &rule.direct_response {
        return Some((
            route::Action::DirectResponse(actions::direct_response(direct)),
            rule_headers,
        ));
    }
    let mut clusters: Vec<(String, u32, &RouteDestination)> = rule
        .destinations
        .iter()
        .map(|destination| {
            (
                destination_cluster(snapshot, destination, incoming_port),
                destination.weight,
                destination,
            )
        })
        .collect();
    // Zero-weight destinations take no traffic; keep them only if all are zero.
    if clusters.iter().any(|(_, weight, _)| *weight > 0) {
        clusters.retain(|(_, weight, _)| *weight > 0);
    }
    // istiod: each kept destination's hash key, in order; a single hashed destination
    // retries on the same endpoint (no previous-hosts predicate).
    let hashes: Vec<Option<ConsistentHash>> = clusters
        .iter()
        .map(|(_, _, destination)| destination_hash(snapshot, destination, incoming_port))
        .collect();
    let mut headers = rule_headers;
    let cluster_specifier = match clusters.as_slice() {
        // One destination: its header changes join the rule's on the route.
        [(cluster, _, destination)] => {
            headers = headers.then(HeaderLists::of(&destination.headers));
            route_action::ClusterSpecifier::Cluster(cluster.clone())
        }
        _ => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(|(name, weight, destination)| {
                    let lists = HeaderLists::of(&destination.headers);
                    weighted_cluster::ClusterWeight {
                        name,
                        weight: Some(UInt32Value { value: weight }),
                        request_headers_to_add: lists.request_add,
                        request_headers_to_remove: lists.request_remove,
                        response_headers_to_add: lists.response_add,
                        response_headers_to_remove: lists.response_remove,
                        host_rewrite_specifier: lists.authority.map(
                            weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral,
                        ),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }),
    };
    let single_hashed = matches!(hashes.as_slice(), [Some(_)]);
    let hash_policy = hashes
        .iter()
        .flatten()
        .filter_map(|hash| hash.key.as_ref())
        .map(load_balancer::hash_policy)
        .collect();
    let request_mirror_policies = rule
        .mirrors
        .iter()
        .filter_map(|mirror| {
            actions::mirror_policy(
                destination_cluster(snapshot, &mirror.destination, incoming_port),
                mirror.share,
            )
        })
        .collect();
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(rule.timeout.map_or(NO_TIMEOUT, resilience::duration)),
        retry_policy: retry_policy(&rule.retries, single_hashed),
        hash_policy,
        request_mirror_policies,
        host_rewrite_specifier: headers
            .authority
            .clone()
            .map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        ..Default::default()
    };
    // `rewrite.authority` wins over an authority the headers set.
    actions::apply_rewrite(&mut action, rule.rewrite.as_ref());
    Some((route::Action::Route(action), headers))
}

/// The consistent hash of the policy for traffic to `destination`, as its cluster has it.
fn destination_hash(
    snapshot: &Snapshot,
    destination: &RouteDestination,
    incoming_port: u16,
) -> Option<ConsistentHash> {
    let port = resolved_port(snapshot, destination, incoming_port);
    let policy = snapshot.traffic_policy(&destination.host, port, destination.subset.as_deref());
    load_balancer::consistent_hash(policy.load_balancer.as_ref()).cloned()
}
