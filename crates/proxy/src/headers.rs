//! Header handling at the proxy boundary: hop-by-hop removal, and the headers
//! Envoy adds (`x-forwarded-proto`, `x-request-id`).

use http::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};

/// Connection-scoped headers (RFC 9110 §7.6.1), as names parsed once.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Removes connection-scoped headers, including those named by `Connection`.
/// `te: trailers` survives: gRPC needs it end to end.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // The common case, no `Connection` header or a plain `keep-alive`, allocates nothing.
    if let Some(listed) = headers
        .get(CONNECTION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.eq_ignore_ascii_case("keep-alive") && !v.eq_ignore_ascii_case("close"))
    {
        let listed: Vec<HeaderName> = listed
            .split(',')
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            if name != TE {
                headers.remove(&name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let keep_te = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !keep_te {
        headers.remove(TE);
    }
}

/// On a request's arrival, before the proxy sets any header of its own: removes what the
/// caller's `Connection` header nominates and leaves `Connection` with only the tokens
/// that steer the connection (`upgrade`, `keep-alive`, `close`). So no caller can nominate
/// away a header the proxy adds later (`x-forwarded-client-cert`, `x-forwarded-proto`, the
/// metadata exchange), which the forwarding step's hop-by-hop removal would otherwise take.
pub fn take_connection_nominated(headers: &mut HeaderMap) {
    let Some(listed) = headers.get(CONNECTION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let mut kept = Vec::new();
    let mut nominated = Vec::new();
    for token in listed.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if ["upgrade", "keep-alive", "close"]
            .iter()
            .any(|steer| token.eq_ignore_ascii_case(steer))
        {
            kept.push(token.to_string());
        } else if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            && name != TE
        {
            nominated.push(name);
        }
    }
    if nominated.is_empty() {
        return;
    }
    for name in nominated {
        headers.remove(&name);
    }
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(value) if !kept.is_empty() => {
            headers.insert(CONNECTION, value);
        }
        _ => {
            headers.remove(CONNECTION);
        }
    }
}

/// Sets the headers Envoy sets on requests it forwards. `x-forwarded-proto` a caller sent
/// is kept (a sidecar does not use the remote address, as istiod configures it); else it
/// says whether the downstream connection was TLS.
pub fn set_forwarding_headers(headers: &mut HeaderMap, downstream_tls: bool) {
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let scheme = if downstream_tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), new_request_id());
    }
}

/// A random (version 4) UUID, Envoy's request id format.
/// A random (version 4) UUID, written into a fixed buffer: one allocation, for the value.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [0u8; 36];
    let mut at = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().expect("value"));
        h.insert("x-secret", "1".parse().expect("value"));
        h.insert("keep-alive", "timeout=5".parse().expect("value"));
        h.insert("te", "trailers".parse().expect("value"));
        h.insert("x-app", "kept".parse().expect("value"));
        remove_hop_by_hop(&mut h);
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("keep-alive"));
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(h.contains_key("x-app"));
        h.insert("te", "gzip".parse().expect("value"));
        remove_hop_by_hop(&mut h);
        assert!(!h.contains_key("te"));
    }

    #[test]
    fn a_caller_cannot_nominate_away_what_the_proxy_adds_later() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "Upgrade, x-forwarded-client-cert, x-secret"
                .parse()
                .expect("value"),
        );
        h.insert("upgrade", "websocket".parse().expect("value"));
        h.insert("x-secret", "1".parse().expect("value"));
        take_connection_nominated(&mut h);
        assert!(
            !h.contains_key("x-secret"),
            "what the caller nominated goes"
        );
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"Upgrade"[..])
        );
        // The proxy now adds its element; forwarding removes hop-by-hop headers.
        h.insert(
            "x-forwarded-client-cert",
            "By=me;URI=caller".parse().expect("value"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.contains_key("x-forwarded-client-cert"));
        let mut only = HeaderMap::new();
        only.insert(
            "connection",
            "x-forwarded-client-cert".parse().expect("value"),
        );
        take_connection_nominated(&mut only);
        assert!(!only.contains_key("connection"));
    }

    #[test]
    fn request_id_is_generated_only_when_missing() {
        let mut h = HeaderMap::new();
        set_forwarding_headers(&mut h, false);
        let id = h
            .get(&X_REQUEST_ID)
            .expect("generated")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        let dashes: Vec<usize> = id.match_indices('-').map(|(at, _)| at).collect();
        assert_eq!(dashes, vec![8, 13, 18, 23], "{id}");
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        set_forwarding_headers(&mut h, true);
        assert_eq!(
            h.get(&X_REQUEST_ID).expect("kept").to_str().expect("ascii"),
            id
        );
        assert_eq!(h.get(&X_FORWARDED_PROTO).expect("set"), "http", "kept");
        let mut tls = HeaderMap::new();
        set_forwarding_headers(&mut tls, true);
        assert_eq!(tls.get(&X_FORWARDED_PROTO).expect("set"), "https");
    }
}
