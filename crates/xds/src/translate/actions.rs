//! What istiod writes for a rule's header changes, rewrites, redirects and direct
//! responses.

use bosun_model::{
    CorsPolicy, DirectResponse, HeaderChanges, HeaderOperations, Redirect, RedirectPort, Rewrite,
    Share,
};
use bosun_wire::http_filters;

use super::matchers::string_matcher;
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, data_source, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RouteAction, redirect_action, route_action,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCorsPolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use route_action::RequestMirrorPolicy;

/// Envoy's four header lists, and the authority a rule's headers ask for.
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderLists {
    pub request_add: Vec<HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderValueOption>,
    pub response_remove: Vec<String>,
    /// A request `set` (or else `add`) of `:authority` / `host`.
    pub authority: Option<String>,
}

impl HeaderLists {
    /// istiod's translation: `set` entries (sorted by name) before `add` entries; pseudo
    /// headers and `host` are not changed this way, the authority becomes a host rewrite.
    pub fn of(operations: &HeaderOperations) -> Self {
        let (request_add, request_authority) = additions(&operations.request);
        let (response_add, _) = additions(&operations.response);
        HeaderLists {
            request_add,
            request_remove: removals(&operations.request),
            response_add,
            response_remove: removals(&operations.response),
            authority: request_authority,
        }
    }

    /// These lists followed by `other`'s; the authority already set stays.
    pub fn then(mut self, other: HeaderLists) -> Self {
        self.request_add.extend(other.request_add);
        self.request_remove.extend(other.request_remove);
        self.response_add.extend(other.response_add);
        self.response_remove.extend(other.response_remove);
        self.authority = self.authority.or(other.authority);
        self
    }
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

fn changeable(name: &str) -> bool {
    !name.starts_with(':') && !name.eq_ignore_ascii_case("host")
}

fn additions(changes: &HeaderChanges) -> (Vec<HeaderValueOption>, Option<String>) {
    use header_value_option::HeaderAppendAction as Action;
    let sorted = |entries: &[(String, String)]| {
        let mut entries = entries.to_vec();
        entries.sort();
        entries
    };
    let set = sorted(&changes.set);
    let add = sorted(&changes.add);
    let authority = set
        .iter()
        .chain(add.iter())
        .find(|(name, _)| is_authority(name))
        .map(|(_, value)| value.clone());
    let options = set
        .iter()
        .map(|entry| (entry, Action::OverwriteIfExistsOrAdd))
        .chain(add.iter().map(|entry| (entry, Action::AppendIfExistsOrAdd)))
        .filter(|((name, _), _)| changeable(name))
        .map(|((name, value), action)| HeaderValueOption {
            header: Some(HeaderValue {
                key: name.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        })
        .collect();
    (options, authority)
}

fn removals(changes: &HeaderChanges) -> Vec<String> {
    changes
        .remove
        .iter()
        .filter(|name| changeable(name))
        .cloned()
        .collect()
}

/// A rule's `rewrite` on its route action: the regex rewrite first, else `uri` as a
/// prefix rewrite whatever the match kind, and the authority as a host rewrite.
pub(super) fn apply_rewrite(action: &mut RouteAction, rewrite: Option<&Rewrite>) {
    let Some(rewrite) = rewrite else {
        return;
    };
    match (&rewrite.uri_regex, &rewrite.uri) {
        (Some((pattern, substitution)), _) => {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(RegexMatcher {
                    regex: pattern.clone(),
                    ..Default::default()
                }),
                substitution: substitution.clone(),
            });
        }
        (None, Some(uri)) => action.prefix_rewrite = uri.clone(),
        (None, None) => {}
    }
    if let Some(authority) = &rewrite.authority {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(authority.clone()),
        );
    }
}

/// A rule's `redirect`, as istiod writes it for a sidecar (plain HTTP): `None` for a
/// redirect code Envoy has no name for (istiod drops the action too).
pub(super) fn redirect_action(redirect: &Redirect, listener_port: u16) -> Option<RedirectAction> {
    use redirect_action::RedirectResponseCode as Code;
    let response_code = match redirect.code.unwrap_or(301) {
        0 | 301 => Code::MovedPermanently,
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => return None,
    };
    let scheme = redirect.scheme.as_deref().unwrap_or("http");
    let port = match redirect.port {
        Some(RedirectPort::Number(port)) => Some(port),
        Some(RedirectPort::FromRequest) => Some(listener_port),
        None => None,
    }
    // The scheme's default port is left out of the location.
    .filter(|port| !(*port == 80 && scheme == "http" || *port == 443 && scheme == "https"));
    Some(RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        port_redirect: port.map_or(0, u32::from),
        response_code: response_code as i32,
        scheme_rewrite_specifier: redirect
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: match (&redirect.uri, &redirect.prefix_rewrite) {
            (Some(uri), _) => Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                uri.clone(),
            )),
            (None, Some(prefix)) => Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
                prefix.clone(),
            )),
            (None, None) => None,
        },
        ..Default::default()
    })
}

