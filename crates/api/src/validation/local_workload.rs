//! LocalWorkload validation: what `bosun up` needs to start the process.

use super::findings::Findings;
use super::rules::is_dns1123_label;
use crate::local::LocalWorkload;
use crate::meta::Config;

pub(super) fn validate(config: &Config<LocalWorkload>, findings: &mut Findings) {
    let spec = &config.spec;
    if spec.workload_entry.is_empty() {
        findings.error("spec.workloadEntry", "the WorkloadEntry to run is required");
    }
    if spec.command.first().is_none_or(String::is_empty) {
        findings.error("spec.command", "a command to start the app is required");
    }
    for (name, port) in &spec.app_ports {
        if !is_dns1123_label(name) {
            findings.error("spec.appPorts", format!("invalid port name {name:?}"));
        }
        if *port == 0 {
            findings.error(
                format!("spec.appPorts[{name}]"),
                "port must be between 1-65535 (got 0)",
            );
        }
    }
    for name in spec.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            findings.error(
                "spec.env",
                format!("invalid environment variable name {name:?}"),
            );
        }
    }
}
