//! The service under the call metrics and audit layers: it attaches a
//! call observer to every call's response body, which tells it how the
//! call ended. A call dropped before it has a response (the client reset
//! it or went away while the upstream had not answered, a connection
//! closed at the end of its age grace) is told too, without a status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower_service::Service;

use crate::call::{Call, CallContext, CallObserver, Ending, ResponseBody};
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
        let mut unanswered = Unanswered(Some((call.ctx.clone(), observer)));
        let fut = self.inner.call(call);
        Box::pin(async move {
            let mut resp = fut.await?;
            let Some((ctx, observer)) = unanswered.0.take() else {
                return Ok(resp);
            };
            let status = grpc_status(resp.headers());
            resp.body_mut().observe(&ctx, observer, status);
            Ok(resp)
        })
    }
}

/// Tells the observer, when dropped still holding it, that the call ended
/// before it had a response.
struct Unanswered(Option<(Arc<CallContext>, Arc<dyn CallObserver>)>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((ctx, observer)) = self.0.take() {
            let ending = Ending {
                grpc_status: None,
                response_bytes: 0,
            };
            observer.call_ended(&ctx, &ending);
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::layers::testing::{call, ok_response, read_to_end, Told};

    async fn observed(
        observer: Option<Arc<dyn CallObserver>>,
        answer: fn() -> Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let svc = Observed::new(
            tower::service_fn(move |_: Call<()>| async move {
                Ok::<_, std::convert::Infallible>(answer())
            }),
            observer,
        );
        svc.oneshot(call(http::Request::new(()))).await.unwrap()
    }

    #[tokio::test]
    async fn the_observer_is_told_once_when_the_response_ends() {
        let told = Arc::new(Told::default());
        let resp = observed(Some(told.clone()), || ok_response(b"abc")).await;
        assert!(told.endings().is_empty(), "told before the end");
        read_to_end(resp.into_body()).await;
        let endings = told.endings();
        assert_eq!(endings.len(), 1);
        assert_eq!(endings[0].grpc_status, Some(0));
        assert_eq!(endings[0].response_bytes, 8);
    }

    #[tokio::test]
    async fn a_trailers_only_status_is_read_from_the_headers() {
        let told = Arc::new(Told::default());
        let resp = observed(Some(told.clone()), || {
            ResponseBody::status_only(tonic::Status::not_found("none"))
        })
        .await;
        read_to_end(resp.into_body()).await;
        let endings = told.endings();
        assert_eq!(endings.len(), 1);
        assert_eq!(endings[0].grpc_status, Some(5));
    }

    #[tokio::test]
    async fn a_response_dropped_unread_is_told_without_a_status() {
        let told = Arc::new(Told::default());
        drop(observed(Some(told.clone()), || ok_response(b"abc")).await);
        let endings = told.endings();
        assert_eq!(endings.len(), 1);
        assert_eq!(endings[0].grpc_status, None);
        assert_eq!(endings[0].response_bytes, 0);
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_response_is_told_without_a_status() {
        let told = Arc::new(Told::default());
        let svc = Observed::new(
            tower::service_fn(|_: Call<()>| {
                std::future::pending::<Result<Response<ResponseBody>, std::convert::Infallible>>()
            }),
            Some(told.clone() as Arc<dyn CallObserver>),
        );
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            svc.oneshot(call(http::Request::new(()))),
        )
        .await;
        assert!(waited.is_err(), "the call never answers");
        let endings = told.endings();
        assert_eq!(endings.len(), 1, "told once, when dropped");
        assert_eq!(endings[0].grpc_status, None);
        assert_eq!(endings[0].response_bytes, 0);
    }

    #[tokio::test]
    async fn without_an_observer_the_response_is_unchanged() {
        let resp = observed(None, || ok_response(b"abc")).await;
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(&data[..], b"\0\0\0\0\x03abc");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }
}
