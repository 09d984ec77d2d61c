//! A route's header changes, rewrites and redirect → the routing actions they compile to.

use envoy_types::pb::envoy::config::core::v3::{HeaderValueOption, header_value_option};
use envoy_types::pb::envoy::config::route::v3::{RedirectAction, redirect_action};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use http::uri::Authority;
use http::{HeaderName, HeaderValue, StatusCode};

use super::Reason;
use crate::routing::{
    AppendAction, HeaderAdd, HeaderMutations, HeaderRules, PathRedirect, PathRewrite, Redirect,
};

/// The four header lists of a route, virtual host, route table or weighted cluster.
pub struct HeaderLists<'a> {
    pub request_add: &'a [HeaderValueOption],
    pub request_remove: &'a [String],
    pub response_add: &'a [HeaderValueOption],
    pub response_remove: &'a [String],
}

pub fn header_rules(lists: HeaderLists<'_>) -> Result<HeaderRules, Reason> {
    Ok(HeaderRules {
        request: mutations(lists.request_add, lists.request_remove, "request")?,
        response: mutations(lists.response_add, lists.response_remove, "response")?,
        host_rewrite: None,
    })
}

fn mutations(
    add: &[HeaderValueOption],
    remove: &[String],
    direction: &str,
) -> Result<HeaderMutations, Reason> {
    let remove = remove
        .iter()
        .map(|name| header_name(name, &format!("{direction}_headers_to_remove")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut adds = Vec::with_capacity(add.len());
    for option in add {
        let field = format!("{direction}_headers_to_add");
        let header = option
            .header
            .as_ref()
            .ok_or_else(|| format!("{field}: an entry has no header"))?;
        let name = header_name(&header.key, &field)?;
        let raw = if header.raw_value.is_empty() {
            header.value.as_bytes()
        } else {
            header.raw_value.as_slice()
        };
        if raw.is_empty() && !option.keep_empty_value {
            // Envoy adds nothing for an empty value unless told to keep it.
            continue;
        }
        let value = literal(raw).ok_or_else(|| {
            format!(
                "{field}[{}]: header value formatters (%...%) are not supported yet",
                header.key
            )
        })?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("{field}[{}]: invalid header value", header.key))?;
        #[allow(deprecated)]
        let action = match option.append {
            Some(append) if append.value => AppendAction::Append,
            Some(_) => AppendAction::OverwriteOrAdd,
            None => {
                use header_value_option::HeaderAppendAction as Action;
                match Action::try_from(option.append_action) {
                    Ok(Action::AppendIfExistsOrAdd) => AppendAction::Append,
                    Ok(Action::AddIfAbsent) => AppendAction::AddIfAbsent,
                    Ok(Action::OverwriteIfExistsOrAdd) => AppendAction::OverwriteOrAdd,
                    Ok(Action::OverwriteIfExists) => AppendAction::OverwriteIfExists,
                    Err(_) => {
                        return Err(format!(
                            "{field}[{}]: append_action {} is unknown",
                            header.key, option.append_action
                        ));
                    }
                }
            }
        };
        adds.push(HeaderAdd {
            name,
            value,
            action,
        });
    }
    Ok(HeaderMutations { add: adds, remove })
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, Reason> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "{field}: {name} cannot be changed this way (use a host rewrite)"
        ));
    }
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{field}: {name:?} is not a header name"))
}

/// A value with Envoy's `%%` escapes resolved; `None` when it holds a formatter.
fn literal(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            bytes.next_if_eq(&b'%')?;
        }
        out.push(byte);
    }
    Some(out)
}

/// Envoy's `regex_rewrite`: RE2's `\1` substitutions become the regex crate's `${1}`.
pub fn regex_rewrite(
    rewrite: &RegexMatchAndSubstitute,
    field: &str,
) -> Result<PathRewrite, Reason> {
    let pattern = rewrite
        .pattern
        .as_ref()
        .ok_or_else(|| format!("{field}.pattern is missing"))?;
    let regex = regex::Regex::new(&pattern.regex).map_err(|e| {
        format!(
            "{field}.pattern {:?} is not a valid regex: {e}",
            pattern.regex
        )
    })?;
    Ok(PathRewrite::Regex {
        pattern: regex,
        substitution: re2_substitution(&rewrite.substitution),
    })
}

fn re2_substitution(substitution: &str) -> String {
    let mut out = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(digit) if digit.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(digit);
                    out.push('}');
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

pub fn host_rewrite(host: &str, field: &str) -> Result<Authority, Reason> {
    host.parse()
        .map_err(|_| format!("{field} {host:?} is not a valid authority"))
}

pub fn redirect(r: &RedirectAction) -> Result<Redirect, Reason> {
    use redirect_action::{
        PathRewriteSpecifier, RedirectResponseCode as Code, SchemeRewriteSpecifier,
    };
    let scheme = match &r.scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(SchemeRewriteSpecifier::HttpsRedirect(false)) | None => None,
        Some(SchemeRewriteSpecifier::SchemeRedirect(scheme)) => {
            Some(scheme.to_ascii_lowercase()).filter(|s| !s.is_empty())
        }
    };
    let path = match &r.path_rewrite_specifier {
        None => None,
        Some(PathRewriteSpecifier::PathRedirect(path)) => Some(PathRedirect::Path(path.clone())),
        Some(PathRewriteSpecifier::PrefixRewrite(prefix)) => {
            Some(PathRedirect::Rewrite(PathRewrite::Prefix(prefix.clone())))
        }
        Some(PathRewriteSpecifier::RegexRewrite(rewrite)) => Some(PathRedirect::Rewrite(
            regex_rewrite(rewrite, "redirect.regex_rewrite")?,
        )),
        Some(_) => return Err("redirect path rewrite kind is not supported yet".into()),
    };
    let status = match Code::try_from(r.response_code) {
        Ok(Code::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
        Ok(Code::Found) => StatusCode::FOUND,
        Ok(Code::SeeOther) => StatusCode::SEE_OTHER,
        Ok(Code::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
        Ok(Code::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
        Err(_) => {
            return Err(format!(
                "redirect.response_code {} is unknown",
                r.response_code
            ));
        }
    };
    let port = match r.port_redirect {
        0 => None,
        port => Some(
            u16::try_from(port)
                .map_err(|_| format!("redirect.port_redirect {port} is out of range"))?,
        ),
    };
    Ok(Redirect {
        scheme,
        host: Some(r.host_redirect.clone()).filter(|h| !h.is_empty()),
        port,
        path,
        strip_query: r.strip_query,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_substitutions_and_percent_escapes() {
        assert_eq!(re2_substitution(r"\2/instance/\1"), "${2}/instance/${1}");
        assert_eq!(re2_substitution("/cost$"), "/cost$$");
        assert_eq!(literal(b"100%%").as_deref(), Some(&b"100%"[..]));
        assert!(literal(b"%DOWNSTREAM_REMOTE_ADDRESS%").is_none());
    }
}
