//! Checks shared by several kinds: names, hosts, ports, labels, durations, regexes.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::findings::Findings;
use crate::duration::Duration;
use crate::networking::{Destination, StringMatch};
use crate::security::PolicyTargetReference;

/// Istio's RE2 programs are limited; it approximates the limit by length.
const MAX_REGEX_LEN: usize = 1024;

/// A DNS-1123 label as Istio checks it (upper case allowed): `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`.
pub fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// A DNS-1123 label that may start with `*` or `*-` (`*`, `*.`, `*x`).
fn is_wildcard_dns1123_label(value: &str) -> bool {
    if value.len() > 63 {
        return false;
    }
    if value == "*" {
        return true;
    }
    let rest = value.strip_prefix("*-").or_else(|| value.strip_prefix('*'));
    is_dns1123_label(rest.unwrap_or(value))
}

fn check_domain_preconditions(domain: &str) -> Result<(), String> {
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_owned());
    }
    Ok(())
}

fn check_dns1123_labels(domain: &str, full: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let last = labels.len() - 1;
    if labels[last].bytes().all(|b| b.is_ascii_digit()) && !labels[last].is_empty() {
        return Err(format!(
            "domain name {full:?} invalid (top level domain {:?} cannot be all-numeric)",
            labels[last]
        ));
    }
    for (index, label) in labels.iter().enumerate() {
        // A trailing dot (an absolute name) is allowed.
        if index == last && label.is_empty() && index > 0 {
            continue;
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {full:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified domain name.
pub fn validate_fqdn(domain: &str) -> Result<(), String> {
    check_domain_preconditions(domain)?;
    check_dns1123_labels(domain, domain)
}

/// A domain name whose first label may be a wildcard (`*.example.com`, `*`).
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    check_domain_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(rest) => check_dns1123_labels(rest, domain),
        None => Ok(()),
    }
}

/// A wildcard not followed by a dot (`*x`) matches more than users expect; Istio warns.
pub fn is_partial_wildcard(domain: &str) -> bool {
    domain.starts_with('*') && domain != "*" && !domain.starts_with("*.")
}

pub fn is_ip(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok()
}

/// An IP address or a CIDR block.
pub fn validate_ip_subnet(value: &str) -> Result<(), String> {
    match value.split_once('/') {
        None if is_ip(value) => Ok(()),
        None => Err(format!("{value:?} is not a valid IP address")),
        Some((address, prefix)) => {
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("{value:?} is not a valid CIDR block"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            match prefix.parse::<u8>() {
                Ok(bits) if bits <= max => Ok(()),
                _ => Err(format!("{value:?} is not a valid CIDR block")),
            }
        }
    }
}

pub fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port must be between 1-65535 (got {port})"))
    }
}

/// Istio's durations must be at least 1ms and whole milliseconds.
pub fn validate_duration(duration: Duration) -> Result<(), String> {
    if duration.as_std() < std::time::Duration::from_millis(1) {
        return Err(format!("duration {duration} must be at least 1ms"));
    }
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "duration {duration}: only durations to ms precision are supported"
        ));
    }
    Ok(())
}

/// Istio's rule for header names (RFC 9110's token characters).
pub fn validate_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    if name.bytes().all(is_token_char) {
        Ok(())
    } else {
        Err(format!("header name {name} is not a valid header name"))
    }
}

/// A header a route may match on: a header name, an HTTP/2 pseudo-header, or a JWT
/// claim (`@request.auth.claims.<name>`), as istiod accepts.
pub fn validate_route_header_name(name: &str) -> Result<(), String> {
    const PSEUDO_HEADERS: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":status"];
    if PSEUDO_HEADERS.contains(&name) || name.starts_with(JWT_CLAIM_PREFIX) {
        return Ok(());
    }
    validate_header_name(name)
}

/// Route matches on a request's JWT claims name the header `@request.auth.claims.<claim>`.
pub const JWT_CLAIM_PREFIX: &str = "@request.auth.claims.";

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A header value Envoy accepts: no control characters, `%` only in `%VAR%` pairs or `%%`.
pub fn validate_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("header value configuration {value} is invalid"));
    }
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(0) => rest = &after[1..],
            Some(end) => {
                let variable = &after[..end];
                if variable
                    .chars()
                    .any(|c| c.is_whitespace() || (!c.is_ascii_graphic()))
                {
                    return Err(format!(
                        "header value configuration: invalid variable %{variable}% in {value}"
                    ));
                }
                rest = &after[end + 1..];
            }
            None => {
                return Err(format!(
                    "header value configuration: unterminated variable in {value} (write %% for a literal %)"
                ));
            }
        }
    }
    Ok(())
}

