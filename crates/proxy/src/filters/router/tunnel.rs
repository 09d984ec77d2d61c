//! A terminated `CONNECT` (a route with `connect_matcher` and a CONNECT upgrade with
//! `connect_config`): the router opens a connection to the route's cluster and, once it
//! is open, answers `200` and joins the caller's tunnel to it, as Envoy does.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper_util::rt::TokioIo;

use super::attempt::overflow;
use super::no_healthy_upstream;
use crate::filters::{LocalReply, ProxyBody};
use crate::tcp::{self, TunnelError};
use crate::telemetry::ResponseFlag;
use crate::upstream::{Cluster, RequestBody};

pub async fn tunnel(
    cluster: &Cluster,
    mut req: Request<RequestBody>,
) -> Result<Response<ProxyBody>, LocalReply> {
    let upstream = tcp::connect(cluster).await.map_err(|error| match error {
        TunnelError::Overflow(_) => overflow(),
        TunnelError::NoHealthyUpstream(_) => no_healthy_upstream(cluster),
        TunnelError::Connect { .. } => LocalReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ResponseFlag::UpstreamConnectFailure,
        ),
    })?;
    let downstream = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match downstream.await {
            Ok(downstream) => tcp::splice(TokioIo::new(downstream), upstream).await,
            Err(error) => tracing::debug!(%error, "the caller left before its tunnel opened"),
        }
    });
    cluster.stats.responses.record(200);
    Ok(Response::new(Either::Right(Full::new(Bytes::new()))))
}
