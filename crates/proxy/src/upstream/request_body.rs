//! The downstream request body as the stages and the router read it: as it comes, or
//! with what a stage read ahead (the body an external authorizer checks) put back in
//! front of the rest, so the upstream gets every byte once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A request's body.
#[derive(Debug)]
pub enum RequestBody {
    Incoming(Incoming),
    /// Frames read ahead, then the rest (`None`: the body had ended).
    ReadAhead {
        read: VecDeque<Frame<Bytes>>,
        rest: Option<Incoming>,
    },
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        RequestBody::Incoming(body)
    }
}

/// The start of a body, as a stage read it.
#[derive(Debug, Clone)]
pub struct BodyPrefix {
    pub bytes: Bytes,
    /// The body goes on past `bytes`.
    pub partial: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadAheadError {
    #[error("the request body is longer than {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body: {0}")]
    Failed(#[from] hyper::Error),
}

impl RequestBody {
    /// Reads up to `max` bytes of the body ahead of the router and keeps them for it.
    /// A longer body is cut to `max` for the caller when `partial` allows, else refused.
    pub async fn read_ahead(
        &mut self,
        max: usize,
        partial: bool,
    ) -> Result<BodyPrefix, ReadAheadError> {
        let (mut read, mut rest) = match std::mem::replace(
            self,
            RequestBody::ReadAhead {
                read: VecDeque::new(),
                rest: None,
            },
        ) {
            RequestBody::Incoming(body) => (VecDeque::new(), Some(body)),
            RequestBody::ReadAhead { read, rest } => (read, rest),
        };
        let mut length: usize = read
            .iter()
            .filter_map(Frame::data_ref)
            .map(Bytes::len)
            .sum();
        // Ok(true): the body goes on past what was read.
        let outcome = loop {
            if length > max {
                break if partial {
                    Ok(true)
                } else {
                    Err(ReadAheadError::TooLarge(max))
                };
            }
            let Some(body) = rest.as_mut().filter(|body| !body.is_end_stream()) else {
                break Ok(false);
            };
            if length == max && partial {
                break Ok(true);
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    length += frame.data_ref().map_or(0, Bytes::len);
                    read.push_back(frame);
                }
                Some(Err(error)) => break Err(error.into()),
                None => break Ok(false),
            }
        };
        let mut bytes = BytesMut::with_capacity(length.min(max));
        for data in read.iter().filter_map(Frame::data_ref) {
            let room = max - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
        *self = RequestBody::ReadAhead { read, rest };
        Ok(BodyPrefix {
            bytes: bytes.freeze(),
            partial: outcome?,
        })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::ReadAhead { read, rest } => match read.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None => match rest {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::ReadAhead { read, rest } => {
                read.is_empty() && rest.as_ref().is_none_or(Incoming::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::ReadAhead { read, rest } => {
                let read: u64 = read
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|data| data.len() as u64)
                    .sum();
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
        }
    }
}