/// A mirror, as istiod writes it: all requests when no share is given, none (no policy)
/// for an explicit 0.
pub(super) fn mirror_policy(cluster: String, share: Share) -> Option<RequestMirrorPolicy> {
    let default_value = match share {
        Share::Unset => FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        },
        written => super::resilience::fraction(written)?,
    };
    if default_value.numerator == 0 {
        return None;
    }
    Some(RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(default_value),
            ..Default::default()
        }),
        trace_sampled: Some(BoolValue { value: false }),
        ..Default::default()
    })
}

/// A rule's `corsPolicy` for the CORS filter, as istiod writes it: on for every request,
/// preflights from other origins forwarded unless the policy says to ignore them.
pub(super) fn cors_config(cors: &CorsPolicy) -> (String, Any) {
    let policy = EnvoyCorsPolicy {
        allow_origin_string_match: cors.allow_origins.iter().map(string_matcher).collect(),
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .map(|age| age.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: fractional_percent::DenominatorType::Hundred as i32,
            }),
            ..Default::default()
        }),
        forward_not_matching_preflights: Some(BoolValue {
            value: !cors.ignore_unmatched_preflights,
        }),
        ..Default::default()
    };
    (http_filters::CORS.to_string(), pack_any(policy))
}

pub(super) fn direct_response(direct: &DirectResponse) -> DirectResponseAction {
    DirectResponseAction {
        status: u32::from(direct.status),
        body: direct.body.as_ref().map(|body| DataSource {
            specifier: Some(match String::from_utf8(body.clone()) {
                Ok(text) => data_source::Specifier::InlineString(text),
                Err(bytes) => data_source::Specifier::InlineBytes(bytes.into_bytes()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::route::v3::{route, route_action, weighted_cluster};

    use super::*;
    use crate::translate::test_mesh::{action, outbound_routes, snapshot};

    fn header_names(options: &[HeaderValueOption]) -> Vec<(String, String, i32)> {
        options
            .iter()
            .map(|option| {
                let header = option.header.clone().expect("header");
                (header.key, header.value, option.append_action)
            })
            .collect()
    }

    #[test]
    fn headers_rewrites_redirects_and_direct_responses_as_istiod_writes_them() {
        let routes = outbound_routes(&snapshot(
            r"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - headers:
      request: {set: {x-b: '2', x-a: '1', ':authority': set.example}, add: {x-c: '3'}, remove: [x-gone, host]}
      response: {set: {x-r: 'yes'}}
    rewrite: {uri: /v2, authority: rewritten.example}
    route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {x-d: v1}}}
  - rewrite: {uriRegexRewrite: {match: '^/r/(.*)$', rewrite: '/\1'}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers: {request: {set: {host: v1.example}}}
    - destination: {host: reviews}
      weight: 50
  - redirect: {uri: /new, authority: example.com, port: 80, redirectCode: 307}
  - directResponse: {status: 503, body: {bytes: aGk=}}
",
        ));
        use header_value_option::HeaderAppendAction as Action;
        let set = Action::OverwriteIfExistsOrAdd as i32;
        assert_eq!(
            header_names(&routes[0].request_headers_to_add),
            [
                ("x-a".into(), "1".into(), set),
                ("x-b".into(), "2".into(), set),
                ("x-c".into(), "3".into(), Action::AppendIfExistsOrAdd as i32),
                ("x-d".into(), "v1".into(), set),
            ]
        );
        assert_eq!(routes[0].request_headers_to_remove, ["x-gone"]);
        assert_eq!(header_names(&routes[0].response_headers_to_add)[0].0, "x-r");
        let first = action(&routes[0]);
        assert_eq!(first.prefix_rewrite, "/v2");
        assert_eq!(
            first.host_rewrite_specifier,
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
                "rewritten.example".into()
            )),
            "rewrite.authority wins over a header's"
        );
        let second = action(&routes[1]);
        assert_eq!(
            second
                .regex_rewrite
                .as_ref()
                .map(|r| r.substitution.as_str()),
            Some("/\\1")
        );
        let Some(route_action::ClusterSpecifier::WeightedClusters(split)) =
            &second.cluster_specifier
        else {
            panic!("weighted");
        };
        assert_eq!(
            split.clusters[0].host_rewrite_specifier,
            Some(
                weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                    "v1.example".into()
                )
            )
        );
        let Some(route::Action::Redirect(redirect)) = &routes[2].action else {
            panic!("a redirect");
        };
        assert_eq!(redirect.host_redirect, "example.com");
        assert_eq!(redirect.port_redirect, 0, "http's default port is left out");
        assert_eq!(
            redirect.response_code,
            redirect_action::RedirectResponseCode::TemporaryRedirect as i32
        );
        let Some(route::Action::DirectResponse(direct)) = &routes[3].action else {
            panic!("a direct response");
        };
        assert_eq!(direct.status, 503);
        assert_eq!(
            direct.body.as_ref().and_then(|b| b.specifier.clone()),
            Some(data_source::Specifier::InlineString("hi".into()))
        );
    }
}
