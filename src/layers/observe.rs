//! The service under the call metrics and audit layers: it attaches a
//! call observer to every call's response body, which tells it how the
//! call ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower_service::Service;

use crate::call::{Call, CallObserver, ResponseBody};
use crate::grpc::grpc_status;

/// Attaches an observer to every call's response body; shared by the call
/// metrics and the audit layers. `None`: nothing to attach.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    observer: Option<Arc<dyn CallObserver>>,
}

impl<S> Observed<S> {
    pub fn new(inner: S, observer: Option<Arc<dyn CallObserver>>) -> Observed<S> {
        Observed { inner, observer }
    }
}

impl<S, B> Service<Call<B>> for Observed<S>
where
    S: Service<Call<B>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let Some(observer) = self.observer.clone() else {
            return Box::pin(self.inner.call(call));
        };
        let ctx = call.ctx.clone();
        let fut = self.inner.call(call);
        Box::pin(async move {
            let mut resp = fut.await?;
            let status = grpc_status(resp.headers());
            resp.body_mut().observe(&ctx, observer, status);
            Ok(resp)
        })
    }
}
