//! The response body toward the client. It streams the upstream's frames as
//! they come and guarantees the call ends with a gRPC status: if the upstream
//! stream fails mid-way, or ends without `grpc-status`, the client gets
//! trailers saying so instead of a reset or a silently truncated call. Each
//! chunk it hands on holds its length of the client connection's budget
//! until it is written to the client (so a connection's unsent responses are
//! bounded together with its inspected requests); a chunk that finds the
//! budget spent waits, and the upstream stream with it. When it ends (or is
//! dropped) it tells the call's observers how the call ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::activity::ActiveCall;
use super::context::{CallContext, CallObserver, Ending};
use crate::error::{status_of, ProxyError};
use crate::grpc::scan::{LimitError, LimitedBody};
use crate::grpc::{grpc_status, names, ConnBudget, Holding};
use crate::upstream::UpstreamBody;

/// Observers a call can have (metrics and audit).
const OBSERVERS: usize = 2;

#[derive(Default)]
pub struct ResponseBody {
    state: State,
    /// The call's context, once an observer is attached.
    ctx: Option<Arc<CallContext>>,
    observers: [Option<Arc<dyn CallObserver>>; OBSERVERS],
    /// The grpc-status seen so far (headers, then trailers).
    status: Option<i32>,
    bytes: u64,
    /// Counts the call as open on its connection until the body is done.
    active: Option<ActiveCall>,
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
        body: LimitedBody<UpstreamBody>,
        /// The response headers had no `grpc-status`, so trailers must
        /// carry one.
        needs_status: bool,
        /// What the client connection's unsent bytes may add up to.
        budget: Option<ConnBudget>,
        /// A chunk read from the upstream, waiting for its share of the
        /// budget.
        waiting: Option<Holding>,
    },
}

impl ResponseBody {
    /// The upstream's response body; a message over `max_message` bytes ends
    /// the call with RESOURCE_EXHAUSTED (and resets the upstream stream).
    fn with(state: State) -> ResponseBody {
        ResponseBody {
            state,
            ctx: None,
            observers: [None, None],
            status: None,
            bytes: 0,
            active: None,
        }
    }

    /// Its chunks hold their length of `budget` until written.
    pub fn upstream(
        body: UpstreamBody,
        needs_status: bool,
        max_message: u32,
        budget: Option<ConnBudget>,
    ) -> ResponseBody {
        ResponseBody::with(State::Upstream {
            body: LimitedBody::new(body, max_message),
            needs_status,
            budget,
            waiting: None,
        })
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
        trailers.insert(names::GRPC_STATUS, http::HeaderValue::from_static("0"));
        ResponseBody::with(State::Local {
            message: Some(message),
            trailers: Some(trailers),
        })
    }

    /// A response the proxy makes from a status: HTTP 200, `content-type:
    /// application/grpc`, and `grpc-status`/`grpc-message` in a
    /// trailers-only HEADERS frame (END_STREAM set, because the body is
    /// empty). Never a bare HTTP error, never a reset.
    pub fn status_only(status: tonic::Status) -> http::Response<ResponseBody> {
        status.into_http::<ResponseBody>()
    }

    /// Tells `observer` how the call of `ctx` ends. `status` is the
    /// grpc-status already known from the response headers (trailers-only
    /// responses).
    pub fn observe(
        &mut self,
        ctx: &Arc<CallContext>,
        observer: Arc<dyn CallObserver>,
        status: Option<i32>,
    ) {
        if self.ctx.is_none() {
            self.ctx = Some(ctx.clone());
        }
        self.status = self.status.or(status);
        if let Some(slot) = self.observers.iter_mut().find(|o| o.is_none()) {
            *slot = Some(observer);
        } else {
            debug_assert!(false, "more than {OBSERVERS} observers");
        }
    }

