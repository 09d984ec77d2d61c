//! The xDS `Node` this proxy presents (docs/design/local-mesh.md).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value};

use crate::config::NodeIdentity;

pub fn node(identity: &NodeIdentity) -> Node {
    let mut fields = HashMap::new();
    fields.insert("NAMESPACE".to_owned(), string(&identity.namespace));
    fields.insert("WORKLOAD_NAME".to_owned(), string(&identity.workload));
    fields.insert("LABELS".to_owned(), strings(&identity.labels));
    fields.insert(
        "SERVICE_ACCOUNT".to_owned(),
        string(&identity.service_account),
    );
    fields.insert("INSTANCE_IPS".to_owned(), string(&identity.ip.to_string()));
    fields.insert(
        "BOSUN_OUTBOUND_PORT".to_owned(),
        string(&identity.outbound_port.to_string()),
    );
    let app_ports: BTreeMap<String, String> = identity
        .app_ports
        .iter()
        .map(|(port, app)| (port.to_string(), app.to_string()))
        .collect();
    fields.insert("BOSUN_APP_PORTS".to_owned(), strings(&app_ports));
    Node {
        id: identity.node_id(),
        cluster: identity.cluster(),
        metadata: Some(Struct { fields }),
        user_agent_name: "bosun".to_owned(),
        ..Default::default()
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_owned())),
    }
}

fn strings(map: &BTreeMap<String, String>) -> Value {
    Value {
        kind: Some(value::Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), string(v))).collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_follows_the_local_mesh_contract() {
        let identity = NodeIdentity {
            workload: "reviews-v1".into(),
            namespace: "default".into(),
            ip: "127.0.10.1".parse().expect("ip"),
            labels: BTreeMap::from([("app".into(), "reviews".into())]),
            service_account: "bookinfo-reviews".into(),
            outbound_port: 15001,
            app_ports: BTreeMap::from([(9080, 19080)]),
        };
        let n = node(&identity);
        assert_eq!(
            n.id,
            "sidecar~127.0.10.1~reviews-v1.default~default.svc.cluster.local"
        );
        assert_eq!(n.cluster, "reviews-v1.default");
        let fields = n.metadata.expect("metadata").fields;
        let get = |k: &str| fields.get(k).and_then(|v| v.kind.clone());
        assert_eq!(
            get("INSTANCE_IPS"),
            Some(value::Kind::StringValue("127.0.10.1".into()))
        );
        assert_eq!(
            get("BOSUN_OUTBOUND_PORT"),
            Some(value::Kind::StringValue("15001".into()))
        );
        let Some(value::Kind::StructValue(ports)) = get("BOSUN_APP_PORTS") else {
            panic!("BOSUN_APP_PORTS must be a struct");
        };
        assert_eq!(
            ports.fields.get("9080").and_then(|v| v.kind.clone()),
            Some(value::Kind::StringValue("19080".into()))
        );
        let Some(value::Kind::StructValue(labels)) = get("LABELS") else {
            panic!("LABELS must be a struct");
        };
        assert!(labels.fields.contains_key("app"));
    }
}
