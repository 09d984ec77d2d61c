//! The proxy's per-request hot paths, measured in isolation: route matching over a
//! bookinfo-sized and a large route table, weighted cluster choice, header handling, and
//! recording metrics.

use std::hint::black_box;
use std::time::Duration;

use bosun_proxy::compile::compile_route_config;
use bosun_proxy::headers::{remove_hop_by_hop, set_forwarding_headers};
use bosun_proxy::routing::RequestView;
use bosun_proxy::stats::ClusterStats;
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction as EnvoyRouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, WeightedCluster, header_matcher, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::UInt32Value;
use http::{HeaderMap, HeaderValue, Method};

/// `services` virtual hosts shaped like Istio's: a header match to one subset, then a
/// 90/10 split, with the domains a sidecar's outbound routes carry.
fn route_config(services: usize) -> RouteConfiguration {
    let virtual_hosts = (0..services)
        .map(|index| {
            let host = format!("svc-{index}.default.svc.cluster.local");
            let cluster = |subset: &str| format!("outbound|9080|{subset}|{host}");
            VirtualHost {
                name: format!("{host}:9080"),
                domains: vec![
                    format!("{host}:9080"),
                    host.clone(),
                    format!("svc-{index}"),
                    format!("svc-{index}:9080"),
                ],
                routes: vec![
                    Route {
                        r#match: Some(RouteMatch {
                            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                            headers: vec![HeaderMatcher {
                                name: "end-user".into(),
                                header_match_specifier: Some(
                                    header_matcher::HeaderMatchSpecifier::StringMatch(
                                        StringMatcher {
                                            match_pattern: Some(
                                                string_matcher::MatchPattern::Exact("jason".into()),
                                            ),
                                            ..Default::default()
                                        },
                                    ),
                                ),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }),
                        action: Some(route::Action::Route(EnvoyRouteAction {
                            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                                cluster("v2"),
                            )),
                            ..Default::default()
                        })),
                        ..Default::default()
                    },
                    Route {
                        r#match: Some(RouteMatch {
                            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                            ..Default::default()
                        }),
                        action: Some(route::Action::Route(EnvoyRouteAction {
                            cluster_specifier: Some(
                                route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                                    clusters: [("v1", 90), ("v2", 10)]
                                        .iter()
                                        .map(|(subset, weight)| weighted_cluster::ClusterWeight {
                                            name: cluster(subset),
                                            weight: Some(UInt32Value { value: *weight }),
                                            ..Default::default()
                                        })
                                        .collect(),
                                    ..Default::default()
                                }),
                            ),
                            ..Default::default()
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
        })
        .collect();
    RouteConfiguration {
        name: "outbound".into(),
        virtual_hosts,
        ..Default::default()
    }
}

