//! Precompiled request matchers: path (prefix / exact / regex) and headers.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

/// The parts of a request that routing looks at, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub authority: &'a str,
    /// The path without its query string.
    pub path: &'a str,
    /// The query string, without its `?`.
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub scheme: &'a str,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Already anchored (`^(?:...)$`): RE2 semantics are full-match.
    Regex(Regex),
    /// A `CONNECT` request (Envoy's `connect_matcher`); nothing else matches one, as a
    /// CONNECT has no path.
    Connect,
}

impl PathMatch {
    fn matches(&self, path: &str, case_sensitive: bool) -> bool {
        match self {
            PathMatch::Prefix(prefix) if case_sensitive => path.starts_with(prefix.as_str()),
            PathMatch::Prefix(prefix) => path
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
            PathMatch::Exact(exact) if case_sensitive => path == exact,
            PathMatch::Exact(exact) => path.eq_ignore_ascii_case(exact),
            // Envoy ignores case_sensitive for regexes.
            PathMatch::Regex(regex) => regex.is_match(path),
            PathMatch::Connect => false,
        }
    }
}

/// Which request attribute a header matcher reads: a real header or a pseudo-header.
#[derive(Debug, Clone)]
pub enum HeaderSource {
    Authority,
    Method,
    Path,
    Scheme,
    Header(HeaderName),
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    Present,
    Exact { value: String, ignore_case: bool },
    Prefix { value: String, ignore_case: bool },
    Suffix { value: String, ignore_case: bool },
    Contains { value: String, ignore_case: bool },
    Regex(Regex),
}

impl ValueMatch {
    /// A header value's bytes; one that is not UTF-8 is matched as its lossy decoding.
    fn matches_bytes(&self, bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.matches(text),
            Err(_) => self.matches(&String::from_utf8_lossy(bytes)),
        }
    }

    pub fn matches(&self, actual: &str) -> bool {
        match self {
            ValueMatch::Present => true,
            ValueMatch::Exact { value, ignore_case } => {
                if *ignore_case {
                    actual.eq_ignore_ascii_case(value)
                } else {
                    actual == value
                }
            }
            ValueMatch::Prefix { value, ignore_case } => {
                if *ignore_case {
                    actual
                        .get(..value.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(value))
                } else {
                    actual.starts_with(value.as_str())
                }
            }
            ValueMatch::Suffix { value, ignore_case } => {
                if *ignore_case {
                    actual.len() >= value.len()
                        && actual
                            .get(actual.len() - value.len()..)
                            .is_some_and(|t| t.eq_ignore_ascii_case(value))
                } else {
                    actual.ends_with(value.as_str())
                }
            }
            ValueMatch::Contains { value, ignore_case } => {
                if *ignore_case {
                    actual
                        .to_ascii_lowercase()
                        .contains(&value.to_ascii_lowercase())
                } else {
                    actual.contains(value.as_str())
                }
            }
            ValueMatch::Regex(regex) => regex.is_match(actual),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub source: HeaderSource,
    pub value: ValueMatch,
    /// `present_match: false` — match when the header is absent.
    pub expect_absent: bool,
    pub invert: bool,
    /// A missing header is matched as an empty value (istiod sets it on `withoutHeaders`).
    pub treat_missing_as_empty: bool,
}

impl HeaderMatch {
    /// Envoy's header matching: a header sent several times matches when any of its
    /// values does (an inverted matcher, when none does); a missing header matches only
    /// a presence matcher asking for its absence (or, inverted, for its presence), unless
    /// it is treated as empty.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let is_presence = matches!(self.value, ValueMatch::Present);
        let single = match &self.source {
            HeaderSource::Authority => Some(req.authority),
            HeaderSource::Method => Some(req.method.as_str()),
            HeaderSource::Path => Some(req.path),
            HeaderSource::Scheme => Some(req.scheme),
            HeaderSource::Header(name) => {
                let mut values = req.headers.get_all(name).iter().peekable();
                if values.peek().is_some() {
                    let matched = is_presence && !self.expect_absent
                        || !is_presence
                            && values.any(|value| self.value.matches_bytes(value.as_bytes()));
                    return matched != self.invert;
                }
                None
            }
        };
        let actual = match single {
            None if self.treat_missing_as_empty => Some(""),
            other => other,
        };
        match actual {
            None if self.invert => is_presence && !self.expect_absent,
            None => is_presence && self.expect_absent,
            Some(actual) => {
                let matched = if is_presence {
                    !self.expect_absent
                } else {
                    self.value.matches(actual)
                };
                matched != self.invert
            }
        }
    }
}

/// A query parameter a route requires (Envoy's `QueryParameterMatcher`): present, or
/// with a value that matches. A parameter given several times is matched by its first
/// value, and values are matched as written (not percent-decoded), as Envoy does.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    /// `None`: the parameter must be present.
    pub value: Option<ValueMatch>,
}

impl QueryMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        match (first_query_value(query, &self.name), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(value), Some(wanted)) => wanted.matches(value),
        }
    }
}

/// The first value of the query parameter `name`, as written (`""` for a bare `name`).
pub fn first_query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
}

/// Everything a route requires of a request, all of which must hold.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl RouteMatch {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let connect = *req.method == Method::CONNECT;
        let path = match self.path {
            PathMatch::Connect => connect,
            _ => !connect && self.path.matches(req.path, self.case_sensitive),
        };
        path && self.headers.iter().all(|h| h.matches(req))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

