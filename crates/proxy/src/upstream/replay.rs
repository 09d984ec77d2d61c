//! A request body that can be sent again: the router's retries need the bytes of an
//! attempt that failed. The first attempt streams the body as it arrives and keeps a copy
//! of what passed, up to a limit; a retry replays the copy, then goes on with the rest.
//! Past the limit the copy is dropped and the request can no longer be retried (Envoy's
//! rule for bodies larger than its buffer limit).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::downstream::DownstreamBody;

/// The body bytes a request may hold for its retries (Envoy's default buffer limit).
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Why a body stopped: its sender failed, or a retry took it over.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("request body: {0}")]
    Source(#[from] hyper::Error),
    #[error("request body is being sent by a retry")]
    Superseded,
    #[error("the mirrored request body was cut off")]
    MirrorCut,
}

#[derive(Debug)]
struct Shared {
    /// The downstream body, until it ends.
    source: Option<DownstreamBody>,
    /// What the source has yielded so far, while it fits under the limit.
    copied: Vec<Bytes>,
    copied_len: usize,
    /// The copy outgrew the limit: no attempt after the current one.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    /// The attempt allowed to read; earlier ones get an error.
    owner: u64,
}

/// Makes the body of each later attempt; kept by the router while attempts go.
#[derive(Debug)]
pub struct ReplayHandle {
    shared: Arc<Mutex<Shared>>,
    hint: SizeHint,
}

impl ReplayHandle {
    /// The body for the next attempt, from its first byte; `None` once the copy could not
    /// keep everything. Earlier attempts' bodies stop yielding.
    pub fn next_attempt(&self) -> Option<ReplayBody> {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.overflowed {
            return None;
        }
        shared.owner += 1;
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            attempt: shared.owner,
            position: 0,
            trailers_sent: false,
            hint: self.hint,
        })
    }
}

/// One attempt's view of the shared body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    attempt: u64,
    /// Frames of `copied` this attempt has sent.
    position: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

impl ReplayBody {
    /// The first attempt's body, and the handle that makes the others'.
    pub fn new(source: DownstreamBody) -> (ReplayBody, ReplayHandle) {
        let hint = source.size_hint();
        let shared = Arc::new(Mutex::new(Shared {
            source: Some(source),
            copied: Vec::new(),
            copied_len: 0,
            overflowed: false,
            trailers: None,
            owner: 0,
        }));
        let first = ReplayBody {
            shared: Arc::clone(&shared),
            attempt: 0,
            position: 0,
            trailers_sent: false,
            hint,
        };
        (first, ReplayHandle { shared, hint })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        let this = self.get_mut();
        let mut shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.owner != this.attempt {
            return Poll::Ready(Some(Err(ReplayError::Superseded)));
        }
        if let Some(chunk) = shared.copied.get(this.position) {
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        let Some(source) = shared.source.as_mut() else {
            if this.trailers_sent {
                return Poll::Ready(None);
            }
            this.trailers_sent = true;
            return Poll::Ready(shared.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.source = None;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                shared.source = None;
                shared.overflowed = true;
                Poll::Ready(Some(Err(ReplayError::Source(error))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        if !shared.overflowed && shared.copied_len + data.len() <= REPLAY_LIMIT {
                            shared.copied_len += data.len();
                            shared.copied.push(data.clone());
                            this.position += 1;
                        } else {
                            shared.overflowed = true;
                            shared.copied = Vec::new();
                        }
                        Frame::data(data)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            shared.trailers = Some(trailers.clone());
                            shared.source = None;
                            this.trailers_sent = true;
                            Frame::trailers(trailers)
                        }
                        Err(other) => other,
                    },
                };
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.lock();
        shared.source.is_none()
            && self.position >= shared.copied.len()
            && (self.trailers_sent || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
