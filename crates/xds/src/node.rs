//! Who is asking: the proxy identity carried in an xDS `Node`.
//!
//! The keys follow docs/design/local-mesh.md ("Proxy identity"). Parsing happens once per
//! stream; translation then works from the typed [`ProxyNode`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};

/// Node metadata keys shared by the control plane, Bosun's proxy and Envoy bootstraps.
pub mod metadata_key {
    pub const NAMESPACE: &str = "NAMESPACE";
    pub const WORKLOAD_NAME: &str = "WORKLOAD_NAME";
    pub const LABELS: &str = "LABELS";
    pub const SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
    pub const INSTANCE_IPS: &str = "INSTANCE_IPS";
    pub const OUTBOUND_PORT: &str = "BOSUN_OUTBOUND_PORT";
    pub const APP_PORTS: &str = "BOSUN_APP_PORTS";
}

/// The outbound listener port when the node does not say otherwise (Istio's).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;

/// Why a `Node` could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    #[error("the request carries no node")]
    Missing,
    #[error("node id is empty")]
    EmptyId,
    #[error("node metadata {key} is not a valid {expected}: {value:?}")]
    InvalidMetadata {
        key: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// A proxy's identity, parsed once from the Envoy `Node` it sends on its first request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyNode {
    pub id: String,
    pub cluster: String,
    pub namespace: String,
    pub workload_name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub ip: Option<IpAddr>,
    /// Port of the `virtualOutbound` listener; [`DEFAULT_OUTBOUND_PORT`] unless set.
    pub outbound_port: u16,
    /// Workload port -> the port the application listens on.
    pub app_ports: BTreeMap<u16, u16>,
    /// e.g. `envoy 1.40.0` or `bosun 0.1.0`: `user_agent_name` and its version.
    pub user_agent: String,
}

impl ProxyNode {
    /// A sidecar identity in Istio's id form, with default ports and no labels.
    pub fn sidecar(ip: IpAddr, workload_name: &str, namespace: &str) -> Self {
        Self {
            id: format!("sidecar~{ip}~{workload_name}.{namespace}~{namespace}.svc.cluster.local"),
            cluster: format!("{workload_name}.{namespace}"),
            namespace: namespace.to_string(),
            workload_name: workload_name.to_string(),
            labels: BTreeMap::new(),
            service_account: String::new(),
            ip: Some(ip),
            outbound_port: DEFAULT_OUTBOUND_PORT,
            app_ports: BTreeMap::new(),
            user_agent: String::new(),
        }
    }

    /// Parses the identity from a `Node`. Only an empty id and malformed values are errors;
    /// absent metadata falls back to what Istio's id form carries (`type~ip~name.ns~domain`).
    pub fn from_node(node: &Node) -> Result<Self, NodeError> {
        if node.id.is_empty() {
            return Err(NodeError::EmptyId);
        }
        let empty = Struct::default();
        let metadata = node.metadata.as_ref().unwrap_or(&empty);
        let id_parts = IstioNodeId::parse(&node.id);

        let namespace = string_field(metadata, metadata_key::NAMESPACE)
            .or_else(|| id_parts.as_ref().and_then(|id| id.namespace.clone()))
            .unwrap_or_default();
        let workload_name = string_field(metadata, metadata_key::WORKLOAD_NAME)
            .or_else(|| id_parts.as_ref().and_then(|id| id.workload_name.clone()))
            .unwrap_or_default();

        let ip = match string_field(metadata, metadata_key::INSTANCE_IPS) {
            // Istio sends a comma-separated list; the first address is the workload's.
            Some(ips) => match ips.split(',').map(str::trim).find(|ip| !ip.is_empty()) {
                Some(first) => Some(first.parse().map_err(|_| NodeError::InvalidMetadata {
                    key: metadata_key::INSTANCE_IPS,
                    expected: "IP address list",
                    value: ips.clone(),
                })?),
                None => None,
            },
            None => id_parts.as_ref().and_then(|id| id.ip),
        };

        let outbound_port = match metadata.fields.get(metadata_key::OUTBOUND_PORT) {
            Some(value) => parse_port(metadata_key::OUTBOUND_PORT, value)?,
            None => DEFAULT_OUTBOUND_PORT,
        };

        let mut app_ports = BTreeMap::new();
        if let Some(value) = metadata.fields.get(metadata_key::APP_PORTS) {
            for (workload_port, app_port) in struct_entries(metadata_key::APP_PORTS, value)? {
                let workload_port =
                    workload_port
                        .parse()
                        .map_err(|_| NodeError::InvalidMetadata {
                            key: metadata_key::APP_PORTS,
                            expected: "port number",
                            value: workload_port.clone(),
                        })?;
                app_ports.insert(
                    workload_port,
                    parse_port(metadata_key::APP_PORTS, app_port)?,
                );
            }
        }

        let mut labels = BTreeMap::new();
        if let Some(value) = metadata.fields.get(metadata_key::LABELS) {
            for (key, label) in struct_entries(metadata_key::LABELS, value)? {
                let label = scalar_string(label).ok_or_else(|| NodeError::InvalidMetadata {
                    key: metadata_key::LABELS,
                    expected: "string label value",
                    value: format!("{key}={label:?}"),
                })?;
                labels.insert(key.clone(), label);
            }
        }

        Ok(Self {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            namespace,
            workload_name,
            labels,
            service_account: string_field(metadata, metadata_key::SERVICE_ACCOUNT)
                .unwrap_or_default(),
            ip,
            outbound_port,
            app_ports,
            user_agent: user_agent(node),
        })
    }

