//! Counts a connection's open calls for its lifecycle (idle timeout): each
//! call holds an `ActiveCall` until its response body ends or is dropped.
//! Outermost, so that every call counts, including those the proxy answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::grpc::ResponseBody;
use crate::server::activity::ConnActivity;

#[derive(Clone)]
pub struct ActivityLayer {
    activity: Arc<ConnActivity>,
}

impl ActivityLayer {
    pub fn new(activity: Arc<ConnActivity>) -> ActivityLayer {
        ActivityLayer { activity }
    }
}

impl<S> Layer<S> for ActivityLayer {
    type Service = Activity<S>;

    fn layer(&self, inner: S) -> Activity<S> {
        Activity {
            inner,
            activity: self.activity.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Activity<S> {
    inner: S,
    activity: Arc<ConnActivity>,
}

impl<S, B> Service<Request<B>> for Activity<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let call = self.activity.begin();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            resp.body_mut().track(call);
            Ok(resp)
        })
    }
}
