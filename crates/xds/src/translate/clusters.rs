//! Clusters and their endpoints: one per service port, and one per DestinationRule subset.

use std::collections::HashMap;
use std::net::IpAddr;

use bosun_ca::Identity;
use bosun_model::snapshot::ResolvedEndpoint;
use bosun_model::{
    ClientTls, MeshSettings, MtlsMode, OutboundPolicy, Protocol, Resolution, Service, ServicePort,
    Snapshot, TrafficPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http1ProtocolOptions,
    Http2ProtocolOptions, Metadata, SocketAddress, address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use envoy_types::util::pack_any;

use super::names::outbound_cluster_name;
use super::passthrough;
use super::traffic_policy::{self, CONNECT_TIMEOUT, HttpOptions};
use super::{telemetry, tls};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub(super) struct Outbound {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
}

/// Every outbound cluster of the mesh with its load assignment.
pub(super) fn outbound(snapshot: &Snapshot, trust_domain: &str) -> Outbound {
    let mut out = Outbound {
        clusters: Vec::new(),
        endpoints: Vec::new(),
    };
    for service in snapshot.services() {
        let subsets: Vec<Option<&str>> = std::iter::once(None)
            .chain(
                snapshot
                    .policy_for(&service.hostname)
                    .into_iter()
                    .flat_map(|policy| policy.subsets.iter())
                    .map(|subset| Some(subset.name.as_str())),
            )
            .collect();
        let identities: Vec<String> = snapshot
            .service_accounts(service)
            .iter()
            .map(|account| Identity::new(trust_domain, &service.namespace, account).uri())
            .collect();
        for port in &service.ports {
            for subset in &subsets {
                let name = outbound_cluster_name(port.number, *subset, &service.hostname);
                let policy = snapshot.traffic_policy(&service.hostname, port.number, *subset);
                let endpoints = snapshot.endpoints(service, port, *subset);
                let mesh = snapshot.mesh();
                let mut cluster = match service.resolution {
                    Resolution::Static => {
                        eds_cluster(&name, &policy, port.protocol, mesh.connect_timeout)
                    }
                    // istiod leaves out a DNS cluster with nothing to resolve.
                    Resolution::Dns | Resolution::DnsRoundRobin if endpoints.is_empty() => {
                        continue;
                    }
                    Resolution::Dns | Resolution::DnsRoundRobin => dns_cluster(
                        &name,
                        &policy,
                        port.protocol,
                        mesh,
                        service.resolution == Resolution::DnsRoundRobin,
                        load_assignment(name.clone(), &endpoints),
                    ),
                    Resolution::Passthrough => original_destination_cluster(
                        &name,
                        &policy,
                        port.protocol,
                        mesh.connect_timeout,
                    ),
                };
                cluster.metadata = Some(telemetry_metadata(&[service]));
                match &policy.tls {
                    Some(ClientTls::Disable) => {}
                    Some(ClientTls::IstioMutual {
                        sni: own_sni,
                        subject_alt_names,
                    }) => {
                        let identities = if subject_alt_names.is_empty() {
                            &identities
                        } else {
                            subject_alt_names
                        };
                        let sni = own_sni.clone().unwrap_or_else(|| sni(&name));
                        cluster.transport_socket =
                            Some(tls::upstream_mtls(identities, &sni, port.protocol));
                    }
                    Some(ClientTls::Originate(originated)) => {
                        cluster.transport_socket = Some(tls::upstream_originated(
                            originated,
                            port.protocol,
                            policy
                                .connection_pool
                                .as_ref()
                                .and_then(|pool| pool.h2_upgrade)
                                == Some(true),
                        ));
                    }
                    // Auto mTLS: only services with a sidecar behind them need the
                    // sockets, and none where the service's namespace disables mTLS.
                    None => {
                        let disabled = snapshot.namespace_mtls_mode(&service.namespace)
                            == Some(MtlsMode::Disable);
                        if !identities.is_empty() && mesh.auto_mtls && !disabled {
                            cluster.transport_socket_matches =
                                tls::auto_mtls(&identities, &sni(&name), port.protocol);
                        }
                    }
                }
                out.clusters.push(cluster);
                if service.resolution == Resolution::Static {
                    out.endpoints.push(load_assignment(name, &endpoints));
                }
            }
        }
    }
    // Needed where the mesh, or any Sidecar, lets unknown hosts through.
    let allow_any = snapshot.mesh().outbound == OutboundPolicy::AllowAny
        || snapshot
            .sidecars()
            .iter()
            .any(|sidecar| sidecar.outbound == Some(OutboundPolicy::AllowAny));
    if allow_any {
        out.clusters.push(passthrough::passthrough_cluster(
            snapshot.mesh().connect_timeout,
        ));
    }
    out
}

/// The SNI a sidecar sends to a cluster's endpoints: Istio's, the cluster name with
/// each `|` made `_.` (`outbound_.9080_._.reviews.default.svc.cluster.local`).
fn sni(cluster_name: &str) -> String {
    cluster_name.replace('|', "_.")
}

/// A cluster with endpoints delivered over ADS, under the destination's traffic policy.
fn eds_cluster(
    name: &str,
    policy: &TrafficPolicy,
    protocol: Protocol,
    connect_timeout: std::time::Duration,
) -> Cluster {
    let cluster = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ConfigSource {
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                resource_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            }),
            service_name: name.to_string(),
        }),
        ..Default::default()
    };
    under_policy(cluster, policy, protocol, connect_timeout)
}