fn routing(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("wrk"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    for services in [4, 1000] {
        let table = compile_route_config(&route_config(services)).expect("compiles");
        let authority = format!("svc-{}:9080", services / 2);
        c.bench_function(&format!("route/{services}-hosts/weighted"), |b| {
            b.iter(|| {
                let view = RequestView {
                    authority: black_box(&authority),
                    path: "/reviews/1",
                    query: None,
                    method: &Method::GET,
                    scheme: "http",
                    headers: &headers,
                };
                let route = table.route(&view).expect("a route");
                // What the connection manager does: the route's cluster, weighted.
                black_box(
                    route
                        .select_cluster()
                        .map_or(0, |selected| selected.name.len()),
                )
            })
        });
    }
    let table = compile_route_config(&route_config(4)).expect("compiles");
    let mut jason = headers.clone();
    jason.insert("end-user", HeaderValue::from_static("jason"));
    c.bench_function("route/4-hosts/header-match", |b| {
        b.iter(|| {
            let view = RequestView {
                authority: black_box("svc-2.default.svc.cluster.local"),
                path: "/reviews/1",
                query: None,
                method: &Method::GET,
                scheme: "http",
                headers: &jason,
            };
            black_box(table.route(&view).is_some())
        })
    });
}

/// One virtual host with `routes` routes, half exact paths and half prefixes, as a
/// VirtualService with many `uri` matches gives; the request matches the last one.
fn many_routes(routes: usize) -> RouteConfiguration {
    let route = |path: route_match::PathSpecifier| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(path),
            ..Default::default()
        }),
        action: Some(route::Action::Route(EnvoyRouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("c".into())),
            ..Default::default()
        })),
        ..Default::default()
    };
    let routes = (0..routes)
        .map(|i| {
            if i % 2 == 0 {
                route(route_match::PathSpecifier::Path(format!(
                    "/api/v1/items-{i}"
                )))
            } else {
                route(route_match::PathSpecifier::Prefix(format!("/svc-{i}/")))
            }
        })
        .collect();
    RouteConfiguration {
        name: "many".into(),
        virtual_hosts: vec![VirtualHost {
            name: "api".into(),
            domains: vec!["api".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Matching in one virtual host of 10, 100 and 1,000 routes: the time should stay flat
/// where the routes can be looked up by path.
fn route_count(c: &mut Criterion) {
    let headers = HeaderMap::new();
    for routes in [10, 100, 1000] {
        let table = compile_route_config(&many_routes(routes)).expect("compiles");
        let last_exact = format!("/api/v1/items-{}", routes - 2);
        let last_prefix = format!("/svc-{}/reviews/1", routes - 1);
        for (kind, path) in [("exact", &last_exact), ("prefix", &last_prefix)] {
            c.bench_function(&format!("route/{routes}-routes/{kind}-last"), |b| {
                b.iter(|| {
                    let view = RequestView {
                        authority: "api",
                        path: black_box(path),
                        query: None,
                        method: &Method::GET,
                        scheme: "http",
                        headers: &headers,
                    };
                    black_box(table.route(&view).is_some())
                })
            });
        }
    }
}

fn headers(c: &mut Criterion) {
    let mut request = HeaderMap::new();
    for (name, value) in [
        ("host", "reviews:9080"),
        ("user-agent", "Mozilla/5.0"),
        ("accept", "application/json"),
        ("connection", "keep-alive"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("end-user", "jason"),
    ] {
        request.insert(name, HeaderValue::from_static(value));
    }
    c.bench_function("headers/request-forwarding", |b| {
        b.iter(|| {
            let mut headers = request.clone();
            remove_hop_by_hop(&mut headers);
            set_forwarding_headers(&mut headers, false);
            black_box(headers.len())
        })
    });
}

fn metrics(c: &mut Criterion) {
    let stats = ClusterStats::default();
    c.bench_function("metrics/request-and-latency", |b| {
        b.iter(|| {
            stats
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats.responses.record(black_box(200));
            stats.latency.record(black_box(Duration::from_micros(420)));
        })
    });
}

/// One request as a sidecar records it in Istio's metrics: a label set of shared values
/// (cloned, as each request does) looked up, then a counter and three histograms.
fn istio_metrics(c: &mut Criterion) {
    use bosun_proxy::telemetry::labels::{PeerWorkload, ServiceLabels, Shared, principal};
    use bosun_proxy::telemetry::metrics::{
        IstioMetrics, Reporter, RequestLabels, RequestProtocol, RequestSample, ResponseFlag,
        SecurityPolicy,
    };
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let workload = |name: &str, app: &str, version: &str| {
        let labels = BTreeMap::from([
            ("app".to_string(), app.to_string()),
            ("version".to_string(), version.to_string()),
        ]);
        Shared::new(Arc::new(PeerWorkload::from_labels(
            name,
            "default",
            &labels,
            "Kubernetes",
        )))
    };
    let labels = RequestLabels {
        reporter: Reporter::Source,
        source: workload("productpage-v1", "productpage", "v1"),
        source_principal: Some(principal(
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        )),
        destination: workload("reviews-v2", "reviews", "v2"),
        destination_principal: Some(principal(
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
        )),
        service: ServiceLabels::of_host("reviews.default.svc.cluster.local"),
        protocol: RequestProtocol::Http,
        response_code: 200,
        grpc_status: None,
        flag: ResponseFlag::None,
        security: SecurityPolicy::Unknown,
    };
    let metrics = IstioMetrics::default();
    let sample = RequestSample {
        duration: Duration::from_micros(420),
        request_bytes: 180,
        response_bytes: 1250,
    };
    c.bench_function("metrics/istio-request", |b| {
        b.iter(|| metrics.record(black_box(labels.clone()), black_box(sample)))
    });
}

criterion_group!(
    benches,
    routing,
    route_count,
    headers,
    metrics,
    istio_metrics
);
criterion_main!(benches);
