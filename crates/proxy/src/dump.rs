//! Builds the [`ConfigDump`] view from the compiled config.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::compile::{HttpChainSpec, ListenerSpec, NetworkFilter, RouteSource};
use crate::config_dump::*;
use crate::resource::ResourceType;
use crate::routing::{HeaderMatch, HeaderSource, PathMatch, RouteAction, RouteTable, ValueMatch};
use crate::upstream::{Cluster, Discovery, DnsDiscovery, EndpointSpec, UpstreamProtocol};

pub fn build<'a>(
    ready: bool,
    listeners: impl Iterator<Item = (&'a str, &'a str, &'a ListenerSpec, Option<SocketAddr>)>,
    routes: impl Iterator<Item = (&'a str, &'a RouteTable)>,
    clusters: Vec<(&'a str, &'a Cluster)>,
    endpoints: impl Iterator<Item = (&'a str, &'a str, &'a [EndpointSpec])>,
    last_nacks: BTreeMap<ResourceType, NackDump>,
) -> ConfigDump {
    ConfigDump {
        ready,
        listeners: listeners
            .map(|(name, version, spec, bound)| {
                // Both chains of an inbound port serve the same routes: show the first.
                let chain = spec.chains().next();
                ListenerDump {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    address: spec.address.to_string(),
                    bound_address: bound.map(|a| a.to_string()),
                    stat_prefix: chain
                        .map(|c| match &c.network {
                            NetworkFilter::Http(http) => http.stat_prefix.clone(),
                            NetworkFilter::Tcp(tcp) => tcp.stat_prefix.clone(),
                        })
                        .unwrap_or_default(),
                    route_config_name: spec.rds_names().next().map(str::to_owned),
                    inline_route_config: chain.and_then(|c| match &c.network {
                        NetworkFilter::Http(HttpChainSpec {
                            routes: RouteSource::Inline(table),
                            ..
                        }) => Some(route_config(version, table)),
                        _ => None,
                    }),
                    tcp_proxy_cluster: chain.and_then(|c| match &c.network {
                        NetworkFilter::Tcp(tcp) => Some(tcp.cluster.to_string()),
                        NetworkFilter::Http(_) => None,
                    }),
                    transport: transport_label(
                        spec.tls_chain.is_some(),
                        spec.plaintext_chain.is_some(),
                    )
                    .to_owned(),
                }
            })
            .collect(),
        routes: routes
            .map(|(version, table)| route_config(version, table))
            .collect(),
        clusters: clusters
            .iter()
            .map(|(version, c)| cluster(version, c))
            .collect(),
        endpoints: endpoints
            .map(|(name, version, eps)| EndpointsDump {
                cluster_name: name.to_owned(),
                version: version.to_owned(),
                endpoints: endpoint_list(eps),
            })
            // STATIC clusters carry their endpoints inline and DNS clusters resolve them: show
            // them alongside EDS ones.
            .chain(
                clusters
                    .iter()
                    .filter_map(|(version, c)| match &c.spec.discovery {
                        Discovery::Static(eps) => Some(EndpointsDump {
                            cluster_name: c.spec.name.clone(),
                            version: (*version).to_owned(),
                            endpoints: endpoint_list(eps),
                        }),
                        Discovery::Dns(_) => Some(EndpointsDump {
                            cluster_name: c.spec.name.clone(),
                            version: (*version).to_owned(),
                            endpoints: endpoint_list(&c.resolved_endpoints()),
                        }),
                        Discovery::Eds { .. } | Discovery::OriginalDestination { .. } => None,
                    }),
            )
            .collect(),
        last_nacks,
    }
}

fn route_config(version: &str, table: &RouteTable) -> RouteConfigDump {
    RouteConfigDump {
        name: table.name.clone(),
        version: version.to_owned(),
        virtual_hosts: table
            .virtual_hosts
            .iter()
            .map(|v| VirtualHostDump {
                name: v.name.clone(),
                domains: v.domains.clone(),
                routes: v
                    .routes
                    .iter()
                    .map(|r| RouteDump {
                        name: r.name.clone(),
                        path_match: path_match(&r.matcher.path),
                        headers: r.matcher.headers.iter().map(header_match).collect(),
                        action: match &r.action {
                            RouteAction::Cluster(c) => RouteActionDump::Cluster(c.to_string()),
                            RouteAction::Weighted(w) => RouteActionDump::WeightedClusters(
                                w.clusters
                                    .iter()
                                    .map(|(c, weight)| WeightedClusterDump {
                                        cluster: c.to_string(),
                                        weight: *weight,
                                    })
                                    .collect(),
                            ),
                            RouteAction::Direct(d) => RouteActionDump::DirectResponse {
                                status: d.status.as_u16(),
                            },
                            RouteAction::Redirect(r) => RouteActionDump::Redirect {
                                status: r.status.as_u16(),
                            },
                        },
                        timeout_ms: r
                            .timeout
                            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The pattern as written, without the full-match anchors added at compile time.
fn regex_source(regex: &regex::Regex) -> &str {
    let s = regex.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

fn path_match(m: &PathMatch) -> String {
    match m {
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Exact(p) => format!("path {p}"),
        PathMatch::Regex(r) => format!("regex {}", regex_source(r)),
        PathMatch::Connect => "connect".to_owned(),
    }
}

fn header_match(h: &HeaderMatch) -> String {
    let name = match &h.source {
        HeaderSource::Authority => ":authority",
        HeaderSource::Method => ":method",
        HeaderSource::Path => ":path",
        HeaderSource::Scheme => ":scheme",
        HeaderSource::Header(n) => n.as_str(),
    };
    let condition = if h.expect_absent {
        "absent".to_owned()
    } else {
        match &h.value {
            ValueMatch::Present => "present".to_owned(),
            ValueMatch::Exact { value, .. } => format!("= {value}"),
            ValueMatch::Prefix { value, .. } => format!("prefix {value}"),
            ValueMatch::Suffix { value, .. } => format!("suffix {value}"),
            ValueMatch::Contains { value, .. } => format!("contains {value}"),
            ValueMatch::Regex(r) => format!("regex {}", regex_source(r)),
        }
    };
    let not = if h.invert { "not " } else { "" };
    format!("{not}{name} {condition}")
}

fn cluster(version: &str, c: &Cluster) -> ClusterDump {
    let spec = &c.spec;
    ClusterDump {
        name: spec.name.clone(),
        version: version.to_owned(),
        discovery: match &spec.discovery {
            Discovery::Static(_) => "STATIC",
            Discovery::Eds { .. } => "EDS",
            Discovery::OriginalDestination { .. } => "ORIGINAL_DST",
            Discovery::Dns(DnsDiscovery { logical: true, .. }) => "LOGICAL_DNS",
            Discovery::Dns(_) => "STRICT_DNS",
        }
        .to_owned(),
        eds_service_name: c.eds_service_name().map(str::to_owned),
        lb_policy: spec.lb_policy.as_str().to_owned(),
        protocol: match spec.pool.protocol {
            UpstreamProtocol::Http1 => "HTTP/1.1",
            UpstreamProtocol::Http2 => "HTTP/2",
        }
        .to_owned(),
        connect_timeout_ms: u64::try_from(spec.pool.connect_timeout.as_millis())
            .unwrap_or(u64::MAX),
        healthy_endpoints: c.healthy_endpoints(),
    }
}

fn endpoint_list(eps: &[EndpointSpec]) -> Vec<EndpointDump> {
    eps.iter()
        .map(|e| EndpointDump {
            address: e.address.to_string(),
            weight: e.weight,
            health: e.health.clone(),
        })
        .collect()
}