/// `cluster` under the destination's traffic policy, with the protocol options it makes.
fn under_policy(
    mut cluster: Cluster,
    policy: &TrafficPolicy,
    protocol: Protocol,
    connect_timeout: std::time::Duration,
) -> Cluster {
    let options = traffic_policy::apply(&mut cluster, policy, protocol, connect_timeout);
    cluster.typed_extension_protocol_options = protocol_options(options);
    cluster
}

/// The cluster of a ServiceEntry with `resolution: NONE`: requests go where they say,
/// under the destination's traffic policy (its load balancer aside: the request picks).
fn original_destination_cluster(
    name: &str,
    policy: &TrafficPolicy,
    protocol: Protocol,
    connect_timeout: std::time::Duration,
) -> Cluster {
    let cluster = Cluster {
        name: name.to_string(),
        ..Default::default()
    };
    let mut cluster = under_policy(cluster, policy, protocol, connect_timeout);
    passthrough::to_original_destination(&mut cluster);
    cluster
}

/// A cluster whose endpoints the proxy finds by resolving their names itself, as istiod
/// writes it: STRICT_DNS (every address of every name) or LOGICAL_DNS (the first
/// address), IPv4 answers (the proxies here have IPv4 addresses), the mesh's refresh
/// rate, and the answer's TTL when it is shorter.
#[allow(deprecated)] // istiod still sets the cluster-level DNS fields.
fn dns_cluster(
    name: &str,
    policy: &TrafficPolicy,
    protocol: Protocol,
    mesh: &MeshSettings,
    logical: bool,
    endpoints: ClusterLoadAssignment,
) -> Cluster {
    let discovery = if logical {
        cluster::DiscoveryType::LogicalDns
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let cluster = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        load_assignment: Some(endpoints),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        dns_refresh_rate: Some(super::resilience::duration(mesh.dns_refresh_rate)),
        respect_dns_ttl: true,
        ..Default::default()
    };
    under_policy(cluster, policy, protocol, mesh.connect_timeout)
}

/// The services a cluster carries requests for, as metrics name them.
pub(super) fn telemetry_metadata(services: &[&Service]) -> Metadata {
    Metadata {
        filter_metadata: HashMap::from([(
            telemetry::ISTIO.to_string(),
            telemetry::services(services),
        )]),
        ..Default::default()
    }
}

/// A cluster with one fixed endpoint: the local app behind an inbound listener.
pub(super) fn static_cluster(name: &str, ip: IpAddr, port: u16, protocol: Protocol) -> Cluster {
    let endpoint = ResolvedEndpoint {
        address: bosun_model::Address::Ip(ip),
        port,
        weight: 1,
        mutual_tls: false,
        workload: None,
    };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment(name.to_string(), &[endpoint])),
        connect_timeout: Some(CONNECT_TIMEOUT),
        circuit_breakers: Some(traffic_policy::circuit_breakers(None)),
        typed_extension_protocol_options: protocol_options(HttpOptions {
            http2: protocol == Protocol::Http2,
            ..HttpOptions::default()
        }),
        ..Default::default()
    }
}

/// The cluster's HttpProtocolOptions: h2c upstream for HTTP/2 (and gRPC) ports and
/// upgraded ones, HTTP/1.1 otherwise (Envoy's default), and the pool's connection limits.
pub(super) fn protocol_options(options: HttpOptions) -> HashMap<String, Any> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    let mut out = HashMap::new();
    if !options.http2 && options.common.is_none() && options.upstream.is_none() {
        return out;
    }
    // Envoy requires the protocol to be named once the options are there.
    let protocol_config = if options.http2 {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions {
            connection_keepalive: options.http2_keepalive,
            ..Default::default()
        })
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    let upstream_protocol_options = Some(
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(protocol_config),
            },
        ),
    );
    let http = HttpProtocolOptions {
        common_http_protocol_options: options.common,
        upstream_http_protocol_options: options.upstream,
        upstream_protocol_options,
        ..Default::default()
    };
    out.insert(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(http));
    out
}

