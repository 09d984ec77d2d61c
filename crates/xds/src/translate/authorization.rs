//! AuthorizationPolicy → Envoy's RBAC filters, as istiod writes them.
//!
//! Each policy rule becomes one RBAC policy named `ns[<ns>]-policy[<name>]-rule[<i>]`:
//! its permissions are one AND per `to` (or one, without), its principals one AND per
//! `from`, the `when` conditions joining the side they belong to. A workload gets one
//! filter per action, AUDIT (`LOG`), DENY, then ALLOW; dry-run policies go to a filter's
//! shadow rules. On a TCP chain an attribute only HTTP has drops the whole rule of an
//! ALLOW policy (allowing less) and only itself in a DENY or AUDIT rule (denying more).

use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher, list_matcher, metadata_matcher, path_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;

use bosun_api::security::{Condition, Rule};
use bosun_api::validation::contains_path_template;
use bosun_model::{AuthorizationAction, AuthorizationPolicy};
use bosun_wire::metadata;

/// The stat prefix istiod gives the network RBAC filter.
const TCP_STAT_PREFIX: &str = "tcp.";
const DRY_RUN_ALLOW_PREFIX: &str = "istio_dry_run_allow_";
const DRY_RUN_DENY_PREFIX: &str = "istio_dry_run_deny_";

/// The HTTP RBAC filters for a sidecar's inbound HTTP chains.
pub(super) fn http_filters(policies: &[&std::sync::Arc<AuthorizationPolicy>]) -> Vec<HttpFilter> {
    by_action(policies, false)
        .into_iter()
        .map(|(rules, shadow)| HttpFilter {
            name: bosun_wire::http_filters::RBAC.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(HttpRbac {
                shadow_rules_stat_prefix: shadow_prefix(shadow.as_ref()),
                rules,
                shadow_rules: shadow,
                ..Default::default()
            }))),
            ..Default::default()
        })
        .collect()
}

/// The network RBAC filters for a sidecar's inbound TCP chains.
pub(super) fn network_filters(policies: &[&std::sync::Arc<AuthorizationPolicy>]) -> Vec<Filter> {
    by_action(policies, true)
        .into_iter()
        .map(|(rules, shadow)| Filter {
            name: bosun_wire::network_filters::RBAC.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(pack_any(NetworkRbac {
                stat_prefix: TCP_STAT_PREFIX.to_string(),
                shadow_rules_stat_prefix: shadow_prefix(shadow.as_ref()),
                rules,
                shadow_rules: shadow,
                ..Default::default()
            }))),
        })
        .collect()
}

fn shadow_prefix(shadow: Option<&Rbac>) -> String {
    match shadow.map(|rules| rbac::Action::try_from(rules.action)) {
        Some(Ok(rbac::Action::Allow)) => DRY_RUN_ALLOW_PREFIX.to_string(),
        Some(Ok(rbac::Action::Deny)) => DRY_RUN_DENY_PREFIX.to_string(),
        _ => String::new(),
    }
}

/// (enforced rules, dry-run rules) per action present, in istiod's order.
fn by_action(
    policies: &[&std::sync::Arc<AuthorizationPolicy>],
    tcp: bool,
) -> Vec<(Option<Rbac>, Option<Rbac>)> {
    [
        (AuthorizationAction::Audit, rbac::Action::Log),
        (AuthorizationAction::Deny, rbac::Action::Deny),
        (AuthorizationAction::Allow, rbac::Action::Allow),
    ]
    .into_iter()
    .filter_map(|(action, envoy_action)| {
        let mut enforced: Option<Rbac> = None;
        let mut shadow: Option<Rbac> = None;
        for policy in policies.iter().filter(|policy| policy.action == action) {
            let rules = if policy.dry_run {
                &mut shadow
            } else {
                &mut enforced
            };
            let rules = rules.get_or_insert_with(|| Rbac {
                action: envoy_action as i32,
                ..Default::default()
            });
            rules.policies.extend(policies_of(policy, tcp, action, ""));
        }
        (enforced.is_some() || shadow.is_some()).then_some((enforced, shadow))
    })
    .collect()
}

