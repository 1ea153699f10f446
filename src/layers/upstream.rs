//! The innermost layer: the one boundary between the stack and the
//! upstream. The call goes to the Temporal frontend (`upstream::Forward`);
//! the upstream's errors become `ProxyError`s and its response body the
//! client's [`ResponseBody`], which scans response messages against
//! `limits.max_response_message` and makes sure every call ends with a
//! grpc-status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use tower_service::Service;

use crate::call::{Call, ResponseBody};
use crate::error::ProxyError;
use crate::grpc::{names, ConnBudget};
use crate::upstream::{BoxError, Forward};

#[derive(Clone)]
pub struct Upstream {
    forward: Forward,
    max_response_message: u32,
    /// The client connection's budget, which response chunks hold until
    /// they are written to the client.
    budget: Option<ConnBudget>,
}

impl Upstream {
    pub fn new(
        forward: Forward,
        max_response_message: u32,
        budget: Option<ConnBudget>,
    ) -> Upstream {
        Upstream {
            forward,
            max_response_message,
            budget,
        }
    }
}

impl<B> Service<Call<B>> for Upstream
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<B>) -> Self::Future {
        let fut = self.forward.call(call.request);
        let max = self.max_response_message;
        let budget = self.budget.clone();
        Box::pin(async move {
            let (parts, body) = fut.await?.into_parts();
            // Trailers-only responses carry their status in the headers.
            let needs_status = !parts.headers.contains_key(names::GRPC_STATUS);
            Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(body, needs_status, max, budget),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::{status_of, ErrorKind};
    use crate::layers::testing::{
        answers, forward_to, message, paths, read_to_end, through_upstream, FakeUpstream,
    };
    use crate::layers::testing::{call, grpc_request};

    use super::*;

    const MAX: u32 = 4 << 20;

    #[tokio::test]
    async fn a_call_reaches_the_frontend_and_its_response_streams_back() {
        let frontend = FakeUpstream::start(answers).await;
        let sent = message(b"request");
        let resp = through_upstream(&frontend, paths::OK, sent.clone(), MAX)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(data, message(b"hi"));
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        assert_eq!(
            frontend.received.lock().unwrap()[..],
            [(paths::OK.to_owned(), sent)]
        );
    }

    #[tokio::test]
    async fn a_trailers_only_answer_is_not_given_a_second_status() {
        let frontend = FakeUpstream::start(answers).await;
        let resp = through_upstream(&frontend, paths::TRAILERS_ONLY, message(b""), MAX)
            .await
            .unwrap();
        assert_eq!(resp.headers()["grpc-status"], "5");
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert!(data.is_empty());
        assert!(trailers.is_none(), "{trailers:?}");
    }

    #[tokio::test]
    async fn an_answer_that_ends_without_a_status_gets_one_from_the_proxy() {
        let frontend = FakeUpstream::start(answers).await;
        let resp = through_upstream(&frontend, paths::NO_STATUS, message(b""), MAX)
            .await
            .unwrap();
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert_eq!(data, message(b"hi"), "what the frontend sent still arrives");
        let trailers = trailers.expect("trailers added by the proxy");
        assert_eq!(trailers["grpc-status"], "13");
        let status = tonic::Status::from_header_map(&trailers).unwrap();
        assert_eq!(
            status.message(),
            "upstream ended the response without grpc-status"
        );
    }

    #[tokio::test]
    async fn a_response_message_over_the_limit_ends_with_resource_exhausted() {
        let frontend = FakeUpstream::start(answers).await;
        let resp = through_upstream(&frontend, paths::BIG, message(b""), 16)
            .await
            .unwrap();
        let (data, trailers) = read_to_end(resp.into_body()).await;
        assert!(
            data.is_empty(),
            "{} bytes of the big message passed",
            data.len()
        );
        let trailers = trailers.unwrap();
        assert_eq!(trailers["grpc-status"], "8");
        let status = tonic::Status::from_header_map(&trailers).unwrap();
        assert!(
            status
                .message()
                .starts_with("grpc: received message larger than max (100 vs. 16)"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn a_frontend_that_never_speaks_http2_is_unavailable_within_the_connect_timeout() {
        use crate::layers::testing::config;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds the socket, silent.
        let held = tokio::spawn(async move { listener.accept().await });
        let (config, _dir) = config(&format!("http://{addr}"), "connect_timeout = \"300ms\"");
        let pool = crate::upstream::pool(
            &config.upstream,
            &config.keepalive,
            crate::metrics::Metrics::new(10),
        )
        .unwrap();
        let mut svc = Upstream::new(Forward::new(pool, false), MAX, None);
        let started = std::time::Instant::now();
        let err = match svc.call(call(grpc_request(paths::OK, message(b"")))).await {
            Err(e) => e,
            Ok(_) => panic!("answered by a silent peer"),
        };
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(err.kind(), ErrorKind::UpstreamUnavailable);
        let status = status_of(&err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status
                .message()
                .contains("connected, but it sent no HTTP/2 SETTINGS within 300ms"),
            "{}",
            status.message()
        );
        drop(held);
    }

    #[tokio::test]
    async fn an_unreachable_frontend_is_an_unavailable_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut svc = Upstream::new(forward_to(&format!("http://127.0.0.1:{port}")), MAX, None);
        let err = match svc.call(call(grpc_request(paths::OK, message(b"")))).await {
            Err(e) => e,
            Ok(_) => panic!("answered with nothing listening"),
        };
        assert_eq!(err.kind(), ErrorKind::UpstreamUnavailable);
        let status = status_of(&err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("unreachable"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn response_chunks_hold_the_connection_budget_until_written_and_wait_when_it_is_spent() {
        use http_body_util::BodyExt;
        let frontend = FakeUpstream::start(answers).await;
        let answer = message(b"hi");
        // Room for the answer alone, while 3 bytes are held elsewhere.
        let budget = ConnBudget::new(answer.len() + 2, 16_384);
        let elsewhere = budget
            .hold(Bytes::from_static(b"abc"))
            .unwrap_or_else(|_| panic!("an empty budget has room"));
        let mut svc = Upstream::new(forward_to(&frontend.url()), MAX, Some(budget.clone()));
        let resp = svc
            .call(call(grpc_request(paths::OK, message(b""))))
            .await
            .unwrap();
        let mut body = resp.into_body();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(300), body.frame()).await;
        assert!(waiting.is_err(), "the answer did not wait: {waiting:?}");
        drop(elsewhere);
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, answer);
        assert_eq!(budget.available(), 2, "the answer holds its length");
        drop(data);
        assert_eq!(budget.available(), answer.len() + 2);
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(trailers["grpc-status"], "0");
    }
}
