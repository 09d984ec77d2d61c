//! Fields that are set but not yet acted on by Bosun.
//!
//! This slice honours: VirtualService `hosts`, `http[].name`, `http[].match[]` (`uri`,
//! `headers`, `method`, `queryParams`, `ignoreUriCase`, `sourceLabels`, `sourceNamespace`,
//! `gateways: [mesh]`), `http[].route[]` (`destination`, `weight`), `http[].delegate`, `http[].timeout`,
//! `http[].retries`, `http[].fault`, `http[].headers` (and per destination),
//! `http[].rewrite`, `http[].redirect`, `http[].directResponse`, `http[].mirror` (and
//! `mirrors`, the percentages) and `gateways: [mesh]`;
//! DestinationRule `host`, `subsets` (`name`, `labels`) and in `trafficPolicy` (also per
//! port and per subset) `loadBalancer` (`simple` except `PASSTHROUGH`, `consistentHash`,
//! `warmup`), `connectionPool`
//! (except `http.useClientProtocol`, `http.maxConcurrentStreams`) and `outlierDetection`
//! (except the deprecated `consecutiveErrors`, `outlierDetectionHttpErrorCodes`); ServiceEntry `hosts`,
//! `ports`, `location`, `resolution` (but `DYNAMIC_DNS`), `workloadSelector`, `endpoints`;
//! WorkloadEntry `address`, `ports`, `labels`, `serviceAccount`, `weight`. Everything else
//! that is set is reported, so nothing is silently ignored.

use crate::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule, HttpMatchRequest,
    HttpRoute, LoadBalancerSettings, LoadBalancerSimple, OutlierDetection, Resolution,
    ServiceEntry, Sidecar, TrafficPolicy, VirtualService, WorkloadEntry,
};
use crate::resource::Resource;
use crate::security::{Action, AuthorizationPolicy};

/// The dotted paths (`spec.http[0].fault`) of fields set in `resource` that Bosun does not
/// honour yet, so callers can print "not supported yet: spec.http[0].fault".
///
/// Unsupported *kinds* are not listed field by field: the caller reports the kind.
pub fn unsupported_fields(resource: &Resource) -> Vec<String> {
    let mut fields = Fields::default();
    match resource {
        Resource::VirtualService(config) => virtual_service(&mut fields, &config.spec),
        Resource::DestinationRule(config) => destination_rule(&mut fields, &config.spec),
        Resource::ServiceEntry(config) => service_entry(&mut fields, &config.spec),
        Resource::WorkloadEntry(config) => workload_entry(&mut fields, "spec", &config.spec),
        Resource::Sidecar(config) => sidecar(&mut fields, &config.spec),
        Resource::AuthorizationPolicy(config) => {
            authorization_policy(&mut fields, &config.spec);
            let dry_run = config
                .meta
                .annotations
                .get(crate::security::DRY_RUN_ANNOTATION)
                .is_some_and(|value| value != "false");
            fields.note(config.spec.action == Action::Custom && dry_run, || {
                format!(
                    "metadata.annotations[{}] with action CUSTOM",
                    crate::security::DRY_RUN_ANNOTATION
                )
            });
        }
        Resource::RequestAuthentication(config) => {
            request_authentication(&mut fields, &config.spec);
        }
        Resource::PeerAuthentication(_)
        | Resource::LocalWorkload(_)
        | Resource::Unsupported { .. } => {}
    }
    fields.0
}

#[derive(Default)]
struct Fields(Vec<String>);

impl Fields {
    /// Records `path` when `is_set`.
    fn note(&mut self, is_set: bool, path: impl FnOnce() -> String) {
        if is_set {
            self.0.push(path());
        }
    }
}

fn virtual_service(fields: &mut Fields, spec: &VirtualService) {
    for (index, gateway) in spec.gateways.iter().enumerate() {
        fields.note(gateway != "mesh", || format!("spec.gateways[{index}]"));
    }
    fields.note(!spec.export_to.is_empty(), || "spec.exportTo".to_owned());
    fields.note(!spec.tls.is_empty(), || "spec.tls".to_owned());
    for (index, route) in spec.tcp.iter().enumerate() {
        for (m, condition) in route.matches.iter().enumerate() {
            let path = format!("spec.tcp[{index}].match[{m}]");
            fields.note(!condition.destination_subnets.is_empty(), || {
                format!("{path}.destinationSubnets")
            });
            fields.note(condition.source_subnet.is_some(), || {
                format!("{path}.sourceSubnet")
            });
            for (g, gateway) in condition.gateways.iter().enumerate() {
                fields.note(gateway != "mesh", || format!("{path}.gateways[{g}]"));
            }
        }
    }
    for (index, route) in spec.http.iter().enumerate() {
        http_route(fields, &format!("spec.http[{index}]"), route);
    }
}

