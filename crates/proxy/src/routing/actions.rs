//! What a route does to a request besides choosing its cluster: header changes (Envoy's
//! `*_headers_to_add` / `*_headers_to_remove`), path and host rewrites, and redirects.

use http::header::LOCATION;
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;

/// Envoy's `append_action`: what adding a header does when it is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Another value beside the existing ones (Istio's `add`).
    Append,
    /// Only when the header is absent.
    AddIfAbsent,
    /// Replace every value, or add (Istio's `set`).
    OverwriteOrAdd,
    /// Replace every value; nothing when absent.
    OverwriteIfExists,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub action: AppendAction,
}

/// One level's header changes: removals first, then additions in order (Envoy's).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub add: Vec<HeaderAdd>,
    pub remove: Vec<HeaderName>,
}

impl HeaderMutations {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for add in &self.add {
            match add.action {
                AppendAction::Append => {
                    headers.append(add.name.clone(), add.value.clone());
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(&add.name) {
                        headers.insert(add.name.clone(), add.value.clone());
                    }
                }
                AppendAction::OverwriteOrAdd => {
                    headers.insert(add.name.clone(), add.value.clone());
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(&add.name) {
                        headers.insert(add.name.clone(), add.value.clone());
                    }
                }
            }
        }
    }
}

/// Header changes for the request on its way up and the response on its way back.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub request: HeaderMutations,
    pub response: HeaderMutations,
    /// The authority sent upstream instead of the request's (a weighted cluster's own).
    pub host_rewrite: Option<Authority>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty() && self.host_rewrite.is_none()
    }
}

/// How a route rewrites the path it forwards.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// Envoy's `prefix_rewrite`: the part the route matched (its prefix, or the whole
    /// path for an exact or regex match) becomes this.
    Prefix(String),
    /// Envoy's `regex_rewrite`: every match of the pattern in the path is substituted.
    Regex {
        pattern: Regex,
        substitution: String,
    },
}

/// A path with its matched part rewritten; the query string is kept.
pub fn rewrite_path(
    rewrite: &PathRewrite,
    path: &str,
    matched_prefix: Option<usize>,
    query: Option<&str>,
) -> String {
    let rewritten = match rewrite {
        PathRewrite::Prefix(prefix) => {
            let matched = matched_prefix.unwrap_or(path.len()).min(path.len());
            let rest = path.get(matched..).unwrap_or_default();
            format!("{prefix}{rest}")
        }
        PathRewrite::Regex {
            pattern,
            substitution,
        } => pattern
            .replace_all(path, substitution.as_str())
            .into_owned(),
    };
    match query {
        Some(query) => format!("{rewritten}?{query}"),
        None => rewritten,
    }
}

/// Envoy's `RedirectAction`: the route answers with a redirect instead of forwarding.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRedirect>,
    pub strip_query: bool,
    pub status: StatusCode,
}

#[derive(Debug, Clone)]
pub enum PathRedirect {
    /// The whole path (and the query, when it carries one).
    Path(String),
    /// The matched part of the path, as `prefix_rewrite` does.
    Rewrite(PathRewrite),
}

/// The request parts a redirect is made from.
pub struct RedirectFrom<'a> {
    pub scheme: &'a str,
    pub authority: &'a Authority,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// How much of the path the route's match covered (a prefix match's length).
    pub matched_prefix: Option<usize>,
}

