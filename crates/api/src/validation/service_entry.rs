//! ServiceEntry validation.

use std::collections::HashSet;

use super::findings::Findings;
use super::rules::{
    is_dns1123_label, is_partial_wildcard, validate_export_to, validate_fqdn, validate_ip_subnet,
    validate_port, validate_selector_labels, validate_wildcard_domain,
};
use super::workload_entry::{EndpointRules, validate_endpoint};
use crate::meta::Config;
use crate::networking::{Resolution, ServiceEntry};
use crate::protocol::Protocol;

pub(super) fn validate(config: &Config<ServiceEntry>, findings: &mut Findings) {
    let spec = &config.spec;
    let resolution = spec.resolution();

    if let Some(selector) = &spec.workload_selector {
        validate_selector_labels(findings, "spec.workloadSelector.labels", &selector.labels);
        if !spec.endpoints.is_empty() {
            findings.error(
                "spec",
                "only one of WorkloadSelector or Endpoints can be set",
            );
        }
    }

    if spec.hosts.is_empty() {
        findings.error("spec.hosts", "service entry must have at least one host");
    }
    for host in &spec.hosts {
        if host == "*" {
            findings.error("spec.hosts", "hostname cannot be wildcard");
        } else {
            findings.check("spec.hosts", validate_wildcard_domain(host));
            if is_partial_wildcard(host) {
                findings.warning(
                    "spec.hosts",
                    format!(
                        "{host:?}: a partial wildcard matches more than a subdomain wildcard (`*.`)"
                    ),
                );
            }
        }
    }

    let mut has_cidr = false;
    for address in &spec.addresses {
        has_cidr |= address.contains('/');
        findings.check("spec.addresses", validate_ip_subnet(address));
    }
    if has_cidr && !matches!(resolution, Resolution::None | Resolution::Static) {
        findings.error(
            "spec.addresses",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        );
    }

    let mut port_names: HashSet<&str> = HashSet::new();
    let mut port_numbers: HashSet<u32> = HashSet::new();
    for (index, port) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{index}]");
        if !port_names.insert(port.name.as_str()) {
            findings.error(
                format!("{field}.name"),
                format!(
                    "Duplicate value: service entry port name {:?} already defined",
                    port.name
                ),
            );
        }
        if !port_numbers.insert(port.number) {
            findings.error(
                format!("{field}.number"),
                format!("port number cannot be duplicated: {}", port.number),
            );
        }
        findings.check(format!("{field}.number"), validate_port(port.number));
        if let Some(target_port) = port.target_port {
            findings.check(format!("{field}.targetPort"), validate_port(target_port));
        }
        if !is_dns1123_label(&port.name) {
            findings.error(
                format!("{field}.name"),
                format!("invalid port name: {}", port.name),
            );
        }
        if let Some(protocol) = port.protocol.as_deref()
            && !protocol.is_empty()
            && Protocol::parse(protocol) == Protocol::Unsupported
        {
            findings.error(
                format!("{field}.protocol"),
                format!("unsupported protocol: {protocol}"),
            );
        }
    }

    match resolution {
        Resolution::None => {
            if !spec.endpoints.is_empty() {
                findings.error("spec.endpoints", "NONE mode cannot set endpoints");
            }
            if spec.workload_selector.is_some() {
                findings.warning(
                    "spec.workloadSelector",
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => {
            let rules = EndpointRules {
                allow_fqdn: false,
                service_ports: Some(&port_names),
            };
            for (index, endpoint) in spec.endpoints.iter().enumerate() {
                validate_endpoint(
                    findings,
                    &format!("spec.endpoints[{index}]"),
                    endpoint,
                    &rules,
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin | Resolution::DynamicDns => {
            validate_dns_resolution(spec, resolution, &port_names, findings);
        }
    }

    // Plain TCP cannot tell hosts apart, so one port cannot serve several hosts.
    if resolution != Resolution::None
        && spec.hosts.len() > 1
        && spec.ports.iter().any(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref().unwrap_or_default());
            !protocol.is_http() && !protocol.is_tls()
        })
    {
        findings.error(
            "spec.ports",
            "multiple hosts provided with non-HTTP, non-TLS ports",
        );
    }

    validate_export_to(findings, &spec.export_to, true, false);
}

fn validate_dns_resolution(
    spec: &ServiceEntry,
    resolution: Resolution,
    port_names: &HashSet<&str>,
    findings: &mut Findings,
) {
    if spec.endpoints.is_empty() && resolution != Resolution::DynamicDns {
        for host in &spec.hosts {
            if validate_fqdn(host).is_err() {
                findings.error(
                    "spec.hosts",
                    format!(
                        "hosts must be FQDN if no endpoints are provided for resolution mode {}",
                        resolution.as_str()
                    ),
                );
            }
        }
    }
    if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
        findings.error(
            "spec.endpoints",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        );
    }
    let rules = EndpointRules {
        allow_fqdn: true,
        service_ports: Some(port_names),
    };
    for (index, endpoint) in spec.endpoints.iter().enumerate() {
        validate_endpoint(
            findings,
            &format!("spec.endpoints[{index}]"),
            endpoint,
            &rules,
        );
    }
    if spec.workload_selector.is_some() {
        findings.warning(
            "spec.workloadSelector",
            format!(
                "workloadSelector should not be set when resolution mode is {}",
                resolution.as_str()
            ),
        );
    }
}
