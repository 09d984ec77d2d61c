//! Istio's certificate service (`istio.v1.auth.IstioCertificateService`, from
//! `security/proto/istioca.proto`): its two messages, the server the control plane mounts
//! beside xDS, and a client for proxies. The messages are written out here, so no protoc
//! is needed.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::authority::{CertificateAuthority, DEFAULT_TTL};
use crate::credential::{AUTHORIZATION_HEADER, Authenticate, Caller};
use crate::error::CaError;
use crate::identity::Identity;
use crate::pem::certificates;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "istio.v1.auth.IstioCertificateService";

/// The path of `CreateCertificate`.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// `istio.v1.auth.IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded certificate signing request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds; 0 asks for the CA's default.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Optional request metadata (Istio uses it, for example, to impersonate a workload).
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<envoy_types::pb::google::protobuf::Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM-encoded certificate chain: the leaf first, the root last.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

/// Decides whether a workload may have a certificate for an identity.
pub type Authorizer = Arc<dyn Fn(&Identity) -> bool + Send + Sync>;

/// The `IstioCertificateService` server: signs CSRs with a [`CertificateAuthority`], each
/// only for the identity its caller proved (a workload token). Add it to a `tonic` server.
#[derive(Clone)]
pub struct CertificateService {
    ca: Arc<CertificateAuthority>,
    authenticate: Arc<dyn Authenticate>,
    authorize: Authorizer,
}

impl fmt::Debug for CertificateService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateService")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl CertificateService {
    /// Signs with `ca` each CSR for the identity of the caller `authenticate` proves, when
    /// `authorize` allows that identity.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        authenticate: Arc<dyn Authenticate>,
        authorize: Authorizer,
    ) -> Self {
        Self {
            ca,
            authenticate,
            authorize,
        }
    }

    /// One `CreateCertificate` call from `caller`.
    pub fn create_certificate(
        &self,
        request: &IstioCertificateRequest,
        caller: &Caller,
    ) -> Result<IstioCertificateResponse, CaError> {
        let ttl = match u64::try_from(request.validity_duration) {
            Ok(0) => DEFAULT_TTL,
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                return Err(CaError::InvalidTtl(format!(
                    "validity_duration is {} seconds; send a positive number, or 0 for the \
                     default",
                    request.validity_duration
                )));
            }
        };
        let signed = self.ca.sign_csr(&request.csr, ttl, |identity| {
            if !caller.owns(identity) {
                tracing::warn!(
                    %caller,
                    requested = %identity,
                    "refused a certificate for another workload's identity"
                );
                return false;
            }
            (self.authorize)(identity)
        })?;
        Ok(IstioCertificateResponse {
            cert_chain: signed.chain_pem,
        })
    }
}

impl NamedService for CertificateService {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<tonic::body::Body>> for CertificateService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != CREATE_CERTIFICATE_PATH {
            let status = Status::unimplemented(format!(
                "{SERVICE_NAME} has no method at {}",
                request.uri().path()
            ));
            return Box::pin(ready(Ok(status.into_http())));
        }
        let caller = match self.authenticate.authenticate(request.headers()) {
            Ok(caller) => caller,
            Err(error) => {
                tracing::warn!(%error, "refused an unauthenticated certificate request");
                return Box::pin(ready(Ok(error.to_status().into_http())));
            }
        };
        let method = CreateCertificate {
            service: self.clone(),
            caller,
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// `CreateCertificate` as the unary handler `tonic::server::Grpc` calls, for one
/// authenticated caller.
struct CreateCertificate {
    service: CertificateService,
    caller: Caller,
}

impl Service<Request<IstioCertificateRequest>> for CreateCertificate {
    type Response = Response<IstioCertificateResponse>;
    type Error = Status;
    type Future = Ready<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        // Signing is one ECDSA or RSA signature: cheaper than moving it to another thread.
        let result = self
            .service
            .create_certificate(request.get_ref(), &self.caller)
            .map(Response::new)
            .map_err(|error| {
                tracing::debug!(%error, "refused a certificate request");
                error.to_status()
            });
        ready(result)
    }
}

/// Asks the certificate service on `channel` to sign `csr_pem` for `ttl` (0 for the CA's
/// default), presenting the workload's `token`. Returns the chain, one PEM per
/// certificate: the leaf first, the root last.
pub async fn request_certificate(
    channel: Channel,
    token: Option<&str>,
    csr_pem: &str,
    ttl: Duration,
) -> Result<Vec<String>, CaError> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(CaError::Connect)?;
    let request = IstioCertificateRequest {
        csr: csr_pem.to_string(),
        validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        metadata: None,
    };
    let mut request = Request::new(request);
    if let Some(token) = token {
        let bearer = format!("Bearer {token}").parse().map_err(|_| {
            CaError::InvalidResponse("the workload token is not a header value".into())
        })?;
        request.metadata_mut().insert(AUTHORIZATION_HEADER, bearer);
    }
    let response: Response<IstioCertificateResponse> = grpc
        .unary(
            request,
            PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
            ProstCodec::default(),
        )
        .await
        .map_err(|status| CaError::Rejected(Box::new(status)))?;
    split_chain(response.into_inner().cert_chain)
}

/// One PEM per certificate: Istio's own CA may send its intermediates as one string.
fn split_chain(chain: Vec<String>) -> Result<Vec<String>, CaError> {
    let mut split = Vec::with_capacity(chain.len());
    for (index, entry) in chain.iter().enumerate() {
        let found = certificates(entry).map_err(|problem| {
            CaError::InvalidResponse(format!("cert_chain[{index}]: {problem}"))
        })?;
        if found.is_empty() {
            return Err(CaError::InvalidResponse(format!(
                "cert_chain[{index}] holds no PEM CERTIFICATE"
            )));
        }
        split.extend(found.into_iter().map(|cert| cert.pem));
    }
    if split.is_empty() {
        return Err(CaError::InvalidResponse("cert_chain is empty".to_string()));
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn decodes_fields_it_does_not_know() {
        // A request as a newer Istio might send it: a field numbered 2 besides the rest.
        let mut bytes = IstioCertificateRequest {
            csr: "csr".to_string(),
            validity_duration: 3600,
            metadata: Some(Default::default()),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[(2 << 3) | 2, 3, b'a', b'b', b'c']);
        let decoded = IstioCertificateRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.csr, "csr");
        assert_eq!(decoded.validity_duration, 3600);
        assert!(decoded.metadata.is_some());
    }

    #[test]
    fn splits_chain_entries_that_hold_several_certificates() {
        let ca = CertificateAuthority::self_signed("cluster.local").unwrap();
        let issued = ca
            .issue(
                &Identity::new("cluster.local", "default", "web"),
                DEFAULT_TTL,
            )
            .unwrap();
        let joined = vec![issued.chain_pem.concat()];
        assert_eq!(split_chain(joined).unwrap(), issued.chain_pem);
        assert!(split_chain(Vec::new()).is_err());
        assert!(split_chain(vec!["garbage".to_string()]).is_err());
    }
}
