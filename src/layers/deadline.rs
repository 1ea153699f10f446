//! The call's deadline: a call with a `grpc-timeout` that has no response
//! head from the upstream by then (plus a margin) is answered
//! DEADLINE_EXCEEDED, with grpc-go's words, as the frontend answers a call
//! whose deadline passed. The frontend enforces the same deadline itself
//! (and answers long polls about a second before it), so the margin leaves
//! every answer of a working frontend to it; what this bounds is an
//! upstream that never answers (hung, or a connection gone silent), which
//! would otherwise hold the call until the upstream keepalive gives up.
//! Calls without a `grpc-timeout` have no deadline, as with the frontend.
//! The response body, once it flows, is the frontend's to end.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::Call;
use crate::error::ProxyError;
use crate::grpc::{names, timeout};

/// After the deadline, how long the frontend still has to answer first.
pub const MARGIN: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B> Service<Call<B>> for Deadline<S>
where
    S: Service<Call<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Either<S::Future, Bounded<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let after = call
            .request
            .headers()
            .get(names::GRPC_TIMEOUT)
            .and_then(|v| timeout::parse(v.as_bytes()));
        let fut = self.inner.call(call);
        match after {
            None => Either::Left(fut),
            Some(after) => Either::Right(Bounded {
                inner: tokio::time::timeout(after.saturating_add(MARGIN), fut),
                after,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The call, given up `after` (plus the margin) without a response.
    pub struct Bounded<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        after: Duration,
    }
}

impl<F, T> Future for Bounded<F>
where
    F: Future<Output = Result<T, ProxyError>>,
{
    type Output = Result<T, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Deadline(*this.after)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{status_of, ErrorKind};
    use crate::layers::testing::call;

    fn request(timeout: Option<&str>) -> Call<()> {
        let mut b =
            http::Request::post("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo");
        if let Some(t) = timeout {
            b = b.header("grpc-timeout", t);
        }
        call(b.body(()).unwrap())
    }

    #[tokio::test]
    async fn an_answer_in_time_passes_and_none_gets_deadline_exceeded() {
        let mut svc = DeadlineLayer.layer(tower::service_fn(|c: Call<()>| async move {
            if c.request.uri().query() == Some("never") {
                std::future::pending::<()>().await;
            }
            Ok::<_, ProxyError>("answered")
        }));
        assert_eq!(svc.call(request(Some("50m"))).await.unwrap(), "answered");
        let mut never = request(Some("50m"));
        *never.request.uri_mut() = "/a.B/C?never".parse().unwrap();
        let started = std::time::Instant::now();
        let err = svc.call(never).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50) + MARGIN);
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
        let status = status_of(&err);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().starts_with("context deadline exceeded ("),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn without_a_valid_grpc_timeout_there_is_no_deadline() {
        let mut svc = DeadlineLayer.layer(tower::service_fn(|_: Call<()>| async {
            tokio::time::sleep(Duration::from_millis(20) + MARGIN).await;
            Ok::<_, ProxyError>("answered")
        }));
        assert_eq!(svc.call(request(None)).await.unwrap(), "answered");
        // Not in the grammar: the frontend's to refuse.
        assert_eq!(svc.call(request(Some("1s"))).await.unwrap(), "answered");
    }
}
