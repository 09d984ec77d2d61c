//! HTTP/1.1 upgrades (WebSocket): a request that asks to switch protocols is routed and
//! filtered like any other; when the upstream answers `101 Switching Protocols`, the two
//! connections are joined and bytes are copied both ways until either side closes, as
//! Envoy's upgrade filter chain does. Everything the request holds (its place in the
//! cluster's limits, its connection slot) is held for as long as the tunnel is open.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::headers::remove_hop_by_hop;
use crate::upstream::Held;

/// What a request asks to upgrade to.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// No upgrade (or HTTP/2, which has none).
    None,
    /// `Upgrade: websocket`.
    WebSocket(HeaderValue),
    /// `Upgrade: h2c`: Envoy does not take it, and forwards the request as a plain one.
    H2c,
    /// Another protocol, which no upgrade config allows.
    Other,
}

/// Reads a request's upgrade ask: `Connection: upgrade` with an `Upgrade` header.
pub fn requested<B>(req: &Request<B>) -> Requested {
    // hyper hands over a way to take the connection only with a request that asks to
    // upgrade it: every other request is told apart without a header lookup.
    if req.extensions().get::<OnUpgrade>().is_none() {
        return Requested::None;
    }
    asked(req.version(), req.headers())
}

/// What the request line's version and the headers ask to upgrade to.
fn asked(version: Version, headers: &HeaderMap) -> Requested {
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Requested::None;
    }
    let Some(protocol) = headers.get(UPGRADE) else {
        return Requested::None;
    };
    if !connection_names_upgrade(headers) {
        return Requested::None;
    }
    let first = protocol
        .to_str()
        .ok()
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .unwrap_or_default();
    if first.eq_ignore_ascii_case("websocket") {
        Requested::WebSocket(protocol.clone())
    } else if first.eq_ignore_ascii_case("h2c") {
        Requested::H2c
    } else {
        Requested::Other
    }
}

fn connection_names_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    })
}

/// An upgrade the connection manager allowed: the protocol asked for, and the
/// downstream connection once hyper hands it over.
#[derive(Debug)]
pub struct Upgrade {
    pub protocol: HeaderValue,
    downstream: OnUpgrade,
}

impl Upgrade {
    /// Takes the downstream side of an allowed upgrade off the request.
    pub fn take<B>(req: &mut Request<B>, protocol: HeaderValue) -> Self {
        Upgrade {
            protocol,
            downstream: hyper::upgrade::on(req),
        }
    }

    /// The headers an upstream request needs to ask for the same upgrade (connection
    /// headers are removed before forwarding; these two go back).
    pub fn ask(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// Joins the connections once the upstream has switched protocols: `response` is
    /// the upstream's `101`, and the caller gets the same `101` with the protocol it
    /// asked for. `held` stays held until the tunnel closes.
    pub fn join<B>(self, response: &mut Response<B>, held: Held) {
        let upstream = hyper::upgrade::on(&mut *response);
        let protocol = response
            .headers()
            .get(UPGRADE)
            .cloned()
            .unwrap_or_else(|| self.protocol.clone());
        remove_hop_by_hop(response.headers_mut());
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        response.headers_mut().insert(UPGRADE, protocol);
        let downstream = self.downstream;
        tokio::spawn(async move {
            let _held = held;
            let (downstream, upstream) = match tokio::join!(downstream, upstream) {
                (Ok(downstream), Ok(upstream)) => (downstream, upstream),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::debug!(%error, "an upgraded connection was lost before the tunnel opened");
                    return;
                }
            };
            let mut downstream = TokioIo::new(downstream);
            let mut upstream = TokioIo::new(upstream);
            if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
            {
                tracing::debug!(%error, "an upgraded connection closed with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request")
    }

    fn requested(request: &Request<()>) -> Requested {
        asked(request.version(), request.headers())
    }

    #[test]
    fn an_upgrade_needs_both_headers_and_names_its_protocol() {
        let websocket = request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(matches!(requested(&websocket), Requested::WebSocket(_)));
        assert_eq!(
            requested(&request(&[("upgrade", "websocket")])),
            Requested::None,
            "no Connection: upgrade"
        );
        assert_eq!(
            requested(&request(&[("connection", "upgrade"), ("upgrade", "h2c")])),
            Requested::H2c
        );
        assert_eq!(
            requested(&request(&[
                ("connection", "upgrade"),
                ("upgrade", "spdy/3")
            ])),
            Requested::Other
        );
        let mut h2 = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *h2.version_mut() = Version::HTTP_2;
        assert_eq!(requested(&h2), Requested::None);
    }
}
