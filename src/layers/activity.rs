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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{call, ok_response, read_to_end};
    use tower::ServiceExt;

    fn layer() -> (Arc<ConnActivity>, ActivityLayer) {
        let activity = ConnActivity::new();
        (activity.clone(), ActivityLayer::new(activity))
    }

    #[tokio::test]
    async fn a_call_is_open_until_its_response_body_ends() {
        let (activity, layer) = layer();
        let svc = layer.layer(tower::service_fn(|_: Call<()>| async {
            Ok::<_, std::convert::Infallible>(ok_response(b"x"))
        }));
        assert_eq!(activity.open_calls(), 0);
        let resp = svc.oneshot(call(http::Request::new(()))).await.unwrap();
        assert_eq!(activity.open_calls(), 1, "open while the response streams");
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(&data[..], b"\0\0\0\0\x01x");
        assert!(trailers.is_some());
        assert_eq!(activity.open_calls(), 0, "closed once the body ended");
    }

    #[tokio::test]
    async fn a_response_dropped_unread_ends_the_call() {
        let (activity, layer) = layer();
        let svc = layer.layer(tower::service_fn(|_: Call<()>| async {
            Ok::<_, std::convert::Infallible>(ok_response(b""))
        }));
        let resp = svc.oneshot(call(http::Request::new(()))).await.unwrap();
        assert_eq!(activity.open_calls(), 1);
        drop(resp);
        assert_eq!(activity.open_calls(), 0);
    }

    #[tokio::test]
    async fn a_call_counts_while_the_inner_service_works_and_not_after_it_fails() {
        let (activity, layer) = layer();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = std::sync::Mutex::new(Some(wait));
        let svc = layer.layer(tower::service_fn(move |_: Call<()>| {
            let wait = wait.lock().unwrap().take().unwrap();
            async move {
                let _ = wait.await;
                Err::<Response<ResponseBody>, _>("inner failed")
            }
        }));
        let pending = tokio::spawn(svc.oneshot(call(http::Request::new(()))));
        tokio::task::yield_now().await;
        assert_eq!(activity.open_calls(), 1, "open before any response");
        release.send(()).unwrap();
        assert!(pending.await.unwrap().is_err());
        assert_eq!(activity.open_calls(), 0);
    }
}
