//! Reads a real Envoy's `/config_dump` into the same view (names and addresses of
//! listeners, routes and clusters; Envoy omits endpoints unless asked).

use bosun_proxy::config_dump::{
    ClusterDump, ConfigDump, ListenerDump, RouteConfigDump, VirtualHostDump, transport_label,
};
use serde_json::Value;

/// Whether an Envoy listener's chains terminate TLS, take plaintext, or both.
fn listener_transport(listener: &Value) -> &'static str {
    let chains = listener["filter_chains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tls = chains
        .iter()
        .any(|chain| !chain["transport_socket"].is_null());
    let plaintext = chains
        .iter()
        .any(|chain| chain["transport_socket"].is_null());
    transport_label(tls, plaintext)
}

pub fn from_envoy(value: &Value) -> ConfigDump {
    let mut dump = ConfigDump {
        ready: true,
        ..Default::default()
    };
    let configs = value
        .get("configs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for config in &configs {
        let kind = config.get("@type").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("ListenersConfigDump") {
            for (version, l) in entries(
                config,
                &["static_listeners", "dynamic_listeners"],
                "listener",
            ) {
                let socket = &l["address"]["socket_address"];
                dump.listeners.push(ListenerDump {
                    name: str_of(&l["name"]),
                    version,
                    address: format!(
                        "{}:{}",
                        str_of(&socket["address"]),
                        socket["port_value"].as_u64().unwrap_or(0)
                    ),
                    bound_address: None,
                    stat_prefix: String::new(),
                    route_config_name: None,
                    inline_route_config: None,
                    tcp_proxy_cluster: None,
                    transport: listener_transport(&l).to_owned(),
                });
            }
        } else if kind.ends_with("ClustersConfigDump") {
            for (version, c) in entries(
                config,
                &["static_clusters", "dynamic_active_clusters"],
                "cluster",
            ) {
                dump.clusters.push(ClusterDump {
                    name: str_of(&c["name"]),
                    version,
                    discovery: c["type"].as_str().unwrap_or("STATIC").to_owned(),
                    eds_service_name: c["eds_cluster_config"]["service_name"]
                        .as_str()
                        .map(str::to_owned),
                    lb_policy: c["lb_policy"].as_str().unwrap_or("ROUND_ROBIN").to_owned(),
                    protocol: if c["typed_extension_protocol_options"]
                        .to_string()
                        .contains("http2_protocol_options")
                    {
                        "HTTP/2".into()
                    } else {
                        "HTTP/1.1".into()
                    },
                    connect_timeout_ms: 0,
                    healthy_endpoints: 0,
                });
            }
        } else if kind.ends_with("RoutesConfigDump") {
            for (version, r) in entries(
                config,
                &["static_route_configs", "dynamic_route_configs"],
                "route_config",
            ) {
                let virtual_hosts = r["virtual_hosts"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .map(|v| VirtualHostDump {
                                name: str_of(&v["name"]),
                                domains: v["domains"]
                                    .as_array()
                                    .map(|d| d.iter().map(str_of).collect())
                                    .unwrap_or_default(),
                                routes: Vec::new(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                dump.routes.push(RouteConfigDump {
                    name: str_of(&r["name"]),
                    version,
                    virtual_hosts,
                });
            }
        }
    }
    dump
}

/// `(version, resource)` from Envoy's static and dynamic sections.
fn entries(config: &Value, sections: &[&str], field: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for section in sections {
        for entry in config
            .get(*section)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // Dynamic listeners nest under active_state.
            let holder = entry.get("active_state").unwrap_or(entry);
            if let Some(resource) = holder.get(field) {
                out.push((str_of(&holder["version_info"]), resource.clone()));
            }
        }
    }
    out
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}
