//! Istio resources -> a [`Snapshot`]: resolve short host names, select endpoints, pick one
//! VirtualService and one DestinationRule per host, and say what was left out and why.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use bosun_api::networking::{
    Destination, HeaderOperations as ApiHeaderOperations, Headers, HttpBody, HttpFaultInjection,
    HttpMatchRequest, HttpRetry, HttpRoute, RedirectPortSelection, ServiceEntry, Sidecar, TcpRoute,
    UnmatchedPreflights, VirtualService, WorkloadEntry, grpc_status_code,
};
use bosun_api::{Config, Resource};

use crate::host::Hostname;
use crate::mesh::OutboundPolicy;
use crate::policy::DestinationPolicy;
use crate::routing::MESH_GATEWAY;
use crate::routing::{
    AbortWith, ConnectionMatch, CorsPolicy, DirectResponse, Fault, FaultAbort, FaultDelay,
    HeaderChanges, HeaderOperations, HttpRouteRule, Mirror, Redirect, RedirectPort, RequestMatch,
    Retries, RetryPolicy, Rewrite, RouteDestination, Share, SourceMatch, StringMatch, TcpRouteRule,
    VirtualRoutes,
};
use crate::scope::{EgressHost, EgressScope, SidecarScope};
use crate::security::{AuthorizationPolicies, PeerAuthentications, RequestAuthentications};
use crate::service::{
    Address, Endpoint, Protocol, Resolution, Service, ServicePort, Workload, mutual_tls,
};
use crate::snapshot::Snapshot;

mod delegate;
mod policy;
mod security;

use self::delegate::{Delegates, ScopedRule};
use self::policy::policy_of;

/// Builds the snapshot from loaded resources. Resources that cannot take part (a
/// WorkloadEntry without an IP address, a second VirtualService for a host) are left out
/// with a warning naming them.
pub fn build<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> (Snapshot, Vec<String>) {
    let resources: Vec<&Resource> = resources.into_iter().collect();
    // VirtualServices without hosts are delegates: applied only through a root's rules.
    let mut delegates = Delegates::default();
    for resource in &resources {
        if let Resource::VirtualService(virtual_service) = resource
            && virtual_service.spec.hosts.is_empty()
        {
            delegates.insert(virtual_service);
        }
    }
    let mut warnings = Vec::new();
    let mut services: BTreeMap<Hostname, Arc<Service>> = BTreeMap::new();
    let mut workloads = Vec::new();
    let mut routes: BTreeMap<Hostname, Arc<VirtualRoutes>> = BTreeMap::new();
    let mut policies: BTreeMap<Hostname, Arc<DestinationPolicy>> = BTreeMap::new();
    let mut sidecars: Vec<Arc<SidecarScope>> = Vec::new();
    let mut peer_policies = Vec::new();
    let mut authorization = Vec::new();
    let mut authentication = Vec::new();

    for resource in resources {
        match resource {
            Resource::ServiceEntry(entry) => {
                for service in services_of(entry, &mut warnings) {
                    let host = service.hostname.clone();
                    match services.get(&host) {
                        Some(existing) => warnings.push(format!(
                            "{}: host {host} is already declared at {}; this declaration is ignored",
                            subject(resource),
                            existing.origin
                        )),
                        None => {
                            services.insert(host, Arc::new(service));
                        }
                    }
                }
            }
            Resource::WorkloadEntry(entry) => match workload_of(entry) {
                Ok(workload) => workloads.push(Arc::new(workload)),
                Err(reason) => warnings.push(format!("{}: {reason}", subject(resource))),
            },
            Resource::VirtualService(virtual_service) if virtual_service.spec.hosts.is_empty() => {}
            // Bound to gateways only: not a sidecar's (Istio's default is `[mesh]`).
            Resource::VirtualService(virtual_service)
                if !virtual_service.spec.gateways.is_empty()
                    && !virtual_service
                        .spec
                        .gateways
                        .iter()
                        .any(|g| g == MESH_GATEWAY) => {}
            Resource::VirtualService(virtual_service) => {
                let rules = delegate::expand(virtual_service, &delegates, &mut warnings);
                let virtual_routes = Arc::new(routes_of(virtual_service, &rules));
                for host in &virtual_routes.hosts {
                    if let Some(existing) = routes.get(host) {
                        warnings.push(format!(
                            "{}: host {host} is already routed by VirtualService {}; these rules are ignored for it",
                            subject(resource),
                            existing.source
                        ));
                        continue;
                    }
                    routes.insert(host.clone(), virtual_routes.clone());
                }
            }
            Resource::DestinationRule(rule) => {
                let policy = policy_of(rule);
                if let Some(existing) = policies.get(&policy.host) {
                    warnings.push(format!(
                        "{}: host {} already has DestinationRule {}; this one is ignored",
                        subject(resource),
                        policy.host,
                        existing.source
                    ));
                    continue;
                }
                policies.insert(policy.host.clone(), Arc::new(policy));
            }
            Resource::Sidecar(sidecar) => {
                let scope = sidecar_of(sidecar);
                // istiod takes one Sidecar per selection; later ones are ignored.
                if let Some(existing) = sidecars
                    .iter()
                    .find(|s| s.namespace == scope.namespace && s.selector == scope.selector)
                {
                    warnings.push(format!(
                        "{}: Sidecar {} already applies to the same workloads; this one is ignored",
                        subject(resource),
                        existing.source
                    ));
                    continue;
                }
                sidecars.push(Arc::new(scope));
            }
            Resource::PeerAuthentication(config) => {
                peer_policies.push(security::peer_policy_of(config));
            }
            Resource::AuthorizationPolicy(config) => {
                authorization.push(security::authorization_policy_of(config));
            }
            Resource::RequestAuthentication(config) => {
                authentication.push(security::request_authentication_of(config));
            }
            Resource::LocalWorkload(_) | Resource::Unsupported { .. } => {}
        }
    }
    (
        Snapshot::new(services, workloads, routes, policies)
            .with_sidecars(sidecars)
            .with_security(
                PeerAuthentications::new(peer_policies),
                AuthorizationPolicies::new(authorization),
            )
            .with_request_authentications(RequestAuthentications::new(authentication)),
        warnings,
    )
}

