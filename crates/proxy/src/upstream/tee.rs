//! A downstream body copied, frame by frame, to mirrors as it streams to the upstream.
//! A copy that cannot keep up (its buffer is full) is cut off: a mirror never slows
//! the request it copies, and never holds more than a few frames of it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::RequestBody;

/// Frames a copy may fall behind before it is cut off.
const COPY_BUFFER_FRAMES: usize = 16;

/// The downstream body, sending a copy of each frame to every mirror.
#[derive(Debug)]
pub struct TeeBody {
    source: RequestBody,
    copies: Vec<mpsc::Sender<Frame<Bytes>>>,
    /// Set once the source ended as it should, so copies know they are whole.
    complete: Arc<AtomicBool>,
}

/// One mirror's copy of the body.
#[derive(Debug)]
pub struct CopyBody {
    frames: mpsc::Receiver<Frame<Bytes>>,
    complete: Arc<AtomicBool>,
    hint: SizeHint,
}

/// A copy that ended before the body did.
#[derive(Debug, thiserror::Error)]
#[error("the mirrored body was cut off")]
pub struct CopyCut;

impl TeeBody {
    pub fn new(source: RequestBody, copies: usize) -> (TeeBody, Vec<CopyBody>) {
        let complete = Arc::new(AtomicBool::new(false));
        let hint = source.size_hint();
        let (senders, bodies) = (0..copies)
            .map(|_| {
                let (tx, rx) = mpsc::channel(COPY_BUFFER_FRAMES);
                let body = CopyBody {
                    frames: rx,
                    complete: Arc::clone(&complete),
                    hint,
                };
                (tx, body)
            })
            .unzip();
        let tee = TeeBody {
            source,
            copies: senders,
            complete,
        };
        (tee, bodies)
    }

    fn copy(&mut self, frame: &Frame<Bytes>) {
        let copy = || match (frame.data_ref(), frame.trailers_ref()) {
            (Some(data), _) => Some(Frame::data(data.clone())),
            (None, Some(trailers)) => Some(Frame::trailers(trailers.clone())),
            (None, None) => None,
        };
        self.copies
            .retain(|sender| copy().is_some_and(|frame| sender.try_send(frame).is_ok()));
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.source).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => this.copy(frame),
            Poll::Ready(None) => {
                this.complete.store(true, Ordering::Release);
                this.copies.clear();
            }
            Poll::Ready(Some(Err(_))) => this.copies.clear(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.source.size_hint()
    }
}

impl Body for CopyBody {
    type Data = Bytes;
    type Error = CopyCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CopyCut>>> {
        let this = self.get_mut();
        match this.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) if this.complete.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(CopyCut))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
