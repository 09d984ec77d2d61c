//! AuthorizationPolicy validation, with Istio's messages.

use std::net::IpAddr;

use super::findings::Findings;
use super::rules::{validate_selector_labels, validate_target};
use crate::meta::Config;
use crate::security::{Action, AuthorizationPolicy, Condition, Operation, Source};

/// `{*}`: one path segment; `{**}`: the rest of the path.
pub const MATCH_ONE_TEMPLATE: &str = "{*}";
pub const MATCH_ANY_TEMPLATE: &str = "{**}";

pub(super) fn validate(config: &Config<AuthorizationPolicy>, findings: &mut Findings) {
    let spec = &config.spec;
    let attachments = usize::from(spec.selector.is_some())
        + usize::from(spec.target_ref.is_some())
        + usize::from(!spec.target_refs.is_empty());
    if attachments > 1 {
        findings.error(
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    if let Some(selector) = &spec.selector {
        validate_selector_labels(
            findings,
            "spec.selector.matchLabels",
            &selector.match_labels,
        );
    }
    let namespace = config.meta.namespace.clone();
    if let Some(target) = &spec.target_ref {
        validate_target(findings, "spec.targetRef", target, &namespace);
    }
    for (index, target) in spec.target_refs.iter().enumerate() {
        validate_target(
            findings,
            &format!("spec.targetRefs[{index}]"),
            target,
            &namespace,
        );
    }
    match spec.action {
        Action::Custom if spec.rules.is_none() => findings.error(
            "spec.rules",
            "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        ),
        Action::Custom if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) => {
            findings.error("spec.provider.name", "`provider.name` must not be empty");
        }
        Action::Deny if spec.rules.is_none() => findings.error(
            "spec.rules",
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        ),
        _ => {}
    }
    if spec.provider.is_some() && spec.action != Action::Custom {
        findings.error(
            "spec.provider",
            format!(
                "`provider` must not be with non CUSTOM action, found {}",
                spec.action.as_str()
            ),
        );
    }
    for (index, rule) in spec.rules().iter().enumerate() {
        let field = format!("spec.rules[{index}]");
        if spec.action == Action::Custom {
            custom_limits(findings, &field, rule);
        }
        if rule.from.as_ref().is_some_and(Vec::is_empty) {
            findings.error(
                format!("{field}.from"),
                format!("`from` must not be empty, found at rule {index}"),
            );
        }
        for (f, from) in rule.from().iter().enumerate() {
            let field = format!("{field}.from[{f}].source");
            match &from.source {
                None => findings.error(
                    &field,
                    format!("`from.source` must not be nil, found at rule {index}"),
                ),
                Some(source) => validate_source(findings, &field, index, source),
            }
        }
        if rule.to.as_ref().is_some_and(Vec::is_empty) {
            findings.error(
                format!("{field}.to"),
                format!("`to` must not be empty, found at rule {index}"),
            );
        }
        for (t, to) in rule.to().iter().enumerate() {
            let field = format!("{field}.to[{t}].operation");
            match &to.operation {
                None => findings.error(
                    &field,
                    format!("`to.operation` must not be nil, found at rule {index}"),
                ),
                Some(operation) => validate_operation(findings, &field, index, operation),
            }
        }
        for (w, condition) in rule.when().iter().enumerate() {
            validate_condition(findings, &format!("{field}.when[{w}]"), condition);
        }
    }
}

fn custom_limits(findings: &mut Findings, field: &str, rule: &crate::security::Rule) {
    for source in rule.from().iter().filter_map(|from| from.source.as_ref()) {
        let identity_fields = [
            (!source.namespaces.is_empty(), "From.Namespaces"),
            (!source.not_namespaces.is_empty(), "From.NotNamespaces"),
            (!source.service_accounts.is_empty(), "From.ServiceAccounts"),
            (
                !source.not_service_accounts.is_empty(),
                "From.NotServiceAccounts",
            ),
            (!source.trust_domains.is_empty(), "From.TrustDomains"),
            (!source.not_trust_domains.is_empty(), "From.NotTrustDomains"),
            (!source.principals.is_empty(), "From.Principals"),
            (!source.not_principals.is_empty(), "From.NotPrincipals"),
            (
                !source.request_principals.is_empty(),
                "From.RequestPrincipals",
            ),
            (
                !source.not_request_principals.is_empty(),
                "From.NotRequestPrincipals",
            ),
        ];
        for (_, name) in identity_fields.iter().filter(|(set, _)| *set) {
            findings.error(
                field,
                format!("{name} is currently not supported with CUSTOM action"),
            );
        }
    }
    for condition in rule.when() {
        let key = condition.key.as_str();
        if matches!(
            key,
            "source.namespace"
                | "source.serviceAccount"
                | "source.trustDomain"
                | "source.principal"
        ) || key.starts_with("request.auth.")
        {
            findings.error(
                field,
                format!("{key} is currently not supported with CUSTOM action"),
            );
        }
    }
}

fn validate_source(findings: &mut Findings, field: &str, index: usize, source: &Source) {
    let names_identities = !source.principals.is_empty()
        || !source.not_principals.is_empty()
        || !source.namespaces.is_empty()
        || !source.not_namespaces.is_empty();
    let names_accounts =
        !source.service_accounts.is_empty() || !source.not_service_accounts.is_empty();
    if names_identities && names_accounts {
        findings.error(
            field,
            format!(
                "Cannot set serviceAccounts with namespaces or principals, found at rule {index}"
            ),
        );
    }
    let lists = [
        ("Principals", &source.principals),
        ("NotPrincipals", &source.not_principals),
        ("RequestPrincipals", &source.request_principals),
        ("NotRequestPrincipals", &source.not_request_principals),
        ("Namespaces", &source.namespaces),
        ("NotNamespaces", &source.not_namespaces),
        ("ServiceAccounts", &source.service_accounts),
        ("NotServiceAccounts", &source.not_service_accounts),
        ("TrustDomains", &source.trust_domains),
        ("NotTrustDomains", &source.not_trust_domains),
        ("IpBlocks", &source.ip_blocks),
        ("NotIpBlocks", &source.not_ip_blocks),
        ("RemoteIpBlocks", &source.remote_ip_blocks),
        ("NotRemoteIpBlocks", &source.not_remote_ip_blocks),
    ];
    if lists.iter().all(|(_, values)| values.is_empty()) {
        findings.error(
            field,
            format!("`from.source` must not be empty, found at rule {index}"),
        );
    }
    for (name, values) in lists {
        findings.check(field, check_empty_values(name, values));
    }
    for (name, values) in [
        ("ServiceAccounts", &source.service_accounts),
        ("NotServiceAccounts", &source.not_service_accounts),
    ] {
        findings.check(field, check_service_accounts(name, values));
    }
    for (name, values) in [
        ("TrustDomains", &source.trust_domains),
        ("NotTrustDomains", &source.not_trust_domains),
    ] {
        findings.check(field, check_trust_domains(name, values));
    }
    for values in [
        &source.ip_blocks,
        &source.not_ip_blocks,
        &source.remote_ip_blocks,
        &source.not_remote_ip_blocks,
    ] {
        findings.check(field, validate_ips(values));
    }
}

fn validate_operation(findings: &mut Findings, field: &str, index: usize, operation: &Operation) {
    let lists = [
        ("Hosts", &operation.hosts),
        ("NotHosts", &operation.not_hosts),
        ("Ports", &operation.ports),
        ("NotPorts", &operation.not_ports),
        ("Methods", &operation.methods),
        ("NotMethods", &operation.not_methods),
        ("Paths", &operation.paths),
        ("NotPaths", &operation.not_paths),
    ];
    if lists.iter().all(|(_, values)| values.is_empty()) {
        findings.error(
            field,
            format!("`to.operation` must not be empty, found at rule {index}"),
        );
    }
    for (name, values) in lists {
        findings.check(field, check_empty_values(name, values));
    }
    findings.check(field, validate_ports(&operation.ports));
    findings.check(field, validate_ports(&operation.not_ports));
    findings.check(field, check_path_templates("Paths", &operation.paths));
    findings.check(
        field,
        check_path_templates("NotPaths", &operation.not_paths),
    );
}

fn validate_condition(findings: &mut Findings, field: &str, condition: &Condition) {
    let key = condition.key.as_str();
    if key.is_empty() {
        findings.error(field, "`key` must not be empty");
        return;
    }
    if condition.values.is_empty() && condition.not_values.is_empty() {
        findings.error(
            field,
            format!("at least one of `values` or `notValues` must be set for key {key}"),
        );
        return;
    }
    for (what, values) in [
        ("value", &condition.values),
        ("notValue", &condition.not_values),
    ] {
        if let Err(reason) = validate_attribute(key, values) {
            findings.error(field, format!("invalid `{what}` for `key` {key}: {reason}"));
        }
    }
}

/// The attributes a `when` condition may name, and what their values must be.
fn validate_attribute(key: &str, values: &[String]) -> Result<(), String> {
    check_empty_values(key, values)?;
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => validate_ips(values),
        "destination.port" => validate_ports(values),
        "source.serviceAccount" => check_service_accounts(key, values),
        "source.trustDomain" => check_trust_domains(key, values),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        _ if key.starts_with("request.headers")
            || key.starts_with("request.auth.claims")
            || key.starts_with("experimental.envoy.filters.") =>
        {
            validate_map_key(key)
        }
        _ => Err(format!("unknown attribute: {key}")),
    }
}

fn validate_map_key(key: &str) -> Result<(), String> {
    match key.find('[') {
        Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => Ok(()),
        _ => Err(format!("bad key ({key}): should have format a[b]")),
    }
}

fn check_empty_values(name: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {name}"));
    }
    Ok(())
}

