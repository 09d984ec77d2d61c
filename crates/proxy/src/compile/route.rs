//! RouteConfiguration → [`RouteTable`] with precompiled matchers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::data_source;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction as ProtoRouteAction, RouteConfiguration, RouteMatch as ProtoRouteMatch,
    VirtualHost as ProtoVirtualHost, route, route_action, route_match,
};
use http::StatusCode;

use super::actions::{HeaderLists, header_rules, host_rewrite, redirect, regex_rewrite};
use super::filters::compile_per_filter;
use super::hash_policy::compile_hash_policy;
use super::matchers::{compile_header, compile_query, regex};
use super::percent::fraction;
use super::retry::compile_retry;
use super::{CompileError, Reason, duration};
use crate::resource::ResourceType;
use crate::routing::{
    DirectResponse, DomainIndex, FilterConfigs, Fraction, HashPolicy, HeaderRules, MirrorPolicy,
    PathMatch, PathRewrite, RetryPolicy, Route as CompiledRoute, RouteAction, RouteMatch,
    RouteTable, VirtualHost, WeightedClusters,
};

/// Envoy's route timeout when a route does not set one.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

pub fn compile_route_config(config: &RouteConfiguration) -> Result<RouteTable, CompileError> {
    compile(config).map_err(|reason| CompileError::new(ResourceType::Route, &config.name, reason))
}

