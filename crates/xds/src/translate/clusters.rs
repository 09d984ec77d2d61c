//! Clusters and their endpoints: one per service port, and one per DestinationRule subset.

use std::collections::HashMap;
use std::net::IpAddr;

use bosun_ca::Identity;
use bosun_model::snapshot::ResolvedEndpoint;
use bosun_model::{OutboundPolicy, Protocol, Service, ServicePort, Snapshot, TrafficPolicy};
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
                let mut cluster = eds_cluster(
                    &name,
                    &policy,
                    port.protocol,
                    snapshot.mesh().connect_timeout,
                );
                cluster.metadata = Some(telemetry_metadata(&[service]));
                let endpoints = snapshot.endpoints(service, port, *subset);
                // Auto mTLS: only services with a sidecar behind them need the sockets.
                if !identities.is_empty() && snapshot.mesh().auto_mtls {
                    cluster.transport_socket_matches =
                        tls::auto_mtls(&identities, &sni(&name), port.protocol);
                }
                out.clusters.push(cluster);
                out.endpoints.push(load_assignment(name, &endpoints));
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
    let mut cluster = Cluster {
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
    let options = traffic_policy::apply(&mut cluster, policy, protocol, connect_timeout);
    cluster.typed_extension_protocol_options = protocol_options(options);
    cluster
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
        address: ip,
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
    if !options.http2 && options.common.is_none() {
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
