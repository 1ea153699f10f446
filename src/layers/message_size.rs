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