/// Wraps an RE2 pattern so it must match the whole input, as Envoy and Istio expect.
pub fn full_match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            authority: "reviews:9080",
            path,
            query: None,
            method: &Method::GET,
            scheme: "http",
            headers,
        }
    }

    fn route(path: PathMatch, headers: Vec<HeaderMatch>) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive: true,
            headers,
            query: Vec::new(),
        }
    }

    #[test]
    fn path_kinds() {
        let h = HeaderMap::new();
        let prefix = route(PathMatch::Prefix("/api".into()), vec![]);
        assert!(prefix.matches(&view("/api/v1", &h)));
        assert!(!prefix.matches(&view("/API/v1", &h)));
        let exact = route(PathMatch::Exact("/login".into()), vec![]);
        assert!(exact.matches(&view("/login", &h)));
        assert!(!exact.matches(&view("/login/x", &h)));
        let regex = route(
            PathMatch::Regex(full_match_regex("/users/[0-9]+").expect("regex")),
            vec![],
        );
        assert!(regex.matches(&view("/users/42", &h)));
        assert!(!regex.matches(&view("/users/42/x", &h)), "full match only");
    }

    #[test]
    fn case_insensitive_paths() {
        let h = HeaderMap::new();
        let mut m = route(PathMatch::Prefix("/Api".into()), vec![]);
        m.case_sensitive = false;
        assert!(m.matches(&view("/aPI/x", &h)));
        assert!(!m.matches(&view("/a", &h)));
    }

    #[test]
    fn header_matchers() {
        let mut h = HeaderMap::new();
        h.insert("end-user", "jason".parse().expect("value"));
        let exact = |value: &str, invert| HeaderMatch {
            source: HeaderSource::Header(HeaderName::from_static("end-user")),
            value: ValueMatch::Exact {
                value: value.into(),
                ignore_case: false,
            },
            expect_absent: false,
            invert,
            treat_missing_as_empty: false,
        };
        let m = route(PathMatch::Prefix("/".into()), vec![exact("jason", false)]);
        assert!(m.matches(&view("/", &h)));
        let m = route(PathMatch::Prefix("/".into()), vec![exact("jason", true)]);
        assert!(!m.matches(&view("/", &h)));
        let m = route(PathMatch::Prefix("/".into()), vec![exact("bob", false)]);
        assert!(!m.matches(&view("/", &h)));

        let absent = HeaderMatch {
            source: HeaderSource::Header(HeaderName::from_static("x-canary")),
            value: ValueMatch::Present,
            expect_absent: true,
            invert: false,
            treat_missing_as_empty: false,
        };
        let m = route(PathMatch::Prefix("/".into()), vec![absent]);
        assert!(m.matches(&view("/", &h)));

        let authority = HeaderMatch {
            source: HeaderSource::Authority,
            value: ValueMatch::Regex(full_match_regex("reviews(:[0-9]+)?").expect("regex")),
            expect_absent: false,
            invert: false,
            treat_missing_as_empty: false,
        };
        let m = route(PathMatch::Prefix("/".into()), vec![authority]);
        assert!(m.matches(&view("/", &h)));
    }

    #[test]
    fn several_values_match_when_any_does_and_missing_headers_as_envoy_reads_them() {
        let exact = |value: &str, invert, treat_missing_as_empty| HeaderMatch {
            source: HeaderSource::Header(HeaderName::from_static("x-tags")),
            value: ValueMatch::Exact {
                value: value.into(),
                ignore_case: false,
            },
            expect_absent: false,
            invert,
            treat_missing_as_empty,
        };
        let mut two = HeaderMap::new();
        two.append("x-tags", "a".parse().expect("value"));
        two.append("x-tags", "b".parse().expect("value"));
        let none = HeaderMap::new();
        assert!(exact("b", false, false).matches(&view("/", &two)));
        assert!(exact("a", false, false).matches(&view("/", &two)));
        assert!(!exact("a,b", false, false).matches(&view("/", &two)));
        assert!(
            !exact("a", true, false).matches(&view("/", &two)),
            "inverted: none may match"
        );
        assert!(exact("c", true, false).matches(&view("/", &two)));
        // A missing header: an inverted value matcher fails unless it is treated as empty.
        assert!(!exact("a", false, false).matches(&view("/", &none)));
        assert!(!exact("a", true, false).matches(&view("/", &none)));
        assert!(exact("a", true, true).matches(&view("/", &none)));
        assert!(exact("", false, true).matches(&view("/", &none)));
    }

    #[test]
    fn query_parameters_by_their_first_value() {
        let h = HeaderMap::new();
        let mut m = route(PathMatch::Prefix("/".into()), vec![]);
        m.query = vec![
            QueryMatch {
                name: "user".into(),
                value: Some(ValueMatch::Exact {
                    value: "jason".into(),
                    ignore_case: false,
                }),
            },
            QueryMatch {
                name: "debug".into(),
                value: None,
            },
        ];
        let with = |query| RequestView {
            query: Some(query),
            ..view("/", &h)
        };
        assert!(m.matches(&with("user=jason&debug")));
        assert!(m.matches(&with("debug=1&user=jason&user=bob")));
        assert!(!m.matches(&with("user=bob&user=jason&debug")));
        assert!(!m.matches(&with("user=jason")));
        assert!(!m.matches(&view("/", &h)));
    }
}
