//! Request mirroring (Istio's `mirror` / `mirrors`, Envoy's request mirror policies): a
//! copy of the request goes to another cluster, its host suffixed `-shadow`; the copy's
//! answer is read and dropped, and nothing about it reaches the caller or delays the
//! request it copies.

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Request, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::in_flight::InFlight;
use crate::upstream::{
    self, Cluster, DownstreamBody, RequestBody, TeeBody, UpstreamBody, UpstreamProtocol,
};

/// A mirror chosen for this request: its cluster, and whether the copy's host is
/// suffixed.
pub struct Mirror {
    pub cluster: Arc<Cluster>,
    pub shadow_suffix: bool,
}

/// Sends a copy of the request to each mirror and returns the body the request itself
/// goes on with (copied to the mirrors as it streams, when it has one).
pub(super) fn send_copies(
    mirrors: Vec<Mirror>,
    parts: &http::request::Parts,
    body: RequestBody,
    timeout: Option<Duration>,
) -> DownstreamBody {
    if mirrors.is_empty() {
        return DownstreamBody::Plain(body);
    }
    let (body, mut copies) = if body.is_end_stream() {
        (DownstreamBody::Plain(body), Vec::new())
    } else {
        let (tee, copies) = TeeBody::new(body, mirrors.len());
        (DownstreamBody::Mirrored(tee), copies)
    };
    for mirror in mirrors {
        let copy_body = match copies.pop() {
            Some(copy) => UpstreamBody::Mirror(copy),
            None => UpstreamBody::Empty,
        };
        let Some(request) = copy_request(parts, &mirror, copy_body) else {
            continue;
        };
        tokio::spawn(send_copy(mirror.cluster, request, timeout));
    }
    body
}

/// The request as the mirror gets it: the same method, path and headers, to its
/// cluster's protocol, with the host suffixed.
fn copy_request(
    parts: &http::request::Parts,
    mirror: &Mirror,
    body: UpstreamBody,
) -> Option<Request<UpstreamBody>> {
    let authority = parts.uri.authority()?;
    let authority = if mirror.shadow_suffix {
        shadow_authority(authority)?
    } else {
        authority.clone()
    };
    let uri = Uri::builder()
        .scheme(parts.uri.scheme()?.clone())
        .authority(authority.clone())
        .path_and_query(parts.uri.path_and_query()?.clone())
        .build()
        .ok()?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    match mirror.cluster.spec.pool.protocol {
        UpstreamProtocol::Http1 => {
            *request.version_mut() = Version::HTTP_11;
            request
                .headers_mut()
                .insert(HOST, HeaderValue::from_str(authority.as_str()).ok()?);
        }
        UpstreamProtocol::Http2 => {
            *request.version_mut() = Version::HTTP_2;
            request.headers_mut().remove(HOST);
        }
    }
    Some(request)
}

/// Envoy's shadow host: `reviews:9080` becomes `reviews-shadow:9080`.
fn shadow_authority(authority: &Authority) -> Option<Authority> {
    let shadow = match authority.port() {
        Some(port) => format!("{}-shadow:{port}", authority.host()),
        None => format!("{}-shadow", authority.host()),
    };
    shadow.parse().ok()
}

async fn send_copy(
    cluster: Arc<Cluster>,
    request: Request<UpstreamBody>,
    timeout: Option<Duration>,
) {
    let _in_flight = InFlight::enter(&cluster.stats);
    match upstream::call(&cluster, request, timeout).await {
        // Read the answer to its end, so the connection can be reused.
        Ok(response) => {
            let _ = response.into_body().collect().await;
        }
        Err(error) => tracing::debug!(%error, "mirrored request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_host_keeps_its_port() {
        let shadow =
            |a: &str| shadow_authority(&a.parse().expect("authority")).map(|a| a.to_string());
        assert_eq!(
            shadow("reviews:9080").as_deref(),
            Some("reviews-shadow:9080")
        );
        assert_eq!(shadow("reviews").as_deref(), Some("reviews-shadow"));
    }
}
