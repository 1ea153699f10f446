//! The response body toward the client. It streams the upstream's frames as
//! they come and guarantees the call ends with a gRPC status: if the upstream
//! stream fails mid-way, or ends without `grpc-status`, the client gets
//! trailers saying so instead of a reset or a silently truncated call.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::error::{status_of, ProxyError};
use crate::upstream::StreamLease;

#[derive(Default)]
pub struct ResponseBody {
    state: State,
}

#[derive(Default)]
enum State {
    /// Nothing (trailers-only responses made by the proxy), or finished.
    #[default]
    Done,
    Upstream {
        body: Incoming,
        /// The response headers had no `grpc-status`, so trailers must
        /// carry one.
        needs_status: bool,
        /// Holds the stream's slot on its upstream connection until the
        /// body ends or is dropped.
        _lease: StreamLease,
    },
}

impl ResponseBody {
    pub fn upstream(body: Incoming, lease: StreamLease, needs_status: bool) -> ResponseBody {
        ResponseBody {
            state: State::Upstream {
                body,
                needs_status,
                _lease: lease,
            },
        }
    }

    fn finish_with(
        &mut self,
        err: ProxyError,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.state = State::Done;
        let mut trailers = HeaderMap::new();
        let status = status_of(&err);
        tracing::debug!(error = %err, code = ?status.code(), "call ended by the proxy");
        if status.add_header(&mut trailers).is_err() {
            trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let State::Upstream {
            body, needs_status, ..
        } = &mut this.state
        else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    *needs_status = false;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.finish_with(ProxyError::UpstreamBody(e)),
            Poll::Ready(None) => {
                if *needs_status {
                    this.finish_with(ProxyError::UpstreamNoStatus)
                } else {
                    this.state = State::Done;
                    Poll::Ready(None)
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done => true,
            State::Upstream {
                body, needs_status, ..
            } => !*needs_status && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done => SizeHint::with_exact(0),
            State::Upstream { body, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(body.size_hint().lower());
                hint
            }
        }
    }
}
