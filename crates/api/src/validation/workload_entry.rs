//! WorkloadEntry validation, also applied to a ServiceEntry's inline endpoints.

use std::collections::HashSet;

use super::findings::Findings;
use super::rules::{is_dns1123_label, is_ip, validate_fqdn, validate_labels, validate_port};
use crate::meta::Config;
use crate::networking::WorkloadEntry;

const UNIX_PREFIX: &str = "unix://";

pub(super) fn validate(config: &Config<WorkloadEntry>, findings: &mut Findings) {
    validate_endpoint(
        findings,
        "spec",
        &config.spec,
        &EndpointRules::workload_entry(),
    );
}

/// What differs between a WorkloadEntry and a ServiceEntry endpoint.
pub(super) struct EndpointRules<'a> {
    /// DNS names are allowed as addresses (not for STATIC ServiceEntry endpoints).
    pub allow_fqdn: bool,
    /// The ServiceEntry's port names, which endpoint ports must refer to.
    pub service_ports: Option<&'a HashSet<&'a str>>,
}

impl EndpointRules<'_> {
    pub fn workload_entry() -> Self {
        Self {
            allow_fqdn: true,
            service_ports: None,
        }
    }
}

pub(super) fn validate_endpoint(
    findings: &mut Findings,
    field: &str,
    endpoint: &WorkloadEntry,
    rules: &EndpointRules<'_>,
) {
    let address = endpoint.address();
    if address.is_empty() {
        match &endpoint.network {
            Some(network) if !network.is_empty() => findings.warning(
                format!("{field}.address"),
                format!("address is unset with network {network:?}"),
            ),
            _ => findings.error(format!("{field}.address"), "Address is required"),
        }
    }

    if let Some(path) = address.strip_prefix(UNIX_PREFIX) {
        if !(path.starts_with('/') || path.starts_with('@')) {
            findings.error(
                format!("{field}.address"),
                "UDS must be an absolute path or abstract socket",
            );
        } else if path.ends_with('/') {
            findings.error(format!("{field}.address"), "UDS may not be a dir");
        }
        if !endpoint.ports.is_empty() {
            findings.error(format!("{field}.ports"), "UDS may not include ports");
        }
    } else if !address.is_empty() && !is_ip(address) {
        if !rules.allow_fqdn {
            findings.error(
                format!("{field}.address"),
                format!("endpoint address {address:?} is not a valid IP address"),
            );
        } else if validate_fqdn(address).is_err() {
            findings.error(
                format!("{field}.address"),
                format!("endpoint address {address:?} is not a valid FQDN or an IP address"),
            );
        }
    }

    for (name, number) in &endpoint.ports {
        if !is_dns1123_label(name) || name.len() >= 63 {
            findings.error(
                format!("{field}.ports"),
                format!("Invalid value: port name must be valid: {name:?}"),
            );
        }
        if let Err(reason) = validate_port(*number) {
            findings.error(format!("{field}.ports[{name}]"), reason);
        }
        if let Some(service_ports) = rules.service_ports
            && !service_ports.contains(name.as_str())
        {
            findings.error(
                format!("{field}.ports[{name}]"),
                format!("endpoint port {name} is not defined by the service entry"),
            );
        }
    }
    validate_labels(findings, &format!("{field}.labels"), &endpoint.labels);
}