/// A policy's rules as RBAC policies, named `<prefix>ns[<ns>]-policy[<name>]-rule[<i>]`.
pub(super) fn policies_of(
    policy: &AuthorizationPolicy,
    tcp: bool,
    action: AuthorizationAction,
    prefix: &str,
) -> HashMap<String, Policy> {
    let name = |index: usize| {
        format!(
            "{prefix}ns[{}]-policy[{}]-rule[{index}]",
            policy.namespace, policy.name
        )
    };
    if policy.rules.is_empty() {
        return HashMap::from([(name(0), match_never())]);
    }
    let generator = Generator {
        tcp,
        // CUSTOM rules are built as DENY rules are (istiod): asking more, never less.
        strict: action == AuthorizationAction::Allow,
        namespace: &policy.namespace,
    };
    policy
        .rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| Some((name(index), generator.policy(rule)?)))
        .collect()
}

/// istiod's policy for a rule with no rules: matches nothing, so an ALLOW denies all.
fn match_never() -> Policy {
    Policy {
        permissions: vec![permission_not(permission_any())],
        principals: vec![principal_not(principal_any())],
        ..Default::default()
    }
}

/// Turns rules into policies for one chain kind and action.
struct Generator<'a> {
    tcp: bool,
    /// ALLOW: an attribute that does not apply drops the rule. DENY and AUDIT: only itself.
    strict: bool,
    namespace: &'a str,
}

/// An attribute's matchers, or why it does not apply to this chain.
type Generated<T> = Result<Option<T>, ()>;

