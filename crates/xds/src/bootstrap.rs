//! The bootstrap a real Envoy needs to be one of Bosun's proxies: its identity (node
//! metadata per docs/design/local-mesh.md), an admin address, and ADS and SDS to the
//! control plane.
//!
//! Envoy reads JSON bootstraps directly: write the value to `bootstrap.json` and start
//! `envoy -c bootstrap.json`.

use bosun_wire::limits::{self, ConnectionLimits};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};
use serde_json::json;

use crate::node::ProxyNode;
use crate::status::StreamKind;
use crate::translate::SDS_CLUSTER;

/// The static cluster that reaches the control plane (Istio's name for it).
pub const XDS_CLUSTER_NAME: &str = "xds-grpc";

/// Where an Envoy reaches the mesh: the control plane for ADS and the agent beside it for
/// its secrets.
#[derive(Debug, Clone)]
pub struct EnvoySources {
    /// The control plane's ADS address.
    pub xds: SocketAddr,
    /// TLS to the control plane and the workload's credential; `None` for plaintext xDS
    /// (tests, debugging).
    pub xds_security: Option<XdsSecurity>,
    /// The Unix socket of the agent that makes the workload's key and serves it over SDS
    /// (Istio's pilot-agent); `None` when the proxy needs no certificate.
    pub sds_socket: Option<PathBuf>,
}

impl EnvoySources {
    /// Plaintext ADS at `xds`, no secrets: what tests of routing alone need.
    pub fn plaintext(xds: SocketAddr) -> Self {
        Self {
            xds,
            xds_security: None,
            sds_socket: None,
        }
    }
}

/// How an Envoy proves the control plane is the mesh's and itself the workload.
#[derive(Debug, Clone)]
pub struct XdsSecurity {
    /// The mesh root, handed out of band (Istio's `istio-ca-root-cert`).
    pub root_cert: PathBuf,
    /// The workload's token, sent on the ADS stream (`authorization: Bearer`).
    pub token: String,
}

/// A bootstrap for `node` that takes all its listeners and clusters over ADS from
/// `sources`, speaking `api` (state-of-the-world `GRPC` or `DELTA_GRPC`), with its admin
/// interface on `admin` (port 0 is fine with Envoy's `--admin-address-path`).
pub fn envoy_bootstrap(
    node: &ProxyNode,
    sources: &EnvoySources,
    admin: SocketAddr,
    api: StreamKind,
) -> serde_json::Value {
    let api_type = match api {
        StreamKind::Sotw => "GRPC",
        StreamKind::Delta => "DELTA_GRPC",
    };
    let mut bootstrap = json!({
        "node": {
            "id": node.id,
            "cluster": node.cluster,
            "metadata": struct_to_json(&node.metadata()),
        },
        "admin": {
            "address": socket_address(admin),
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [ads_service(sources.xds_security.as_ref())],
                "set_node_on_first_message_only": true,
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" },
        },
        "static_resources": {
            "clusters": [
                xds_cluster(sources),
                sds_cluster(sources),
            ],
        },
    });
    // On one machine every workload is a loopback alias: connections leave from the
    // workload's own address, as a pod's do, so servers tell callers apart by address.
    if let Some(ip) = node.ip.filter(IpAddr::is_loopback) {
        bootstrap["cluster_manager"] = json!({
            "upstream_bind_config": {
                "source_address": { "address": ip.to_string(), "port_value": 0 },
            },
        });
    }
    set_connection_limits(&mut bootstrap, &ConnectionLimits::default());
    bootstrap
}

/// The cap Istio writes when none is set: in effect none, and Envoy does not warn.
const NO_GLOBAL_CAP: u64 = i32::MAX as u64;

/// Sets the bootstrap's downstream connection caps as istiod's bootstrap does: the
/// global one as the overload manager's resource monitor (always present), each
/// listener's as a runtime key of a static layer.
pub fn set_connection_limits(bootstrap: &mut serde_json::Value, limits: &ConnectionLimits) {
    bootstrap["overload_manager"] = json!({
        "resource_monitors": [{
            "name": limits::GLOBAL_CONNECTIONS_MONITOR,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": limits.global.unwrap_or(NO_GLOBAL_CAP),
            },
        }],
    });
    let runtime: serde_json::Map<String, serde_json::Value> = limits
        .per_listener
        .iter()
        .map(|(listener, cap)| (limits::listener_connection_limit_key(listener), json!(cap)))
        .collect();
    if runtime.is_empty() {
        if let Some(object) = bootstrap.as_object_mut() {
            object.remove("layered_runtime");
        }
        return;
    }
    bootstrap["layered_runtime"] = json!({
        "layers": [{ "name": "connection_limits", "static_layer": runtime }],
    });
}

