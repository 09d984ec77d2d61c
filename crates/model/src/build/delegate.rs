//! Delegate VirtualServices, merged as istiod merges them: a root rule with `delegate`
//! is replaced by the delegate's rules, in order, each with the root's match conditions
//! joined to its own and the root's settings where it has none. A delegate rule whose
//! match is outside the root's (a path under another prefix, a header with another
//! value) is left out. Delegates have no `hosts`, are not applied alone, and do not
//! delegate further.

use std::collections::{BTreeMap, HashMap};

use bosun_api::Config;
use bosun_api::networking::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};

/// The VirtualServices without hosts, by namespace and name.
#[derive(Default)]
pub(super) struct Delegates<'a> {
    by_name: HashMap<(&'a str, &'a str), &'a Config<VirtualService>>,
}

impl<'a> Delegates<'a> {
    pub fn insert(&mut self, virtual_service: &'a Config<VirtualService>) {
        self.by_name.insert(
            (
                virtual_service.meta.namespace.as_str(),
                virtual_service.meta.name.as_str(),
            ),
            virtual_service,
        );
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&'a Config<VirtualService>> {
        self.by_name.get(&(namespace, name)).copied()
    }
}

/// A rule and the namespace its short host names resolve in (the delegate's own).
pub(super) type ScopedRule = (HttpRoute, String);

/// The root's rules with each delegation replaced by the delegate's merged rules.
pub(super) fn expand(
    root: &Config<VirtualService>,
    delegates: &Delegates<'_>,
    warnings: &mut Vec<String>,
) -> Vec<ScopedRule> {
    let root_namespace = &root.meta.namespace;
    let mut rules = Vec::new();
    for rule in &root.spec.http {
        let Some(delegate) = &rule.delegate else {
            rules.push((rule.clone(), root_namespace.clone()));
            continue;
        };
        let namespace = delegate
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(root_namespace);
        let name = delegate.name.as_deref().unwrap_or_default();
        let Some(found) = delegates.get(namespace, name) else {
            warnings.push(format!(
                "VirtualService {root_namespace}/{} ({}): delegate {namespace}/{name} not found; its rule is left out",
                root.meta.name, root.origin
            ));
            continue;
        };
        for sub_rule in &found.spec.http {
            if sub_rule.delegate.is_some() {
                warnings.push(format!(
                    "VirtualService {namespace}/{name} ({}): a delegate cannot delegate further; this rule is left out",
                    found.origin
                ));
                continue;
            }
            match merge_rule(rule, sub_rule) {
                Some(merged) => rules.push((merged, namespace.to_string())),
                None => warnings.push(format!(
                    "VirtualService {namespace}/{name} ({}): rule {} matches outside root {root_namespace}/{}'s rule {}; it is left out",
                    found.origin,
                    sub_rule.name.as_deref().unwrap_or("<unnamed>"),
                    root.meta.name,
                    rule.name.as_deref().unwrap_or("<unnamed>"),
                )),
            }
        }
    }
    rules
}

/// The delegate's rule under the root's: `None` when their matches conflict.
fn merge_rule(root: &HttpRoute, delegate: &HttpRoute) -> Option<HttpRoute> {
    let mut merged = delegate.clone();
    merged.matches = merge_matches(&root.matches, &delegate.matches)?;
    merged.name = joined_name(root.name.as_deref(), delegate.name.as_deref());
    inherit(&mut merged.rewrite, &root.rewrite);
    inherit(&mut merged.direct_response, &root.direct_response);
    inherit(&mut merged.timeout, &root.timeout);
    inherit(&mut merged.retries, &root.retries);
    inherit(&mut merged.fault, &root.fault);
    inherit(&mut merged.mirror, &root.mirror);
    inherit(&mut merged.mirror_percent, &root.mirror_percent);
    inherit(&mut merged.mirror_percent_snake, &root.mirror_percent_snake);
    inherit(&mut merged.mirror_percentage, &root.mirror_percentage);
    inherit(&mut merged.cors_policy, &root.cors_policy);
    inherit(&mut merged.headers, &root.headers);
    if merged.mirrors.is_empty() {
        merged.mirrors.clone_from(&root.mirrors);
    }
    Some(merged)
}

/// The root's value where the delegate sets none.
fn inherit<T: Clone>(own: &mut Option<T>, root: &Option<T>) {
    if own.is_none() {
        own.clone_from(root);
    }
}