/// An RE2 regular expression of Istio's maximum size.
pub fn validate_regex(pattern: &str, field: &str) -> Result<(), String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "{field:?}: regex is too large, max length allowed is {MAX_REGEX_LEN}"
        ));
    }
    regex::Regex::new(pattern).map(|_| ()).map_err(|error| {
        format!("{field:?}: {error}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)")
    })
}

pub fn validate_string_match(matcher: &StringMatch, field: &str) -> Result<(), String> {
    match matcher {
        StringMatch::Exact(_) => Ok(()),
        StringMatch::Prefix(prefix) if prefix.is_empty() => Err(format!(
            "{field:?}: prefix string match should not be empty"
        )),
        StringMatch::Prefix(_) => Ok(()),
        StringMatch::Regex(pattern) if pattern.is_empty() => {
            Err(format!("{field:?}: regex string match should not be empty"))
        }
        StringMatch::Regex(pattern) => validate_regex(pattern, field),
    }
}

/// Kubernetes label keys and values, as Istio checks them.
pub fn validate_labels(findings: &mut Findings, field: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        if !is_label_key(key) {
            findings.error(field, format!("invalid label key: {key:?}"));
        }
        if !is_label_value(value) {
            findings.error(field, format!("invalid label value: {value:?}"));
        }
    }
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && !prefix.is_empty()
                && prefix.split('.').all(is_dns1123_label)
                && is_label_name(name)
        }
        None => is_label_name(key),
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// A destination host (not `*`), subset name and port.
pub fn validate_destination(findings: &mut Findings, field: &str, destination: &Destination) {
    if destination.host == "*" {
        findings.error(
            format!("{field}.host"),
            format!("invalid destination host {}", destination.host),
        );
    } else {
        findings.check(
            format!("{field}.host"),
            validate_wildcard_domain(&destination.host),
        );
    }
    if let Some(subset) = &destination.subset {
        findings.check(format!("{field}.subset"), validate_subset_name(subset));
    }
    if let Some(port) = destination.port {
        findings.check(
            format!("{field}.port.number"),
            validate_port(port.number.unwrap_or(0)),
        );
    }
}

pub fn validate_subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("subset name cannot be empty".to_owned())
    } else if !is_dns1123_label(name) {
        Err(format!("subset name is invalid: {name}"))
    } else {
        Ok(())
    }
}

