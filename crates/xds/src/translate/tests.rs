//! Translation tests on hand-built snapshots: names, domains, matches and weights.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bosun_model::{
    DestinationPolicy, Hostname, HttpRouteRule, LayeredPolicy, LoadBalancer, LoadBalancing,
    Protocol, RequestMatch, RouteDestination, Service, ServicePort, Snapshot, StringMatch, Subset,
    TrafficPolicy, VirtualRoutes, Workload,
};
use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, header_matcher, route, route_action, route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;

use super::{DEFAULT_TRUST_DOMAIN, generate};
use crate::ProxyNode;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn reviews_host() -> Hostname {
    Hostname::new("reviews.default.svc.cluster.local")
}

fn workload(name: &str, ip: [u8; 4], version: &str) -> Arc<Workload> {
    Arc::new(Workload {
        name: name.to_string(),
        namespace: "default".to_string(),
        address: IpAddr::V4(Ipv4Addr::from(ip)),
        ports: BTreeMap::from([("http".to_string(), 9080)]),
        labels: labels(&[("app", "reviews"), ("version", version)]),
        service_account: "bookinfo-reviews".to_string(),
        mutual_tls: true,
        weight: 1,
    })
}

fn bookinfo_reviews(routes: Option<VirtualRoutes>) -> Snapshot {
    bookinfo_reviews_with(
        vec![
            workload("reviews-v1", [127, 0, 10, 3], "v1"),
            workload("reviews-v2", [127, 0, 10, 4], "v2"),
        ],
        routes,
    )
}

fn bookinfo_reviews_with(workloads: Vec<Arc<Workload>>, routes: Option<VirtualRoutes>) -> Snapshot {
    let service = Arc::new(Service {
        hostname: reviews_host(),
        namespace: "default".to_string(),
        ports: vec![ServicePort {
            number: 9080,
            name: "http".to_string(),
            protocol: Protocol::Http,
            target_port: None,
        }],
        workload_selector: Some(labels(&[("app", "reviews")])),
        inline_endpoints: Vec::new(),
        resolution: Default::default(),
        origin: "services.yaml:1".to_string(),
    });
    let policy = Arc::new(DestinationPolicy {
        source: "default/reviews".to_string(),
        host: reviews_host(),
        policy: LayeredPolicy {
            policy: TrafficPolicy {
                load_balancer: Some(LoadBalancing::simple(LoadBalancer::LeastRequest)),
                ..TrafficPolicy::default()
            },
            ports: BTreeMap::new(),
        },
        subsets: ["v1", "v2"]
            .iter()
            .map(|version| Subset {
                name: version.to_string(),
                labels: labels(&[("version", version)]),
                policy: LayeredPolicy::default(),
            })
            .collect(),
    });
    Snapshot::new(
        BTreeMap::from([(reviews_host(), service)]),
        workloads,
        routes
            .map(|routes| BTreeMap::from([(reviews_host(), Arc::new(routes))]))
            .unwrap_or_default(),
        BTreeMap::from([(reviews_host(), policy)]),
    )
}

fn weighted(subset: &str, weight: u32) -> RouteDestination {
    RouteDestination {
        host: reviews_host(),
        subset: Some(subset.to_string()),
        port: None,
        weight,
        headers: Default::default(),
    }
}

fn node() -> ProxyNode {
    ProxyNode::sidecar(
        IpAddr::V4(Ipv4Addr::new(127, 0, 10, 1)),
        "productpage-v1",
        "default",
    )
}

fn outbound_routes(snapshot: &Snapshot) -> RouteConfiguration {
    let set = generate(snapshot, &node(), DEFAULT_TRUST_DOMAIN);
    assert_eq!(set.routes.len(), 1);
    set.routes
        .into_iter()
        .next()
        .expect("one route configuration")
}

#[test]
fn no_virtual_service_routes_everything_to_the_service_cluster() {
    let routes = outbound_routes(&bookinfo_reviews(None));
    let host = &routes.virtual_hosts[0];
    assert_eq!(host.name, "reviews.default.svc.cluster.local:9080");
    for domain in [
        "reviews",
        "reviews:9080",
        "reviews.default.svc.cluster.local",
    ] {
        assert!(
            host.domains.iter().any(|d| d == domain),
            "missing domain {domain}"
        );
    }
    let Some(route::Action::Route(action)) = &host.routes[0].action else {
        panic!("expected a route action");
    };
    assert_eq!(
        action.cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "outbound|9080||reviews.default.svc.cluster.local".to_string()
        ))
    );
}

