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
use crate::grpc::names;
use crate::upstream::{BoxError, Forward};

#[derive(Clone)]
pub struct Upstream {
    forward: Forward,
    max_response_message: u32,
}

impl Upstream {
    pub fn new(forward: Forward, max_response_message: u32) -> Upstream {
        Upstream {
            forward,
            max_response_message,
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
        Box::pin(async move {
            let (parts, body) = fut.await?.into_parts();
            // Trailers-only responses carry their status in the headers.
            let needs_status = !parts.headers.contains_key(names::GRPC_STATUS);
            Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(body, needs_status, max),
            ))
        })
    }
}
