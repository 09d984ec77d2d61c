//! What the upstream client sends as a request body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::downstream::DownstreamBody;
use super::replay::{ReplayBody, ReplayError, ReplayHandle};
use super::tee::CopyBody;

/// A request body on its way upstream: nothing, the downstream body as it streams, a
/// body a retry can send again, a mirror's copy, or one the proxy wrote (a check's).
#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    Whole(Option<Bytes>),
    Streaming(DownstreamBody),
    Replayable(ReplayBody),
    Mirror(CopyBody),
}

impl UpstreamBody {
    /// The first attempt's body of a request that may be retried, and what makes the
    /// bodies of the next attempts. An empty body needs no copy.
    pub fn replayable(body: DownstreamBody) -> (UpstreamBody, Replay) {
        if body.is_end_stream() {
            return (UpstreamBody::Empty, Replay::Empty);
        }
        let (first, handle) = ReplayBody::new(body);
        (UpstreamBody::Replayable(first), Replay::Copy(handle))
    }
}

/// Makes the request body of another attempt.
#[derive(Debug)]
pub enum Replay {
    Empty,
    Copy(ReplayHandle),
}

impl Replay {
    /// The same body again, if it can still be sent.
    pub fn next_attempt(&self) -> Option<UpstreamBody> {
        match self {
            Replay::Empty => Some(UpstreamBody::Empty),
            Replay::Copy(handle) => handle.next_attempt().map(UpstreamBody::Replayable),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Whole(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            UpstreamBody::Streaming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(ReplayError::Source))),
            UpstreamBody::Replayable(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Mirror(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|_| ReplayError::MirrorCut))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Whole(data) => data.is_none(),
            UpstreamBody::Streaming(body) => body.is_end_stream(),
            UpstreamBody::Replayable(body) => body.is_end_stream(),
            UpstreamBody::Mirror(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Whole(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            UpstreamBody::Streaming(body) => body.size_hint(),
            UpstreamBody::Replayable(body) => body.size_hint(),
            UpstreamBody::Mirror(body) => body.size_hint(),
        }
    }
}
