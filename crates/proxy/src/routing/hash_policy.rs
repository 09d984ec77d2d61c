//! A route's hash policy (Envoy's `RouteAction.hash_policy`): what a request is hashed on
//! for a ring-hash or maglev cluster. Hashes are Envoy's (xxHash64 of the value), so a
//! key picks the same endpoint through Bosun's proxy and through Envoy.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header::COOKIE};
use xxhash_rust::xxh64::xxh64;

use super::matcher::first_query_value;

/// The hash methods of a route, tried in order.
#[derive(Debug, Clone, Default)]
pub struct HashPolicy {
    pub methods: Vec<HashMethod>,
}

#[derive(Debug, Clone)]
pub struct HashMethod {
    pub source: HashSource,
    /// Once this method has produced a hash, the rest are not tried.
    pub terminal: bool,
}

#[derive(Debug, Clone)]
pub enum HashSource {
    Header(HeaderName),
    Cookie(HashCookie),
    /// The caller's IP address, without its port.
    SourceIp,
    QueryParameter(String),
}

/// A cookie to hash on; with a `ttl`, a request without it gets one made for it, sent
/// back to the caller in the response (`Set-Cookie`).
#[derive(Debug, Clone)]
pub struct HashCookie {
    pub name: String,
    pub ttl: Option<Duration>,
    pub path: String,
    /// Extra attributes of the cookie made (`name` or `name=value`).
    pub attributes: Vec<(String, String)>,
}

/// What a request brings to hashing besides its headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashInput<'a> {
    /// The query string, without its `?`.
    pub query: Option<&'a str>,
    /// The downstream connection's remote and local address.
    pub connection: Option<(SocketAddr, SocketAddr)>,
}

/// The request's hash, and the cookie made for it when it had none.
#[derive(Debug, Default)]
pub struct RequestHash {
    pub hash: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashPolicy {
    /// Envoy's combination: each new hash is XORed into the previous one rotated left by
    /// one bit, so two equal methods do not cancel out.
    pub fn hash(&self, headers: &HeaderMap, input: HashInput<'_>) -> RequestHash {
        let mut out = RequestHash::default();
        for method in &self.methods {
            let produced = match &method.source {
                HashSource::Header(name) => header_hash(headers, name),
                HashSource::Cookie(cookie) => cookie_hash(headers, cookie, input, &mut out),
                HashSource::SourceIp => input
                    .connection
                    .map(|(remote, _)| xxh64(remote.ip().to_string().as_bytes(), 0)),
                HashSource::QueryParameter(name) => {
                    first_query_value(input.query, name).map(|value| xxh64(value.as_bytes(), 0))
                }
            };
            if let Some(new) = produced {
                let old = out.hash.map_or(0, |hash| hash.rotate_left(1));
                out.hash = Some(old ^ new);
            }
            if method.terminal && out.hash.is_some() {
                break;
            }
        }
        out
    }
}

/// A header's values, sorted so their order does not matter, each hashed with the
/// previous hash as its seed.
fn header_hash(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values.iter().fold(0, |seed, value| xxh64(value, seed)))
}

fn cookie_hash(
    headers: &HeaderMap,
    cookie: &HashCookie,
    input: HashInput<'_>,
    out: &mut RequestHash,
) -> Option<u64> {
    if let Some(value) = cookie_value(headers, &cookie.name).filter(|v| !v.is_empty()) {
        return Some(xxh64(value, 0));
    }
    let ttl = cookie.ttl?;
    // Envoy's value: the same for every request of one downstream connection.
    let (remote, local) = input.connection?;
    let value = format!("{:016x}", xxh64(format!("{remote}{local}").as_bytes(), 0));
    out.set_cookie = HeaderValue::try_from(set_cookie(cookie, &value, ttl)).ok();
    Some(xxh64(value.as_bytes(), 0))
}

/// The value of cookie `name` in the request's `Cookie` headers, without its quotes.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let at = pair.iter().position(|b| *b == b'=')?;
            (&pair[..at] == name.as_bytes()).then(|| unquote(&pair[at + 1..]))
        })
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

