//! What the fuzz targets share: chunking a byte string the way a peer may
//! cut it, a body that plays chunks, a one-poll executor for futures that
//! never wait, and protobuf encoding for structured inputs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};

pub mod h2frames;
pub mod pb;
pub mod pki;

/// Cuts `data` into chunks whose sizes come from `sizes` (each byte a size,
/// 0 an empty chunk, sizes cycled when there are fewer than needed; with no
/// sizes at all, one chunk). What is left after the last size is one more
/// chunk. Concatenated, the chunks are `data`.
pub fn cut(data: &[u8], sizes: &[u8]) -> Vec<Bytes> {
    let data = Bytes::copy_from_slice(data);
    if sizes.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    // Every size 0: as many empty chunks as sizes, then the rest.
    while pos < data.len() && i < sizes.len() * 64 {
        let n = usize::from(sizes[i % sizes.len()]).min(data.len() - pos);
        out.push(data.slice(pos..pos + n));
        pos += n;
        i += 1;
    }
    if pos < data.len() {
        out.push(data.slice(pos..));
    }
    out
}

/// Runs a future that never waits (every body here is always ready) to its
/// end; panics if it ever returns `Pending` twice in a row with nothing to
/// wake it.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not finish on an always-ready body");
}

/// A body that yields the given chunks as data frames (empty ones too),
/// then trailers if asked, then ends. Counts the frames taken; panics if
/// polled after its end.
#[derive(Debug)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    trailers: bool,
    pub taken: usize,
    ended: bool,
    /// Whether `is_end_stream` says so once nothing is left.
    pub knows_end: bool,
}

impl Chunks {
    pub fn new(chunks: Vec<Bytes>, trailers: bool) -> Chunks {
        Chunks {
            chunks: chunks.into(),
            trailers,
            taken: 0,
            ended: false,
            knows_end: true,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        assert!(!self.ended, "body polled after its end");
        if let Some(chunk) = self.chunks.pop_front() {
            self.taken += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut self.trailers) {
            self.taken += 1;
            let mut map = http::HeaderMap::new();
            map.insert("grpc-status", http::HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(map))));
        }
        self.ended = true;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.knows_end && self.chunks.is_empty() && !self.trailers
    }
}
