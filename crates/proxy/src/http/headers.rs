//! Header handling at the proxy boundary: hop-by-hop removal, and the headers
//! Envoy adds (`x-forwarded-proto`, `x-request-id`).

use http::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue, TE};

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Removes connection-scoped headers, including those named by `Connection`.
/// `te: trailers` survives: gRPC needs it end to end.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(listed) = headers.get(CONNECTION).and_then(|v| v.to_str().ok()) {
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
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let keep_te = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !keep_te {
        headers.remove(TE);
    }
}

/// Sets the headers Envoy sets on requests it forwards.
pub fn set_forwarding_headers(headers: &mut HeaderMap) {
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), new_request_id());
    }
}

/// A random (version 4) UUID, Envoy's request id format.
fn new_request_id() -> HeaderValue {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = |range: std::ops::Range<usize>| -> String {
        bytes[range].iter().map(|b| format!("{b:02x}")).collect()
    };
    let id = format!(
        "{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    );
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
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
    fn request_id_is_generated_only_when_missing() {
        let mut h = HeaderMap::new();
        set_forwarding_headers(&mut h);
        let id = h
            .get(&X_REQUEST_ID)
            .expect("generated")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        set_forwarding_headers(&mut h);
        assert_eq!(
            h.get(&X_REQUEST_ID).expect("kept").to_str().expect("ascii"),
            id
        );
        assert_eq!(h.get(&X_FORWARDED_PROTO).expect("set"), "http");
    }
}