fn http_route(fields: &mut Fields, path: &str, route: &HttpRoute) {
    let HttpRoute {
        name: _,
        matches,
        route: _,
        redirect: _,
        direct_response: _,
        delegate: _,
        rewrite: _,
        timeout: _,
        retries: _,
        fault: _,
        mirror: _,
        mirrors: _,
        mirror_percent: _,
        mirror_percent_snake: _,
        mirror_percentage: _,
        cors_policy: _,
        headers: _,
        websocket_upgrade,
    } = route;
    for (index, request) in matches.iter().enumerate() {
        http_match(fields, &format!("{path}.match[{index}]"), request);
    }
    let others = [("websocketUpgrade", websocket_upgrade.is_some())];
    for (name, is_set) in others {
        fields.note(is_set, || format!("{path}.{name}"));
    }
}

fn http_match(fields: &mut Fields, path: &str, request: &HttpMatchRequest) {
    // Destructured so that a field added to the type must be classified here.
    let HttpMatchRequest {
        name: _,
        uri: _,
        method: _,
        headers,
        scheme: _,
        authority: _,
        port: _,
        source_labels: _,
        gateways,
        query_params: _,
        ignore_uri_case: _,
        without_headers,
        source_namespace: _,
        stat_prefix,
    } = request;
    // Routing on JWT claims needs RequestAuthentication; such a match block takes no
    // request meanwhile.
    for (map, names) in [("headers", headers), ("withoutHeaders", without_headers)] {
        for name in names.keys() {
            fields.note(
                name.starts_with(crate::validation::JWT_CLAIM_PREFIX),
                || format!("{path}.{map}[{name}]"),
            );
        }
    }
    // Sidecars (`mesh`) are honoured; gateways are not run yet.
    for (index, gateway) in gateways.iter().enumerate() {
        fields.note(gateway != "mesh", || format!("{path}.gateways[{index}]"));
    }
    fields.note(stat_prefix.is_some(), || format!("{path}.statPrefix"));
}

fn destination_rule(fields: &mut Fields, spec: &DestinationRule) {
    fields.note(!spec.export_to.is_empty(), || "spec.exportTo".to_owned());
    fields.note(spec.workload_selector.is_some(), || {
        "spec.workloadSelector".to_owned()
    });
    if let Some(policy) = &spec.traffic_policy {
        traffic_policy(fields, "spec.trafficPolicy", policy);
    }
    for (index, subset) in spec.subsets.iter().enumerate() {
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(
                fields,
                &format!("spec.subsets[{index}].trafficPolicy"),
                policy,
            );
        }
    }
}

fn traffic_policy(fields: &mut Fields, path: &str, policy: &TrafficPolicy) {
    let TrafficPolicy {
        load_balancer,
        connection_pool,
        outlier_detection,
        tls,
        port_level_settings,
        tunnel,
        proxy_protocol,
        retry_budget,
    } = policy;
    policy_parts(
        fields,
        path,
        load_balancer.as_ref(),
        connection_pool.as_ref(),
        outlier_detection.as_ref(),
    );
    for (index, port) in port_level_settings.iter().enumerate() {
        let port_path = format!("{path}.portLevelSettings[{index}]");
        policy_parts(
            fields,
            &port_path,
            port.load_balancer.as_ref(),
            port.connection_pool.as_ref(),
            port.outlier_detection.as_ref(),
        );
        client_tls(fields, &format!("{port_path}.tls"), port.tls.as_ref());
    }
    client_tls(fields, &format!("{path}.tls"), tls.as_ref());
    let others = [
        ("tunnel", tunnel.is_some()),
        ("proxyProtocol", proxy_protocol.is_some()),
        ("retryBudget", retry_budget.is_some()),
    ];
    for (name, is_set) in others {
        fields.note(is_set, || format!("{path}.{name}"));
    }
}

/// `tls`: every mode, with certificates from files; `credentialName` (a Kubernetes
/// secret, which Istio hands sidecars only under a DestinationRule with a workload
/// selector) and certificate revocation lists are not yet.
fn client_tls(fields: &mut Fields, path: &str, tls: Option<&ClientTlsSettings>) {
    let Some(tls) = tls else {
        return;
    };
    let others = [
        ("credentialName", tls.credential_name.is_some()),
        ("caCrl", tls.ca_crl.is_some()),
    ];
    for (name, is_set) in others {
        fields.note(is_set, || format!("{path}.{name}"));
    }
    // istiod ignores these in ISTIO_MUTUAL and DISABLE (validation refuses most).
    if matches!(
        tls.mode,
        Some(ClientTlsMode::IstioMutual | ClientTlsMode::Disable) | None
    ) {
        fields.note(tls.insecure_skip_verify.is_some(), || {
            format!("{path}.insecureSkipVerify")
        });
    }
}