/// ADS on the xDS cluster, with the workload's token when the control plane asks for one.
fn ads_service(security: Option<&XdsSecurity>) -> serde_json::Value {
    let mut service = json!({ "envoy_grpc": { "cluster_name": XDS_CLUSTER_NAME } });
    if let Some(security) = security {
        service["initial_metadata"] = json!([{
            "key": bosun_ca::credential::AUTHORIZATION_HEADER,
            "value": format!("Bearer {}", security.token),
        }]);
    }
    service
}

/// The control plane: over TLS verified against the mesh root and the control plane's
/// name, as Istio's proxies reach istiod on 15012.
fn xds_cluster(sources: &EnvoySources) -> serde_json::Value {
    let mut cluster = grpc_cluster(XDS_CLUSTER_NAME, socket_address(sources.xds));
    if let Some(security) = &sources.xds_security {
        let name = bosun_ca::CONTROL_PLANE_NAME;
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": { "filename": security.root_cert.display().to_string() },
                        "match_typed_subject_alt_names": [
                            { "san_type": "DNS", "matcher": { "exact": name } },
                        ],
                    },
                },
            },
        });
    }
    cluster
}

/// The agent's SDS socket, or (no agent) the control plane's address, which then answers
/// no secret: only meshes without mTLS run so.
fn sds_cluster(sources: &EnvoySources) -> serde_json::Value {
    let address = match &sources.sds_socket {
        Some(path) => json!({ "pipe": { "path": path.display().to_string() } }),
        None => socket_address(sources.xds),
    };
    grpc_cluster(SDS_CLUSTER, address)
}

/// A static cluster spoken to over gRPC (HTTP/2).
fn grpc_cluster(name: &str, address: serde_json::Value) -> serde_json::Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{ "endpoint": { "address": address } }],
            }],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
    })
}

fn socket_address(addr: SocketAddr) -> serde_json::Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

fn struct_to_json(value: &Struct) -> serde_json::Value {
    // Sorted keys keep the written file stable from one run to the next.
    let fields: BTreeMap<&String, serde_json::Value> = value
        .fields
        .iter()
        .map(|(key, value)| (key, value_to_json(value)))
        .collect();
    json!(fields)
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => list.values.iter().map(value_to_json).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::metadata_key;

    #[test]
    fn carries_the_node_identity_and_points_ads_at_the_control_plane() {
        let mut node = ProxyNode::sidecar("127.0.10.1".parse().unwrap(), "reviews-v1", "default");
        node.labels.insert("app".into(), "reviews".into());
        node.app_ports.insert(9080, 19080);
        let bootstrap = envoy_bootstrap(
            &node,
            &EnvoySources::plaintext("127.0.0.1:15010".parse().unwrap()),
            "127.0.10.1:15000".parse().unwrap(),
            StreamKind::Delta,
        );

        assert_eq!(bootstrap["node"]["id"], node.id);
        let monitor = &bootstrap["overload_manager"]["resource_monitors"][0];
        assert_eq!(
            monitor["typed_config"]["max_active_downstream_connections"],
            i32::MAX
        );
        assert_eq!(bootstrap["node"]["cluster"], "reviews-v1.default");
        let metadata = &bootstrap["node"]["metadata"];
        assert_eq!(metadata[metadata_key::NAMESPACE], "default");
        assert_eq!(metadata[metadata_key::WORKLOAD_NAME], "reviews-v1");
        assert_eq!(metadata[metadata_key::LABELS]["app"], "reviews");
        assert_eq!(metadata[metadata_key::INSTANCE_IPS], "127.0.10.1");
        assert_eq!(metadata[metadata_key::OUTBOUND_PORT], "15001");
        assert_eq!(metadata[metadata_key::APP_PORTS]["9080"], "19080");
        assert_eq!(
            bootstrap["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(
            bootstrap["admin"]["address"]["socket_address"]["port_value"],
            15000
        );
        let xds = &bootstrap["static_resources"]["clusters"][0];
        assert_eq!(
            xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            15010
        );
        let sds = &bootstrap["static_resources"]["clusters"][1];
        assert_eq!(sds["name"], SDS_CLUSTER);
        assert_eq!(
            sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            15010
        );
    }
}