fn load_assignment(cluster_name: String, endpoints: &[ResolvedEndpoint]) -> ClusterLoadAssignment {
    let lb_endpoints = endpoints
        .iter()
        .map(|endpoint| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: endpoint.address.to_string(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                            endpoint.port,
                        ))),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value {
                value: endpoint.weight,
            }),
            metadata: endpoint_metadata(endpoint),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name,
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What istiod writes on an endpoint: its tlsMode when a sidecar takes mutual TLS
/// there, and the workload behind it.
fn endpoint_metadata(endpoint: &ResolvedEndpoint) -> Option<Metadata> {
    let tls_mode = endpoint.mutual_tls.then(|| {
        (
            tls::TRANSPORT_SOCKET_MATCH.to_string(),
            tls::istio_tls_mode(),
        )
    });
    let workload = endpoint
        .workload
        .as_ref()
        .map(|workload| (telemetry::ISTIO.to_string(), telemetry::workload(workload)));
    let filter_metadata: HashMap<_, _> = tls_mode.into_iter().chain(workload).collect();
    (!filter_metadata.is_empty()).then(|| Metadata {
        filter_metadata,
        ..Default::default()
    })
}

/// The service port a destination without a port goes to: the port the request came in
/// on when the destination has it, else the destination's only (or first HTTP) port.
pub(super) fn destination_port(
    service: &Service,
    requested: Option<u16>,
    incoming: u16,
) -> Option<&ServicePort> {
    match requested {
        Some(port) => service.port(port),
        None => service
            .port(incoming)
            .or_else(|| (service.ports.len() == 1).then(|| &service.ports[0]))
            .or_else(|| service.default_http_port()),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};

    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use prost::Message;

    use super::HTTP_PROTOCOL_OPTIONS;
    use crate::translate::test_mesh::{node, snapshot};
    use crate::translate::{DEFAULT_TRUST_DOMAIN, generate};

    const EXTERNAL: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: api-1.example.com, ports: {http: 8080}, weight: 3}
  - {address: 192.0.2.7}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search}