/// The parts a policy and its port-level settings share.
fn policy_parts(
    fields: &mut Fields,
    path: &str,
    load_balancer: Option<&LoadBalancerSettings>,
    connection_pool: Option<&ConnectionPoolSettings>,
    outlier_detection: Option<&OutlierDetection>,
) {
    if let Some(load_balancer) = load_balancer {
        load_balancer_settings(fields, &format!("{path}.loadBalancer"), load_balancer);
    }
    if let Some(http) = connection_pool.and_then(|pool| pool.http.as_ref()) {
        fields.note(http.use_client_protocol.is_some(), || {
            format!("{path}.connectionPool.http.useClientProtocol")
        });
        fields.note(http.max_concurrent_streams.is_some(), || {
            format!("{path}.connectionPool.http.maxConcurrentStreams")
        });
    }
    if let Some(outlier) = outlier_detection {
        fields.note(outlier.consecutive_errors.is_some(), || {
            format!("{path}.outlierDetection.consecutiveErrors")
        });
        fields.note(
            !outlier.outlier_detection_http_error_codes.is_empty(),
            || format!("{path}.outlierDetection.outlierDetectionHttpErrorCodes"),
        );
    }
}

fn load_balancer_settings(fields: &mut Fields, path: &str, settings: &LoadBalancerSettings) {
    let LoadBalancerSettings {
        simple,
        consistent_hash: _,
        locality_lb_setting,
        warmup_duration_secs: _,
        warmup: _,
        backend_utilization,
        zone_aware_lb_setting,
    } = settings;
    fields.note(*simple == Some(LoadBalancerSimple::Passthrough), || {
        format!("{path}.simple")
    });
    let others = [
        ("localityLbSetting", locality_lb_setting.is_some()),
        ("backendUtilization", backend_utilization.is_some()),
        ("zoneAwareLbSetting", zone_aware_lb_setting.is_some()),
    ];
    for (name, is_set) in others {
        fields.note(is_set, || format!("{path}.{name}"));
    }
}

fn sidecar(fields: &mut Fields, spec: &Sidecar) {
    let Sidecar {
        workload_selector: _,
        ingress,
        egress,
        outbound_traffic_policy,
        inbound_connection_pool,
    } = spec;
    fields.note(!ingress.is_empty(), || "spec.ingress".to_owned());
    fields.note(inbound_connection_pool.is_some(), || {
        "spec.inboundConnectionPool".to_owned()
    });
    for (index, listener) in egress.iter().enumerate() {
        fields.note(listener.bind.is_some(), || {
            format!("spec.egress[{index}].bind")
        });
        fields.note(listener.capture_mode.is_some(), || {
            format!("spec.egress[{index}].captureMode")
        });
    }
    fields.note(
        outbound_traffic_policy
            .as_ref()
            .is_some_and(|policy| policy.egress_proxy.is_some()),
        || "spec.outboundTrafficPolicy.egressProxy".to_owned(),
    );
}

fn service_entry(fields: &mut Fields, spec: &ServiceEntry) {
    fields.note(!spec.addresses.is_empty(), || "spec.addresses".to_owned());
    fields.note(!spec.export_to.is_empty(), || "spec.exportTo".to_owned());
    fields.note(!spec.subject_alt_names.is_empty(), || {
        "spec.subjectAltNames".to_owned()
    });
    fields.note(spec.resolution() == Resolution::DynamicDns, || {
        "spec.resolution: DYNAMIC_DNS".to_owned()
    });
    for (index, endpoint) in spec.endpoints.iter().enumerate() {
        workload_entry(fields, &format!("spec.endpoints[{index}]"), endpoint);
    }
}

fn workload_entry(fields: &mut Fields, path: &str, entry: &WorkloadEntry) {
    let WorkloadEntry {
        address: _,
        ports: _,
        labels: _,
        weight: _,
        service_account: _,
        network,
        locality,
    } = entry;
    fields.note(network.is_some(), || format!("{path}.network"));
    fields.note(locality.is_some(), || format!("{path}.locality"));
}