    /// The `Node` this identity is sent as; `from_node(&p.to_node())` gives `p` back
    /// (except `user_agent`, which the sender sets itself).
    pub fn to_node(&self, user_agent_name: &str, user_agent_version: &str) -> Node {
        Node {
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            metadata: Some(self.metadata()),
            user_agent_name: user_agent_name.to_string(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
                user_agent_version.to_string(),
            )),
            ..Default::default()
        }
    }

    /// The node metadata as a protobuf `Struct`, with every key of the local-mesh contract.
    pub fn metadata(&self) -> Struct {
        let mut fields = std::collections::HashMap::new();
        fields.insert(
            metadata_key::NAMESPACE.into(),
            string_value(&self.namespace),
        );
        fields.insert(
            metadata_key::WORKLOAD_NAME.into(),
            string_value(&self.workload_name),
        );
        fields.insert(
            metadata_key::LABELS.into(),
            struct_value(self.labels.iter().map(|(k, v)| (k.clone(), v.clone()))),
        );
        fields.insert(
            metadata_key::SERVICE_ACCOUNT.into(),
            string_value(&self.service_account),
        );
        if let Some(ip) = self.ip {
            fields.insert(
                metadata_key::INSTANCE_IPS.into(),
                string_value(&ip.to_string()),
            );
        }
        fields.insert(
            metadata_key::OUTBOUND_PORT.into(),
            string_value(&self.outbound_port.to_string()),
        );
        fields.insert(
            metadata_key::APP_PORTS.into(),
            struct_value(
                self.app_ports
                    .iter()
                    .map(|(port, app)| (port.to_string(), app.to_string())),
            ),
        );
        Struct { fields }
    }
}

/// The parts of Istio's node id, `sidecar~10.1.2.3~reviews-v1.default~default.svc.cluster.local`.
struct IstioNodeId {
    ip: Option<IpAddr>,
    workload_name: Option<String>,
    namespace: Option<String>,
}

impl IstioNodeId {
    fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.split('~').collect();
        let [_kind, ip, name, _domain] = parts.as_slice() else {
            return None;
        };
        let (workload_name, namespace) = match name.split_once('.') {
            Some((workload, namespace)) => {
                (Some(workload.to_string()), Some(namespace.to_string()))
            }
            None => (Some(name.to_string()), None),
        };
        Some(Self {
            ip: ip.parse().ok(),
            workload_name: workload_name.filter(|n| !n.is_empty()),
            namespace: namespace.filter(|n| !n.is_empty()),
        })
    }
}

fn user_agent(node: &Node) -> String {
    let version = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentVersion(version)) => version.clone(),
        Some(UserAgentVersionType::UserAgentBuildVersion(build)) => build
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        None => String::new(),
    };
    match (node.user_agent_name.is_empty(), version.is_empty()) {
        (false, false) => format!("{} {version}", node.user_agent_name),
        (false, true) => node.user_agent_name.clone(),
        (true, _) => version,
    }
}