impl Generator<'_> {
    fn policy(&self, rule: &Rule) -> Option<Policy> {
        let mut base_permissions = Vec::new();
        let mut base_principals = Vec::new();
        for condition in rule.when() {
            match condition_side(&condition.key) {
                Side::Permission => {
                    base_permissions.push(self.keep(self.condition_permission(condition))?);
                }
                Side::Principal => {
                    base_principals.push(self.keep(self.condition_principal(condition))?);
                }
                // Validation refuses unknown attributes; istiod skips such a rule.
                Side::Unknown => return None,
            }
        }
        let mut principals = Vec::new();
        for source in rule.from().iter().filter_map(|from| from.source.as_ref()) {
            let fields = [
                self.principal_field(&source.principals, &source.not_principals, Self::principal),
                self.principal_field(
                    &source.request_principals,
                    &source.not_request_principals,
                    Self::request_principal,
                ),
                self.principal_field(
                    &source.service_accounts,
                    &source.not_service_accounts,
                    Self::service_account,
                ),
                self.principal_field(
                    &source.trust_domains,
                    &source.not_trust_domains,
                    Self::trust_domain,
                ),
                self.principal_field(&source.namespaces, &source.not_namespaces, Self::namespace),
                self.principal_field(
                    &source.remote_ip_blocks,
                    &source.not_remote_ip_blocks,
                    Self::remote_ip,
                ),
                self.principal_field(&source.ip_blocks, &source.not_ip_blocks, Self::source_ip),
            ];
            let mut and = Vec::new();
            for field in fields {
                and.extend(self.keep(field)?.into_iter().flatten());
            }
            and.extend(base_principals.iter().flatten().flatten().cloned());
            principals.push(principal_and(and));
        }
        if rule.from().is_empty() {
            principals.push(principal_and(
                base_principals
                    .iter()
                    .flatten()
                    .flatten()
                    .cloned()
                    .collect(),
            ));
        }
        let mut permissions = Vec::new();
        for operation in rule.to().iter().filter_map(|to| to.operation.as_ref()) {
            let fields = [
                self.permission_field(&operation.hosts, &operation.not_hosts, Self::host),
                self.permission_field(&operation.methods, &operation.not_methods, Self::method),
                self.permission_field(&operation.paths, &operation.not_paths, Self::path),
                self.permission_field(&operation.ports, &operation.not_ports, Self::port),
            ];
            let mut and = Vec::new();
            for field in fields {
                and.extend(self.keep(field)?.into_iter().flatten());
            }
            and.extend(base_permissions.iter().flatten().flatten().cloned());
            permissions.push(permission_and(and));
        }
        if rule.to().is_empty() {
            permissions.push(permission_and(
                base_permissions
                    .iter()
                    .flatten()
                    .flatten()
                    .cloned()
                    .collect(),
            ));
        }
        Some(Policy {
            permissions,
            principals,
            ..Default::default()
        })
    }

    /// Applies istiod's rule for an attribute that does not apply: `None` drops the rule.
    fn keep<T>(&self, generated: Generated<T>) -> Option<Option<T>> {
        match generated {
            Ok(matchers) => Some(matchers),
            Err(()) if self.strict => None,
            Err(()) => Some(None),
        }
    }

    fn principal_field(
        &self,
        values: &[String],
        not_values: &[String],
        one: fn(&Self, &str) -> Generated<Principal>,
    ) -> Generated<Vec<Principal>> {
        let mut out = Vec::new();
        let or = |values: &[String]| -> Result<Option<Principal>, ()> {
            let mut ids = Vec::new();
            for value in values {
                if let Some(id) = one(self, value)? {
                    ids.push(id);
                }
            }
            Ok((!ids.is_empty()).then(|| principal_or(ids)))
        };
        if let Some(id) = or(values)? {
            out.push(id);
        }
        if let Some(id) = or(not_values)? {
            out.push(principal_not(id));
        }
        Ok(Some(out))
    }

    fn permission_field(
        &self,
        values: &[String],
        not_values: &[String],
        one: fn(&Self, &str) -> Generated<Permission>,
    ) -> Generated<Vec<Permission>> {
        let mut out = Vec::new();
        let or = |values: &[String]| -> Result<Option<Permission>, ()> {
            let mut rules = Vec::new();
            for value in values {
                if let Some(rule) = one(self, value)? {
                    rules.push(rule);
                }
            }
            Ok((!rules.is_empty()).then(|| permission_or(rules)))
        };
        if let Some(rule) = or(values)? {
            out.push(rule);
        }
        if let Some(rule) = or(not_values)? {
            out.push(permission_not(rule));
        }
        Ok(Some(out))
    }

    fn condition_principal(&self, condition: &Condition) -> Generated<Vec<Principal>> {
        let key = condition.key.as_str();
        let one: fn(&Self, &str) -> Generated<Principal> = match key {
            "source.ip" => Self::source_ip,
            "remote.ip" => Self::remote_ip,
            "source.namespace" => Self::namespace,
            "source.trustDomain" => Self::trust_domain,
            "source.serviceAccount" => Self::service_account,
            "source.principal" => Self::principal,
            "request.auth.principal" => Self::request_principal,
            "request.auth.audiences" | "request.auth.presenter" => {
                let claim = if key.ends_with("audiences") {
                    "aud"
                } else {
                    "azp"
                };
                return self.claim_condition(&[claim.to_string()], condition);
            }
            _ if key.starts_with("request.auth.claims") => {
                let Some(claims) = nested_names(&key["request.auth.claims".len()..]) else {
                    return Ok(None);
                };
                return self.claim_condition(&claims, condition);
            }
            _ if key.starts_with("request.headers") => {
                if self.tcp {
                    return Err(());
                }
                let Some(name) = bracketed(&key["request.headers".len()..]) else {
                    return Ok(None);
                };
                let header = |value: &str| principal_header(header_matcher(name, value, false));
                let mut out = Vec::new();
                if !condition.values.is_empty() {
                    out.push(principal_or(
                        condition.values.iter().map(|v| header(v)).collect(),
                    ));
                }
                if !condition.not_values.is_empty() {
                    out.push(principal_not(principal_or(
                        condition.not_values.iter().map(|v| header(v)).collect(),
                    )));
                }
                return Ok(Some(out));
            }
            _ => return Ok(None),
        };
        self.principal_field(&condition.values, &condition.not_values, one)
    }

    /// `request.auth.claims[...]`, audiences, presenter: the JWT filter's claims, any of
    /// the values (a list claim matches when one of its items does).
    fn claim_condition(
        &self,
        claims: &[String],
        condition: &Condition,
    ) -> Generated<Vec<Principal>> {
        if self.tcp {
            return Err(());
        }
        let mut out = Vec::new();
        if !condition.values.is_empty() {
            out.push(principal_metadata(claims_matcher(
                claims,
                &condition.values,
            )));
        }
        if !condition.not_values.is_empty() {
            out.push(principal_not(principal_metadata(claims_matcher(
                claims,
                &condition.not_values,
            ))));
        }
        Ok(Some(out))
    }

    fn condition_permission(&self, condition: &Condition) -> Generated<Vec<Permission>> {
        let key = condition.key.as_str();
        let one: fn(&Self, &str) -> Generated<Permission> = match key {
            "destination.ip" => Self::destination_ip,
            "destination.port" => Self::port,
            "connection.sni" => Self::sni,
            _ if key.starts_with("experimental.envoy.filters.") => {
                return Ok(Some(self.envoy_filter_condition(condition)));
            }
            _ => return Ok(None),
        };
        self.permission_field(&condition.values, &condition.not_values, one)
    }

    #[allow(deprecated)] // istiod still writes `metadata`.
    fn envoy_filter_condition(&self, condition: &Condition) -> Vec<Permission> {
        // "experimental.envoy.filters.a.b[c]" → filter "envoy.filters.a.b", key "c".
        let key = condition.key.trim_start_matches("experimental.");
        let Some((filter, rest)) = key.split_once('[') else {
            return Vec::new();
        };
        let field = rest.trim_end_matches(']');
        let matcher = |values: &[String]| {
            let matchers = values
                .iter()
                .map(
                    |value| match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                        Some(item) => ValueMatcher {
                            match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                                ListMatcher {
                                    match_pattern: Some(list_matcher::MatchPattern::OneOf(
                                        Box::new(string_value(item)),
                                    )),
                                },
                            ))),
                        },
                        None => string_value(value),
                    },
                )
                .collect();
            Permission {
                rule: Some(permission::Rule::Metadata(MetadataMatcher {
                    filter: filter.to_string(),
                    path: vec![path_key(field)],
                    value: Some(or_values(matchers)),
                    ..Default::default()
                })),
            }
        };
        let mut out = Vec::new();
        if !condition.values.is_empty() {
            out.push(matcher(&condition.values));
        }
        if !condition.not_values.is_empty() {
            out.push(permission_not(matcher(&condition.not_values)));
        }
        out
    }

    fn principal(&self, value: &str) -> Generated<Principal> {
        Ok(Some(authenticated(string_with_prefix(value, "spiffe://"))))
    }

    fn namespace(&self, value: &str) -> Generated<Principal> {
        let namespace = value
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*");
        Ok(Some(authenticated(string_regex(format!(
            ".*/ns/{namespace}/.*"
        )))))
    }

    fn service_account(&self, value: &str) -> Generated<Principal> {
        let (namespace, account) = value.split_once('/').unwrap_or((self.namespace, value));
        Ok(Some(authenticated(string_regex(format!(
            "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
            regex::escape(namespace),
            regex::escape(account)
        )))))
    }

    fn trust_domain(&self, value: &str) -> Generated<Principal> {
        let matcher = if value == "*" {
            string_prefix("spiffe://")
        } else if !value.contains('*') {
            string_prefix(&format!("spiffe://{value}/"))
        } else {
            let (before, after) = value.split_once('*').unwrap_or((value, ""));
            string_regex(format!(
                "spiffe://{}[^/]*{}/.*",
                regex::escape(before),
                regex::escape(after)
            ))
        };
        Ok(Some(authenticated(matcher)))
    }

    fn request_principal(&self, value: &str) -> Generated<Principal> {
        if self.tcp {
            return Err(());
        }
        // The issuer may be a URL: the subject is after the last '/'.
        let (issuer, subject) = match value.rfind('/') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        };
        let any = || string_regex(".+".to_string());
        let (iss, sub) = if value == "*" {
            (any(), any())
        } else if let Some(rest) = value.strip_prefix('*') {
            match subject {
                Some(subject) if issuer == "*" => (any(), string_exact(subject)),
                Some(subject) => (string_suffix(&issuer[1..]), string_exact(subject)),
                None => (any(), string_suffix(rest)),
            }
        } else if let Some(rest) = value.strip_suffix('*') {
            match subject {
                Some("*") => (string_exact(issuer), any()),
                Some(subject) => (
                    string_exact(issuer),
                    string_prefix(subject.trim_end_matches('*')),
                ),
                None => (string_prefix(rest), any()),
            }
        } else {
            (
                string_exact(issuer),
                string_exact(subject.unwrap_or_default()),
            )
        };
        let claim = |name: &str, matcher: StringMatcher| {
            principal_metadata(MetadataMatcher {
                filter: metadata::JWT_FILTER.to_string(),
                path: vec![path_key(metadata::JWT_PAYLOAD), path_key(name)],
                value: Some(ValueMatcher {
                    match_pattern: Some(value_matcher::MatchPattern::StringMatch(matcher)),
                }),
                ..Default::default()
            })
        };
        Ok(Some(principal_and(vec![
            claim("iss", iss),
            claim("sub", sub),
        ])))
    }

    fn source_ip(&self, value: &str) -> Generated<Principal> {
        Ok(cidr(value).map(|range| Principal {
            identifier: Some(principal::Identifier::DirectRemoteIp(range)),
        }))
    }

    fn remote_ip(&self, value: &str) -> Generated<Principal> {
        Ok(cidr(value).map(|range| Principal {
            identifier: Some(principal::Identifier::RemoteIp(range)),
        }))
    }

    fn host(&self, value: &str) -> Generated<Permission> {
        if self.tcp {
            return Err(());
        }
        Ok(Some(permission_header(header_matcher(
            ":authority",
            value,
            true,
        ))))
    }

    fn method(&self, value: &str) -> Generated<Permission> {
        if self.tcp {
            return Err(());
        }
        Ok(Some(permission_header(header_matcher(
            ":method", value, false,
        ))))
    }

    fn path(&self, value: &str) -> Generated<Permission> {
        if self.tcp {
            return Err(());
        }
        if contains_path_template(value) {
            let template = value.replace("{**}", "**").replace("{*}", "*");
            return Ok(Some(Permission {
                rule: Some(permission::Rule::UriTemplate(TypedExtensionConfig {
                    name: metadata::URI_TEMPLATE.to_string(),
                    typed_config: Some(pack_any(UriTemplateMatchConfig {
                        path_template: template,
                    })),
                })),
            }));
        }
        Ok(Some(Permission {
            rule: Some(permission::Rule::UrlPath(PathMatcher {
                rule: Some(path_matcher::Rule::Path(string_with_prefix(value, ""))),
            })),
        }))
    }

    fn port(&self, value: &str) -> Generated<Permission> {
        Ok(value.parse::<u16>().ok().map(|port| Permission {
            rule: Some(permission::Rule::DestinationPort(u32::from(port))),
        }))
    }

    fn destination_ip(&self, value: &str) -> Generated<Permission> {
        Ok(cidr(value).map(|range| Permission {
            rule: Some(permission::Rule::DestinationIp(range)),
        }))
    }

    fn sni(&self, value: &str) -> Generated<Permission> {
        Ok(Some(Permission {
            rule: Some(permission::Rule::RequestedServerName(string_with_prefix(
                value, "",
            ))),
        }))
    }
}

