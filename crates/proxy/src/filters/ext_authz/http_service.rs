//! The HTTP authorizer: a copy of the request's head (and, with `with_request_body`,
//! its body as read ahead), to its cluster. 200 allows, 5xx or no answer is an error, any other status denies with the authorizer's
//! status, body and headers.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST, LOCATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version};

use super::{Allowed, Denied, ExtAuthzFilter, HeaderPatterns, PARTIAL_BODY_HEADER, Verdict, ask};
use crate::rbac::Subject;
use crate::snapshot::Snapshot;
use crate::upstream::{BodyPrefix, UpstreamBody, UpstreamProtocol};

/// `http_service`.
#[derive(Debug, Clone)]
pub struct HttpService {
    pub cluster: String,
    pub timeout: Option<Duration>,
    pub path_prefix: String,
    /// Set on every check (replacing the request's own).
    pub headers_to_add: Vec<(HeaderName, HeaderValue)>,
    /// The authorizer's headers set on the request when it allows.
    pub upstream_headers: Option<HeaderPatterns>,
    /// The authorizer's headers sent to the caller when it denies (unset: all but Host).
    pub client_headers: Option<HeaderPatterns>,
    /// The authorizer's headers sent to the caller when it allows.
    pub client_headers_on_success: Option<HeaderPatterns>,
}

impl HttpService {
    pub(super) async fn check(
        &self,
        filter: &ExtAuthzFilter,
        subject: &Subject<'_>,
        body: Option<&BodyPrefix>,
        upstream: &Snapshot,
    ) -> Verdict {
        let Some(request) = subject.request else {
            return Verdict::Error("an HTTP authorizer checks requests only".into());
        };
        let Some(cluster) = upstream.clusters.get(&self.cluster) else {
            return Verdict::Error(format!("no cluster {}", self.cluster));
        };
        let protocol = cluster.spec.pool.protocol;
        let path = match request.query {
            Some(query) => format!("{}{}?{query}", self.path_prefix, request.path),
            None => format!("{}{}", self.path_prefix, request.path),
        };
        let uri = format!("http://{}{path}", request.authority);
        let mut check = Request::new(match body {
            Some(body) if !body.bytes.is_empty() => UpstreamBody::Whole(Some(body.bytes.clone())),
            _ => UpstreamBody::Empty,
        });
        *check.method_mut() = request.method.clone();
        match uri.parse() {
            Ok(uri) => *check.uri_mut() = uri,
            Err(_) => return Verdict::Error(format!("cannot ask for {uri}")),
        }
        let headers = check.headers_mut();
        for (name, value) in request.headers {
            let sent = name == AUTHORIZATION
                || filter
                    .allowed_headers
                    .as_ref()
                    .is_some_and(|allowed| allowed.matches(name.as_str()));
            if sent && name != HOST && name != CONTENT_LENGTH {
                headers.append(name.clone(), value.clone());
            }
        }
        let length = body.map_or(0, |body| body.bytes.len());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        if let Some(body) = body {
            headers.insert(
                PARTIAL_BODY_HEADER,
                HeaderValue::from_static(if body.partial { "true" } else { "false" }),
            );
        }
        for (name, value) in &self.headers_to_add {
            headers.insert(name.clone(), value.clone());
        }
        match protocol {
            UpstreamProtocol::Http1 => {
                *check.version_mut() = Version::HTTP_11;
                if let Ok(host) = HeaderValue::from_str(request.authority) {
                    check.headers_mut().insert(HOST, host);
                }
            }
            UpstreamProtocol::Http2 => *check.version_mut() = Version::HTTP_2,
        }
        let answer = ask(upstream, &self.cluster, check, self.timeout).await;
        let (head, body) = match answer {
            Ok((head, body)) => (head, body.to_bytes()),
            Err(error) => return Verdict::Error(error),
        };
        if head.status.is_server_error() {
            return Verdict::Error(format!("the authorizer answered {}", head.status));
        }
        if head.status == StatusCode::OK {
            return Verdict::Allow(self.allowed(&head.headers));
        }
        Verdict::Deny(self.denied(head.status, &head.headers, body))
    }

    fn allowed(&self, answer: &HeaderMap) -> Allowed {
        let picked = |patterns: &Option<HeaderPatterns>| -> Vec<(HeaderName, HeaderValue)> {
            let Some(patterns) = patterns else {
                return Vec::new();
            };
            answer
                .iter()
                .filter(|(name, _)| patterns.matches(name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };
        Allowed {
            request_headers: picked(&self.upstream_headers)
                .into_iter()
                .map(|(name, value)| (name, value, false))
                .collect(),
            remove_request_headers: Vec::new(),
            response_headers: picked(&self.client_headers_on_success),
        }
    }

    fn denied(&self, status: StatusCode, answer: &HeaderMap, body: Bytes) -> Denied {
        // Envoy adds these to a configured list.
        let always = [CONTENT_LENGTH, WWW_AUTHENTICATE, LOCATION];
        let headers = answer
            .iter()
            .filter(|(name, _)| match &self.client_headers {
                Some(patterns) => patterns.matches(name.as_str()) || always.contains(name),
                None => ![HOST, TRANSFER_ENCODING, CONNECTION].contains(name),
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Denied {
            status,
            headers,
            body,
        }
    }
}