fn sidecar_of(sidecar: &Config<Sidecar>) -> SidecarScope {
    let namespace = &sidecar.meta.namespace;
    SidecarScope {
        source: source(sidecar),
        namespace: namespace.clone(),
        selector: sidecar
            .spec
            .workload_selector
            .as_ref()
            .map(|selector| selector.labels.clone())
            .filter(|labels| !labels.is_empty()),
        egress: sidecar
            .spec
            .egress
            .iter()
            .map(|listener| EgressScope {
                port: listener
                    .port
                    .as_ref()
                    .and_then(|port| port.number)
                    .and_then(|number| u16::try_from(number).ok())
                    .filter(|number| *number > 0),
                hosts: listener
                    .hosts
                    .iter()
                    .filter_map(|host| EgressHost::parse(host, namespace))
                    .collect(),
            })
            .collect(),
        outbound: sidecar
            .spec
            .outbound_traffic_policy
            .as_ref()
            .map(|policy| match policy.mode {
                bosun_api::mesh::OutboundMode::AllowAny => OutboundPolicy::AllowAny,
                bosun_api::mesh::OutboundMode::RegistryOnly => OutboundPolicy::RegistryOnly,
            }),
    }
}

fn subject(resource: &Resource) -> String {
    format!("{} ({})", resource.reference(), resource.origin())
}

fn source<T>(config: &Config<T>) -> String {
    format!("{}/{}", config.meta.namespace, config.meta.name)
}

