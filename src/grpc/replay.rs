//! The request body forwarded upstream: the chunks a layer already read
//! (to inspect the first message) replayed exactly as received, then the
//! rest of the client's body as it streams.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

pub struct Replay<B> {
    read: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// `None` once the client's body ended while being read.
    rest: Option<B>,
    /// The connection read budget the read chunks hold, given back once
    /// the last of them is passed on.
    held: Option<OwnedSemaphorePermit>,
}

impl<B> Replay<B> {
    /// Nothing was read: the body passes through.
    pub fn new(body: B) -> Replay<B> {
        Replay {
            read: VecDeque::new(),
            trailers: None,
            rest: Some(body),
            held: None,
        }
    }

    /// `chunks` were read from `body`; if the body already ended, pass
    /// `ended` and any trailers that came.
    pub fn after(
        chunks: Vec<Bytes>,
        body: B,
        ended: bool,
        trailers: Option<HeaderMap>,
        held: Option<OwnedSemaphorePermit>,
    ) -> Replay<B> {
        Replay {
            read: chunks.into(),
            trailers,
            rest: if ended { None } else { Some(body) },
            held,
        }
    }
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.read.pop_front() {
            if this.read.is_empty() {
                this.held = None;
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &mut this.rest {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.read.iter().map(|c| c.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(b) => {
                let inner = b.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + buffered);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}
