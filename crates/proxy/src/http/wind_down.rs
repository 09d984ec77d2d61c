//! How one downstream connection winds down while its listener drains, as Envoy's does
//! with Istio's `immediate` drain strategy: an HTTP/1.1 answer carries `Connection: close`
//! (the client opens its next connection elsewhere, or here while the listener still
//! accepts), and an HTTP/2 connection is sent GOAWAY as soon as it is known to be one
//! (streams already sent still finish). Idle HTTP/1.1 connections are left alone until
//! the listener closes, so a client never races a close with a request it is sending.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use http::header::CONNECTION;
use http::{HeaderValue, Response, Version};
use tokio::sync::Notify;

use crate::drain::DrainWatcher;

#[derive(Debug)]
pub struct WindDown {
    drain: DrainWatcher,
    /// A request arrived over HTTP/2: GOAWAY is how this connection is drained.
    http2: AtomicBool,
    http2_request: Notify,
}

impl WindDown {
    pub fn new(drain: DrainWatcher) -> Self {
        WindDown {
            drain,
            http2: AtomicBool::new(false),
            http2_request: Notify::new(),
        }
    }

    /// Called for each request: notes the protocol and, while draining, marks an
    /// HTTP/1.1 answer as the connection's last.
    pub fn answering<B>(&self, version: Version, response: &mut Response<B>) {
        if version == Version::HTTP_2 {
            if !self.http2.load(Relaxed) {
                self.http2.store(true, Relaxed);
                self.http2_request.notify_one();
            }
        } else if self.drain.is_draining() {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }

    /// Resolves when the connection should shut down gracefully: once the listener closes,
    /// or while draining as soon as the connection is known to be HTTP/2.
    pub async fn time_to_close(&self) {
        let http2_draining = async {
            self.drain.signaled().await;
            while !self.http2.load(Relaxed) {
                self.http2_request.notified().await;
            }
        };
        tokio::select! {
            () = self.drain.closing() => {}
            () = http2_draining => {}
        }
    }
}
