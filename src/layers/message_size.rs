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
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ProxyError;
use crate::grpc::scan::{LimitError, LimitedBody};
use crate::grpc::ResponseBody;

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

/// Why the request body stopped, recorded for the layer to answer.
#[derive(Debug, Clone, Copy)]
enum Tripped {
    TooLarge { size: u64, limit: u64 },
    BadFlag(u8),
    Truncated,
}

impl Tripped {
    fn error(self) -> ProxyError {
        ProxyError::Request(match self {
            Tripped::TooLarge { size, limit } => LimitError::TooLarge { size, limit },
            Tripped::BadFlag(f) => LimitError::BadFlag(f),
            Tripped::Truncated => LimitError::Truncated,
        })
    }
}

type Trip = Arc<OnceLock<Tripped>>;

impl<S, B> Service<Request<B>> for MessageSize<S>
where
    S: Service<Request<Tripwire<B>>, Response = Response<ResponseBody>, Error = ProxyError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let trip: Trip = Arc::new(OnceLock::new());
        let body = Tripwire {
            inner: None,
            trip: trip.clone(),
        };
        let req = req.map(|b| Tripwire {
            inner: Some(LimitedBody::passing_truncation(b, self.limit)),
            ..body
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            // The body stopped on a limit: that, not the upstream's reaction
            // to the reset stream, is what the client is told.
            match trip.get() {
                Some(tripped) => Err(tripped.error()),
                None => result,
            }
        })
    }
}

/// The request body, checked message by message; a limit it trips is
/// recorded for the layer before the error resets the upstream stream.
pub struct Tripwire<B> {
    inner: Option<LimitedBody<B>>,
    trip: Trip,
}

impl<B> Body for Tripwire<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = LimitError<B::Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            let recorded = match e {
                LimitError::TooLarge { size, limit } => Some(Tripped::TooLarge {
                    size: *size,
                    limit: *limit,
                }),
                LimitError::BadFlag(f) => Some(Tripped::BadFlag(*f)),
                LimitError::Truncated => Some(Tripped::Truncated),
                // The client's own stream failed: nothing to answer.
                LimitError::Inner(_) => None,
            };
            if let Some(r) = recorded {
                let _ = self.trip.set(r);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
