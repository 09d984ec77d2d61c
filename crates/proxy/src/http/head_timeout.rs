//! The request headers timeout of HTTP/1.1 connections (the HCM's
//! `request_headers_timeout`): once a caller has sent the first byte of a request, its
//! headers must be complete within the timeout, or the connection is closed. A slow
//! client (one header byte a minute) holds a connection for no longer than that.
//!
//! The clock starts at the first byte, not when the connection goes idle: an idle
//! keep-alive connection is not closed, so a caller's pooled connection does not race
//! the sidecar closing it. HTTP/2 connections are not watched (their requests are
//! frames, and PINGs may come without one).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const HTTP2_PREFACE_START: &[u8] = b"PRI ";

/// Where a connection is between requests, updated by its reads and its requests.
/// Reads cost two atomic loads; no clock is read per request: the watch looks at a head
/// being read and gives it the whole timeout from then, so a connection is closed
/// between one and one and a quarter timeouts after its first byte.
#[derive(Debug, Default)]
pub struct HeadWatch {
    /// A request's head is being read.
    reading: AtomicBool,
    /// Counts the heads begun, so the watch knows the one it timed is still the same.
    heads: AtomicU64,
    in_request: AtomicBool,
    /// HTTP/2, or no timeout: nothing to watch.
    off: AtomicBool,
}

impl HeadWatch {
    /// The request's headers are complete: the connection manager has it until the
    /// guard is dropped with its answer; the next bytes are the next request's.
    pub fn request_started(&self) -> Answering<'_> {
        self.in_request.store(true, Relaxed);
        self.reading.store(false, Relaxed);
        Answering(self)
    }

    pub(super) fn bytes_arrived(&self, first: &[u8]) {
        if self.in_request.load(Relaxed) || self.reading.load(Relaxed) {
            return;
        }
        if first.starts_with(HTTP2_PREFACE_START) {
            self.off.store(true, Relaxed);
            return;
        }
        self.heads.fetch_add(1, Relaxed);
        self.reading.store(true, Relaxed);
    }

    /// Resolves when a request's headers have taken longer than `timeout`.
    pub async fn expired(&self, timeout: Duration) {
        // An idle connection is looked at four times per timeout.
        let idle_check = timeout / 4;
        loop {
            if self.off.load(Relaxed) {
                return std::future::pending().await;
            }
            if !self.reading.load(Relaxed) {
                tokio::time::sleep(idle_check).await;
                continue;
            }
            let head = self.heads.load(Relaxed);
            tokio::time::sleep(timeout).await;
            if self.reading.load(Relaxed) && self.heads.load(Relaxed) == head {
                return;
            }
        }
    }

    pub(super) fn turn_off(&self) {
        self.off.store(true, Relaxed);
    }
}

/// A request being answered on the connection.
pub struct Answering<'a>(&'a HeadWatch);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_request.store(false, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_head_that_does_not_complete_expires_and_an_idle_connection_does_not() {
        let watch = HeadWatch::default();
        let timeout = Duration::from_millis(200);
        let idle = tokio::time::timeout(Duration::from_millis(600), watch.expired(timeout));
        assert!(idle.await.is_err(), "an idle connection does not expire");
        watch.bytes_arrived(b"G");
        let started = Instant::now();
        watch.expired(timeout).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(400),
            "{took:?}"
        );
        // A request whose headers completed is not timed.
        let _answering = watch.request_started();
        let answering = tokio::time::timeout(Duration::from_millis(600), watch.expired(timeout));
        assert!(answering.await.is_err());
    }

    #[test]
    fn http2_connections_are_not_watched() {
        let watch = HeadWatch::default();
        watch.bytes_arrived(b"PRI * HTTP/2.0\r\n");
        assert!(watch.off.load(Relaxed));
    }
}
