//! Istio's string matches as Envoy's, for routes, query parameters and CORS origins.

use bosun_model::StringMatch;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};

/// Istio's string match as Envoy's.
pub(super) fn string_matcher(value: &StringMatch) -> StringMatcher {
    let pattern = match value {
        StringMatch::Exact(exact) => string_matcher::MatchPattern::Exact(exact.clone()),
        StringMatch::Prefix(prefix) => string_matcher::MatchPattern::Prefix(prefix.clone()),
        StringMatch::Regex(regex) => string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: regex.clone(),
            ..Default::default()
        }),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}
