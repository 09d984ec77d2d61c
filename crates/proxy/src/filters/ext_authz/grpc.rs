//! The gRPC authorizer: `envoy.service.auth.v3.Authorization/Check` over HTTP/2 to its
//! cluster, with the caller, the connection and (on HTTP) the request's head as Envoy
//! describes them in an `AttributeContext`.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderValueOption, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context, check_response,
};
use envoy_types::pb::google::protobuf::Timestamp;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, StatusCode, Version};
use prost::Message;

use super::{Allowed, Denied, ExtAuthzFilter, PARTIAL_BODY_HEADER, Verdict, ask};
use crate::rbac::Subject;
use crate::snapshot::Snapshot;
use crate::upstream::{BodyPrefix, UpstreamBody, UpstreamProtocol};

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// `grpc_service.envoy_grpc`.
#[derive(Debug, Clone)]
pub struct GrpcService {
    pub cluster: String,
    pub authority: String,
    pub timeout: Option<Duration>,
}

impl GrpcService {
    pub(super) async fn check(
        &self,
        filter: &ExtAuthzFilter,
        subject: &Subject<'_>,
        body: Option<&BodyPrefix>,
        upstream: &Snapshot,
    ) -> Verdict {
        let Some(cluster) = upstream.clusters.get(&self.cluster) else {
            return Verdict::Error(format!("no cluster {}", self.cluster));
        };
        if cluster.spec.pool.protocol != UpstreamProtocol::Http2 {
            return Verdict::Error(format!(
                "cluster {} does not speak HTTP/2, which gRPC needs",
                self.cluster
            ));
        }
        let message = CheckRequest {
            attributes: Some(attributes(filter, subject, body)),
        }
        .encode_to_vec();
        let mut framed = BytesMut::with_capacity(message.len() + 5);
        framed.put_u8(0);
        framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
        framed.extend_from_slice(&message);
        let mut request = Request::new(UpstreamBody::Whole(Some(framed.freeze())));
        *request.method_mut() = http::Method::POST;
        *request.version_mut() = Version::HTTP_2;
        match format!("http://{}{CHECK_PATH}", self.authority).parse() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return Verdict::Error(format!("bad authority {}", self.authority)),
        }
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        let answer = ask(upstream, &self.cluster, request, self.timeout)
            .await
            .and_then(|(head, collected)| {
                let grpc_status = collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .or_else(|| head.headers.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u32>().ok());
                if !head.status.is_success() || grpc_status != Some(0) {
                    return Err(format!(
                        "the check failed: HTTP {}, grpc-status {grpc_status:?}",
                        head.status
                    ));
                }
                let body = collected.to_bytes();
                let message = body
                    .get(5..)
                    .ok_or_else(|| "the check's answer has no message".to_string())?;
                CheckResponse::decode(message).map_err(|e| format!("the check's answer: {e}"))
            });
        match answer {
            Ok(answer) => verdict(answer),
            Err(error) => Verdict::Error(error),
        }
    }
}

/// What the check tells the authorizer.
fn attributes(
    filter: &ExtAuthzFilter,
    subject: &Subject<'_>,
    body: Option<&BodyPrefix>,
) -> AttributeContext {
    let peer_address = |address: std::net::SocketAddr| Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                address.port(),
            ))),
            ..Default::default()
        })),
    };
    let source = attribute_context::Peer {
        address: subject.addresses.map(|(remote, _)| peer_address(remote)),
        principal: subject
            .peer
            .and_then(|peer| peer.uri.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let destination = attribute_context::Peer {
        address: subject.addresses.map(|(_, local)| peer_address(local)),
        ..Default::default()
    };
    let http = subject.request.map(|request| {
        let mut headers = std::collections::HashMap::new();
        headers.insert(":authority".to_string(), request.authority.to_string());
        headers.insert(":method".to_string(), request.method.to_string());
        let path = match request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.to_string(),
        };
        headers.insert(":path".to_string(), path.clone());
        for (name, value) in request.headers {
            let sent = filter
                .allowed_headers
                .as_ref()
                .is_none_or(|allowed| allowed.matches(name.as_str()));
            if !sent {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|joined: &mut String| {
                    joined.push(',');
                    joined.push_str(&value);
                })
                .or_insert(value);
        }
        let (text, raw) = match (body, filter.with_body) {
            (Some(body), Some(limit)) => {
                headers.insert(PARTIAL_BODY_HEADER.to_string(), body.partial.to_string());
                if limit.pack_as_bytes {
                    (String::new(), body.bytes.to_vec())
                } else {
                    (
                        String::from_utf8_lossy(&body.bytes).into_owned(),
                        Vec::new(),
                    )
                }
            }
            _ => (String::new(), Vec::new()),
        };
        attribute_context::HttpRequest {
            body: text,
            raw_body: raw,
            id: request
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            method: request.method.to_string(),
            headers,
            path,
            host: request.authority.to_string(),
            scheme: request.scheme.to_string(),
            // Envoy's: the declared length, -1 when unknown.
            size: request
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1),
            protocol: "HTTP/1.1".to_string(),
            ..Default::default()
        }
    });
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    AttributeContext {
        source: Some(source),
        destination: Some(destination),
        request: Some(attribute_context::Request {
            time: Some(Timestamp {
                seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
            }),
            http,
        }),
        ..Default::default()
    }
}

fn verdict(answer: CheckResponse) -> Verdict {
    let allowed = answer.status.as_ref().is_none_or(|status| status.code == 0);
    match answer.http_response {
        _ if allowed => {
            let ok = match answer.http_response {
                Some(check_response::HttpResponse::OkResponse(ok)) => ok,
                _ => Default::default(),
            };
            Verdict::Allow(Allowed {
                request_headers: ok
                    .headers
                    .iter()
                    .filter_map(|option| {
                        let (name, value) = header_of(option)?;
                        // Unset, an authorizer's header replaces the request's (Envoy).
                        #[allow(deprecated)]
                        let append = option.append.as_ref().is_some_and(|append| append.value);
                        Some((name, value, append))
                    })
                    .collect(),
                remove_request_headers: ok
                    .headers_to_remove
                    .iter()
                    .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                    // Pseudo-headers and Host stay, as Envoy keeps them.
                    .filter(|name| *name != http::header::HOST)
                    .collect(),
                response_headers: ok
                    .response_headers_to_add
                    .iter()
                    .filter_map(header_of)
                    .collect(),
            })
        }
        Some(check_response::HttpResponse::DeniedResponse(denied)) => Verdict::Deny(Denied {
            status: denied
                .status
                .and_then(|status| u16::try_from(status.code).ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::FORBIDDEN),
            headers: denied.headers.iter().filter_map(header_of).collect(),
            body: Bytes::from(denied.body),
        }),
        _ => Verdict::Deny(Denied {
            status: StatusCode::FORBIDDEN,
            headers: Vec::new(),
            body: Bytes::new(),
        }),
    }
}

fn header_of(option: &HeaderValueOption) -> Option<(HeaderName, HeaderValue)> {
    let header = option.header.as_ref()?;
    let name = HeaderName::from_bytes(header.key.as_bytes()).ok()?;
    let value = if header.raw_value.is_empty() {
        HeaderValue::from_str(&header.value).ok()?
    } else {
        HeaderValue::from_bytes(&header.raw_value).ok()?
    };
    Some((name, value))
}
