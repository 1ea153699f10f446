//! The outermost layer: turns hyper's request into a [`Call`], making the
//! call's context (the connection it came on, the method looked up once, the
//! clock started) and counting the request's bytes into it as its body
//! streams. Everything below takes a `Call`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::call::{Call, CallContext};
use crate::tls::handshake::ConnectionInfo;

#[derive(Clone)]
pub struct CallLayer {
    conn: Arc<ConnectionInfo>,
}

impl CallLayer {
    pub fn new(conn: Arc<ConnectionInfo>) -> CallLayer {
        CallLayer { conn }
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls {
            inner,
            conn: self.conn.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    conn: Arc<ConnectionInfo>,
}

impl<S, B> Service<Request<B>> for Calls<S>
where
    S: Service<Call<Counted<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ctx = Arc::new(CallContext::new(self.conn.clone(), request.uri()));
        let request = request.map(|body| Counted {
            body,
            ctx: ctx.clone(),
        });
        self.inner.call(Call { ctx, request })
    }
}

/// The client's request body, counting its bytes into the call's context.
pub struct Counted<B> {
    body: B,
    ctx: Arc<CallContext>,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.ctx.add_request_bytes(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
