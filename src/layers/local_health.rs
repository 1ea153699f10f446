//! `[health] local = true`: `grpc.health.v1.Health/Check` is answered by
//! the proxy from its own readiness (SERVING or NOT_SERVING) instead of
//! being forwarded. Off by default: SDKs check the WorkflowService's health
//! on connect, and forwarding gives them the frontend's own answer (a proxy
//! that answered NOT_FOUND locally made workers crash-loop).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use tower_layer::Layer;
use tower_service::Service;

use crate::call::{Call, ResponseBody};
use crate::health::Health;

pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

#[derive(Clone)]
pub struct LocalHealthLayer {
    /// `None`: health checks are forwarded.
    health: Option<Arc<Health>>,
}

impl LocalHealthLayer {
    pub fn new(health: Option<Arc<Health>>) -> LocalHealthLayer {
        LocalHealthLayer { health }
    }
}

impl<S> Layer<S> for LocalHealthLayer {
    type Service = LocalHealth<S>;

    fn layer(&self, inner: S) -> LocalHealth<S> {
        LocalHealth {
            inner,
            health: self.health.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LocalHealth<S> {
    inner: S,
    health: Option<Arc<Health>>,
}

/// HealthCheckResponse { status = 1: SERVING (1) or NOT_SERVING (2) },
/// length-prefixed.
fn response(serving: bool) -> Bytes {
    let status = if serving { 1 } else { 2 };
    Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status])
}

impl<S, B> Service<Call<B>> for LocalHealth<S>
where
    S: Service<Call<B>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        if let Some(health) = &self.health {
            if call.request.uri().path() == HEALTH_CHECK {
                let mut resp = Response::new(ResponseBody::local(response(health.ready())));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                return Box::pin(std::future::ready(Ok(resp)));
            }
        }
        Box::pin(self.inner.call(call))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::ServiceExt;

    use super::*;
    use crate::layers::testing::{call, ok_response, read_to_end, WS};

    /// The layer over an inner service that counts its calls.
    fn service(
        health: Option<Arc<Health>>,
    ) -> (
        Arc<AtomicUsize>,
        impl Service<Call<()>, Response = Response<ResponseBody>, Error = std::convert::Infallible>,
    ) {
        let forwarded = Arc::new(AtomicUsize::new(0));
        let count = forwarded.clone();
        let svc = LocalHealthLayer::new(health).layer(tower::service_fn(move |_: Call<()>| {
            count.fetch_add(1, Ordering::SeqCst);
            async { Ok(ok_response(b"from the frontend")) }
        }));
        (forwarded, svc)
    }

    fn request(path: &str) -> Call<()> {
        call(http::Request::builder().uri(path).body(()).unwrap())
    }

    #[tokio::test]
    async fn health_checks_are_answered_from_readiness_when_local() {
        let health = Health::new();
        let (forwarded, mut svc) = service(Some(health.clone()));
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(HEALTH_CHECK))
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(
            &data[..],
            [0, 0, 0, 0, 2, 0x08, 2],
            "NOT_SERVING while not ready"
        );
        assert_eq!(trailers.unwrap()["grpc-status"], "0");

        health.set_serving(true);
        health.set_certificates_valid();
        health.set_upstream_ok();
        assert!(health.ready());
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(HEALTH_CHECK))
            .await
            .unwrap();
        let (data, _) = read_to_end(resp.into_body()).await;
        assert_eq!(&data[..], [0, 0, 0, 0, 2, 0x08, 1], "SERVING once ready");
        assert_eq!(forwarded.load(Ordering::SeqCst), 0, "never forwarded");
    }

    #[tokio::test]
    async fn other_calls_and_every_call_when_not_local_are_forwarded() {
        let (forwarded, svc) = service(Some(Health::new()));
        let resp = svc
            .oneshot(request(&format!("{WS}/GetSystemInfo")))
            .await
            .unwrap();
        let (data, _) = read_to_end(resp.into_body()).await;
        assert!(data.ends_with(b"from the frontend"));
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);

        let (forwarded, svc) = service(None);
        let resp = svc.oneshot(request(HEALTH_CHECK)).await.unwrap();
        let (data, _) = read_to_end(resp.into_body()).await;
        assert!(data.ends_with(b"from the frontend"));
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);
    }
}
