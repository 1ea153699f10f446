//! Whatever error a layer below returns becomes a gRPC response here (HTTP
//! 200, trailers-only, grpc-status and grpc-message), using the one mapping
//! in `crate::error::status_of`, and its kind is recorded in the call's
//! context. Nothing below this layer can make the server reset a stream or
//! answer with a bare HTTP error.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::Response;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::{Call, ResponseBody};
use crate::error::{status_of, ProxyError};

#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B> Service<Call<B>> for Rescue<S>
where
    S: Service<Call<B>, Response = Response<ResponseBody>>,
    S::Error: Into<ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness errors are answered per call, below.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let ctx = call.ctx.clone();
        // `map`, not an `async` block, which would hold the inner future
        // twice (its capture and its awaited copy) for the call's whole life.
        Box::pin(self.inner.call(call).map(move |result| match result {
            Ok(resp) => Ok(resp),
            Err(err) => {
                let err: ProxyError = err.into();
                let status = status_of(&err);
                tracing::debug!(code = ?status.code(), error = %err, "call answered by the proxy");
                ctx.set_error(err.kind());
                Ok(ResponseBody::status_only(status))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone)]
    struct Failing;

    impl Service<Call<()>> for Failing {
        type Response = Response<ResponseBody>;
        type Error = ProxyError;
        type Future = std::future::Ready<Result<Response<ResponseBody>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Call<()>) -> Self::Future {
            std::future::ready(Err(ProxyError::Upstream(Arc::new(
                crate::upstream::UpstreamError::Connect {
                    address: "http://127.0.0.1:1".into(),
                    source: std::io::ErrorKind::ConnectionRefused.into(),
                },
            ))))
        }
    }

    #[tokio::test]
    async fn errors_become_grpc_status_responses() {
        let mut svc = RescueLayer.layer(Failing);
        let call = crate::layers::testing::call(http::Request::new(()));
        let ctx = call.ctx.clone();
        let resp = svc.call(call).await.unwrap();
        assert_eq!(
            ctx.error(),
            Some(crate::error::ErrorKind::UpstreamUnavailable)
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert!(resp.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("unreachable"));
    }

    /// Ready with an error, then answers every call.
    #[derive(Clone)]
    struct NotReady;

    impl Service<Call<()>> for NotReady {
        type Response = Response<ResponseBody>;
        type Error = ProxyError;
        type Future = std::future::Ready<Result<Response<ResponseBody>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Err(ProxyError::UpstreamNoStatus))
        }
        fn call(&mut self, _: Call<()>) -> Self::Future {
            std::future::ready(Err(ProxyError::UpstreamNoStatus))
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_answered_per_call_not_by_the_service() {
        let mut svc = RescueLayer.layer(NotReady);
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let call = crate::layers::testing::call(http::Request::new(()));
        let ctx = call.ctx.clone();
        let resp = svc.call(call).await.unwrap();
        assert_eq!(resp.headers()["grpc-status"], "13");
        assert_eq!(ctx.error(), Some(crate::error::ErrorKind::UpstreamNoStatus));
    }

    #[tokio::test]
    async fn responses_pass_unchanged_and_record_no_error() {
        use tower::ServiceExt;
        let svc = RescueLayer.layer(tower::service_fn(|_: Call<()>| async {
            Ok::<_, ProxyError>(crate::layers::testing::ok_response(b"abc"))
        }));
        let call = crate::layers::testing::call(http::Request::new(()));
        let ctx = call.ctx.clone();
        let resp = svc.oneshot(call).await.unwrap();
        assert!(resp.headers().get("grpc-status").is_none());
        let (data, trailers) = crate::layers::testing::read_to_end(resp.into_body()).await;
        assert_eq!(&data[..], b"\0\0\0\0\x03abc");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        assert_eq!(ctx.error(), None);
    }
}
