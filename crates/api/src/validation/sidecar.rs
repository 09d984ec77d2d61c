//! Sidecar validation, with Istio's messages.

use std::collections::HashSet;

use super::findings::Findings;
use super::rules::{
    is_dns1123_label, validate_port, validate_selector_labels, validate_wildcard_domain,
};
use crate::mesh::OutboundMode;
use crate::meta::Config;
use crate::networking::Sidecar;

pub(super) fn validate(config: &Config<Sidecar>, findings: &mut Findings) {
    let spec = &config.spec;
    if let Some(selector) = &spec.workload_selector {
        validate_selector_labels(findings, "spec.workloadSelector", &selector.labels);
    }
    if spec.egress.is_empty()
        && spec.ingress.is_empty()
        && spec.outbound_traffic_policy.is_none()
        && spec.inbound_connection_pool.is_none()
    {
        findings.error("spec", "sidecar: empty configuration provided");
        return;
    }
    let mut ports = HashSet::new();
    for (index, ingress) in spec.ingress.iter().enumerate() {
        let field = format!("spec.ingress[{index}]");
        let Some(port) = &ingress.port else {
            findings.error(&field, "sidecar: port is required for ingress listeners");
            continue;
        };
        let number = port.number.unwrap_or(0);
        if let Err(reason) = validate_port(number) {
            findings.error(format!("{field}.port.number"), reason);
        }
        if !ports.insert(number) {
            findings.error(
                &field,
                "sidecar: ports on IP bound listeners must be unique",
            );
        }
    }
    let mut ports = HashSet::new();
    let mut catch_all_found = false;
    for (index, egress) in spec.egress.iter().enumerate() {
        let field = format!("spec.egress[{index}]");
        match &egress.port {
            None if catch_all_found => {
                findings.error(&field, "sidecar: egress can have only one listener with empty port");
                continue;
            }
            None if index + 1 == spec.egress.len() => catch_all_found = true,
            None => findings.error(
                &field,
                "sidecar: the egress listener with empty port should be the last listener in the list",
            ),
            Some(port) => {
                let number = port.number.unwrap_or(0);
                if number == 0 {
                    if !egress.bind.as_deref().unwrap_or_default().starts_with("unix://") {
                        findings.error(
                            format!("{field}.port"),
                            "sidecar: ports with 0 value must have a unix domain socket bind address",
                        );
                    }
                } else {
                    if let Err(reason) = validate_port(number) {
                        findings.error(format!("{field}.port.number"), reason);
                    }
                    if !ports.insert(number) {
                        findings.error(&field, "sidecar: ports on IP bound listeners must be unique");
                    }
                }
            }
        }
        if egress.hosts.is_empty() {
            findings.error(
                &field,
                "sidecar: egress listener must contain at least one host",
            );
        }
        for host in &egress.hosts {
            if let Err(reason) = namespace_slash_host(host) {
                findings.error(format!("{field}.hosts"), reason);
            }
        }
    }
    if let Some(policy) = &spec.outbound_traffic_policy
        && policy.egress_proxy.is_some()
        && policy.mode != OutboundMode::AllowAny
    {
        findings.error(
            "spec.outboundTrafficPolicy",
            "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
        );
    }
}

/// Istio's `namespace/dnsName`: the namespace `*`, `.`, `~` or a DNS label, the name `*`
/// or a domain with an optional leading wildcard.
fn namespace_slash_host(host: &str) -> Result<(), String> {
    let Some((namespace, name)) = host.split_once('/') else {
        return Err(format!(
            "host must be of form namespace/dnsName, got {host:?}"
        ));
    };
    if namespace.is_empty() || name.is_empty() {
        return Err(format!(
            "config namespace and dnsName in host entry cannot be empty: {host:?}"
        ));
    }
    if !matches!(namespace, "*" | "." | "~") && !is_dns1123_label(namespace) {
        return Err(format!(
            "invalid namespace value {namespace:?} in host {host:?}"
        ));
    }
    validate_wildcard_domain(name)
}
