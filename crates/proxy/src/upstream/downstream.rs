//! The downstream request body as the upstream side reads it: as it came, or copied to
//! mirrors as it streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::RequestBody;

use super::tee::TeeBody;

/// The downstream request body, copied to mirrors or not.
#[derive(Debug)]
pub enum DownstreamBody {
    Plain(RequestBody),
    Mirrored(TeeBody),
}

impl Body for DownstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            DownstreamBody::Plain(body) => Pin::new(body).poll_frame(cx),
            DownstreamBody::Mirrored(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownstreamBody::Plain(body) => body.is_end_stream(),
            DownstreamBody::Mirrored(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownstreamBody::Plain(body) => body.size_hint(),
            DownstreamBody::Mirrored(body) => body.size_hint(),
        }
    }
}
