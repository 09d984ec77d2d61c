//! Envoy's header and string matchers → the routing crate's matchers, for routes and
//! for the filters that match requests (the fault filter's `headers`).

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, header_matcher, query_parameter_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use http::HeaderName;

use super::Reason;
use crate::routing::{HeaderMatch, HeaderSource, QueryMatch, ValueMatch, full_match_regex};

pub(super) fn regex(r: &RegexMatcher, field: &str) -> Result<regex::Regex, Reason> {
    full_match_regex(&r.regex)
        .map_err(|e| format!("{field} {:?} is not a valid regex: {e}", r.regex))
}

pub(super) fn compile_header(h: &HeaderMatcher) -> Result<HeaderMatch, Reason> {
    use header_matcher::HeaderMatchSpecifier as Spec;
    let field = format!("match.headers[{}]", h.name);
    let source = match h.name.to_ascii_lowercase().as_str() {
        ":authority" | "host" => HeaderSource::Authority,
        ":method" => HeaderSource::Method,
        ":path" => HeaderSource::Path,
        ":scheme" => HeaderSource::Scheme,
        name => HeaderSource::Header(
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{field}: invalid header name"))?,
        ),
    };
    let plain = |value: &String, make: fn(String, bool) -> ValueMatch| make(value.clone(), false);
    let (value, expect_absent) = match &h.header_match_specifier {
        None => (ValueMatch::Present, false),
        Some(Spec::PresentMatch(present)) => (ValueMatch::Present, !present),
        Some(Spec::StringMatch(sm)) => (string_match(sm, &field)?, false),
        #[allow(deprecated)]
        Some(Spec::ExactMatch(v)) => (
            plain(v, |value, ignore_case| ValueMatch::Exact {
                value,
                ignore_case,
            }),
            false,
        ),
        #[allow(deprecated)]
        Some(Spec::PrefixMatch(v)) => (
            plain(v, |value, ignore_case| ValueMatch::Prefix {
                value,
                ignore_case,
            }),
            false,
        ),
        #[allow(deprecated)]
        Some(Spec::SuffixMatch(v)) => (
            plain(v, |value, ignore_case| ValueMatch::Suffix {
                value,
                ignore_case,
            }),
            false,
        ),
        #[allow(deprecated)]
        Some(Spec::SafeRegexMatch(r)) => (ValueMatch::Regex(regex(r, &field)?), false),
        Some(_) => {
            return Err(format!(
                "{field}: this header match kind is not supported yet"
            ));
        }
    };
    Ok(HeaderMatch {
        source,
        value,
        expect_absent,
        invert: h.invert_match,
        treat_missing_as_empty: h.treat_missing_header_as_empty,
    })
}

pub(super) fn string_match(sm: &StringMatcher, field: &str) -> Result<ValueMatch, Reason> {
    use string_matcher::MatchPattern;
    let ignore_case = sm.ignore_case;
    Ok(match &sm.match_pattern {
        Some(MatchPattern::Exact(v)) => ValueMatch::Exact {
            value: v.clone(),
            ignore_case,
        },
        Some(MatchPattern::Prefix(v)) => ValueMatch::Prefix {
            value: v.clone(),
            ignore_case,
        },
        Some(MatchPattern::Suffix(v)) => ValueMatch::Suffix {
            value: v.clone(),
            ignore_case,
        },
        Some(MatchPattern::Contains(v)) => ValueMatch::Contains {
            value: v.clone(),
            ignore_case,
        },
        Some(MatchPattern::SafeRegex(r)) => ValueMatch::Regex(regex(r, field)?),
        Some(MatchPattern::Custom(_)) | None => {
            return Err(format!("{field}: string_match kind is not supported yet"));
        }
    })
}

pub(super) fn compile_query(q: &QueryParameterMatcher) -> Result<QueryMatch, Reason> {
    use query_parameter_matcher::QueryParameterMatchSpecifier as Spec;
    let field = format!("match.query_parameters[{}]", q.name);
    let value = match &q.query_parameter_match_specifier {
        None | Some(Spec::PresentMatch(true)) => None,
        Some(Spec::PresentMatch(false)) => {
            return Err(format!("{field}: present_match false is not supported yet"));
        }
        Some(Spec::StringMatch(sm)) => Some(string_match(sm, &field)?),
    };
    Ok(QueryMatch {
        name: q.name.clone(),
        value,
    })
}