fn check_wildcards(name: &str, values: &[String]) -> Result<(), String> {
    check_empty_values(name, values)?;
    for value in values {
        match value.matches('*').count() {
            0 => {}
            1 if value == "*" || value.starts_with('*') || value.ends_with('*') => {}
            1 => {
                return Err(format!(
                    "wildcard is only allowed at the start or end, found in {name}: {value:?}"
                ));
            }
            _ => {
                return Err(format!(
                    "at most one wildcard is allowed, found in {name}: {value:?}"
                ));
            }
        }
    }
    Ok(())
}

fn check_trust_domains(name: &str, values: &[String]) -> Result<(), String> {
    check_wildcards(name, values)?;
    if let Some(value) = values.iter().find(|value| value.contains('/')) {
        return Err(format!(
            "trust domain must not contain '/', found in {name}: {value:?}"
        ));
    }
    Ok(())
}

fn check_service_accounts(name: &str, values: &[String]) -> Result<(), String> {
    if values.len() > 16 {
        return Err("may not have more than 16 values".to_owned());
    }
    for value in values {
        if value.is_empty() {
            return Err(format!("empty value not allowed, found in {name}"));
        }
        if value.contains('*') {
            return Err(format!("wildcard not allowed, found in {name}"));
        }
        let expected = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
        if value.matches('/').count() > 1 {
            return Err(format!("{expected}, found {value:?} in {name}"));
        }
        if value.len() > 320 {
            return Err(format!(
                "value cannot exceed 320 characters, found {value:?} in {name}"
            ));
        }
        if let Some((namespace, account)) = value.split_once('/') {
            if namespace.is_empty() {
                return Err(format!(
                    "{expected}, found empty namespace {value:?} in {name}"
                ));
            }
            if account.is_empty() {
                return Err(format!(
                    "{expected}, found empty serviceAccount {value:?} in {name}"
                ));
            }
        }
    }
    Ok(())
}