fn string_field(metadata: &Struct, key: &str) -> Option<String> {
    metadata.fields.get(key).and_then(scalar_string)
}

/// A string, or a number written as its integer form (some clients send ports as numbers).
fn scalar_string(value: &Value) -> Option<String> {
    match value.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        Kind::NumberValue(n) if n.fract() == 0.0 => Some(format!("{n:.0}")),
        Kind::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_port(key: &'static str, value: &Value) -> Result<u16, NodeError> {
    let invalid = || NodeError::InvalidMetadata {
        key,
        expected: "port number",
        value: format!("{:?}", value.kind),
    };
    scalar_string(value)
        .ok_or_else(invalid)?
        .parse()
        .map_err(|_| invalid())
}

fn struct_entries<'a>(
    key: &'static str,
    value: &'a Value,
) -> Result<impl Iterator<Item = (&'a String, &'a Value)>, NodeError> {
    match value.kind.as_ref() {
        Some(Kind::StructValue(s)) => Ok(s.fields.iter()),
        other => Err(NodeError::InvalidMetadata {
            key,
            expected: "struct",
            value: format!("{other:?}"),
        }),
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn struct_value(entries: impl Iterator<Item = (String, String)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: entries.map(|(k, v)| (k, string_value(&v))).collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_node() -> ProxyNode {
        let mut node = ProxyNode::sidecar("127.0.10.1".parse().unwrap(), "reviews-v1", "default");
        node.labels.insert("app".into(), "reviews".into());
        node.labels.insert("version".into(), "v1".into());
        node.service_account = "bookinfo-reviews".into();
        node.app_ports.insert(9080, 19080);
        node.outbound_port = 15011;
        node
    }

    #[test]
    fn round_trips_through_an_envoy_node() {
        let expected = full_node();
        let parsed = ProxyNode::from_node(&expected.to_node("envoy", "1.40.0")).unwrap();
        assert_eq!(parsed.user_agent, "envoy 1.40.0");
        assert_eq!(
            ProxyNode {
                user_agent: String::new(),
                ..parsed
            },
            expected
        );
    }

    #[test]
    fn falls_back_to_the_istio_id_form_without_metadata() {
        let node = Node {
            id: "sidecar~127.0.10.2~ratings-v1.bookinfo~bookinfo.svc.cluster.local".into(),
            ..Default::default()
        };
        let parsed = ProxyNode::from_node(&node).unwrap();
        assert_eq!(parsed.namespace, "bookinfo");
        assert_eq!(parsed.workload_name, "ratings-v1");
        assert_eq!(parsed.ip, Some("127.0.10.2".parse().unwrap()));
        assert_eq!(parsed.outbound_port, DEFAULT_OUTBOUND_PORT);
    }

    #[test]
    fn structured_build_version_forms_the_user_agent() {
        use envoy_types::pb::envoy::config::core::v3::BuildVersion;
        use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
        let node = Node {
            id: "x".into(),
            user_agent_name: "envoy".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentBuildVersion(
                BuildVersion {
                    version: Some(SemanticVersion {
                        major_number: 1,
                        minor_number: 40,
                        patch: 0,
                    }),
                    metadata: None,
                },
            )),
            ..Default::default()
        };
        assert_eq!(
            ProxyNode::from_node(&node).unwrap().user_agent,
            "envoy 1.40.0"
        );
    }

    #[test]
    fn rejects_empty_id_and_malformed_values() {
        assert_eq!(
            ProxyNode::from_node(&Node::default()),
            Err(NodeError::EmptyId)
        );
        let mut node = full_node().to_node("bosun", "0.1.0");
        if let Some(metadata) = node.metadata.as_mut() {
            metadata
                .fields
                .insert(metadata_key::OUTBOUND_PORT.into(), string_value("99999"));
        }
        assert!(matches!(
            ProxyNode::from_node(&node),
            Err(NodeError::InvalidMetadata {
                key: metadata_key::OUTBOUND_PORT,
                ..
            })
        ));
        let mut node = full_node().to_node("bosun", "0.1.0");
        if let Some(metadata) = node.metadata.as_mut() {
            metadata
                .fields
                .insert(metadata_key::INSTANCE_IPS.into(), string_value("not-an-ip"));
        }
        assert!(ProxyNode::from_node(&node).is_err());
    }
}
