//! Envoy's RBAC configs (`envoy.config.rbac.v3`, the HTTP and the network filter's) →
//! [`Rbac`]. What the engine cannot evaluate is refused by name.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission as ProtoPermission, Principal as ProtoPrincipal, Rbac as ProtoRbac, permission,
    principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    MetadataMatcher, ValueMatcher, list_matcher, metadata_matcher, path_matcher, value_matcher,
};

use super::matchers::{compile_header, string_match};
use super::{Reason, decode_any};
use crate::filters::RbacFilter;
use crate::filters::rbac::ShadowKeys;
use crate::rbac::{
    Cidr, MetadataMatch, MetadataValue, Permission, Policy, Principal, Rbac, RbacAction,
    UriTemplate,
};

pub(super) fn compile_http_rbac(name: &str, config: &HttpRbac) -> Result<RbacFilter, Reason> {
    let matchers = config.matcher.is_some() || config.shadow_matcher.is_some();
    filter(
        name,
        config.rules.as_ref(),
        config.shadow_rules.as_ref(),
        matchers,
    )
    .map(|rbac| RbacFilter {
        shadow_keys: ShadowKeys::with_prefix(&config.shadow_rules_stat_prefix),
        metadata_namespace: bosun_wire::metadata::RBAC_HTTP_FILTER,
        ..rbac
    })
}

pub(super) fn compile_network_rbac(name: &str, config: &NetworkRbac) -> Result<RbacFilter, Reason> {
    let matchers = config.matcher.is_some() || config.shadow_matcher.is_some();
    filter(
        name,
        config.rules.as_ref(),
        config.shadow_rules.as_ref(),
        matchers,
    )
    .map(|rbac| RbacFilter {
        shadow_keys: ShadowKeys::with_prefix(&config.shadow_rules_stat_prefix),
        metadata_namespace: bosun_wire::metadata::RBAC_NETWORK_FILTER,
        ..rbac
    })
}

/// Either filter's rules and shadow rules; match trees (`matcher`) are refused by name.
fn filter(
    name: &str,
    rules: Option<&ProtoRbac>,
    shadow: Option<&ProtoRbac>,
    matchers: bool,
) -> Result<RbacFilter, Reason> {
    if matchers {
        return Err("matcher / shadow_matcher are not supported yet (rules are)".into());
    }
    Ok(RbacFilter {
        name: name.to_owned(),
        shadow_keys: ShadowKeys::default(),
        metadata_namespace: bosun_wire::metadata::RBAC_HTTP_FILTER,
        rules: rules.map(compile_rules).transpose()?,
        shadow: shadow
            .map(compile_rules)
            .transpose()
            .map_err(|r| format!("shadow_rules: {r}"))?,
    })
}

fn compile_rules(rules: &ProtoRbac) -> Result<Rbac, Reason> {
    let action = match rbac::Action::try_from(rules.action) {
        Ok(rbac::Action::Allow) => RbacAction::Allow,
        Ok(rbac::Action::Deny) => RbacAction::Deny,
        Ok(rbac::Action::Log) => RbacAction::Log,
        Err(_) => return Err(format!("rbac action {} is unknown", rules.action)),
    };
    // Sorted, so evaluation (and the policy a denial names) is the same every time.
    let mut names: Vec<&String> = rules.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let policy = &rules.policies[name];
        if policy.condition.is_some() || policy.checked_condition.is_some() {
            return Err(format!(
                "policy {name}: conditions (CEL) are not supported yet"
            ));
        }
        let permissions = policy
            .permissions
            .iter()
            .map(compile_permission)
            .collect::<Result<_, _>>()
            .map_err(|r| format!("policy {name}: {r}"))?;
        let principals = policy
            .principals
            .iter()
            .map(compile_principal)
            .collect::<Result<_, _>>()
            .map_err(|r| format!("policy {name}: {r}"))?;
        policies.push((
            name.clone(),
            Policy {
                permissions,
                principals,
            },
        ));
    }
    Ok(Rbac::new(action, policies))
}