#[test]
fn header_match_then_weighted_split() {
    let routes = VirtualRoutes {
        source: "default/reviews".to_string(),
        namespace: "default".to_string(),
        hosts: vec![reviews_host()],
        tcp: Vec::new(),
        http: vec![
            HttpRouteRule {
                name: Some("jason".to_string()),
                matches: vec![RequestMatch {
                    headers: vec![("end-user".to_string(), StringMatch::Exact("jason".into()))],
                    ..Default::default()
                }],
                destinations: vec![weighted("v2", 100)],
                ..Default::default()
            },
            HttpRouteRule {
                name: None,
                matches: Vec::new(),
                destinations: vec![weighted("v1", 90), weighted("v2", 10)],
                ..Default::default()
            },
        ],
    };
    let config = outbound_routes(&bookinfo_reviews(Some(routes)));
    let routes = &config.virtual_hosts[0].routes;
    assert_eq!(routes.len(), 2);

    let header = &routes[0].r#match.as_ref().expect("match").headers[0];
    assert_eq!(header.name, "end-user");
    let Some(header_matcher::HeaderMatchSpecifier::StringMatch(matcher)) =
        &header.header_match_specifier
    else {
        panic!("expected a string match");
    };
    assert_eq!(
        matcher.match_pattern,
        Some(string_matcher::MatchPattern::Exact("jason".to_string()))
    );

    let Some(route::Action::Route(action)) = &routes[1].action else {
        panic!("expected a route action");
    };
    let Some(route_action::ClusterSpecifier::WeightedClusters(split)) = &action.cluster_specifier
    else {
        panic!("expected weighted clusters");
    };
    let weights: Vec<(&str, u32)> = split
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("outbound|9080|v1|reviews.default.svc.cluster.local", 90),
            ("outbound|9080|v2|reviews.default.svc.cluster.local", 10),
        ]
    );
}

#[test]
fn uri_matches_map_to_envoy_path_specifiers() {
    let rule = |uri| HttpRouteRule {
        name: None,
        matches: vec![RequestMatch {
            uri: Some(uri),
            ..Default::default()
        }],
        destinations: vec![weighted("v1", 100)],
        ..Default::default()
    };
    let routes = VirtualRoutes {
        source: "default/reviews".to_string(),
        namespace: "default".to_string(),
        hosts: vec![reviews_host()],
        tcp: Vec::new(),
        http: vec![
            rule(StringMatch::Exact("/login".into())),
            rule(StringMatch::Prefix("/api".into())),
            rule(StringMatch::Regex("/r/[0-9]+".into())),
        ],
    };
    let config = outbound_routes(&bookinfo_reviews(Some(routes)));
    let specifiers: Vec<_> = config.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.r#match.as_ref().and_then(|m| m.path_specifier.clone()))
        .collect();
    assert_eq!(
        specifiers[0],
        Some(route_match::PathSpecifier::Path("/login".into()))
    );
    assert_eq!(
        specifiers[1],
        Some(route_match::PathSpecifier::Prefix("/api".into()))
    );
    let Some(route_match::PathSpecifier::SafeRegex(regex)) = &specifiers[2] else {
        panic!("expected a regex");
    };
    assert_eq!(regex.regex, "/r/[0-9]+");
}

