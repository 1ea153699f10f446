//! The response body toward the client. It streams the upstream's frames as
//! they come and guarantees the call ends with a gRPC status: if the upstream
//! stream fails mid-way, or ends without `grpc-status`, the client gets
//! trailers saying so instead of a reset or a silently truncated call. An
//! optional hook learns how the call ended (status, bytes), for audit.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::scan::{LimitError, LimitedBody};
use crate::error::{status_of, ProxyError};
use crate::server::activity::ActiveCall;
use crate::upstream::StreamLease;

/// Told once how a call ended: its grpc-status (`None` when the client went
/// away first) and the response bytes sent.
pub trait CallEnd: Send {
    /// `error` is the label of the proxy error that ended the call, if one
    /// did after the response began (e.g. `response_too_large`).
    fn ended(
        self: Box<Self>,
        grpc_status: Option<i32>,
        response_bytes: u64,
        error: Option<&'static str>,
    );
}

#[derive(Default)]
pub struct ResponseBody {
    state: State,
    hook: Option<Hook>,
    /// Counts the call as open on its connection until the body is done.
    active: Option<ActiveCall>,
}

struct Hook {
    end: Box<dyn CallEnd>,
    status: Option<i32>,
    bytes: u64,
    error: Option<&'static str>,
}

#[derive(Default)]
enum State {
    /// Nothing (trailers-only responses made by the proxy), or finished.
    #[default]
    Done,
    /// A response the proxy makes itself: one message, then OK trailers.
    Local {
        message: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Upstream {
        /// Scanned message by message against the response size limit.
        body: LimitedBody<Incoming>,
        /// The response headers had no `grpc-status`, so trailers must
        /// carry one.
        needs_status: bool,
        /// Holds the stream's slot on its upstream connection until the
        /// body ends or is dropped.
        _lease: StreamLease,
    },
}

impl ResponseBody {
    /// The upstream's response body; a message over `max_message` bytes ends
    /// the call with RESOURCE_EXHAUSTED (and resets the upstream stream).
    pub fn upstream(
        body: Incoming,
        lease: StreamLease,
        needs_status: bool,
        max_message: u32,
    ) -> ResponseBody {
        ResponseBody {
            state: State::Upstream {
                body: LimitedBody::new(body, max_message),
                needs_status,
                _lease: lease,
            },
            hook: None,
            active: None,
        }
    }

    /// Keeps the call counted as open on its connection until this body
    /// ends or is dropped.
    pub fn track(&mut self, call: ActiveCall) {
        self.active = Some(call);
    }

    /// A complete gRPC response made by the proxy: `message` (already
    /// length-prefixed), then trailers with grpc-status 0.
    pub fn local(message: Bytes) -> ResponseBody {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            super::names::GRPC_STATUS,
            http::HeaderValue::from_static("0"),
        );
        ResponseBody {
            state: State::Local {
                message: Some(message),
                trailers: Some(trailers),
            },
            hook: None,
            active: None,
        }
    }

    /// Calls `end` when the call ends. `status` is the grpc-status already
    /// known from the response headers (trailers-only responses).
    pub fn on_end(&mut self, end: Box<dyn CallEnd>, status: Option<i32>) {
        self.hook = Some(Hook {
            end,
            status,
            bytes: 0,
            error: None,
        });
    }

    fn finish_with(
        &mut self,
        err: ProxyError,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.state = State::Done;
        if let Some(hook) = &mut self.hook {
            hook.error = Some(err.label());
        }
        let mut trailers = HeaderMap::new();
        let status = status_of(&err);
        tracing::debug!(error = %err, code = ?status.code(), "call ended by the proxy");
        if status.add_header(&mut trailers).is_err() {
            trailers.insert(
                super::names::GRPC_STATUS,
                http::HeaderValue::from_static("13"),
            );
        }
        self.observe_trailers(&trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn observe_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(hook) = &mut self.hook {
            hook.status = grpc_status(trailers).or(hook.status);
        }
    }

    fn fire(&mut self) {
        if let Some(hook) = self.hook.take() {
            hook.end.ended(hook.status, hook.bytes, hook.error);
        }
        self.active = None;
    }
}

/// The numeric `grpc-status` in `headers`, if any.
pub fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get(super::names::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.fire();
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
        if let State::Local { message, trailers } = &mut this.state {
            if let Some(m) = message.take() {
                if let Some(hook) = &mut this.hook {
                    hook.bytes += m.len() as u64;
                }
                return Poll::Ready(Some(Ok(Frame::data(m))));
            }
            if let Some(t) = trailers.take() {
                if let Some(hook) = &mut this.hook {
                    hook.status = Some(0);
                }
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            this.state = State::Done;
        }
        let State::Upstream {
            body, needs_status, ..
        } = &mut this.state
        else {
            this.fire();
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    *needs_status = false;
                    if let Some(hook) = &mut this.hook {
                        hook.status = grpc_status(trailers).or(hook.status);
                    }
                } else if let (Some(data), Some(hook)) = (frame.data_ref(), &mut this.hook) {
                    hook.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.finish_with(match e {
                LimitError::Inner(e) => ProxyError::UpstreamBody(e),
                other => ProxyError::Response(other.without_inner()),
            }),
            Poll::Ready(None) => {
                if *needs_status {
                    this.finish_with(ProxyError::UpstreamNoStatus)
                } else {
                    this.state = State::Done;
                    this.fire();
                    Poll::Ready(None)
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done => true,
            State::Local { .. } => false,
            State::Upstream {
                body, needs_status, ..
            } => !*needs_status && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done => SizeHint::with_exact(0),
            // Never exact: with an exact size hyper may end the stream after
            // the data, and the trailers (the grpc-status) would be lost.
            State::Local { message, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(message.as_ref().map_or(0, |m| m.len() as u64));
                hint
            }
            State::Upstream { body, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(body.size_hint().lower());
                hint
            }
        }
    }
}
