//! A connection's stream as the HTTP server reads it, watched on the way: the request
//! headers timeout learns when a request's bytes begin, and the HTTP/2 control-frame
//! budget counts what the caller asks to be acknowledged.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::control_flood::ControlFrameBudget;
use super::head_timeout::HeadWatch;
use crate::stats::ListenerStats;

/// A connection's stream, telling its [`HeadWatch`] when a request's bytes begin and
/// ending the connection once its HTTP/2 control frames flood.
pub struct Watched<I> {
    io: I,
    watch: Arc<HeadWatch>,
    control_frames: ControlFrameBudget,
    stats: Arc<ListenerStats>,
}

impl<I> Watched<I> {
    /// `http2`: the connection negotiated HTTP/2 (ALPN), so its heads are not timed.
    pub fn new(io: I, watch: Arc<HeadWatch>, http2: bool, stats: Arc<ListenerStats>) -> Self {
        if http2 {
            watch.turn_off();
        }
        Watched {
            io,
            watch,
            control_frames: ControlFrameBudget::default(),
            stats,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let arrived = &buf.filled()[before..];
            this.watch.bytes_arrived(arrived);
            if !this.control_frames.admit(arrived) {
                this.stats.control_floods.fetch_add(1, Relaxed);
                tracing::debug!("closed an HTTP/2 connection flooding PING or SETTINGS frames");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "HTTP/2 control frame flood",
                )));
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