enum Side {
    Permission,
    Principal,
    Unknown,
}

/// Which side of a policy a `when` attribute belongs to (istiod's split).
fn condition_side(key: &str) -> Side {
    match key {
        "destination.ip" | "destination.port" | "connection.sni" => Side::Permission,
        _ if key.starts_with("experimental.envoy.filters.") => Side::Permission,
        "source.ip"
        | "remote.ip"
        | "source.namespace"
        | "source.trustDomain"
        | "source.serviceAccount"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter" => Side::Principal,
        _ if key.starts_with("request.headers") || key.starts_with("request.auth.claims") => {
            Side::Principal
        }
        _ => Side::Unknown,
    }
}

/// `[name]` → `name`.
fn bracketed(text: &str) -> Option<&str> {
    text.strip_prefix('[')?.strip_suffix(']')
}

/// `[a][b]` → `[a, b]`; `[a.b]` → `[a.b]`.
fn nested_names(text: &str) -> Option<Vec<String>> {
    let inner = bracketed(text)?;
    Some(inner.split("][").map(str::to_string).collect())
}

fn claims_matcher(claims: &[String], values: &[String]) -> MetadataMatcher {
    let value = or_values(values.iter().map(|v| string_value(v)).collect());
    let mut path = vec![path_key(metadata::JWT_PAYLOAD)];
    path.extend(claims.iter().map(|claim| path_key(claim)));
    // istiod's extended form: a list claim holding one of the values, or a string claim
    // equal to one.
    MetadataMatcher {
        filter: metadata::JWT_FILTER.to_string(),
        path,
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![
                    ValueMatcher {
                        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                            ListMatcher {
                                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(
                                    value.clone(),
                                ))),
                            },
                        ))),
                    },
                    value,
                ],
            })),
        }),
        ..Default::default()
    }
}

