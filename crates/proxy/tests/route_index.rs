//! A large virtual host's route index finds the route a walk of its routes finds, on a
//! table mixing every kind of route (exact, prefix, case-insensitive, regex, with header
//! conditions).

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    header_matcher, route, route_action, route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use http::{HeaderMap, HeaderValue, Method};

use bosun_proxy::compile::compile_route_config;
use bosun_proxy::routing::{RequestView, RouteTable};

fn route(name: String, path: route_match::PathSpecifier, case: bool, header: bool) -> EnvoyRoute {
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
    assert!(vhost.routes.len() > 16, "a list long enough to be indexed");
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