spec:
  hosts: [search.example.com]
  ports: [{number: 443, name: http-s, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: internal}
spec:
  hosts: [db.internal]
  ports: [{number: 5000, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: none, labels: {version: none}}]
";

    fn cluster<'a>(clusters: &'a [Cluster], name: &str) -> &'a Cluster {
        clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("cluster {name}"))
    }

    fn discovery(c: &Cluster) -> cluster::DiscoveryType {
        match c.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(t)) => {
                cluster::DiscoveryType::try_from(t).expect("a type")
            }
            _ => panic!("{} has no discovery type", c.name),
        }
    }

    fn hosts(c: &Cluster) -> Vec<(String, u32, u32)> {
        use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
        use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
        let assignment = c.load_assignment.as_ref().expect("inline endpoints");
        assignment.endpoints[0]
            .lb_endpoints
            .iter()
            .map(|lb| {
                let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier
                else {
                    panic!("an endpoint")
                };
                let Some(address::Address::SocketAddress(socket)) =
                    endpoint.address.as_ref().and_then(|a| a.address.as_ref())
                else {
                    panic!("a socket address")
                };
                let Some(socket_address::PortSpecifier::PortValue(port)) = socket.port_specifier
                else {
                    panic!("a port")
                };
                let weight = lb.load_balancing_weight.as_ref().map_or(0, |w| w.value);
                (socket.address.clone(), port, weight)
            })
            .collect()
    }

    #[test]
    #[allow(deprecated)] // istiod sets the cluster-level DNS fields.
    fn service_entry_resolutions_become_the_cluster_types_istiod_writes() {
        let set = generate(
            &snapshot(EXTERNAL),
            &node([127, 0, 10, 1], "client"),
            DEFAULT_TRUST_DOMAIN,
        );
        let api = cluster(&set.clusters, "outbound|80||api.example.com");
        assert_eq!(discovery(api), cluster::DiscoveryType::StrictDns);
        assert_eq!(
            hosts(api),
            [
                ("api-1.example.com".to_owned(), 8080, 3),
                ("192.0.2.7".to_owned(), 80, 1)
            ]
        );
        assert_eq!(
            api.dns_lookup_family,
            cluster::DnsLookupFamily::V4Only as i32
        );
        assert!(api.respect_dns_ttl);
        assert_eq!(api.dns_refresh_rate.as_ref().map(|d| d.seconds), Some(60));
        assert_eq!(api.lb_policy, cluster::LbPolicy::RoundRobin as i32);
        // A subset no endpoint is in has no cluster (nothing to resolve), as in istiod.
        assert!(
            !set.clusters
                .iter()
                .any(|c| c.name == "outbound|80|none|api.example.com")
        );

        let search = cluster(&set.clusters, "outbound|443||search.example.com");
        assert_eq!(discovery(search), cluster::DiscoveryType::LogicalDns);
        assert_eq!(hosts(search), [("search.example.com".to_owned(), 443, 1)]);

        let internal = cluster(&set.clusters, "outbound|5000||db.internal");
        assert_eq!(discovery(internal), cluster::DiscoveryType::OriginalDst);
        assert_eq!(
            internal.lb_policy,
            cluster::LbPolicy::ClusterProvided as i32
        );

        // Only the statically resolved services' clusters take endpoints over EDS.
        let names: Vec<&str> = set
            .endpoints
            .iter()
            .map(|e| e.cluster_name.as_str())
            .collect();
        assert!(
            names
                .iter()
                .all(|name| !name.contains("example.com") && !name.contains("internal")),
            "{names:?}"
        );
    }

    /// Istio's egress TLS origination as istiod writes it: file secrets over SDS, the
    /// system's roots by default, auto SNI and SAN validation without an `sni`, and no
    /// mesh sockets for a destination whose rule says how to speak TLS.
    #[test]
    fn originated_tls_names_files_as_istiod_does() {
        use envoy_types::pb::envoy::config::core::v3::transport_socket;
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
            UpstreamTlsContext, common_tls_context,
        };
        let set = generate(
            &snapshot(&format!(
                "{EXTERNAL}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: search}}
spec:
  host: search.example.com
  trafficPolicy:
    tls: {{mode: MUTUAL, clientCertificate: /certs/c.pem, privateKey: /certs/k.pem, sni: s.example.com, subjectAltNames: [search.example.com, spiffe://td/ns/a/sa/b]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: internal}}
spec:
  host: db.internal
  trafficPolicy:
    tls: {{mode: SIMPLE}}
"
            )),
            &node([127, 0, 10, 1], "client"),
            DEFAULT_TRUST_DOMAIN,
        );
        let context = |name: &str| -> (UpstreamTlsContext, Option<HttpProtocolOptions>) {
            let c = cluster(&set.clusters, name);
            assert!(
                c.transport_socket_matches.is_empty(),
                "{name}: no auto mTLS"
            );
            let Some(transport_socket::ConfigType::TypedConfig(any)) = c
                .transport_socket
                .as_ref()
                .and_then(|socket| socket.config_type.clone())
            else {
                panic!("{name}: a TLS socket")
            };
            let options = c
                .typed_extension_protocol_options
                .get(HTTP_PROTOCOL_OPTIONS)
                .map(|any| HttpProtocolOptions::decode(any.value.as_slice()).expect("options"));
            (
                UpstreamTlsContext::decode(any.value.as_slice()).expect("an UpstreamTlsContext"),
                options,
            )
        };

        let (mutual, options) = context("outbound|443||search.example.com");
        assert_eq!(mutual.sni, "s.example.com");
        let common = mutual.common_tls_context.expect("common");
        assert_eq!(
            common.tls_certificate_sds_secret_configs[0].name,
            "file-cert:/certs/c.pem~/certs/k.pem"
        );
        let Some(common_tls_context::ValidationContextType::CombinedValidationContext(combined)) =
            common.validation_context_type
        else {
            panic!("combined validation")
        };
        assert_eq!(
            combined
                .validation_context_sds_secret_config
                .expect("roots")
                .name,
            "file-root:system"
        );
        let sans = combined
            .default_validation_context
            .expect("SANs")
            .match_typed_subject_alt_names;
        assert_eq!(sans.len(), 2);
        // A fixed sni and listed names: no auto SNI.
        assert!(
            options
                .and_then(|o| o.upstream_http_protocol_options)
                .is_none()
        );

        let (simple, options) = context("outbound|5000||db.internal");
        assert!(simple.sni.is_empty());
        let upstream = options
            .and_then(|o| o.upstream_http_protocol_options)
            .expect("auto SNI");
        assert!(upstream.auto_sni && upstream.auto_san_validation);
        assert!(
            simple
                .common_tls_context
                .expect("common")
                .tls_certificate_sds_secret_configs
                .is_empty()
        );
    }
}