fn services_of(entry: &Config<ServiceEntry>, warnings: &mut Vec<String>) -> Vec<Service> {
    let namespace = &entry.meta.namespace;
    let ports: Vec<ServicePort> = entry
        .spec
        .ports
        .iter()
        .filter_map(|port| {
            Some(ServicePort {
                number: u16::try_from(port.number).ok()?,
                name: port.name.clone(),
                protocol: protocol(bosun_api::Protocol::of_port(
                    port.protocol.as_deref(),
                    &port.name,
                )),
                target_port: port.target_port.and_then(|p| u16::try_from(p).ok()),
            })
        })
        .collect();
    let resolution = resolution(entry.spec.resolution());
    let mut inline_endpoints = Vec::new();
    for endpoint in &entry.spec.endpoints {
        match endpoint_of(endpoint, resolution) {
            Ok(endpoint) => inline_endpoints.push(endpoint),
            Err(reason) => warnings.push(format!(
                "ServiceEntry {namespace}/{} ({}): endpoint left out: {reason}",
                entry.meta.name, entry.origin
            )),
        }
    }
    let workload_selector = entry
        .spec
        .workload_selector
        .as_ref()
        .map(|selector| selector.labels.clone());
    entry
        .spec
        .hosts
        .iter()
        .map(|host| {
            // DNS with no endpoints: the sidecar resolves the host itself (Istio's rule).
            let inline_endpoints = if resolution.is_dns() && entry.spec.endpoints.is_empty() {
                vec![named_endpoint(host)]
            } else {
                inline_endpoints.clone()
            };
            Service {
                hostname: Hostname::resolve(host, namespace),
                namespace: namespace.clone(),
                ports: ports.clone(),
                workload_selector: workload_selector.clone(),
                inline_endpoints,
                resolution,
                origin: entry.origin.to_string(),
            }
        })
        .collect()
}

fn resolution(resolution: bosun_api::networking::Resolution) -> Resolution {
    use bosun_api::networking::Resolution as Api;
    match resolution {
        Api::Static => Resolution::Static,
        Api::None => Resolution::Passthrough,
        Api::Dns => Resolution::Dns,
        Api::DnsRoundRobin => Resolution::DnsRoundRobin,
        // Reported as not supported yet; resolved per endpoint name meanwhile.
        Api::DynamicDns => Resolution::Dns,
    }
}

/// The endpoint a DNS-resolved host with no `endpoints` gets: its own name.
fn named_endpoint(host: &str) -> Endpoint {
    Endpoint {
        address: Address::Name(host.to_owned()),
        ports: BTreeMap::new(),
        labels: BTreeMap::new(),
        service_account: None,
        mutual_tls: false,
        weight: 1,
    }
}

fn protocol(protocol: bosun_api::Protocol) -> Protocol {
    use bosun_api::Protocol as Api;
    match protocol {
        Api::Http | Api::HttpProxy => Protocol::Http,
        Api::Http2 | Api::Grpc | Api::GrpcWeb => Protocol::Http2,
        Api::Https => Protocol::Https,
        Api::Tls => Protocol::Tls,
        Api::Tcp | Api::Mongo | Api::Redis | Api::Mysql => Protocol::Tcp,
        Api::Udp | Api::Unsupported => Protocol::Unknown,
    }
}

fn address(entry: &WorkloadEntry) -> Result<IpAddr, String> {
    let address = entry
        .address
        .as_deref()
        .ok_or("it has no address, so no traffic can reach it")?;
    address.parse().map_err(|_| {
        format!("address {address:?} is not an IP address (a name needs `resolution: DNS`)")
    })
}

fn ports(entry: &WorkloadEntry) -> BTreeMap<String, u16> {
    entry
        .ports
        .iter()
        .filter_map(|(name, port)| Some((name.clone(), u16::try_from(*port).ok()?)))
        .collect()
}

/// A ServiceEntry endpoint: an IP, or with DNS resolution a name the sidecar resolves.
fn endpoint_of(entry: &WorkloadEntry, resolution: Resolution) -> Result<Endpoint, String> {
    let address = match address(entry) {
        Ok(ip) => Address::Ip(ip),
        Err(_) if resolution.is_dns() && entry.address.is_some() => {
            Address::Name(entry.address.clone().unwrap_or_default())
        }
        Err(reason) => return Err(reason),
    };
    Ok(Endpoint {
        address,
        ports: ports(entry),
        labels: entry.labels.clone(),
        service_account: entry.service_account.clone(),
        mutual_tls: mutual_tls(&entry.labels, entry.service_account.as_deref()),
        weight: entry.weight.unwrap_or(1),
    })
}