#[test]
fn subsets_get_clusters_and_endpoints_by_label() {
    let set = generate(&bookinfo_reviews(None), &node(), DEFAULT_TRUST_DOMAIN);
    let names: Vec<&str> = set.clusters.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"outbound|9080||reviews.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|9080|v1|reviews.default.svc.cluster.local"));
    assert!(names.contains(&"outbound|9080|v2|reviews.default.svc.cluster.local"));
    let v2 = set
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080|v2|reviews.default.svc.cluster.local")
        .expect("v2 cluster");
    assert_eq!(v2.lb_policy, cluster::LbPolicy::LeastRequest as i32);

    let addresses = |cluster: &str| -> Vec<String> {
        let assignment = set
            .endpoints
            .iter()
            .find(|e| e.cluster_name == cluster)
            .expect("load assignment");
        assignment.endpoints[0]
            .lb_endpoints
            .iter()
            .filter_map(|e| match &e.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) => Some(format!(
                    "{:?}",
                    endpoint.address.as_ref().and_then(|a| a.address.clone())
                )),
                _ => None,
            })
            .collect()
    };
    let all = addresses("outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(all.len(), 2);
    let v1 = addresses("outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_eq!(v1.len(), 1);
    assert!(v1[0].contains("127.0.10.3"), "{v1:?}");
}

#[test]
fn the_workload_gets_inbound_listeners_to_its_app() {
    let snapshot = bookinfo_reviews(None);
    let mut node = ProxyNode::sidecar(
        IpAddr::V4(Ipv4Addr::new(127, 0, 10, 3)),
        "reviews-v1",
        "default",
    );
    node.app_ports.insert(9080, 19999);
    let set = generate(&snapshot, &node, DEFAULT_TRUST_DOMAIN);
    let listeners: Vec<&str> = set.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(listeners, vec!["virtualOutbound", "inbound|9080"]);
    let inbound = set
        .clusters
        .iter()
        .find(|c| c.name == "inbound|9080||")
        .expect("inbound cluster");
    let endpoint = format!("{:?}", inbound.load_assignment);
    assert!(
        endpoint.contains("127.0.10.3") && endpoint.contains("19999"),
        "{endpoint}"
    );
}

#[test]
fn short_names_only_for_the_proxy_namespace() {
    let snapshot = bookinfo_reviews(None);
    let mut other = node();
    other.namespace = "prod".to_string();
    let set = generate(&snapshot, &other, DEFAULT_TRUST_DOMAIN);
    let domains = &set.routes[0].virtual_hosts[0].domains;
    assert!(!domains.iter().any(|d| d == "reviews"), "{domains:?}");
    assert!(
        domains
            .iter()
            .any(|d| d == "reviews.default.svc.cluster.local")
    );
}

#[test]
fn shared_resources_are_the_same_for_every_proxy_and_keep_versions_across_snapshots() {
    use crate::Generator;
    use crate::translate::MeshGenerator;

    let first = MeshGenerator::new(Arc::new(bookinfo_reviews(None)));
    let a = first.generate_encoded(&node());
    let mut other = node();
    other.workload_name = "details-v1".to_string();
    let b = first.generate_encoded(&other);
    assert!(
        a.clusters
            .iter()
            .zip(&b.clusters)
            .all(|(x, y)| Arc::ptr_eq(x, y)),
        "outbound clusters are shared, not re-encoded per proxy"
    );
    assert!(
        Arc::ptr_eq(&a.routes[0], &b.routes[0]),
        "one route table per namespace"
    );

    // The encoded form carries the same content as the typed translation.
    let typed = generate(first.snapshot(), &node(), DEFAULT_TRUST_DOMAIN);
    assert_eq!(typed.clusters.len(), a.clusters.len());

    // A new snapshot with the same content keeps every version.
    let second = MeshGenerator::with_previous(Arc::new(bookinfo_reviews(None)), Some(&first));
    let c = second.generate_encoded(&node());
    for (before, after) in a.clusters.iter().zip(&c.clusters) {
        assert_eq!(before.version(), after.version(), "{}", after.name());
    }
    assert_eq!(a.routes[0].version(), c.routes[0].version());

    // A routing change changes the route's version, not the clusters'.
    let routes = VirtualRoutes {
        source: "default/reviews".to_string(),
        namespace: "default".to_string(),
        hosts: vec![reviews_host()],
        tcp: Vec::new(),
        http: vec![HttpRouteRule {
            name: None,
            matches: Vec::new(),
            destinations: vec![weighted("v1", 50), weighted("v2", 50)],
            ..Default::default()
        }],
    };
    let third =
        MeshGenerator::with_previous(Arc::new(bookinfo_reviews(Some(routes))), Some(&second));
    let d = third.generate_encoded(&node());
    assert_ne!(c.routes[0].version(), d.routes[0].version());
    assert!(
        c.clusters
            .iter()
            .zip(&d.clusters)
            .all(|(x, y)| Arc::ptr_eq(x, y))
    );
}

#[test]
fn a_generator_knows_which_shared_resources_changed_since_the_one_before() {
    use crate::IncrementalGenerator;
    use crate::translate::MeshGenerator;

    let first = MeshGenerator::new(Arc::new(bookinfo_reviews(None)));
    assert!(
        first.shared_changes_since(0, &node()).is_none(),
        "nothing came before"
    );

    // reviews-v2 moves: only the endpoints that include it change.
    let mut moved = bookinfo_reviews(None);
    let workloads: Vec<Arc<Workload>> = moved
        .workloads()
        .iter()
        .map(|w| {
            let mut w = (**w).clone();
            if w.name == "reviews-v2" {
                w.address = IpAddr::V4(Ipv4Addr::new(127, 0, 10, 9));
            }
            Arc::new(w)
        })
        .collect();
    moved = Snapshot::new(
        moved
            .services()
            .map(|s| (s.hostname.clone(), s.clone()))
            .collect(),
        workloads,
        BTreeMap::new(),
        moved
            .policy_for(&reviews_host())
            .map(|p| BTreeMap::from([(reviews_host(), p.clone())]))
            .unwrap_or_default(),
    );
    let second = MeshGenerator::with_previous(Arc::new(moved), Some(&first));
    let changes = second
        .shared_changes_since(first.generation(), &node())
        .expect("built right after the first");
    let mut changed: Vec<&str> = changes.updated.iter().map(|r| r.name()).collect();
    changed.sort();
    assert_eq!(
        changed,
        vec![
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
        ]
    );
    assert!(changes.removed.is_empty());
    assert!(
        second
            .shared_changes_since(first.generation() + 100, &node())
            .is_none()
    );
}

#[test]
fn services_with_sidecars_get_istio_mutual_tls_to_their_identities() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        UpstreamTlsContext, common_tls_context,
    };
    use prost::Message;

    let set = generate(&bookinfo_reviews(None), &node(), "example.org");
    let cluster = set
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080|v1|reviews.default.svc.cluster.local")
        .expect("v1 cluster");
    let names: Vec<&str> = cluster
        .transport_socket_matches
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["tlsMode-istio", "tlsMode-disabled"]);
    let istio = &cluster.transport_socket_matches[0];
    assert!(
        istio
            .r#match
            .as_ref()
            .unwrap()
            .fields
            .contains_key("tlsMode")
    );
    use envoy_types::pb::envoy::config::core::v3::transport_socket;
    let Some(transport_socket::ConfigType::TypedConfig(any)) = istio
        .transport_socket
        .as_ref()
        .and_then(|s| s.config_type.clone())
    else {
        panic!("no TLS socket");
    };
    let context = UpstreamTlsContext::decode(any.value.as_slice()).expect("decode");
    assert_eq!(
        context.sni,
        "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    );
    let common = context.common_tls_context.expect("common context");
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    let Some(common_tls_context::ValidationContextType::CombinedValidationContext(combined)) =
        common.validation_context_type
    else {
        panic!("no combined validation context");
    };
    assert_eq!(
        combined.validation_context_sds_secret_config.unwrap().name,
        "ROOTCA"
    );
    let identities: Vec<String> = combined
        .default_validation_context
        .unwrap()
        .match_typed_subject_alt_names
        .iter()
        .map(|m| format!("{:?}", m.matcher))
        .collect();
    assert_eq!(identities.len(), 1);
    assert!(
        identities[0].contains("spiffe://example.org/ns/default/sa/bookinfo-reviews"),
        "{identities:?}"
    );

    // Each endpoint whose sidecar takes mTLS is marked so the socket match picks TLS.
    let assignment = set
        .endpoints
        .iter()
        .find(|e| e.cluster_name == cluster.name)
        .expect("load assignment");
    let metadata = assignment.endpoints[0].lb_endpoints[0]
        .metadata
        .as_ref()
        .expect("endpoint metadata");
    assert!(
        metadata.filter_metadata["envoy.transport_socket_match"]
            .fields
            .contains_key("tlsMode")
    );
}

