//! A request path made canonical before it is routed, authorized and forwarded, as
//! Envoy's connection manager does with `normalize_path`, `merge_slashes` and
//! `path_with_escaped_slashes_action` (Istio's `meshConfig.pathNormalization`).
//!
//! With normalization: escaped unreserved characters are decoded (`%41` → `A`, `%2E` →
//! `.`), backslashes become slashes, and dot segments are resolved (RFC 3986 5.2.4);
//! other escapes are kept as sent. Merging collapses runs of slashes; unescaping slashes
//! decodes `%2F` and `%5C` first. A path with an escaped NUL is refused.

use std::borrow::Cow;

/// What the connection manager does to paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathNormalization {
    pub normalize: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

/// Envoy's `path_with_escaped_slashes_action`, in the forms Bosun takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    #[default]
    Keep,
    /// `%2F`, `%5C` become `/`, `\` before the rest of normalization.
    Unescape,
    /// A path with one is refused.
    Reject,
}

/// The path cannot be made canonical: the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPath;

impl PathNormalization {
    pub fn is_off(&self) -> bool {
        *self == PathNormalization::default()
    }

    /// The canonical form of `path` (without its query).
    pub fn apply<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, InvalidPath> {
        // Most paths need nothing: no escape, backslash, dot segment or double slash.
        let needs_work = path.bytes().any(|b| b == b'%' || b == b'\\')
            || path.contains("/.")
            || (self.merge_slashes && path.contains("//"));
        if self.is_off() || !needs_work {
            return Ok(Cow::Borrowed(path));
        }
        if contains_escape(path, |byte| byte == 0) {
            return Err(InvalidPath);
        }
        let mut path = Cow::Borrowed(path);
        match self.escaped_slashes {
            EscapedSlashes::Keep => {}
            EscapedSlashes::Reject if contains_escape(&path, is_slash) => return Err(InvalidPath),
            EscapedSlashes::Reject => {}
            EscapedSlashes::Unescape => {
                path = Cow::Owned(decode_escapes(&path, is_slash).into_owned());
            }
        }
        if self.normalize {
            let decoded = decode_escapes(&path, is_unreserved);
            let slashed = decoded.replace('\\', "/");
            path = Cow::Owned(remove_dot_segments(&slashed));
        }
        if self.merge_slashes && path.contains("//") {
            let mut merged = String::with_capacity(path.len());
            for c in path.chars() {
                if !(c == '/' && merged.ends_with('/')) {
                    merged.push(c);
                }
            }
            path = Cow::Owned(merged);
        }
        Ok(path)
    }
}

fn is_slash(byte: u8) -> bool {
    byte == b'/' || byte == b'\\'
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some(u8::try_from(digit(high)? * 16 + digit(low)?).unwrap_or(u8::MAX))
}

fn contains_escape(path: &str, wanted: impl Fn(u8) -> bool) -> bool {
    let bytes = path.as_bytes();
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && hex_pair(w[1], w[2]).is_some_and(&wanted))
}

/// Decodes the escapes whose byte `wanted` picks; the others stay as sent.
fn decode_escapes<'a>(path: &'a str, wanted: impl Fn(u8) -> bool) -> Cow<'a, str> {
    if !contains_escape(path, &wanted) {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && at + 2 < bytes.len()
            && let Some(byte) = hex_pair(bytes[at + 1], bytes[at + 2])
            && wanted(byte)
        {
            out.push(char::from(byte));
            at += 3;
            continue;
        }
        let c = path[at..].chars().next().unwrap_or_default();
        out.push(c);
        at += c.len_utf8().max(1);
    }
    Cow::Owned(out)
}

/// RFC 3986 5.2.4, keeping empty segments (`//`) as they are.
fn remove_dot_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = index == last,
            ".." => {
                out.pop();
                trailing_slash = index == last;
            }
            other => {
                out.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    if absolute {
        result.push('/');
    }
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: PathNormalization = PathNormalization {
        normalize: true,
        merge_slashes: false,
        escaped_slashes: EscapedSlashes::Keep,
    };

    #[test]
    fn dot_segments_and_unreserved_escapes() {
        assert_eq!(BASE.apply("/app/../admin").unwrap(), "/admin");
        assert_eq!(BASE.apply("/app/%2E./admin").unwrap(), "/admin");
        assert_eq!(BASE.apply("/xyz%30..//abc").unwrap(), "/xyz0..//abc");
        assert_eq!(BASE.apply("/app//../../admin").unwrap(), "/admin");
        assert_eq!(BASE.apply("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(BASE.apply("/../..").unwrap(), "/");
        assert_eq!(BASE.apply("/app/%2f").unwrap(), "/app/%2f");
        assert_eq!(BASE.apply("/admin%00"), Err(InvalidPath));
    }
}
