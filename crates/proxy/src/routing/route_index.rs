//! Finds a virtual host's first matching route without trying every route: routes whose
//! path is an exact or prefix match are looked up by path, the rest are tried in order,
//! and the first match in route order wins, as Envoy's linear walk would have it.
//!
//! A request's candidates are the routes keyed by its whole path, by each of its prefixes
//! that some route names, and the routes that cannot be keyed (regex, case-insensitive).
//! Each list is in route order, so the winner is the lowest index that fully matches.

use std::collections::HashMap;
use std::sync::Arc;

use super::matcher::{PathMatch, RequestView};
use super::table::Route;

/// Below this many routes a walk is as quick as the lookups.
const INDEXED_FROM: usize = 16;

#[derive(Debug, Default)]
pub struct RouteIndex {
    /// `None` for short route lists: they are walked.
    keyed: Option<Keyed>,
}

#[derive(Debug, Default)]
struct Keyed {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
    /// The distinct lengths of the prefixes, shortest first.
    prefix_lengths: Vec<usize>,
    unkeyed: Vec<usize>,
}

impl RouteIndex {
    pub fn new(routes: &[Arc<Route>]) -> Self {
        if routes.len() < INDEXED_FROM {
            return RouteIndex::default();
        }
        let mut keyed = Keyed::default();
        for (index, route) in routes.iter().enumerate() {
            let case_sensitive = route.matcher.case_sensitive;
            match &route.matcher.path {
                PathMatch::Exact(path) if case_sensitive => {
                    keyed.exact.entry(path.clone()).or_default().push(index);
                }
                PathMatch::Prefix(prefix) if case_sensitive => {
                    keyed.prefix.entry(prefix.clone()).or_default().push(index);
                }
                _ => keyed.unkeyed.push(index),
            }
        }
        let mut lengths: Vec<usize> = keyed.prefix.keys().map(String::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        keyed.prefix_lengths = lengths;
        RouteIndex { keyed: Some(keyed) }
    }

    /// The first route of `routes` (the list this index was built from) matching `req`.
    pub fn first_match<'r>(
        &self,
        routes: &'r [Arc<Route>],
        req: &RequestView<'_>,
    ) -> Option<&'r Arc<Route>> {
        let Some(keyed) = &self.keyed else {
            return routes.iter().find(|route| route.matcher.matches(req));
        };
        let mut best: Option<usize> = None;
        let mut consider = |candidates: &[usize]| {
            for &index in candidates {
                if best.is_some_and(|best| index >= best) {
                    return;
                }
                if routes[index].matcher.matches(req) {
                    best = Some(index);
                    return;
                }
            }
        };
        if let Some(candidates) = keyed.exact.get(req.path) {
            consider(candidates);
        }
        for &length in &keyed.prefix_lengths {
            let Some(head) = req.path.get(..length) else {
                // Longer than the path, or not on a character boundary.
                if length > req.path.len() {
                    break;
                }
                continue;
            };
            if let Some(candidates) = keyed.prefix.get(head) {
                consider(candidates);
            }
        }
        consider(&keyed.unkeyed);
        best.and_then(|index| routes.get(index))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::route::v3::{
        HeaderMatcher, Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch,
        VirtualHost, header_matcher, route, route_action, route_match,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
    use http::{HeaderMap, HeaderValue, Method};

    use crate::compile::compile_route_config;
    use crate::routing::{RequestView, RouteTable};

    fn route(
        name: String,
        path: route_match::PathSpecifier,
        case: bool,
        header: bool,
    ) -> EnvoyRoute {
        EnvoyRoute {
            name,
            r#match: Some(RouteMatch {
                path_specifier: Some(path),
                case_sensitive: (!case)
                    .then_some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
                headers: if header {
                    vec![HeaderMatcher {
                        name: "x-canary".into(),
                        header_match_specifier: Some(
                            header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                        ),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("c".into())),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// A table mixing every kind of route, the same paths keyed several ways.
    fn mixed_table() -> RouteTable {
        use route_match::PathSpecifier::{Path, Prefix, SafeRegex};
        let mut routes = Vec::new();
        for i in 0..40 {
            let n = i % 7;
            routes.push(match i % 6 {
                0 => route(format!("exact-{i}"), Path(format!("/api/{n}")), true, false),
                1 => route(
                    format!("prefix-{i}"),
                    Prefix(format!("/api/{n}")),
                    true,
                    i % 4 == 1,
                ),
                2 => route(
                    format!("nocase-{i}"),
                    Prefix(format!("/API/{n}")),
                    false,
                    false,
                ),
                3 => route(
                    format!("regex-{i}"),
                    SafeRegex(RegexMatcher {
                        regex: format!("/api/{n}/[a-z]+"),
                        ..Default::default()
                    }),
                    true,
                    false,
                ),
                4 => route(format!("short-{i}"), Prefix("/a".into()), true, true),
                _ => route(
                    format!("exact-h-{i}"),
                    Path(format!("/api/{n}/x")),
                    true,
                    true,
                ),
            });
        }
        routes.push(route("all".into(), Prefix("/".into()), true, false));
        let config = RouteConfiguration {
            name: "mixed".into(),
            virtual_hosts: vec![VirtualHost {
                name: "all".into(),
                domains: vec!["*".into()],
                routes,
                ..Default::default()
            }],
            ..Default::default()
        };
        compile_route_config(&config).expect("compiles")
    }

    #[test]
    fn the_index_finds_the_route_a_walk_finds() {
        let table = mixed_table();
        let vhost = &table.virtual_hosts[0];
        assert!(vhost.index.keyed.is_some(), "a long list is indexed");
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", HeaderValue::from_static("1"));
        let plain = HeaderMap::new();
        let mut paths = vec!["/".to_string(), "/a".into(), "/b".into(), "/ä/1".into()];
        for n in 0..8 {
            for tail in ["", "/", "/x", "/xyz", "/X", "/9"] {
                paths.push(format!("/api/{n}{tail}"));
                paths.push(format!("/API/{n}{tail}"));
            }
        }
        for path in &paths {
            for headers in [&plain, &canary] {
                let view = RequestView {
                    authority: "any",
                    path,
                    query: None,
                    method: &Method::GET,
                    scheme: "http",
                    headers,
                };
                let walked = vhost.routes.iter().find(|r| r.matcher.matches(&view));
                let indexed = table.route(&view);
                assert_eq!(
                    walked.map(|r| &r.name),
                    indexed.map(|r| &r.name),
                    "{path} (canary: {})",
                    headers.contains_key("x-canary")
                );
            }
        }
    }
}