fn workload_of(entry: &Config<WorkloadEntry>) -> Result<Workload, String> {
    Ok(Workload {
        name: entry.meta.name.clone(),
        namespace: entry.meta.namespace.clone(),
        address: address(&entry.spec)?,
        ports: ports(&entry.spec),
        labels: entry.spec.labels.clone(),
        service_account: entry
            .spec
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        mutual_tls: mutual_tls(&entry.spec.labels, entry.spec.service_account.as_deref()),
        weight: entry.spec.weight.unwrap_or(1),
    })
}

/// The VirtualService's routes, from its rules with delegations expanded (each rule
/// resolving short names in its own VirtualService's namespace).
fn routes_of(virtual_service: &Config<VirtualService>, rules: &[ScopedRule]) -> VirtualRoutes {
    let namespace = &virtual_service.meta.namespace;
    VirtualRoutes {
        source: source(virtual_service),
        namespace: namespace.clone(),
        hosts: virtual_service
            .spec
            .hosts
            .iter()
            .map(|host| Hostname::resolve(host, namespace))
            .collect(),
        http: rules
            .iter()
            .filter_map(|(route, namespace)| rule_of(route, namespace))
            .collect(),
        tcp: virtual_service
            .spec
            .tcp
            .iter()
            .map(|route| tcp_rule_of(route, namespace))
            .collect(),
    }
}

/// A weighted destination of an `http` or `tcp` rule: Istio gives a lone destination
/// without a weight everything, and others without one nothing.
fn destination_of(
    destination: &Destination,
    weight: Option<i32>,
    only_one: bool,
    namespace: &str,
) -> RouteDestination {
    RouteDestination {
        host: Hostname::resolve(&destination.host, namespace),
        subset: destination.subset.clone(),
        port: destination
            .port
            .as_ref()
            .and_then(|port| port.number)
            .and_then(|port| u16::try_from(port).ok()),
        weight: match weight {
            Some(weight) => u32::try_from(weight).unwrap_or(0),
            None if only_one => 100,
            None => 0,
        },
        headers: HeaderOperations::default(),
    }
}

fn tcp_rule_of(route: &TcpRoute, namespace: &str) -> TcpRouteRule {
    let only_one = route.route.len() == 1;
    TcpRouteRule {
        matches: route
            .matches
            .iter()
            .map(|condition| ConnectionMatch {
                port: condition.port.and_then(|port| u16::try_from(port).ok()),
                source: SourceMatch {
                    labels: condition.source_labels.clone(),
                    namespace: condition
                        .source_namespace
                        .clone()
                        .filter(|ns| !ns.is_empty()),
                    gateways: condition.gateways.clone(),
                },
            })
            .collect(),
        destinations: route
            .route
            .iter()
            .map(|destination| {
                destination_of(
                    &destination.destination,
                    destination.weight,
                    only_one,
                    namespace,
                )
            })
            .collect(),
    }
}

/// Whether a match block names a JWT claim (`@request.auth.claims.*`): not honoured yet
/// (reported as such), and never matched, so the block takes no request.
fn matches_jwt_claims(request: &HttpMatchRequest) -> bool {
    request
        .headers
        .keys()
        .chain(request.without_headers.keys())
        .any(|name| name.starts_with(bosun_api::validation::JWT_CLAIM_PREFIX))
}

