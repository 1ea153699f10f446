//! Request message size, per message as the body streams: a message whose
//! declared length is over `limits.max_request_message` is never forwarded
//! (its prefix is held back until its length is known), the upstream stream
//! is reset, and the client gets RESOURCE_EXHAUSTED naming the size and the
//! limit. (Where the proxy decompresses a message to read its namespace,
//! the authorization layer applies the same limit to the decompressed size.)
//! Innermost before the upstream, so it sees the exact bytes that would be
//! forwarded. A body that ends inside a message is passed on as it ended:
//! the frontend answers such a request itself (grpc-go ignores bytes after
//! a unary call's message), so the proxy does not answer in its place.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::call::{Call, ResponseBody};
use crate::error::ProxyError;
use crate::grpc::scan::{LimitError, LimitedBody};

#[derive(Clone, Copy)]
pub struct MessageSizeLayer {
    limit: u32,
}

impl MessageSizeLayer {
    pub fn new(limit: u32) -> MessageSizeLayer {
        MessageSizeLayer { limit }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> MessageSize<S> {
        MessageSize {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct MessageSize<S> {
    inner: S,
    limit: u32,
}

/// Where the request body records the limit it broke, for the layer to
/// answer with (the upstream only sees its stream reset).
type Broken = Arc<OnceLock<LimitError<std::convert::Infallible>>>;

impl<S, B> Service<Call<B>> for MessageSize<S>
where
    S: Service<Call<SizeChecked<B>>, Response = Response<ResponseBody>, Error = ProxyError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let broken: Broken = Arc::new(OnceLock::new());
        let limit = self.limit;
        let call = call.map_body(|body| SizeChecked {
            body: Some(LimitedBody::passing_truncation(body, limit)),
            broken: broken.clone(),
        });
        let fut = self.inner.call(call);
        Box::pin(async move {
            let result = fut.await;
            // The body stopped on a limit: that, not the upstream's reaction
            // to the reset stream, is what the client is told.
            match broken.get() {
                Some(limit) => Err(ProxyError::Request(limit.clone())),
                None => result,
            }
        })
    }
}

/// The request body, checked message by message; a limit it breaks is
/// recorded for the layer before the error resets the upstream stream.
pub struct SizeChecked<B> {
    body: Option<LimitedBody<B>>,
    broken: Broken,
}

impl<B> Body for SizeChecked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = LimitError<B::Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            // The client's own stream failing is nothing to answer.
            if !matches!(e, LimitError::Inner(_)) {
                let _ = self.broken.set(limit_of(e));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

fn limit_of<E>(e: &LimitError<E>) -> LimitError<std::convert::Infallible> {
    match e {
        LimitError::TooLarge { size, limit } => LimitError::TooLarge {
            size: *size,
            limit: *limit,
        },
        LimitError::BadFlag(f) => LimitError::BadFlag(*f),
        LimitError::Truncated | LimitError::Inner(_) => LimitError::Truncated,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, StreamBody};
    use tower::ServiceExt;

    use super::*;
    use crate::error::{status_of, ErrorKind};
    use crate::layers::testing::{call, message, ok_response, WS};

    type Chunks = StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>,
        >,
    >;

    /// A request body sent in these chunks.
    fn body(chunks: &[&[u8]]) -> Chunks {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// Sends `chunks` through the layer (limit `limit`) to an inner
    /// service that reads the body as the upstream would; returns the
    /// bytes that reached it and the layer's answer.
    async fn send(
        limit: u32,
        chunks: &[&[u8]],
    ) -> (Vec<u8>, Result<Response<ResponseBody>, ProxyError>) {
        let reached: Arc<Mutex<Vec<u8>>> = Arc::default();
        let log = reached.clone();
        let svc = MessageSizeLayer::new(limit).layer(tower::service_fn(
            move |call: Call<SizeChecked<Chunks>>| {
                let log = log.clone();
                async move {
                    let mut body = call.request.into_body();
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) => {
                                if let Some(data) = frame.data_ref() {
                                    log.lock().unwrap().extend_from_slice(data);
                                }
                            }
                            // What a reset upstream stream makes of it.
                            Err(_) => return Err(ProxyError::UpstreamNoStatus),
                        }
                    }
                    Ok(ok_response(b""))
                }
            },
        ));
        let request = http::Request::builder()
            .uri(format!("{WS}/StartWorkflowExecution"))
            .body(body(chunks))
            .unwrap();
        let answer = svc.oneshot(call(request)).await;
        let reached = reached.lock().unwrap().clone();
        (reached, answer)
    }

    fn refusal(answer: Result<Response<ResponseBody>, ProxyError>) -> ProxyError {
        match answer {
            Err(e) => e,
            Ok(_) => panic!("an over-limit message was not refused"),
        }
    }

    #[tokio::test]
    async fn an_over_limit_message_never_reaches_the_inner_body() {
        let big = message(&[7; 100]);
        let (reached, answer) = send(16, &[&big]).await;
        assert!(
            reached.is_empty(),
            "{} bytes reached the upstream",
            reached.len()
        );
        let err = refusal(answer);
        assert!(
            matches!(
                err,
                ProxyError::Request(LimitError::TooLarge {
                    size: 100,
                    limit: 16
                })
            ),
            "{err:?}"
        );
        let status = status_of(&err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        // grpc-go's words, which SDKs recognise, then the proxy's.
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (100 vs. 16) (the proxy read the request)"
        );
    }

    #[tokio::test]
    async fn a_prefix_is_held_back_until_its_length_is_known() {
        let big = message(&[7; 100]);
        let (reached, answer) = send(16, &[&big[..3], &big[3..5], &big[5..]]).await;
        assert!(reached.is_empty(), "{reached:?}");
        assert_eq!(refusal(answer).kind(), ErrorKind::MessageTooLarge);
    }

    #[tokio::test]
    async fn messages_within_the_limit_pass_byte_for_byte() {
        let one = message(&[1; 11]);
        let two = message(&[2; 11]);
        let sent = [&one[..], &two[..]].concat();
        // Split anywhere, even inside a prefix.
        let (reached, answer) = send(16, &[&sent[..3], &sent[3..20], &sent[20..]]).await;
        assert_eq!(reached, sent);
        assert!(answer.is_ok());
    }

    #[tokio::test]
    async fn a_later_message_over_the_limit_stops_there() {
        let small = message(&[1; 4]);
        let big = message(&[2; 17]);
        let (reached, answer) = send(16, &[&small, &big]).await;
        assert_eq!(reached, small, "the first message only");
        assert!(matches!(
            refusal(answer),
            ProxyError::Request(LimitError::TooLarge {
                size: 17,
                limit: 16
            })
        ));
    }
}
