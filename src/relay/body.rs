//! A body received on an h2 stream (a client's request, the frontend's
//! response): its DATA frames, then its trailers. The stream's window is
//! given back as each chunk is handed on, so the peer sends more only as
//! the proxy passes on what it has.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::RecvStream;
use http_body::{Body, Frame};

pub struct RecvBody {
    recv: RecvStream,
    /// The data is done; trailers next.
    data_done: bool,
}

impl RecvBody {
    pub fn new(recv: RecvStream) -> RecvBody {
        RecvBody {
            recv,
            data_done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A reset with NO_ERROR is an early end (RFC 9113 section
                // 8.1), not a failure.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    this.data_done = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