fn or_values(mut matchers: Vec<ValueMatcher>) -> ValueMatcher {
    if matchers.len() == 1 {
        return matchers.remove(0);
    }
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: matchers,
        })),
    }
}

fn string_value(value: &str) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(
            string_with_prefix(value, ""),
        )),
    }
}

fn path_key(key: &str) -> metadata_matcher::PathSegment {
    metadata_matcher::PathSegment {
        segment: Some(metadata_matcher::path_segment::Segment::Key(
            key.to_string(),
        )),
    }
}

/// A single address is its host route (/32 or /128); a bad value matches nothing
/// (validation refuses it).
fn cidr(value: &str) -> Option<CidrRange> {
    let (address, bits) = match value.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?),
        None => {
            let address = value.parse::<IpAddr>().ok()?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    Some(CidrRange {
        address_prefix: address.to_string(),
        prefix_len: Some(UInt32Value { value: bits }),
    })
}

/// Istio's value syntax: `*` any non-empty, `*x` suffix, `x*` prefix, else exact; a
/// prefix (the SPIFFE scheme for principals) goes before the value.
fn string_with_prefix(value: &str, prefix: &str) -> StringMatcher {
    if value == "*" {
        string_regex(".+".to_string())
    } else if let Some(suffix) = value.strip_prefix('*') {
        if prefix.is_empty() {
            string_suffix(suffix)
        } else {
            string_regex(format!("{prefix}.*{}", regex::escape(suffix)))
        }
    } else if let Some(start) = value.strip_suffix('*') {
        string_prefix(&format!("{prefix}{start}"))
    } else {
        string_exact(&format!("{prefix}{value}"))
    }
}