impl Redirect {
    /// The `Location` of the redirect, as Envoy writes it.
    pub fn location(&self, from: &RedirectFrom<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(from.scheme);
        let host = self.host.as_deref().unwrap_or(from.authority.host());
        let original_port = if self.host.is_some() {
            None
        } else {
            from.authority.port_u16()
        };
        let port = match (self.port, original_port) {
            (Some(port), _) => Some(port),
            // A changed scheme drops the old scheme's default port.
            (None, Some(80)) if scheme == "https" && from.scheme == "http" => None,
            (None, Some(443)) if scheme == "http" && from.scheme == "https" => None,
            (None, original) => original,
        };
        let query = if self.strip_query { None } else { from.query };
        let path_and_query = match &self.path {
            None => with_query(from.path, query),
            Some(PathRedirect::Path(path)) if path.contains('?') => path.clone(),
            Some(PathRedirect::Path(path)) => with_query(path, query),
            Some(PathRedirect::Rewrite(rewrite)) => {
                rewrite_path(rewrite, from.path, from.matched_prefix, query)
            }
        };
        match port {
            Some(port) => format!("{scheme}://{host}:{port}{path_and_query}"),
            None => format!("{scheme}://{host}{path_and_query}"),
        }
    }

    pub fn response_headers(&self, from: &RedirectFrom<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(location) = HeaderValue::from_str(&self.location(from)) {
            headers.insert(LOCATION, location);
        }
        headers
    }
}

fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from<'a>(
        authority: &'a Authority,
        path: &'a str,
        query: Option<&'a str>,
    ) -> RedirectFrom<'a> {
        RedirectFrom {
            scheme: "http",
            authority,
            path,
            query,
            matched_prefix: Some(4),
        }
    }

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            host: None,
            port: None,
            path: None,
            strip_query: false,
            status: StatusCode::MOVED_PERMANENTLY,
        }
    }

    #[test]
    fn mutations_remove_then_add_by_their_append_action() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", "1".parse().expect("value"));
        headers.insert("x-gone", "1".parse().expect("value"));
        let add = |name: &'static str, value: &'static str, action| HeaderAdd {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action,
        };
        HeaderMutations {
            add: vec![
                add("x-a", "2", AppendAction::Append),
                add("x-b", "1", AppendAction::OverwriteOrAdd),
                add("x-a", "3", AppendAction::AddIfAbsent),
                add("x-c", "1", AppendAction::OverwriteIfExists),
            ],
            remove: vec![HeaderName::from_static("x-gone")],
        }
        .apply(&mut headers);
        let values = |name| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().expect("ascii").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(values("x-a"), ["1", "2"]);
        assert_eq!(values("x-b"), ["1"]);
        assert!(values("x-c").is_empty() && values("x-gone").is_empty());
    }

    #[test]
    fn rewrites_keep_the_query() {
        let prefix = PathRewrite::Prefix("/v2".into());
        assert_eq!(
            rewrite_path(&prefix, "/api/users", Some(4), Some("a=1")),
            "/v2/users?a=1"
        );
        assert_eq!(rewrite_path(&prefix, "/login", None, None), "/v2");
        let regex = PathRewrite::Regex {
            pattern: Regex::new("^/service/([^/]+)(/.*)$").expect("regex"),
            substitution: "${2}/instance/${1}".into(),
        };
        assert_eq!(
            rewrite_path(&regex, "/service/foo/v1/api", None, None),
            "/v1/api/instance/foo"
        );
    }

    #[test]
    fn redirects_as_envoy_writes_them() {
        let authority: Authority = "reviews:9080".parse().expect("authority");
        let mut r = redirect();
        r.path = Some(PathRedirect::Path("/v1/ratings".into()));
        assert_eq!(
            r.location(&from(&authority, "/old", Some("q=1"))),
            "http://reviews:9080/v1/ratings?q=1"
        );
        r.host = Some("ratings".into());
        assert_eq!(
            r.location(&from(&authority, "/old", None)),
            "http://ratings/v1/ratings"
        );
        r.port = Some(8080);
        r.scheme = Some("https".into());
        assert_eq!(
            r.location(&from(&authority, "/old", None)),
            "https://ratings:8080/v1/ratings"
        );
        let plain: Authority = "example.com:80".parse().expect("authority");
        let mut https = redirect();
        https.scheme = Some("https".into());
        assert_eq!(
            https.location(&from(&plain, "/x", None)),
            "https://example.com/x"
        );
        https.strip_query = true;
        assert_eq!(
            https.location(&from(&plain, "/x", Some("a=b"))),
            "https://example.com/x"
        );
    }
}