/// Envoy's `Set-Cookie`: `name="value"`, `Max-Age` unless the TTL is zero (a session
/// cookie), the path, the attributes, and `HttpOnly`.
fn set_cookie(cookie: &HashCookie, value: &str, ttl: Duration) -> String {
    let mut out = format!("{}=\"{value}\"", cookie.name);
    if ttl.as_secs() > 0 {
        out.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !cookie.path.is_empty() {
        out.push_str(&format!("; Path={}", cookie.path));
    }
    for (name, value) in &cookie.attributes {
        if value.is_empty() {
            out.push_str(&format!("; {name}"));
        } else {
            out.push_str(&format!("; {name}={value}"));
        }
    }
    out.push_str("; HttpOnly");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(sources: Vec<HashSource>) -> HashPolicy {
        HashPolicy {
            methods: sources
                .into_iter()
                .map(|source| HashMethod {
                    source,
                    terminal: false,
                })
                .collect(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_header_hashes_to_xxhash64_of_its_value_whatever_the_order_of_values() {
        let by_user = policy(vec![HashSource::Header(HeaderName::from_static("x-user"))]);
        let hash = by_user.hash(&headers(&[("x-user", "jason")]), HashInput::default());
        assert_eq!(hash.hash, Some(xxh64(b"jason", 0)));
        let one_way = by_user.hash(
            &headers(&[("x-user", "a"), ("x-user", "b")]),
            HashInput::default(),
        );
        let other_way = by_user.hash(
            &headers(&[("x-user", "b"), ("x-user", "a")]),
            HashInput::default(),
        );
        assert_eq!(one_way.hash, other_way.hash);
        assert_eq!(
            by_user.hash(&HeaderMap::new(), HashInput::default()).hash,
            None
        );
    }

    #[test]
    fn a_missing_cookie_with_a_ttl_is_made_once_per_connection() {
        let session = policy(vec![HashSource::Cookie(HashCookie {
            name: "user".into(),
            ttl: Some(Duration::from_secs(60)),
            path: "/".into(),
            attributes: vec![("SameSite".into(), "Strict".into())],
        })]);
        let input = HashInput {
            query: None,
            connection: Some((
                "127.0.0.1:40000".parse().expect("address"),
                "127.0.0.2:15001".parse().expect("address"),
            )),
        };
        let made = session.hash(&HeaderMap::new(), input);
        let cookie = made.set_cookie.expect("a cookie is made");
        let cookie = cookie.to_str().expect("ascii");
        let value = cookie
            .strip_prefix("user=\"")
            .and_then(|rest| rest.split('"').next())
            .expect("quoted value");
        assert_eq!(value.len(), 16);
        assert_eq!(
            cookie,
            format!("user=\"{value}\"; Max-Age=60; Path=/; SameSite=Strict; HttpOnly")
        );
        // The caller sends it back: the same hash, and no new cookie.
        let sent = HeaderValue::try_from(format!("theme=dark; user=\"{value}\"")).expect("value");
        let mut back = HeaderMap::new();
        back.insert(COOKIE, sent);
        let again = session.hash(&back, input);
        assert_eq!(again.hash, made.hash);
        assert!(again.set_cookie.is_none());
    }

    #[test]
    fn methods_combine_and_a_terminal_one_stops_the_rest() {
        let query = HashInput {
            query: Some("a=1&user=x"),
            connection: None,
        };
        let header = HashSource::Header(HeaderName::from_static("x-user"));
        let both = policy(vec![
            HashSource::QueryParameter("user".into()),
            header.clone(),
        ]);
        let request = headers(&[("x-user", "y")]);
        let expected = xxh64(b"x", 0).rotate_left(1) ^ xxh64(b"y", 0);
        assert_eq!(both.hash(&request, query).hash, Some(expected));
        let mut terminal = both.clone();
        terminal.methods[0].terminal = true;
        assert_eq!(terminal.hash(&request, query).hash, Some(xxh64(b"x", 0)));
    }
}