    fn finish_with(
        &mut self,
        err: ProxyError,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.state = State::Done;
        if let Some(ctx) = &self.ctx {
            ctx.set_error(err.kind());
        }
        let mut trailers = HeaderMap::new();
        let status = status_of(&err);
        tracing::debug!(error = %err, code = ?status.code(), "call ended by the proxy");
        if status.add_header(&mut trailers).is_err() {
            trailers.insert(names::GRPC_STATUS, http::HeaderValue::from_static("13"));
        }
        self.status = grpc_status(&trailers).or(self.status);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    /// Tells the observers (once) and ends the call's activity.
    fn fire(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let ending = Ending {
                grpc_status: self.status,
                response_bytes: self.bytes,
            };
            for observer in self.observers.iter_mut().filter_map(Option::take) {
                observer.call_ended(&ctx, &ending);
            }
        }
        self.active = None;
    }
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
                this.bytes += m.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(m))));
            }
            if let Some(t) = trailers.take() {
                this.status = Some(0);
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            this.state = State::Done;
        }
        let State::Upstream {
            body,
            needs_status,
            budget,
            waiting,
        } = &mut this.state
        else {
            this.fire();
            return Poll::Ready(None);
        };
        if let Some(held) = waiting {
            let data = ready!(Pin::new(held).poll(cx));
            *waiting = None;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        this.bytes += data.len() as u64;
                        let Some(budget) = budget else {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        };
                        match budget.hold(data) {
                            Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                            Err(mut held) => match Pin::new(&mut held).poll(cx) {
                                Poll::Ready(data) => {
                                    return Poll::Ready(Some(Ok(Frame::data(data))))
                                }
                                Poll::Pending => {
                                    tracing::debug!("a response chunk waits for the client connection's budget (limits.connection_buffer)");
                                    *waiting = Some(held);
                                    return Poll::Pending;
                                }
                            },
                        }
                    }
                    Err(frame) => frame,
                };
                if let Some(trailers) = frame.trailers_ref() {
                    *needs_status = false;
                    this.status = grpc_status(trailers).or(this.status);
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
                body,
                needs_status,
                waiting,
                ..
            } => waiting.is_none() && !*needs_status && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done => SizeHint::with_exact(0),
            // Never exact: with an exact size the codec may end the stream after
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_responses_are_trailers_only() {
        let resp = ResponseBody::status_only(tonic::Status::unavailable(
            "upstream down: connection refused",
        ));
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "14");
        // grpc-message is percent-encoded per the gRPC spec; clients decode it.
        let decoded = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(decoded.message(), "upstream down: connection refused");
        assert!(resp.body().is_end_stream());
    }

    use crate::error::ErrorKind;
    use crate::layers::testing::{
        answers, call, message, paths, read_to_end, through_upstream, FakeUpstream, Told,
    };

    /// The response to a call of `path` to the fake frontend, observed by
    /// two observers (as metrics and audit do), with the call's context.
    async fn observed(
        path: &str,
    ) -> (FakeUpstream, Arc<CallContext>, [Arc<Told>; 2], ResponseBody) {
        let frontend = FakeUpstream::start(answers).await;
        let resp = through_upstream(&frontend, path, message(b""), 1 << 20)
            .await
            .unwrap();
        let ctx = call(http::Request::new(())).ctx;
        let told = [Arc::new(Told::default()), Arc::new(Told::default())];
        let status = grpc_status(resp.headers());
        let mut body = resp.into_body();
        for observer in &told {
            body.observe(&ctx, observer.clone(), status);
        }
        (frontend, ctx, told, body)
    }

    #[tokio::test]
    async fn each_observer_is_told_once() {
        let (_frontend, _ctx, told, body) = observed(paths::OK).await;
        assert!(told.iter().all(|t| t.endings().is_empty()));
        read_to_end(body).await; // ends, then is dropped
        for t in &told {
            let endings = t.endings();
            assert_eq!(endings.len(), 1, "told {} times", endings.len());
            assert_eq!(endings[0].grpc_status, Some(0));
            assert_eq!(endings[0].response_bytes, 7);
        }
    }

    #[tokio::test]
    async fn the_status_comes_from_the_trailers() {
        let (_frontend, ctx, told, body) = observed(paths::NOT_FOUND).await;
        let (_, trailers) = read_to_end(body).await;
        assert_eq!(trailers.unwrap()["grpc-status"], "5");
        assert_eq!(told[0].endings()[0].grpc_status, Some(5));
        assert_eq!(
            ctx.error(),
            None,
            "the frontend's own status, not the proxy's"
        );
    }

    #[tokio::test]
    async fn a_trailers_only_status_is_the_one_told() {
        let (_frontend, _ctx, told, body) = observed(paths::TRAILERS_ONLY).await;
        read_to_end(body).await;
        assert_eq!(told[1].endings()[0].grpc_status, Some(5));
    }

    #[tokio::test]
    async fn a_status_is_added_when_the_upstream_ends_without_one() {
        let (_frontend, ctx, told, body) = observed(paths::NO_STATUS).await;
        let (data, trailers) = read_to_end(body).await;
        assert_eq!(data, message(b"hi"));
        assert_eq!(trailers.unwrap()["grpc-status"], "13");
        assert_eq!(ctx.error(), Some(ErrorKind::UpstreamNoStatus));
        for t in &told {
            assert_eq!(t.endings().len(), 1);
            assert_eq!(t.endings()[0].grpc_status, Some(13));
        }
    }

    #[tokio::test]
    async fn a_body_dropped_part_way_is_told_once_without_a_status() {
        let (_frontend, _ctx, told, mut body) = observed(paths::OK).await;
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.unwrap().unwrap().is_data());
        drop(body);
        for t in &told {
            let endings = t.endings();
            assert_eq!(endings.len(), 1);
            assert_eq!(endings[0].grpc_status, None, "the client went away");
            assert_eq!(endings[0].response_bytes, 7);
        }
    }

    #[tokio::test]
    async fn a_local_response_is_its_message_then_ok_trailers() {
        let ctx = call(http::Request::new(())).ctx;
        let told = Arc::new(Told::default());
        let mut body = ResponseBody::local(message(b"abc"));
        body.observe(&ctx, told.clone(), None);
        assert!(!body.is_end_stream());
        assert_eq!(
            body.size_hint().exact(),
            None,
            "never exact: trailers follow"
        );
        let (data, trailers) = read_to_end(body).await;
        assert_eq!(data, message(b"abc"));
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        assert_eq!(told.endings()[0].grpc_status, Some(0));
        assert_eq!(told.endings()[0].response_bytes, 8);
    }
}