fn compile(config: &RouteConfiguration) -> Result<RouteTable, Reason> {
    if config.vhds.is_some() {
        return Err("vhds is not supported yet".into());
    }
    if config.most_specific_header_mutations_wins {
        return Err("most_specific_header_mutations_wins is not supported yet".into());
    }
    if !config.request_mirror_policies.is_empty() {
        return Err("request_mirror_policies is not supported yet".into());
    }
    let table_rules = header_rules(HeaderLists {
        request_add: &config.request_headers_to_add,
        request_remove: &config.request_headers_to_remove,
        response_add: &config.response_headers_to_add,
        response_remove: &config.response_headers_to_remove,
    })?;
    let outer: Vec<Arc<HeaderRules>> = level(table_rules).into_iter().collect();
    let virtual_hosts = config
        .virtual_hosts
        .iter()
        .map(|v| compile_vhost(v, &outer).map_err(|r| format!("virtual host {}: {r}", v.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let domains = DomainIndex::build(
        virtual_hosts
            .iter()
            .map(|v| v.domains.iter().map(String::as_str)),
    )
    .map_err(|e| e.to_string())?;
    Ok(RouteTable::new(config.name.clone(), virtual_hosts, domains))
}

// Deprecated fields still change behaviour when set, so they are checked.
#[allow(deprecated)]
fn compile_vhost(
    vhost: &ProtoVirtualHost,
    table_rules: &[Arc<HeaderRules>],
) -> Result<VirtualHost, Reason> {
    if vhost.domains.is_empty() {
        return Err("domains is empty".into());
    }
    if vhost.require_tls != 0 {
        return Err("require_tls is not supported yet".into());
    }
    if vhost.hedge_policy.is_some() || vhost.retry_policy_typed_config.is_some() {
        return Err("hedge_policy / retry_policy_typed_config is not supported yet".into());
    }
    let vhost_retry = vhost
        .retry_policy
        .as_ref()
        .map(|policy| compile_retry(policy).map(Arc::new))
        .transpose()?;
    let vhost_filters = compile_per_filter(&vhost.typed_per_filter_config)?;
    if vhost.cors.is_some() {
        return Err("cors is not supported yet".into());
    }
    let vhost_rules = header_rules(HeaderLists {
        request_add: &vhost.request_headers_to_add,
        request_remove: &vhost.request_headers_to_remove,
        response_add: &vhost.response_headers_to_add,
        response_remove: &vhost.response_headers_to_remove,
    })?;
    // Envoy's order: the virtual host's changes, then the route table's (which win).
    let outer: Vec<Arc<HeaderRules>> = level(vhost_rules)
        .into_iter()
        .chain(table_rules.iter().cloned())
        .collect();
    if !vhost.rate_limits.is_empty() {
        return Err("rate_limits is not supported yet".into());
    }
    if vhost.matcher.is_some() {
        return Err("matcher is not supported yet".into());
    }
    let routes = vhost
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            compile_route(r, vhost_retry.as_ref(), &vhost_filters, &outer)
                .map(Arc::new)
                .map_err(|reason| format!("route {} ({i}): {reason}", display_name(&r.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VirtualHost::new(
        vhost.name.clone(),
        vhost.domains.clone(),
        routes,
    ))
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "<unnamed>" } else { name }
}

/// One level's header changes, kept only when there are some.
fn level(rules: HeaderRules) -> Option<Arc<HeaderRules>> {
    (!rules.is_empty()).then(|| Arc::new(rules))
}

fn compile_route(
    r: &Route,
    vhost_retry: Option<&Arc<RetryPolicy>>,
    vhost_filters: &FilterConfigs,
    outer_rules: &[Arc<HeaderRules>],
) -> Result<CompiledRoute, Reason> {
    let route_rules = header_rules(HeaderLists {
        request_add: &r.request_headers_to_add,
        request_remove: &r.request_headers_to_remove,
        response_add: &r.response_headers_to_add,
        response_remove: &r.response_headers_to_remove,
    })?;
    let headers: Vec<Arc<HeaderRules>> = level(route_rules)
        .into_iter()
        .chain(outer_rules.iter().cloned())
        .collect();
    // A route's settings for a filter replace its virtual host's.
    let filter_configs = if r.typed_per_filter_config.is_empty() {
        vhost_filters.clone()
    } else {
        compile_per_filter(&r.typed_per_filter_config)?
    };
    let matcher = compile_match(r.r#match.as_ref().ok_or("match is missing")?)?;
    let forward = match &r.action {
        Some(route::Action::Route(action)) => {
            let terminates_connect = connect_termination(action)?;
            let is_connect = matches!(matcher.path, PathMatch::Connect);
            if terminates_connect != is_connect {
                return Err(
                    "a connect_matcher route needs a CONNECT upgrade with connect_config, and only it may have one (CONNECT is terminated here, not forwarded)"
                        .into(),
                );
            }
            let mut forward = compile_action(action)?;
            // A route's own retry policy replaces its virtual host's.
            forward.retry = forward.retry.or_else(|| vhost_retry.cloned());
            forward
        }
        Some(route::Action::DirectResponse(direct)) => {
            let status = u16::try_from(direct.status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| format!("direct_response.status {} is invalid", direct.status))?;
            let body = match direct.body.as_ref().and_then(|b| b.specifier.as_ref()) {
                None => Bytes::new(),
                Some(data_source::Specifier::InlineString(s)) => Bytes::from(s.clone()),
                Some(data_source::Specifier::InlineBytes(b)) => Bytes::from(b.clone()),
                Some(_) => return Err("direct_response.body must be inline".into()),
            };
            ForwardAction::answer(RouteAction::Direct(DirectResponse { status, body }))
        }
        Some(route::Action::Redirect(r)) => {
            ForwardAction::answer(RouteAction::Redirect(redirect(r)?))
        }
        Some(_) => return Err("this route action is not supported yet".into()),
        None => return Err("action is missing".into()),
    };
    Ok(CompiledRoute {
        name: r.name.clone(),
        matcher,
        action: forward.action,
        timeout: forward.timeout,
        retry: forward.retry,
        filter_configs,
        headers,
        path_rewrite: forward.path_rewrite,
        host_rewrite: forward.host_rewrite,
        mirrors: forward.mirrors,
        hash_policy: forward.hash_policy,
    })
}

fn compile_match(m: &ProtoRouteMatch) -> Result<RouteMatch, Reason> {
    if !m.cookies.is_empty() || !m.dynamic_metadata.is_empty() || !m.filter_state.is_empty() {
        return Err("match.cookies / dynamic_metadata / filter_state is not supported yet".into());
    }
    if m.runtime_fraction.is_some() || m.grpc.is_some() || m.tls_context.is_some() {
        return Err("match.runtime_fraction / grpc / tls_context is not supported yet".into());
    }
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(regex(r, "match.safe_regex")?)
        }
        Some(route_match::PathSpecifier::ConnectMatcher(_)) => PathMatch::Connect,
        Some(_) => {
            return Err(
                "match path specifier is not supported yet (use prefix, path, safe_regex or connect_matcher)".into(),
            );
        }
        None => return Err("match has no path specifier".into()),
    };
    let headers = m
        .headers
        .iter()
        .map(compile_header)
        .collect::<Result<Vec<_>, _>>()?;
    let query = m
        .query_parameters
        .iter()
        .map(compile_query)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteMatch {
        path,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|v| v.value),
        headers,
        query,
    })
}

/// What a route action compiles to: where it sends, its timeout, retries and rewrites.
struct ForwardAction {
    action: RouteAction,
    hash_policy: Option<Arc<HashPolicy>>,
    timeout: Option<Duration>,
    retry: Option<Arc<RetryPolicy>>,
    path_rewrite: Option<PathRewrite>,
    host_rewrite: Option<http::uri::Authority>,
    mirrors: Vec<MirrorPolicy>,
}

impl ForwardAction {
    /// A route that answers itself instead of forwarding.
    fn answer(action: RouteAction) -> Self {
        ForwardAction {
            action,
            hash_policy: None,
            timeout: None,
            retry: None,
            path_rewrite: None,
            host_rewrite: None,
            mirrors: Vec::new(),
        }
    }
}

/// Whether a route action terminates CONNECT (an upgrade config `CONNECT` with
/// `connect_config`), the only route-level upgrade config honoured.
fn connect_termination(a: &ProtoRouteAction) -> Result<bool, Reason> {
    let mut terminates = false;
    for (index, upgrade) in a.upgrade_configs.iter().enumerate() {
        let field = format!("route.upgrade_configs[{index}]");
        if !upgrade
            .upgrade_type
            .eq_ignore_ascii_case(bosun_wire::upgrades::CONNECT)
        {
            return Err(format!(
                "{field}: upgrade_type {:?} is not supported yet per route (CONNECT is)",
                upgrade.upgrade_type
            ));
        }
        let Some(config) = &upgrade.connect_config else {
            return Err(format!(
                "{field}: CONNECT without connect_config (forwarded upstream) is not supported yet"
            ));
        };
        if config.proxy_protocol_config.is_some() || config.allow_post {
            return Err(format!(
                "{field}.connect_config: proxy_protocol_config and allow_post are not supported yet"
            ));
        }
        terminates = upgrade.enabled.as_ref().is_none_or(|enabled| enabled.value);
    }
    Ok(terminates)
}

// Deprecated fields still change behaviour when set, so they are checked.
#[allow(deprecated)]
fn compile_action(a: &ProtoRouteAction) -> Result<ForwardAction, Reason> {
    let unsupported = [
        (
            !a.path_rewrite.is_empty() || a.path_rewrite_policy.is_some(),
            "path_rewrite / path_rewrite_policy",
        ),
        (
            !a.prefix_rewrite.is_empty() && a.regex_rewrite.is_some(),
            "prefix_rewrite with regex_rewrite",
        ),
        (
            a.retry_policy_typed_config.is_some(),
            "retry_policy_typed_config",
        ),
        (a.cors.is_some(), "cors"),
        (!a.rate_limits.is_empty(), "rate_limits"),
        (a.hedge_policy.is_some(), "hedge_policy"),
        (a.metadata_match.is_some(), "metadata_match"),
        (a.idle_timeout.is_some(), "idle_timeout"),
        (a.max_stream_duration.is_some(), "max_stream_duration"),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!("route.{field} is not supported yet"));
    }
    let action = match &a.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(name)) => {
            RouteAction::Cluster(Arc::from(name.as_str()))
        }
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            let clusters: Vec<(Arc<str>, u32)> = w
                .clusters
                .iter()
                .map(|c| {
                    (
                        Arc::from(c.name.as_str()),
                        c.weight.as_ref().map_or(0, |w| w.value),
                    )
                })
                .collect();
            if w.clusters.iter().any(|c| !c.cluster_header.is_empty()) {
                return Err("weighted_clusters cluster_header is not supported yet".into());
            }
            if w.clusters
                .iter()
                .any(|c| !c.typed_per_filter_config.is_empty() || c.metadata_match.is_some())
            {
                return Err(
                    "weighted_clusters typed_per_filter_config / metadata_match is not supported yet"
                        .into(),
                );
            }
            let entry_rules = w
                .clusters
                .iter()
                .map(|c| {
                    use envoy_types::pb::envoy::config::route::v3::weighted_cluster::cluster_weight::HostRewriteSpecifier;
                    let mut rules = header_rules(HeaderLists {
                        request_add: &c.request_headers_to_add,
                        request_remove: &c.request_headers_to_remove,
                        response_add: &c.response_headers_to_add,
                        response_remove: &c.response_headers_to_remove,
                    })
                    .map_err(|r| format!("weighted_clusters[{}]: {r}", c.name))?;
                    if let Some(HostRewriteSpecifier::HostRewriteLiteral(host)) =
                        &c.host_rewrite_specifier
                    {
                        rules.host_rewrite = Some(host_rewrite(
                            host,
                            &format!("weighted_clusters[{}].host_rewrite_literal", c.name),
                        )?);
                    }
                    Ok(level(rules))
                })
                .collect::<Result<Vec<_>, Reason>>()?;
            let sum: u64 = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
            #[allow(deprecated)]
            if let Some(total) = &w.total_weight
                && u64::from(total.value) != sum
            {
                return Err(format!(
                    "weighted_clusters total_weight {} differs from the sum of weights {sum}",
                    total.value
                ));
            }
            RouteAction::Weighted(
                WeightedClusters::new(clusters)
                    .ok_or("weighted_clusters weights sum to zero")?
                    .with_headers(entry_rules),
            )
        }
        Some(_) => {
            return Err(
                "route cluster specifier is not supported yet (use cluster or weighted_clusters)"
                    .into(),
            );
        }
        None => return Err("route has no cluster".into()),
    };
    let timeout = match &a.timeout {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
    };
    let retry = a
        .retry_policy
        .as_ref()
        .map(|policy| compile_retry(policy).map(Arc::new))
        .transpose()?;
    let path_rewrite = match &a.regex_rewrite {
        Some(rewrite) => Some(regex_rewrite(rewrite, "route.regex_rewrite")?),
        None if !a.prefix_rewrite.is_empty() => Some(PathRewrite::Prefix(a.prefix_rewrite.clone())),
        None => None,
    };
    let host_rewrite = match &a.host_rewrite_specifier {
        None => None,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(host)) => {
            Some(host_rewrite(host, "route.host_rewrite_literal")?)
        }
        Some(_) => {
            return Err(
                "route host rewrite kind is not supported yet (host_rewrite_literal is)".into(),
            );
        }
    };
    let mirrors = a
        .request_mirror_policies
        .iter()
        .enumerate()
        .map(|(i, policy)| {
            mirror_policy(policy).map_err(|r| format!("request_mirror_policies[{i}]: {r}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ForwardAction {
        action,
        hash_policy: compile_hash_policy(&a.hash_policy)?,
        timeout,
        retry,
        path_rewrite,
        host_rewrite,
        mirrors,
    })
}

/// A mirror: its cluster, and the share of requests copied (all, when unset).
fn mirror_policy(
    policy: &envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy,
) -> Result<MirrorPolicy, Reason> {
    if policy.cluster.is_empty() {
        return Err("cluster is empty (cluster_header is not supported yet)".into());
    }
    if !policy.request_headers_mutations.is_empty() || !policy.host_rewrite_literal.is_empty() {
        return Err("request_headers_mutations / host_rewrite_literal is not supported yet".into());
    }
    let share = match &policy.runtime_fraction {
        None => Fraction::ALL,
        Some(runtime) => {
            if !runtime.runtime_key.is_empty() {
                return Err(
                    "runtime_fraction.runtime_key is not supported (the proxy has no runtime)"
                        .into(),
                );
            }
            fraction(
                runtime.default_value.as_ref(),
                "runtime_fraction.default_value",
            )?
        }
    };
    Ok(MirrorPolicy {
        cluster: Arc::from(policy.cluster.as_str()),
        share,
        shadow_suffix: !policy.disable_shadow_host_suffix_append,
    })
}