/// Addresses or CIDR ranges (`10.0.0.1`, `10.0.0.0/16`).
pub fn validate_ips(values: &[String]) -> Result<(), String> {
    for value in values {
        match value.split_once('/') {
            Some((address, bits)) => {
                let address: Option<IpAddr> = address.parse().ok();
                let max = match address {
                    Some(IpAddr::V4(_)) => 32,
                    Some(IpAddr::V6(_)) => 128,
                    None => return Err(format!("bad CIDR range ({value}): bad address")),
                };
                if !bits.parse::<u8>().is_ok_and(|bits| bits <= max) {
                    return Err(format!("bad CIDR range ({value}): bad prefix length"));
                }
            }
            None if value.parse::<IpAddr>().is_err() => {
                return Err(format!("bad IP address ({value})"));
            }
            None => {}
        }
    }
    Ok(())
}

fn validate_ports(values: &[String]) -> Result<(), String> {
    for value in values {
        if !value.parse::<u32>().is_ok_and(|port| port <= 65535) {
            return Err(format!("bad port ({value}): not a number in 0-65535"));
        }
    }
    Ok(())
}

/// Whether a path uses Istio's templates (`{*}`, `{**}`).
pub fn contains_path_template(path: &str) -> bool {
    path.contains(MATCH_ONE_TEMPLATE) || path.contains(MATCH_ANY_TEMPLATE)
}

fn check_path_templates(name: &str, paths: &[String]) -> Result<(), String> {
    for path in paths {
        let templated = contains_path_template(path);
        let trimmed = path.trim_matches('/');
        let mut found_any = false;
        for glob in trimmed.split('/') {
            let is_template = glob == MATCH_ONE_TEMPLATE || glob == MATCH_ANY_TEMPLATE;
            if is_template && found_any {
                return Err(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. {{**}} is not the last operator"
                ));
            }
            if is_template {
                found_any |= glob == MATCH_ANY_TEMPLATE;
                continue;
            }
            if glob.contains(['{', '}']) {
                return Err(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. Contains '{{' or '}}' beyond a supported path template"
                ));
            }
            if templated && !is_valid_literal(glob) {
                return Err(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. Contains segment {glob} with invalid string literal"
                ));
            }
        }
    }
    Ok(())
}

/// RFC 3986 `pchar`s, as Envoy's URI templates accept them in a literal segment.
fn is_valid_literal(glob: &str) -> bool {
    !glob.is_empty()
        && glob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b))
}