/// istiod's: `root-delegate` when both are named.
fn joined_name(root: Option<&str>, delegate: Option<&str>) -> Option<String> {
    match (
        root.filter(|n| !n.is_empty()),
        delegate.filter(|n| !n.is_empty()),
    ) {
        (Some(root), Some(delegate)) => Some(format!("{root}-{delegate}")),
        (root, delegate) => delegate.or(root).map(str::to_string),
    }
}

/// Every delegate match must lie within some root match; each pair that fits becomes
/// one match. `None` when a delegate match fits none.
fn merge_matches(
    root: &[HttpMatchRequest],
    delegate: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut merged = Vec::new();
    for leaf in delegate {
        let before = merged.len();
        merged.extend(
            root.iter()
                .filter(|root| !conflicts(root, leaf))
                .map(|root| merge_match(root, leaf)),
        );
        if merged.len() == before {
            return None;
        }
    }
    Some(merged)
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = joined_name(root.name.as_deref(), leaf.name.as_deref());
    inherit(&mut out.uri, &root.uri);
    inherit(&mut out.scheme, &root.scheme);
    inherit(&mut out.method, &root.method);
    inherit(&mut out.authority, &root.authority);
    inherit(&mut out.port, &root.port);
    inherit(&mut out.source_namespace, &root.source_namespace);
    inherit(&mut out.stat_prefix, &root.stat_prefix);
    out.headers = union(&root.headers, &leaf.headers);
    out.without_headers = union(&root.without_headers, &leaf.without_headers);
    out.query_params = union(&root.query_params, &leaf.query_params);
    out.source_labels = union(&root.source_labels, &leaf.source_labels);
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    out
}

/// The root's entries with the leaf's over them.
fn union<V: Clone>(root: &BTreeMap<String, V>, leaf: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(leaf.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Whether the leaf's conditions reach outside the root's (istiod's `hasConflict`).
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(root, leaf)| string_conflict(root.as_ref(), leaf.as_ref()))
    {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    if maps.iter().any(|(root, leaf)| {
        leaf.iter()
            .any(|(key, value)| string_conflict(root.get(key), Some(value)))
    }) {
        return true;
    }
    if root.ignore_uri_case.unwrap_or(false) != leaf.ignore_uri_case.unwrap_or(false) {
        return true;
    }
    if let (Some(a), Some(b)) = (root.port, leaf.port)
        && a > 0
        && b > 0
        && a != b
    {
        return true;
    }
    if let Some(namespace) = root.source_namespace.as_deref().filter(|ns| !ns.is_empty())
        && leaf.source_namespace.as_deref() != Some(namespace)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(key, value)| root.source_labels.get(key).is_some_and(|v| v != value))
    {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
}

/// A leaf condition conflicts unless it narrows the root's: the same exact value, or a
/// path under the root's prefix; a regex on either side allows nothing on the other.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    match (root, leaf) {
        (StringMatch::Regex(_), _) | (_, StringMatch::Regex(_)) => true,
        (StringMatch::Exact(root), StringMatch::Exact(leaf)) => root != leaf,
        (StringMatch::Exact(_), StringMatch::Prefix(_)) => true,
        (StringMatch::Prefix(root), StringMatch::Prefix(leaf) | StringMatch::Exact(leaf)) => {
            !leaf.starts_with(root.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(path: &str) -> HttpMatchRequest {
        HttpMatchRequest {
            uri: Some(StringMatch::Prefix(path.into())),
            ..HttpMatchRequest::default()
        }
    }

    #[test]
    fn a_delegate_match_must_lie_within_the_root_match() {
        let root = [prefix("/productpage")];
        let inside = merge_matches(&root, &[prefix("/productpage/v1")]).expect("inside");
        assert_eq!(inside, [prefix("/productpage/v1")]);
        assert!(merge_matches(&root, &[prefix("/reviews")]).is_none());
        // No match of its own: the delegate takes the root's.
        assert_eq!(merge_matches(&root, &[]).expect("root's"), root);
    }

    #[test]
    fn headers_join_and_a_different_value_conflicts() {
        let mut root = prefix("/");
        root.headers
            .insert("end-user".into(), StringMatch::Exact("jason".into()));
        let mut leaf = HttpMatchRequest::default();
        leaf.headers
            .insert("x-canary".into(), StringMatch::Exact("1".into()));
        let merged = merge_match(&root, &leaf);
        assert_eq!(merged.uri, Some(StringMatch::Prefix("/".into())));
        assert_eq!(merged.headers.len(), 2);
        leaf.headers
            .insert("end-user".into(), StringMatch::Exact("alice".into()));
        assert!(conflicts(&root, &leaf));
    }
}
