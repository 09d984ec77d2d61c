//! The metadata istiod writes for telemetry, read into metric labels: a cluster's
//! `istio.services` (the service it was built for) and an endpoint's `istio.workload`
//! (who runs there). Metadata that is malformed is refused, not guessed at.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Struct, Value};

use super::Reason;
use crate::telemetry::{PeerWorkload, ServiceLabels, Shared};

/// The filter metadata namespace istiod writes telemetry facts under.
const ISTIO: &str = "istio";

fn istio(metadata: Option<&Metadata>) -> Option<&Struct> {
    metadata?.filter_metadata.get(ISTIO)
}

fn string<'a>(fields: &'a Struct, key: &str) -> Result<Option<&'a str>, Reason> {
    match fields.fields.get(key).and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => Ok(None),
        Some(Kind::StringValue(s)) => Ok(Some(s)),
        Some(_) => Err(format!("metadata {ISTIO}.{key} must be a string")),
    }
}

/// The first of a cluster's `istio.services`: `destination_service` and its name and
/// namespace for the requests it carries.
pub(super) fn cluster_service(
    metadata: Option<&Metadata>,
) -> Result<Option<Shared<ServiceLabels>>, Reason> {
    let Some(fields) = istio(metadata) else {
        return Ok(None);
    };
    let first = match fields.fields.get("services").and_then(|v| v.kind.as_ref()) {
        None => return Ok(None),
        Some(Kind::ListValue(list)) => list.values.first(),
        Some(_) => return Err(format!("metadata {ISTIO}.services must be a list")),
    };
    let Some(Value {
        kind: Some(Kind::StructValue(service)),
    }) = first
    else {
        return match first {
            None => Ok(None),
            Some(_) => Err(format!("metadata {ISTIO}.services[0] must be a struct")),
        };
    };
    let Some(host) = string(service, "host").map_err(|r| format!("services[0]: {r}"))? else {
        return Err(format!("metadata {ISTIO}.services[0] has no host"));
    };
    let name = string(service, "name")?
        .map(str::to_owned)
        .unwrap_or_else(|| host.split('.').next().unwrap_or(host).to_owned());
    let namespace = string(service, "namespace")?.unwrap_or(crate::telemetry::labels::UNKNOWN);
    Ok(Some(Shared::new(Arc::new(ServiceLabels {
        host: host.to_owned(),
        name,
        namespace: namespace.to_owned(),
    }))))
}

/// An endpoint's `istio.workload`: the destination workload of requests sent there.
pub(super) fn endpoint_workload(
    metadata: Option<&Metadata>,
) -> Result<Option<Shared<PeerWorkload>>, Reason> {
    let Some(fields) = istio(metadata) else {
        return Ok(None);
    };
    let Some(value) = string(fields, "workload")? else {
        return Ok(None);
    };
    let workload = PeerWorkload::from_endpoint_metadata(value).ok_or_else(|| {
        format!(
            "metadata {ISTIO}.workload {value:?} is not <name>;<namespace>;<canonical service>;<canonical revision>;<cluster>"
        )
    })?;
    Ok(Some(Shared::new(Arc::new(workload))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::ListValue;
    use std::collections::HashMap;

    fn text(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.into())),
        }
    }

    fn metadata(fields: Vec<(&str, Value)>) -> Metadata {
        Metadata {
            filter_metadata: HashMap::from([(
                ISTIO.to_string(),
                Struct {
                    fields: fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                },
            )]),
            ..Default::default()
        }
    }

    fn services(entries: Vec<Vec<(&str, &str)>>) -> Value {
        Value {
            kind: Some(Kind::ListValue(ListValue {
                values: entries
                    .into_iter()
                    .map(|entry| Value {
                        kind: Some(Kind::StructValue(Struct {
                            fields: entry
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), text(v)))
                                .collect(),
                        })),
                    })
                    .collect(),
            })),
        }
    }

    #[test]
    fn a_cluster_names_its_service() {
        let m = metadata(vec![(
            "services",
            services(vec![vec![
                ("host", "reviews.default.svc.cluster.local"),
                ("name", "reviews"),
                ("namespace", "default"),
            ]]),
        )]);
        let service = cluster_service(Some(&m)).expect("valid").expect("present");
        assert_eq!(service.host, "reviews.default.svc.cluster.local");
        assert_eq!(service.name, "reviews");
        assert_eq!(service.namespace, "default");

        let no_name = metadata(vec![(
            "services",
            services(vec![vec![("host", "ratings.shop.svc.cluster.local")]]),
        )]);
        let service = cluster_service(Some(&no_name))
            .expect("valid")
            .expect("present");
        assert_eq!(service.name, "ratings", "the host up to its first dot");
        assert!(cluster_service(None).expect("valid").is_none());
    }

    #[test]
    fn malformed_telemetry_metadata_is_refused() {
        let m = metadata(vec![("services", text("reviews"))]);
        assert!(cluster_service(Some(&m)).unwrap_err().contains("list"));
        let m = metadata(vec![("services", services(vec![vec![("name", "x")]]))]);
        assert!(cluster_service(Some(&m)).unwrap_err().contains("no host"));
        let m = metadata(vec![("workload", text("only;two"))]);
        let refused = endpoint_workload(Some(&m)).unwrap_err();
        assert!(refused.contains("only;two"), "{refused}");
    }

    #[test]
    fn an_endpoint_names_its_workload() {
        let m = metadata(vec![(
            "workload",
            text("reviews-v2;default;reviews;v2;Kubernetes"),
        )]);
        let workload = endpoint_workload(Some(&m))
            .expect("valid")
            .expect("present");
        assert_eq!(workload.name, "reviews-v2");
        assert_eq!(workload.canonical_revision, "v2");
    }
}