/// RequestAuthentication: the rules on the workloads a selector (or the namespace) picks;
/// attaching to gateways by reference is not yet.
fn request_authentication(fields: &mut Fields, spec: &crate::security::RequestAuthentication) {
    fields.note(spec.target_ref.is_some(), || "spec.targetRef".to_owned());
    fields.note(!spec.target_refs.is_empty(), || {
        "spec.targetRefs".to_owned()
    });
    for (index, rule) in spec.jwt_rules.iter().enumerate() {
        let Some(rule) = rule else { continue };
        fields.note(rule.presence.is_some(), || {
            format!("spec.jwtRules[{index}].presence")
        });
    }
}

/// AuthorizationPolicy: ALLOW, DENY, AUDIT and CUSTOM on the workloads a selector (or the
/// namespace) picks are enforced; policies attached to a gateway (`targetRef`) are not yet.
fn authorization_policy(fields: &mut Fields, spec: &AuthorizationPolicy) {
    fields.note(spec.target_ref.is_some(), || "spec.targetRef".to_owned());
    fields.note(!spec.target_refs.is_empty(), || {
        "spec.targetRefs".to_owned()
    });
    for (index, rule) in spec.rules().iter().enumerate() {
        for (w, condition) in rule.when().iter().enumerate() {
            let key = condition.key.as_str();
            fields.note(key.starts_with("experimental.envoy.filters."), || {
                format!("spec.rules[{index}].when[{w}] ({key})")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load_str;

    fn unsupported(yaml: &str) -> Vec<String> {
        let loaded = load_str(yaml, Path::new("test.yaml"));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        unsupported_fields(&loaded.resources[0])
    }

    #[test]
    fn honoured_virtual_service_fields_are_not_reported() {
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [mesh]
  http:
  - name: jason
    match:
    - uri: {prefix: /}
      method: {exact: GET}
      headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 100
",
        );
        assert!(fields.is_empty(), "{fields:?}");
    }

    #[test]
    fn everything_else_is_reported_by_path() {
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  gateways: [mesh, bookinfo-gateway]
  exportTo: ['.']
  http:
  - match:
    - queryParams: {a: {exact: b}}
      sourceNamespace: prod
      gateways: [mesh, bookinfo-gateway]
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    retries: {attempts: 3}
    timeout: 10s
    route:
    - destination: {host: ratings}
      headers: {request: {set: {x: y}}}
  tcp:
  - match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]
    route:
    - destination: {host: ratings}
",
        );
        assert_eq!(
            fields,
            [
                "spec.gateways[1]",
                "spec.exportTo",
                "spec.tcp[0].match[0].destinationSubnets",
                "spec.http[0].match[0].gateways[1]",
            ]
        );
    }

    #[test]
    fn destination_rule_fields() {
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
    connectionPool:
      tcp: {maxConnections: 10}
      http: {useClientProtocol: true}
    outlierDetection: {consecutive5xxErrors: 1, consecutiveErrors: 2}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: SIMPLE, credentialName: egress-cert}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
        localityLbSetting: {enabled: true}
",
        );
        assert_eq!(
            fields,
            [
                "spec.trafficPolicy.loadBalancer.simple",
                "spec.trafficPolicy.connectionPool.http.useClientProtocol",
                "spec.trafficPolicy.outlierDetection.consecutiveErrors",
                "spec.trafficPolicy.portLevelSettings[0].tls.credentialName",
                "spec.subsets[1].trafficPolicy.loadBalancer.localityLbSetting",
            ]
        );
        let honoured = unsupported(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: RANDOM, warmup: {duration: 10s}}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {tableSize: 65537}}
",
        );
        assert!(honoured.is_empty(), "{honoured:?}");
    }

    #[test]
    fn routes_on_jwt_claims_are_reported() {
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {\"@request.auth.claims.group\": {exact: admin}, \":method\": {exact: GET}}
    route: [{destination: {host: reviews}}]
",
        );
        assert_eq!(
            fields,
            ["spec.http[0].match[0].headers[@request.auth.claims.group]"]
        );
    }

    #[test]
    fn service_and_workload_entry_fields() {
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  addresses: [10.0.0.1]
  ports: [{number: 5432, name: tcp-db, protocol: TCP, targetPort: 5433}]
  location: MESH_INTERNAL
  resolution: DNS
  endpoints:
  - address: db1.example.com
    locality: us-east
",
        );
        assert_eq!(fields, ["spec.addresses", "spec.endpoints[0].locality"]);
        let fields = unsupported(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec:
  address: 127.0.10.1
  ports: {http: 9080}
  labels: {app: reviews}
  serviceAccount: reviews
  weight: 3
  network: net1
",
        );
        assert_eq!(fields, ["spec.network"]);
    }
}