/// `exportTo`: `.` (own namespace), `*` (all), `~` (none, ServiceEntry only), or namespaces.
pub fn validate_export_to(
    findings: &mut Findings,
    export_to: &[String],
    is_service_entry: bool,
    destination_rule_with_selector: bool,
) {
    if export_to.is_empty() {
        return;
    }
    let namespace = findings.namespace().to_owned();
    let mut seen: HashSet<String> = HashSet::new();
    for entry in export_to {
        let key = if entry == "." {
            namespace.clone()
        } else {
            entry.clone()
        };
        if seen.contains(&key) {
            let reason = if &key != entry {
                format!("duplicate entries in exportTo: . and current namespace {namespace}")
            } else {
                format!("duplicate entries in exportTo for entry {entry}")
            };
            findings.error("spec.exportTo", reason);
            continue;
        }
        let valid = key == "*" || (key == "~" && is_service_entry) || is_dns1123_label(&key);
        if valid {
            seen.insert(key);
        } else {
            findings.error(
                "spec.exportTo",
                format!("only .,*, or a valid DNS 1123 label is allowed as exportTo entry, got {entry:?}"),
            );
        }
    }
    if destination_rule_with_selector && !seen.is_empty() {
        if !seen.contains(&namespace) {
            findings.error(
                "spec.exportTo",
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            );
        } else if seen.len() > 1 {
            findings.error(
                "spec.exportTo",
                "destination rule with workload selector cannot have multiple entries in exportTo",
            );
        }
    }
    if seen.contains("*") && export_to.len() > 1 {
        findings.error(
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if seen.contains("~") && export_to.len() > 1 {
        findings.error(
            "spec.exportTo",
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// `ns/name` or a bare (FQDN) gateway name; `mesh` is the sidecars.
pub fn validate_gateway_names(findings: &mut Findings, field: &str, gateways: &[String]) {
    for gateway in gateways {
        match gateway.split_once('/') {
            None => findings.check(field, validate_fqdn(gateway)),
            Some((namespace, name)) => {
                if namespace.is_empty() || name.is_empty() {
                    findings.error(field, "config namespace and gateway name cannot be empty");
                    continue;
                }
                if !is_dns1123_label(namespace) {
                    findings.error(field, format!("invalid value for namespace: {namespace:?}"));
                }
                if !is_dns1123_label(name) {
                    findings.error(field, format!("invalid value for gateway name: {name:?}"));
                }
            }
        }
    }
}

/// Label selectors may not use wildcards or empty keys; an empty selector is suspicious.
pub fn validate_selector_labels(
    findings: &mut Findings,
    field: &str,
    labels: &BTreeMap<String, String>,
) {
    for (key, value) in labels {
        if key.is_empty() {
            findings.error(
                field,
                format!("empty key is not supported in selector: \"{key}={value}\""),
            );
        }
        if key.contains('*') || value.contains('*') {
            findings.error(
                field,
                format!("wildcard is not supported in selector: \"{key}={value}\""),
            );
        }
    }
    if labels.is_empty() {
        findings.warning(field, "workload selector specified without labels");
    }
}

/// A percentage value in `[0, 100]` that is either 0 or at least 0.0001.
pub fn validate_percentage(value: f64) -> Result<(), String> {
    if !(0.0..=100.0).contains(&value) || (value > 0.0 && value < 0.0001) {
        Err(format!(
            "percentage {value} is neither 0.0, nor in range [0.0001, 100.0]"
        ))
    } else {
        Ok(())
    }
}

pub fn validate_percent(value: i32) -> Result<(), String> {
    if (0..=100).contains(&value) {
        Ok(())
    } else {
        Err(format!("percentage {value} is not in range 0..100"))
    }
}

/// A Gateway API reference, as Istio's CRD rules check it.
pub fn validate_target(
    findings: &mut Findings,
    field: &str,
    target: &PolicyTargetReference,
    namespace: &str,
) {
    if !is_group(&target.group) {
        findings.error(
            format!("{field}.group"),
            format!("{field}.group in body should match '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"),
        );
    }
    if !is_kind(&target.kind) {
        findings.error(
            format!("{field}.kind"),
            format!("{field}.kind in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'"),
        );
    }
    if target.name.is_empty() {
        findings.error(
            format!("{field}.name"),
            format!("{field}.name: Required value"),
        );
    }
    if target
        .namespace
        .as_deref()
        .is_some_and(|ns| !ns.is_empty() && ns != namespace)
    {
        findings.error(
            format!("{field}.namespace"),
            "cross namespace referencing is not currently supported",
        );
    }
}

fn is_group(group: &str) -> bool {
    group.is_empty() || group.split('.').all(is_label)
}

fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_kind(kind: &str) -> bool {
    let bytes = kind.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("reviews.default.svc.cluster.local").is_ok());
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*x").is_ok());
        assert!(validate_wildcard_domain("example.com.").is_ok());
        assert!(validate_wildcard_domain("a.*.com").is_err());
        assert!(validate_wildcard_domain("1.2.3.4").is_err());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_wildcard_domain("bad_host").is_err());
        assert!(validate_fqdn("*.example.com").is_err());
    }

    #[test]
    fn subnets() {
        assert!(validate_ip_subnet("1.2.3.4").is_ok());
        assert!(validate_ip_subnet("001:db8::").is_ok());
        assert!(validate_ip_subnet("10.0.0.0/8").is_ok());
        assert!(validate_ip_subnet("1.2.3.4/99").is_err());
        assert!(validate_ip_subnet("example.com").is_err());
    }

    #[test]
    fn durations() {
        assert!(validate_duration("1ms".parse().unwrap()).is_ok());
        assert!(validate_duration("0.5ms".parse().unwrap()).is_err());
        assert!(validate_duration("1.0005s".parse().unwrap()).is_err());
    }

    #[test]
    fn header_values() {
        assert!(validate_header_value("plain").is_ok());
        assert!(validate_header_value("%HOSTNAME%").is_ok());
        assert!(validate_header_value("100%%").is_ok());
        assert!(validate_header_value("abc%123").is_err());
    }

    #[test]
    fn labels() {
        assert!(is_label_key("app"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("-app"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
