//! Calls whose `:path` is not a canonical gRPC path are answered
//! UNIMPLEMENTED, as the frontend answers a method it does not know
//! (`grpc::path`), before anything reads their body or looks their method
//! up. Inside the rescue layer, so the refusal becomes a gRPC status.

use std::future::{ready, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::Call;
use crate::error::ProxyError;
use crate::grpc::path;

#[derive(Clone, Copy, Debug, Default)]
pub struct PathLayer;

impl<S> Layer<S> for PathLayer {
    type Service = Path<S>;

    fn layer(&self, inner: S) -> Path<S> {
        Path { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Path<S> {
    inner: S,
}

impl<S, B> Service<Call<B>> for Path<S>
where
    S: Service<Call<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    /// The refusal is boxed: inline, a `Ready` of the call's result is as
    /// large as a response, and every call's future (a long poll's for 70 s)
    /// would carry it.
    type Future = Either<S::Future, Pin<Box<Ready<Result<S::Response, ProxyError>>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        match path::check(call.request.uri()) {
            Ok(()) => Either::Left(self.inner.call(call)),
            Err(e) => Either::Right(Box::pin(ready(Err(ProxyError::Path(e))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_with_a_query_never_reaches_the_inner_service() {
        use crate::layers::testing::call;
        let mut svc = PathLayer.layer(tower::service_fn(|_: Call<()>| async {
            Ok::<_, ProxyError>("forwarded")
        }));
        let path = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
        let ok = http::Request::post(path).body(()).unwrap();
        assert_eq!(svc.call(call(ok)).await.unwrap(), "forwarded");
        let query = http::Request::post(format!("{path}?a=b")).body(()).unwrap();
        let err = svc.call(call(query)).await.unwrap_err();
        assert_eq!(
            crate::error::status_of(&err).code(),
            tonic::Code::Unimplemented
        );
    }
}