#[allow(deprecated)] // `metadata` is what istiod writes.
fn compile_permission(permission: &ProtoPermission) -> Result<Permission, Reason> {
    use permission::Rule;
    let all = |set: &permission::Set| -> Result<Vec<Permission>, Reason> {
        set.rules.iter().map(compile_permission).collect()
    };
    Ok(match &permission.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::AndRules(set)) => Permission::And(all(set)?),
        Some(Rule::OrRules(set)) => Permission::Or(all(set)?),
        Some(Rule::NotRule(inner)) => Permission::Not(Box::new(compile_permission(inner)?)),
        Some(Rule::Header(header)) => Permission::Header(compile_header(header)?),
        Some(Rule::UrlPath(path)) => match &path.rule {
            Some(path_matcher::Rule::Path(matcher)) => {
                Permission::UrlPath(string_match(matcher, "url_path")?)
            }
            None => return Err("url_path needs a path matcher".into()),
        },
        Some(Rule::UriTemplate(config)) => {
            let any = config
                .typed_config
                .as_ref()
                .ok_or("uri_template needs a typed_config")?;
            let template: UriTemplateMatchConfig =
                decode_any(any, bosun_wire::type_urls::URI_TEMPLATE_MATCH)?;
            Permission::UriTemplate(UriTemplate::parse(&template.path_template)?)
        }
        Some(Rule::DestinationIp(range)) => Permission::DestinationIp(cidr(range)?),
        Some(Rule::DestinationPort(port)) => Permission::DestinationPort(
            u16::try_from(*port).map_err(|_| format!("destination_port {port} is not a port"))?,
        ),
        Some(Rule::DestinationPortRange(range)) => Permission::DestinationPortRange(
            u16::try_from(range.start.max(0)).unwrap_or(u16::MAX),
            u16::try_from(range.end.max(0)).unwrap_or(u16::MAX),
        ),
        Some(Rule::RequestedServerName(name)) => {
            Permission::RequestedServerName(string_match(name, "requested_server_name")?)
        }
        Some(Rule::Metadata(matcher)) => Permission::Metadata(metadata_match(matcher)?),
        Some(Rule::Any(false)) | None => return Err("a permission needs a rule".into()),
        Some(_) => return Err("this permission rule is not supported yet".into()),
    })
}

#[allow(deprecated)] // `metadata` is what istiod writes.
fn compile_principal(principal: &ProtoPrincipal) -> Result<Principal, Reason> {
    use principal::Identifier;
    let all = |set: &principal::Set| -> Result<Vec<Principal>, Reason> {
        set.ids.iter().map(compile_principal).collect()
    };
    Ok(match &principal.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::AndIds(set)) => Principal::And(all(set)?),
        Some(Identifier::OrIds(set)) => Principal::Or(all(set)?),
        Some(Identifier::NotId(inner)) => Principal::Not(Box::new(compile_principal(inner)?)),
        Some(Identifier::Authenticated(authenticated)) => Principal::Authenticated(
            authenticated
                .principal_name
                .as_ref()
                .map(|name| string_match(name, "authenticated.principal_name"))
                .transpose()?,
        ),
        Some(Identifier::DirectRemoteIp(range)) => Principal::DirectRemoteIp(cidr(range)?),
        Some(Identifier::RemoteIp(range)) => Principal::RemoteIp(cidr(range)?),
        Some(Identifier::Header(header)) => Principal::Header(compile_header(header)?),
        Some(Identifier::Metadata(matcher)) => Principal::Metadata(metadata_match(matcher)?),
        Some(Identifier::Any(false)) | None => return Err("a principal needs an identifier".into()),
        Some(_) => return Err("this principal identifier is not supported yet".into()),
    })
}

fn cidr(range: &CidrRange) -> Result<Cidr, Reason> {
    let address = range
        .address_prefix
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", range.address_prefix))?;
    let prefix_len = range.prefix_len.map_or(0, |len| len.value);
    let max = if matches!(address, std::net::IpAddr::V4(_)) {
        32
    } else {
        128
    };
    if prefix_len > max {
        return Err(format!("prefix_len {prefix_len} is too long"));
    }
    Ok(Cidr {
        address,
        prefix_len: u8::try_from(prefix_len).unwrap_or(128),
    })
}

pub(super) fn metadata_match(matcher: &MetadataMatcher) -> Result<MetadataMatch, Reason> {
    let path = matcher
        .path
        .iter()
        .map(|segment| match &segment.segment {
            Some(metadata_matcher::path_segment::Segment::Key(key)) => Ok(key.clone()),
            None => Err("metadata path segment needs a key".to_owned()),
        })
        .collect::<Result<_, _>>()?;
    let value = matcher
        .value
        .as_ref()
        .ok_or("metadata matcher needs a value")?;
    Ok(MetadataMatch {
        filter: matcher.filter.clone(),
        path,
        value: metadata_value(value)?,
        invert: matcher.invert,
    })
}

fn metadata_value(matcher: &ValueMatcher) -> Result<MetadataValue, Reason> {
    use value_matcher::MatchPattern;
    Ok(match &matcher.match_pattern {
        Some(MatchPattern::StringMatch(string)) => {
            MetadataValue::String(string_match(string, "metadata string_match")?)
        }
        Some(MatchPattern::PresentMatch(true)) => MetadataValue::Present,
        Some(MatchPattern::BoolMatch(expected)) => MetadataValue::Bool(*expected),
        Some(MatchPattern::ListMatch(list)) => match &list.match_pattern {
            Some(list_matcher::MatchPattern::OneOf(item)) => {
                MetadataValue::OneOf(Box::new(metadata_value(item)?))
            }
            None => return Err("list_match needs one_of".into()),
        },
        Some(MatchPattern::OrMatch(or)) => MetadataValue::Or(
            or.value_matchers
                .iter()
                .map(metadata_value)
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err("this metadata value matcher is not supported yet".into()),
    })
}
