//! Answers the proxy makes itself (no route, no upstream, a fault, a timeout), written
//! the way Envoy writes them: a short text body, or for a gRPC request a trailers-only
//! gRPC response carrying the status.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::telemetry::{RequestRecord, ResponseFlag};

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
static X_ENVOY_OVERLOADED: http::HeaderName = http::HeaderName::from_static("x-envoy-overloaded");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: StatusCode,
    pub body: &'static str,
    pub flag: ResponseFlag,
    /// The gRPC status to answer a gRPC request with, instead of the one mapped from
    /// `status`.
    pub grpc_status: Option<u32>,
    /// A header the reply carries (`www-authenticate` on a refused token).
    pub header: Option<(http::HeaderName, HeaderValue)>,
}

impl LocalReply {
    pub fn new(status: StatusCode, body: &'static str, flag: ResponseFlag) -> Self {
        LocalReply {
            status,
            body,
            flag,
            grpc_status: None,
            header: None,
        }
    }

    /// The reply with `name: value` among its headers.
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    /// A reply that carries a gRPC status (Envoy answers HTTP 200 to gRPC callers, and
    /// this status's HTTP equivalent to others).
    pub fn grpc(grpc_status: u32, body: &'static str, flag: ResponseFlag) -> Self {
        LocalReply {
            status: grpc_to_http(grpc_status),
            body,
            flag,
            grpc_status: Some(grpc_status),
            header: None,
        }
    }

    /// The reply as the caller gets it, its response flag noted on the request's record.
    pub fn answer(
        self,
        grpc_request: bool,
        record: Option<&mut RequestRecord>,
    ) -> Response<ProxyBody> {
        if let Some(record) = record {
            record.set_flag(self.flag);
        }
        self.into_response(grpc_request)
    }

    pub fn into_response(self, grpc_request: bool) -> Response<ProxyBody> {
        let header = self.header.clone();
        let mut response = self.body_response(grpc_request);
        if let Some((name, value)) = header {
            response.headers_mut().insert(name, value);
        }
        response
    }

    fn body_response(self, grpc_request: bool) -> Response<ProxyBody> {
        if grpc_request {
            let grpc_status = self
                .grpc_status
                .unwrap_or_else(|| http_to_grpc(self.status));
            let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
            let headers = resp.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(GRPC_STATUS.clone(), HeaderValue::from(grpc_status));
            if let Ok(message) = HeaderValue::from_str(self.body) {
                headers.insert(GRPC_MESSAGE.clone(), message);
            }
            return resp;
        }
        let mut resp = text_reply(self.status, self.body);
        // Envoy marks the answers of its circuit breakers.
        if self.flag == ResponseFlag::UpstreamOverflow {
            resp.headers_mut()
                .insert(X_ENVOY_OVERLOADED.clone(), HeaderValue::from_static("true"));
        }
        resp
    }
}

/// A plain answer with a text body.
pub fn text_reply(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    resp
}

/// Whether a request is gRPC, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Envoy's mapping of an HTTP status to the gRPC status of a local reply.
fn http_to_grpc(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// The HTTP status a gRPC status stands for, for callers that do not speak gRPC.
fn grpc_to_http(grpc_status: u32) -> StatusCode {
    match grpc_status {
        0 => StatusCode::OK,
        1 => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        4 => StatusCode::GATEWAY_TIMEOUT,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        8 => StatusCode::TOO_MANY_REQUESTS,
        12 => StatusCode::NOT_IMPLEMENTED,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        16 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_callers_get_a_trailers_only_status() {
        let reply = LocalReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy upstream",
            ResponseFlag::NoHealthyUpstream,
        );
        let resp = reply.clone().into_response(true);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert_eq!(resp.headers()["grpc-message"], "no healthy upstream");
        let resp = reply.into_response(false);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let aborted = LocalReply::grpc(8, "fault filter abort", ResponseFlag::FaultInjected);
        assert_eq!(
            aborted.clone().into_response(true).headers()["grpc-status"],
            "8"
        );
        assert_eq!(
            aborted.into_response(false).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