fn header_matcher(name: &str, value: &str, ignore_case: bool) -> HeaderMatcher {
    let specifier = if value == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        let mut matcher = if let Some(suffix) = value.strip_prefix('*') {
            string_suffix(suffix)
        } else if let Some(prefix) = value.strip_suffix('*') {
            string_prefix(prefix)
        } else {
            string_exact(value)
        };
        matcher.ignore_case = ignore_case;
        header_matcher::HeaderMatchSpecifier::StringMatch(matcher)
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn string_exact(value: &str) -> StringMatcher {
    string_pattern(string_matcher::MatchPattern::Exact(value.to_string()))
}

fn string_prefix(value: &str) -> StringMatcher {
    string_pattern(string_matcher::MatchPattern::Prefix(value.to_string()))
}

fn string_suffix(value: &str) -> StringMatcher {
    string_pattern(string_matcher::MatchPattern::Suffix(value.to_string()))
}

fn string_regex(regex: String) -> StringMatcher {
    string_pattern(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
        regex,
        ..Default::default()
    }))
}

fn string_pattern(pattern: string_matcher::MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn authenticated(name: StringMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(name),
            },
        )),
    }
}

// istiod still writes `metadata` (Envoy deprecates it for `sourced_metadata`).
#[allow(deprecated)]
fn principal_metadata(matcher: MetadataMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Metadata(matcher)),
    }
}

fn principal_header(matcher: HeaderMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Header(matcher)),
    }
}

fn permission_header(matcher: HeaderMatcher) -> Permission {
    Permission {
        rule: Some(permission::Rule::Header(matcher)),
    }
}

fn principal_any() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn permission_any() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

fn principal_and(mut ids: Vec<Principal>) -> Principal {
    if ids.is_empty() {
        ids.push(principal_any());
    }
    Principal {
        identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
    }
}

fn principal_or(ids: Vec<Principal>) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

fn principal_not(id: Principal) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::NotId(Box::new(id))),
    }
}

fn permission_and(mut rules: Vec<Permission>) -> Permission {
    if rules.is_empty() {
        rules.push(permission_any());
    }
    Permission {
        rule: Some(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn permission_or(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn permission_not(rule: Permission) -> Permission {
    Permission {
        rule: Some(permission::Rule::NotRule(Box::new(rule))),
    }
}
