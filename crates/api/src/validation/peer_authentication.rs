//! PeerAuthentication validation, with Istio's messages (its CRD rules where they differ
//! from `pkg/config/validation`).

use super::findings::Findings;
use super::rules::validate_selector_labels;
use crate::meta::Config;
use crate::security::PeerAuthentication;

pub(super) fn validate(config: &Config<PeerAuthentication>, findings: &mut Findings) {
    let spec = &config.spec;
    let labels = spec
        .selector
        .as_ref()
        .map(|selector| &selector.match_labels);
    if let Some(labels) = labels {
        validate_selector_labels(findings, "spec.selector.matchLabels", labels);
    }
    let Some(ports) = &spec.port_level_mtls else {
        return;
    };
    if labels.is_none_or(|labels| labels.is_empty()) {
        findings.error(
            "spec.portLevelMtls",
            "portLevelMtls requires selector (mesh/namespace peer authentication cannot have port level mTLS)",
        );
    }
    if ports.is_empty() {
        findings.error(
            "spec.portLevelMtls",
            "spec.portLevelMtls in body should have at least 1 properties",
        );
    }
    for key in ports.keys() {
        let field = format!("spec.portLevelMtls[{key}]");
        match key.parse::<u64>() {
            Err(_) => findings.error(
                field,
                format!("type conversion error from string {key:?} to a port number"),
            ),
            Ok(0) | Ok(65536..) => findings.error(field, "port must be between 1-65535"),
            Ok(_) => {}
        }
    }
}

/// The port numbers of `portLevelMtls` keys that are valid ports.
pub fn port_key(key: &str) -> Option<u16> {
    key.parse::<u16>().ok().filter(|port| *port != 0)
}
