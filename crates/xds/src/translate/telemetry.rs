//! The metadata istiod writes for telemetry, so proxies can label Istio's standard
//! metrics: a cluster's `istio.services` (the services it carries requests for) and an
//! endpoint's `istio.workload` (who runs there).

use bosun_model::host::CLUSTER_DOMAIN;
use bosun_model::{Service, Workload};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value};

/// The filter metadata namespace of Istio's telemetry facts.
pub(super) const ISTIO: &str = "istio";
/// Istio's cluster name when none is configured.
const CLUSTER_ID: &str = "Kubernetes";

fn text(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_owned())),
    }
}

/// `istio: {services: [{host, name, namespace}, ...]}`.
pub(super) fn services(services: &[&Service]) -> Struct {
    let entries = services
        .iter()
        .map(|service| Value {
            kind: Some(value::Kind::StructValue(Struct {
                fields: [
                    ("host", text(service.hostname.as_str())),
                    ("name", text(service_name(service))),
                    ("namespace", text(&service.namespace)),
                ]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            })),
        })
        .collect();
    Struct {
        fields: [(
            "services".to_owned(),
            Value {
                kind: Some(value::Kind::ListValue(ListValue { values: entries })),
            },
        )]
        .into(),
    }
}

/// A service's name as its metrics show it: a Kubernetes-style host
/// (`reviews.default.svc.cluster.local`) is named like the Kubernetes Service
/// (`reviews`); any other host, as Istio names a ServiceEntry's, by itself.
fn service_name(service: &Service) -> &str {
    let host = service.hostname.as_str();
    let in_namespace = format!(".{}.{CLUSTER_DOMAIN}", service.namespace);
    host.strip_suffix(&in_namespace)
        .filter(|name| !name.is_empty() && !name.contains('.'))
        .unwrap_or(host)
}

/// `istio: {workload: "<name>;<namespace>;<canonical service>;<canonical revision>;<cluster>"}`,
/// an empty revision meaning `latest`, as istiod writes it.
pub(super) fn workload(workload: &Workload) -> Struct {
    let value = format!(
        "{};{};{};{};{CLUSTER_ID}",
        workload.name,
        workload.namespace,
        workload.canonical_service(),
        workload.canonical_revision().unwrap_or_default(),
    );
    Struct {
        fields: [("workload".to_owned(), text(&value))].into(),
    }
}