#[test]
fn a_service_without_sidecars_stays_plaintext() {
    let mut snapshot_workloads = vec![
        workload("reviews-v1", [127, 0, 10, 3], "v1"),
        workload("reviews-v2", [127, 0, 10, 4], "v2"),
    ];
    for workload in &mut snapshot_workloads {
        Arc::make_mut(workload).mutual_tls = false;
    }
    let snapshot = bookinfo_reviews_with(snapshot_workloads, None);
    let set = generate(&snapshot, &node(), DEFAULT_TRUST_DOMAIN);
    assert!(
        set.clusters
            .iter()
            .all(|c| c.transport_socket_matches.is_empty() && c.transport_socket.is_none())
    );
    assert!(
        set.endpoints
            .iter()
            .flat_map(|e| e.endpoints.iter().flat_map(|l| l.lb_endpoints.iter()))
            .all(|e| e.metadata.as_ref().is_none_or(|m| !m
                .filter_metadata
                .contains_key("envoy.transport_socket_match")))
    );
}

#[test]
fn clusters_and_endpoints_carry_what_metrics_label() {
    let snapshot = bookinfo_reviews_with(
        vec![
            workload("reviews-v1", [127, 0, 10, 3], "v1"),
            workload("reviews-v2", [127, 0, 10, 4], "v2"),
        ],
        None,
    );
    let set = generate(&snapshot, &node(), DEFAULT_TRUST_DOMAIN);
    let cluster = set
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080||reviews.default.svc.cluster.local")
        .expect("reviews cluster");
    use envoy_types::pb::google::protobuf::value::Kind;
    let services = &cluster.metadata.as_ref().expect("metadata").filter_metadata["istio"];
    let Some(Kind::ListValue(list)) = services.fields["services"].kind.as_ref() else {
        panic!("services is a list: {services:?}");
    };
    let Some(Kind::StructValue(service)) = list.values[0].kind.as_ref() else {
        panic!("a service is a struct: {list:?}");
    };
    let field = |key: &str| match service.fields[key].kind.as_ref() {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(field("host"), "reviews.default.svc.cluster.local");
    assert_eq!(field("name"), "reviews");
    assert_eq!(field("namespace"), "default");
    let workloads: Vec<String> = set
        .endpoints
        .iter()
        .filter(|e| e.cluster_name == cluster.name)
        .flat_map(|e| e.endpoints.iter().flat_map(|l| l.lb_endpoints.iter()))
        .filter_map(|e| {
            let istio = e.metadata.as_ref()?.filter_metadata.get("istio")?;
            match istio.fields.get("workload")?.kind.as_ref()? {
                Kind::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        workloads,
        [
            "reviews-v1;default;reviews;v1;Kubernetes",
            "reviews-v2;default;reviews;v2;Kubernetes"
        ]
    );
    let outbound = set
        .listeners
        .iter()
        .find(|l| l.name == "virtualOutbound")
        .expect("outbound listener");
    assert_eq!(
        outbound.traffic_direction,
        envoy_types::pb::envoy::config::core::v3::TrafficDirection::Outbound as i32
    );
}

#[test]
fn inbound_ports_take_mutual_tls_and_plaintext() {
    let node = ProxyNode::sidecar(
        IpAddr::V4(Ipv4Addr::new(127, 0, 10, 3)),
        "reviews-v1",
        "default",
    );
    let set = generate(&bookinfo_reviews(None), &node, DEFAULT_TRUST_DOMAIN);
    let inbound = set
        .listeners
        .iter()
        .find(|l| l.name == "inbound|9080")
        .expect("inbound listener");
    assert_eq!(
        inbound.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(&str, bool)> = inbound
        .filter_chains
        .iter()
        .map(|chain| {
            (
                chain
                    .filter_chain_match
                    .as_ref()
                    .map_or("", |m| m.transport_protocol.as_str()),
                chain.transport_socket.is_some(),
            )
        })
        .collect();
    assert_eq!(chains, [("tls", true), ("raw_buffer", false)]);
}

#[test]
fn a_client_in_another_namespace_reaches_a_service_by_its_namespaced_short_names() {
    let node = ProxyNode::sidecar(IpAddr::V4(Ipv4Addr::new(127, 0, 10, 9)), "web", "prod");
    let set = generate(&bookinfo_reviews(None), &node, DEFAULT_TRUST_DOMAIN);
    let domains = &set.routes[0].virtual_hosts[0].domains;
    for name in [
        "reviews.default:9080",
        "reviews.default.svc:9080",
        "reviews.default",
        "reviews.default.svc.cluster.local:9080",
    ] {
        assert!(
            domains.iter().any(|d| d == name),
            "missing {name}: {domains:?}"
        );
    }
    assert!(
        !domains
            .iter()
            .any(|d| d == "reviews" || d == "reviews:9080"),
        "the bare name is for the service's own namespace: {domains:?}"
    );
}

/// istiod writes `sourceLabels` / `sourceNamespace` matches into the routes of the
/// proxies they admit only; a rule none of whose matches admits a proxy is left out of
/// its routes (it does not become a catch-all). Proxies the conditions see alike share
/// one encoded table.
#[test]
fn source_matches_are_written_for_the_proxies_they_admit() {
    use crate::Generator;
    use crate::translate::MeshGenerator;
    use crate::translate::test_mesh::snapshot;

    let snapshot = snapshot(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: from-productpage
    match: [{sourceLabels: {app: productpage}}, {sourceNamespace: prod}]
    route: [{destination: {host: reviews, subset: v1}, weight: 100}]
  - name: everyone
    route: [{destination: {host: reviews, subset: v1}}]
",
    );
    let generator = MeshGenerator::new(Arc::new(snapshot));
    let with_labels = |pairs: &[(&str, &str)], namespace: &str| {
        let mut node = ProxyNode::sidecar(
            IpAddr::V4(Ipv4Addr::new(127, 0, 10, 9)),
            "caller",
            namespace,
        );
        node.labels = labels(pairs);
        node
    };
    let names = |node: &ProxyNode| -> Vec<String> {
        let set = generator.generate(node);
        let config = &set.routes[0];
        let vhost = config
            .virtual_hosts
            .iter()
            .find(|v| v.name.starts_with("reviews.default"))
            .expect("reviews");
        vhost.routes.iter().map(|r| r.name.clone()).collect()
    };
    let productpage = with_labels(&[("app", "productpage"), ("version", "v1")], "default");
    assert_eq!(names(&productpage), ["from-productpage", "everyone"]);
    assert_eq!(
        names(&with_labels(&[("app", "ratings")], "default")),
        ["everyone"]
    );
    assert_eq!(
        names(&with_labels(&[("app", "ratings")], "prod")),
        ["from-productpage", "everyone"]
    );

    let other_productpage = with_labels(&[("app", "productpage"), ("version", "v2")], "default");
    let a = generator.generate_encoded(&productpage);
    let b = generator.generate_encoded(&other_productpage);
    let c = generator.generate_encoded(&with_labels(&[("app", "ratings")], "default"));
    assert!(
        Arc::ptr_eq(&a.routes[0], &b.routes[0]),
        "the same view shares a table"
    );
    assert!(!Arc::ptr_eq(&a.routes[0], &c.routes[0]));
}

/// A Sidecar with egress hosts scopes what its proxies are sent: the shared clusters,
/// endpoints and routes of the service ports it admits only, the same `Arc` for every
/// proxy under it; proxies it does not select get everything. A proxy whose Sidecar
/// changed between snapshots is compared in full, not by the shared changes.
#[test]
fn a_sidecar_scopes_what_its_proxies_are_sent() {
    use crate::translate::MeshGenerator;
    use crate::translate::test_mesh::snapshot_with_rule;
    use crate::{Generator, IncrementalGenerator};

    let mesh = |sidecar: &str| {
        snapshot_with_rule(&format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings}}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.10.7}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: productpage}}
spec:
  workloadSelector: {{labels: {{app: productpage}}}}
  egress:
  - hosts: [{sidecar}]
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"
        ))
    };
    let first = MeshGenerator::new(Arc::new(mesh("./ratings.default.svc.cluster.local")));
    let caller = |app: &str| {
        let mut node = node();
        node.workload_name = format!("{app}-v1");
        node.labels = labels(&[("app", app)]);
        node
    };
    let scoped = first.generate_encoded(&caller("productpage"));
    let names: Vec<&str> = scoped.clusters.iter().map(|c| c.name()).collect();
    assert!(
        names.contains(&"outbound|9080||ratings.default.svc.cluster.local"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|name| name.contains("reviews")),
        "{names:?}"
    );
    assert!(
        scoped
            .endpoints
            .iter()
            .all(|e| !e.name().contains("reviews"))
    );
    let everything = first.generate_encoded(&caller("details"));
    assert!(everything.clusters.len() > scoped.clusters.len());

    let typed = generate(
        first.snapshot(),
        &caller("productpage"),
        DEFAULT_TRUST_DOMAIN,
    );
    let vhosts: Vec<&str> = typed.routes[0]
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        vhosts,
        ["ratings.default.svc.cluster.local:9080", "block_all"]
    );

    let incremental = first.incremental().expect("incremental");
    let (a, b) = (
        incremental.shared(&caller("productpage")),
        incremental.shared(&caller("productpage")),
    );
    assert!(Arc::ptr_eq(&a, &b), "one scoped index per Sidecar");

    let same = MeshGenerator::with_previous(
        Arc::new(mesh("./ratings.default.svc.cluster.local")),
        Some(&first),
    );
    let changed = MeshGenerator::with_previous(Arc::new(mesh("./*")), Some(&first));
    let since = |generator: &MeshGenerator| {
        generator
            .shared_changes_since(first.generation(), &caller("productpage"))
            .is_some()
    };
    assert!(since(&same), "the same Sidecar takes the shared changes");
    assert!(!since(&changed), "a changed Sidecar is compared in full");
}
