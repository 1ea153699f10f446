//! The outermost layer: turns the codec's request into a [`Call`], making the
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, StreamBody};
    use tower::ServiceExt;

    use super::*;
    use crate::layers::testing::{connection, ok_response, WS};

    #[tokio::test]
    async fn request_bytes_are_counted_into_the_context_as_the_body_streams() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03ab"))),
            Ok(Frame::data(Bytes::from_static(b"c"))),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ];
        let request = Request::builder()
            .uri(format!("http://proxy.test{WS}/DescribeNamespace"))
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
            .unwrap();
        // Bytes counted before the body was read, and the context after.
        type Seen = Vec<(u64, Arc<CallContext>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = seen.clone();
        let svc = CallLayer::new(connection(None)).layer(tower::service_fn(
            move |call: Call<Counted<_>>| {
                let log = log.clone();
                async move {
                    let before = call.ctx.request_bytes();
                    let ctx = call.ctx.clone();
                    let body = call.request.into_body().collect().await.unwrap();
                    assert_eq!(body.to_bytes().len(), 8);
                    log.lock().unwrap().push((before, ctx));
                    Ok::<_, std::convert::Infallible>(ok_response(b""))
                }
            },
        ));
        svc.oneshot(request).await.unwrap();
        let seen = seen.lock().unwrap();
        let (before, ctx) = &seen[0];
        assert_eq!(*before, 0, "nothing counted before the body is read");
        assert_eq!(ctx.request_bytes(), 8, "data frames only");
    }

    #[tokio::test]
    async fn every_call_gets_a_context_of_its_own_on_the_layers_connection() {
        let conn = connection(None);
        let contexts: Arc<Mutex<Vec<Arc<CallContext>>>> = Arc::default();
        let log = contexts.clone();
        let mut svc = CallLayer::new(conn.clone()).layer(tower::service_fn(
            move |call: Call<Counted<http_body_util::Empty<Bytes>>>| {
                log.lock().unwrap().push(call.ctx.clone());
                async { Ok::<_, std::convert::Infallible>(ok_response(b"")) }
            },
        ));
        for path in ["DescribeNamespace", "NoSuchMethod"] {
            let request = Request::builder()
                .uri(format!("http://proxy.test{WS}/{path}"))
                .body(http_body_util::Empty::new())
                .unwrap();
            svc.ready().await.unwrap().call(request).await.unwrap();
        }
        let contexts = contexts.lock().unwrap();
        assert_eq!(contexts.len(), 2);
        assert!(!Arc::ptr_eq(&contexts[0], &contexts[1]));
        assert!(Arc::ptr_eq(&contexts[0].conn, &conn));
        assert_eq!(
            contexts[0].method.map(|m| m.name),
            Some("DescribeNamespace")
        );
        assert_eq!(contexts[0].uri.path(), format!("{WS}/DescribeNamespace"));
        assert!(contexts[1].method.is_none(), "not in the method table");
    }
}