/// The rule a VirtualService `http` entry makes; `None` when every one of its match
/// blocks names a JWT claim (so it takes no request).
fn rule_of(route: &HttpRoute, namespace: &str) -> Option<HttpRouteRule> {
    if !route.matches.is_empty() && route.matches.iter().all(matches_jwt_claims) {
        return None;
    }
    // Istio: a lone destination without a weight takes everything.
    let only_one = route.route.len() == 1;
    Some(HttpRouteRule {
        name: route.name.clone(),
        matches: route
            .matches
            .iter()
            .filter(|request| !matches_jwt_claims(request))
            .map(match_of)
            .collect(),
        destinations: route
            .route
            .iter()
            .map(|destination| RouteDestination {
                headers: header_operations(destination.headers.as_ref()),
                ..destination_of(
                    &destination.destination,
                    destination.weight,
                    only_one,
                    namespace,
                )
            })
            .collect(),
        timeout: route.timeout.map(|timeout| timeout.as_std()),
        retries: retries_of(route.retries.as_ref()),
        fault: route.fault.as_ref().and_then(fault_of),
        headers: header_operations(route.headers.as_ref()),
        rewrite: route.rewrite.as_ref().map(|rewrite| Rewrite {
            uri: rewrite.uri.clone().filter(|uri| !uri.is_empty()),
            uri_regex: rewrite.uri_regex_rewrite.as_ref().and_then(|regex| {
                Some((
                    regex.pattern.clone()?,
                    regex.rewrite.clone().unwrap_or_default(),
                ))
            }),
            authority: rewrite.authority.clone().filter(|a| !a.is_empty()),
        }),
        redirect: route.redirect.as_ref().map(|redirect| Redirect {
            uri: redirect.uri.clone().filter(|uri| !uri.is_empty()),
            prefix_rewrite: redirect.prefix_rewrite.clone().filter(|p| !p.is_empty()),
            authority: redirect.authority.clone().filter(|a| !a.is_empty()),
            port: match (redirect.port, redirect.derive_port) {
                (Some(port), _) => u16::try_from(port).ok().map(RedirectPort::Number),
                (None, Some(RedirectPortSelection::FromRequestPort)) => {
                    Some(RedirectPort::FromRequest)
                }
                (None, _) => None,
            },
            scheme: redirect.scheme.clone().filter(|s| !s.is_empty()),
            code: redirect
                .redirect_code
                .and_then(|code| u16::try_from(code).ok()),
        }),
        mirrors: mirrors_of(route, namespace),
        cors: route.cors_policy.as_ref().map(|cors| CorsPolicy {
            allow_origins: if cors.allow_origins.is_empty() {
                cors.allow_origin
                    .iter()
                    .map(|origin| StringMatch::Exact(origin.clone()))
                    .collect()
            } else {
                cors.allow_origins.iter().map(string_match).collect()
            },
            allow_methods: cors.allow_methods.clone(),
            allow_headers: cors.allow_headers.clone(),
            expose_headers: cors.expose_headers.clone(),
            max_age: cors.max_age.map(|age| age.as_std()),
            allow_credentials: cors.allow_credentials,
            ignore_unmatched_preflights: cors.unmatched_preflights
                == Some(UnmatchedPreflights::Ignore),
        }),
        direct_response: route.direct_response.as_ref().map(|direct| DirectResponse {
            status: u16::try_from(direct.status).unwrap_or(500),
            body: direct.body.as_ref().map(|body| match body {
                HttpBody::String(text) => text.clone().into_bytes(),
                // Validation has refused bodies that are not base64.
                HttpBody::Bytes(encoded) => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .unwrap_or_default()
                }
            }),
        }),
    })
}

/// `mirror` (with `mirrorPercentage`, or the older `mirrorPercent`) first, then each of
/// `mirrors` with its own `percentage`.
fn mirrors_of(route: &HttpRoute, namespace: &str) -> Vec<Mirror> {
    // A mirror's destination carries no weight: its share is the percentage.
    let destination = |d: &Destination| destination_of(d, Some(0), false, namespace);
    let legacy_percent = route.mirror_percent.or(route.mirror_percent_snake);
    let first = route.mirror.as_ref().map(|mirror| Mirror {
        destination: destination(mirror),
        share: match (route.mirror_percentage, legacy_percent) {
            (Some(percentage), _) => Share::Percentage(percentage.value),
            (None, Some(percent)) => Share::Percent(percent),
            (None, None) => Share::Unset,
        },
    });
    first
        .into_iter()
        .chain(route.mirrors.iter().map(|mirror| Mirror {
            destination: destination(&mirror.destination),
            share: mirror.percentage.map_or(Share::Unset, |percentage| {
                Share::Percentage(percentage.value)
            }),
        }))
        .collect()
}

fn header_operations(headers: Option<&Headers>) -> HeaderOperations {
    let changes = |ops: Option<&ApiHeaderOperations>| {
        ops.map(|ops| HeaderChanges {
            set: ops
                .set
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            add: ops
                .add
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            remove: ops.remove.clone(),
        })
        .unwrap_or_default()
    };
    HeaderOperations {
        request: changes(headers.and_then(|h| h.request.as_ref())),
        response: changes(headers.and_then(|h| h.response.as_ref())),
    }
}

