//! `bosun sample ext-authz`: a small external authorizer for CUSTOM policies, speaking
//! both of Envoy's check APIs, with the decision rule of Istio's ext-authz sample.
//!
//! A check is allowed when the request carries `x-ext-authz: allow`; a check without that
//! header (a TCP connection's) is allowed when the caller's principal ends with
//! `/sa/<allowed service account>`. Every answer carries `x-ext-authz-check-result`
//! (`allowed` / `denied`) and `x-ext-authz-check-received` (what the check was); a
//! denial's body says why.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as ProtoHeader, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::http_server::{self, Handler};

const CHECK_HEADER: &str = "x-ext-authz";
const ALLOWED_VALUE: &str = "allow";
const RESULT_HEADER: &str = "x-ext-authz-check-result";
const RECEIVED_HEADER: &str = "x-ext-authz-check-received";
const OVERRIDE_HEADER: &str = "x-ext-authz-additional-header-override";
/// What the gRPC API sets the override header to (the sample's constant).
const GRPC_OVERRIDE_VALUE: &str = "grpc-additional-header-override-value";
const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";
/// The longest check description an answer's header carries.
const MAX_RECEIVED: usize = 8 * 1024;

/// Serve an external authorizer (Envoy's ext_authz HTTP and gRPC check APIs).
///
/// Example, beside a mesh config naming it:
///
///   bosun sample ext-authz --http 127.0.0.1:8000 --grpc 127.0.0.1:9000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the HTTP check API listens.
    #[arg(long, default_value = "127.0.0.1:8000")]
    http: SocketAddr,
    /// Where the gRPC check API (envoy.service.auth.v3.Authorization) listens.
    #[arg(long, default_value = "127.0.0.1:9000")]
    grpc: SocketAddr,
    /// The service account whose connections are allowed when a check has no
    /// `x-ext-authz` header.
    #[arg(long, default_value = "a")]
    allow_service_account: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for HTTP checks: {e}", args.http))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for gRPC checks: {e}", args.grpc))?;
    tracing::info!(http = %args.http, grpc = %args.grpc, "ext-authz sample serving");
    let grpc_service = AuthorizationServer::new(GrpcChecks {
        service_account: args.allow_service_account,
    });
    let grpc_server = tonic::transport::Server::builder()
        .add_service(grpc_service)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc));
    tokio::select! {
        served = http_server::serve(http, Arc::new(HttpChecks)) => served?,
        served = grpc_server => served?,
    }
    Ok(())
}

/// The HTTP check API: 200 allows, 403 denies.
struct HttpChecks;

impl Handler for HttpChecks {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (head, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut headers: Vec<String> = head
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        headers.sort();
        let received = bounded(format!(
            "{} {}, headers: [{}], body: [{}]",
            head.method,
            head.uri,
            headers.join(", "),
            String::from_utf8_lossy(&body)
        ));
        let allowed = header(CHECK_HEADER) == ALLOWED_VALUE;
        let (status, result, body) = if allowed {
            (StatusCode::OK, "allowed", Bytes::new())
        } else {
            (
                StatusCode::FORBIDDEN,
                "denied",
                Bytes::from_static(DENY_BODY.as_bytes()),
            )
        };
        tracing::info!(result, check = %received, "HTTP check");
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let out = response.headers_mut();
        for (name, value) in [
            (RESULT_HEADER, result.to_string()),
            (OVERRIDE_HEADER, header(OVERRIDE_HEADER)),
            (RECEIVED_HEADER, received),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                out.insert(name, value);
            }
        }
        response
    }
}

/// The gRPC check API.
struct GrpcChecks {
    service_account: String,
}

#[tonic::async_trait]
impl Authorization for GrpcChecks {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let check_header = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .and_then(|http| http.headers.get(CHECK_HEADER));
        let allowed = match check_header {
            Some(value) => value == ALLOWED_VALUE,
            None => attributes.source.as_ref().is_some_and(|source| {
                source
                    .principal
                    .ends_with(&format!("/sa/{}", self.service_account))
            }),
        };
        let received = bounded(format!("{attributes:?}"));
        let result = if allowed { "allowed" } else { "denied" };
        tracing::info!(result, check = %received, "gRPC check");
        let headers = vec![
            header(RESULT_HEADER, result),
            header(RECEIVED_HEADER, &received),
            header(OVERRIDE_HEADER, GRPC_OVERRIDE_VALUE),
        ];
        let (code, http_response) = if allowed {
            (
                0,
                check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    ..Default::default()
                }),
            )
        } else {
            (
                // PERMISSION_DENIED.
                7,
                check_response::HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(StatusCode::FORBIDDEN.as_u16()),
                    }),
                    headers,
                    body: DENY_BODY.to_string(),
                }),
            )
        };
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Status {
                code,
                ..Default::default()
            }),
            http_response: Some(http_response),
            ..Default::default()
        }))
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(ProtoHeader {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A description short enough for a header, on one line of visible ASCII.
fn bounded(text: String) -> String {
    let mut text: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    if text.len() > MAX_RECEIVED {
        text.truncate(MAX_RECEIVED);
    }
    text
}
