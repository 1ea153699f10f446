//! Counts a connection's open calls for its lifecycle (idle timeout): each
//! call holds an `ActiveCall` until its response body ends or is dropped.
//! Near the top, so that every call counts, including those the proxy
//! answers itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::activity::ConnActivity;
use crate::call::{Call, ResponseBody};

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

impl<S, B> Service<Call<B>> for Activity<S>
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
        let active = self.activity.begin();
        let fut = self.inner.call(call);
        Box::pin(async move {
            let mut resp = fut.await?;
            resp.body_mut().track(active);
            Ok(resp)
        })
    }
}