fn retries_of(retries: Option<&HttpRetry>) -> Retries {
    let Some(retries) = retries else {
        return Retries::MeshDefault;
    };
    let Ok(attempts @ 1..) = u32::try_from(retries.attempts) else {
        return Retries::Disabled;
    };
    Retries::Policy(RetryPolicy {
        attempts,
        per_try_timeout: retries.per_try_timeout.map(|timeout| timeout.as_std()),
        retry_on: retries.retry_on.clone().filter(|on| !on.trim().is_empty()),
        retry_remote_localities: retries.retry_remote_localities.unwrap_or(false),
        avoid_previous_hosts: retries.retry_ignore_previous_hosts.unwrap_or(true),
        backoff: retries.backoff.map(|backoff| backoff.as_std()),
    })
}

/// Istio's fault: a fixed delay and an HTTP or gRPC abort. Validation has refused the
/// rest (an exponential delay, an HTTP/2 error), so it is left out here.
fn fault_of(fault: &HttpFaultInjection) -> Option<Fault> {
    let share = |percentage: Option<f64>, percent: Option<i32>| match (percentage, percent) {
        (Some(value), _) => Share::Percentage(value),
        (None, Some(percent)) => Share::Percent(u32::try_from(percent).unwrap_or(0)),
        (None, None) => Share::Unset,
    };
    let delay = fault.delay.as_ref().and_then(|delay| {
        Some(FaultDelay {
            fixed_delay: delay.fixed_delay?.as_std(),
            share: share(delay.percentage.map(|p| p.value), delay.percent),
        })
    });
    let abort = fault.abort.as_ref().and_then(|abort| {
        let with = match (&abort.http_status, &abort.grpc_status) {
            (Some(status), _) => AbortWith::HttpStatus(u16::try_from(*status).ok()?),
            (None, Some(name)) => AbortWith::GrpcStatus(grpc_status_code(name)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            with,
            share: share(abort.percentage.map(|p| p.value), None),
        })
    });
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

fn string_match(value: &bosun_api::StringMatch) -> StringMatch {
    match value {
        bosun_api::StringMatch::Exact(exact) => StringMatch::Exact(exact.clone()),
        bosun_api::StringMatch::Prefix(prefix) => StringMatch::Prefix(prefix.clone()),
        bosun_api::StringMatch::Regex(regex) => StringMatch::Regex(regex.clone()),
    }
}

fn match_of(request: &HttpMatchRequest) -> RequestMatch {
    let mut headers: Vec<(String, StringMatch)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), string_match(value)))
        .collect();
    // Istio matches method, scheme and authority as the HTTP/2 pseudo-headers.
    if let Some(method) = &request.method {
        headers.push((":method".to_string(), string_match(method)));
    }
    if let Some(scheme) = &request.scheme {
        headers.push((":scheme".to_string(), string_match(scheme)));
    }
    if let Some(authority) = &request.authority {
        headers.push((":authority".to_string(), string_match(authority)));
    }
    RequestMatch {
        uri: request.uri.as_ref().map(string_match),
        headers,
        without_headers: request
            .without_headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), string_match(value)))
            .collect(),
        port: request.port.and_then(|port| u16::try_from(port).ok()),
        query_params: request
            .query_params
            .iter()
            .map(|(name, value)| (name.clone(), string_match(value)))
            .collect(),
        ignore_uri_case: request.ignore_uri_case.unwrap_or(false),
        source: SourceMatch {
            labels: request.source_labels.clone(),
            namespace: request.source_namespace.clone().filter(|ns| !ns.is_empty()),
            gateways: request.gateways.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(yaml: &str) -> Vec<Resource> {
        let loaded = bosun_api::load_str(yaml, Path::new("resources.yaml"));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.resources
    }

    const MESH: &str = "
apiVersion: networking.istio.io/v1
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
spec: {address: 127.0.10.3, ports: {http: 9080}, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: 127.0.10.4, ports: {http: 9080}, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {End-User: {exact: jason}}, method: {exact: GET}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
";

    #[test]
    fn short_names_resolve_and_subsets_select_by_label() {
        let (snapshot, warnings) = build(&load(MESH));
        assert!(warnings.is_empty(), "{warnings:?}");
        let host = Hostname::new("reviews.default.svc.cluster.local");
        let service = snapshot.service(&host).expect("service");
        let port = &service.ports[0];
        assert_eq!(snapshot.endpoints(service, port, None).len(), 2);
        let v2 = snapshot.endpoints(service, port, Some("v2"));
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].address.to_string(), "127.0.10.4");
        assert!(snapshot.endpoints(service, port, Some("v9")).is_empty());
        let load_balancer = |subset| {
            snapshot
                .traffic_policy(&host, port.number, Some(subset))
                .load_balancer
                .unwrap_or_default()
                .algorithm
        };
        assert_eq!(load_balancer("v1"), crate::LoadBalancer::Random);
        assert_eq!(load_balancer("v2"), crate::LoadBalancer::LeastRequest);
    }

    #[test]
    fn virtual_service_rules_keep_order_weights_and_matches() {
        let (snapshot, _) = build(&load(MESH));
        let routes = snapshot
            .routes_for(&Hostname::new("reviews.default.svc.cluster.local"))
            .expect("routes");
        assert_eq!(routes.http.len(), 2);
        let jason = &routes.http[0];
        assert_eq!(
            jason.destinations[0].weight, 100,
            "a lone destination takes all"
        );
        assert_eq!(
            jason.matches[0].headers,
            vec![
                ("end-user".to_string(), StringMatch::Exact("jason".into())),
                (":method".to_string(), StringMatch::Exact("GET".into())),
            ]
        );
        let weights: Vec<u32> = routes.http[1]
            .destinations
            .iter()
            .map(|d| d.weight)
            .collect();
        assert_eq!(weights, vec![90, 10]);
    }

    #[test]
    fn a_workload_without_an_ip_is_left_out_with_a_reason() {
        let yaml = "
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec: {address: vm.example.com, labels: {app: x}}
";
        let (snapshot, warnings) = build(&load(yaml));
        assert!(snapshot.workloads().is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("WorkloadEntry default/vm (resources.yaml:2)"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("not an IP address"), "{warnings:?}");
    }

    #[test]
    fn match_blocks_on_jwt_claims_take_no_request_until_claims_are_routed() {
        let mesh = MESH.replace(
            "  - match: [{headers: {End-User: {exact: jason}}, method: {exact: GET}}]",
            "  - match: [{headers: {\"@request.auth.claims.group\": {exact: admin}}}]",
        );
        let (snapshot, _) = build(&load(&mesh));
        let routes = snapshot
            .routes_for(&Hostname::new("reviews.default.svc.cluster.local"))
            .expect("routes");
        assert_eq!(routes.http.len(), 1, "the claims rule is left out");
        assert!(routes.http[0].matches.is_empty());
    }

    #[test]
    fn a_delegation_is_replaced_by_the_delegates_rules_and_gateway_only_rules_skip_sidecars() {
        let (snapshot, warnings) = build(&load(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: root
    match: [{uri: {prefix: /reviews}}]
    timeout: 3s
    delegate: {name: reviews-delegate}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-delegate}
spec:
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: outside
    match: [{uri: {prefix: /ratings}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-edge}
spec:
  hosts: [ratings]
  gateways: [bookinfo-gateway]
  http:
  - route: [{destination: {host: ratings}}]
",
        ));
        let host = Hostname::resolve("reviews", "default");
        let routes = snapshot.routes_for(&host).expect("reviews routes");
        let names: Vec<_> = routes.http.iter().map(|rule| rule.name.clone()).collect();
        assert_eq!(names, [Some("root-jason".into()), Some("root".into())]);
        let jason = &routes.http[0];
        assert_eq!(
            jason.matches[0].uri,
            Some(StringMatch::Prefix("/reviews".into()))
        );
        assert_eq!(jason.matches[0].headers.len(), 1);
        assert_eq!(jason.timeout, Some(std::time::Duration::from_secs(3)));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("outside") && w.contains("left out")),
            "{warnings:?}"
        );
        assert!(
            snapshot
                .routes_for(&Hostname::resolve("ratings", "default"))
                .is_none()
        );
    }
}
