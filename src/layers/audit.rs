//! Audit and call metrics: one JSON line per call (when `[audit]` is on) with who called what, the authorization
//! decision, the grpc-status, bytes each way and the duration. The record is
//! made here, filled in by the layers below (the authorization layer sets
//! its decision), and written when the response ends. Outermost, so that
//! calls answered by the proxy itself are logged with their status too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::record::{CallRecord, OnCallEnd};
use crate::audit::sink::AuditSink;
use crate::grpc::{grpc_status, ResponseBody};
use crate::layers::rescue::RefusedFor;
use crate::metrics::Metrics;
use crate::server::ConnectionInfo;

#[derive(Clone)]
pub struct AuditLayer {
    /// `None`: audit lines are off; calls are still counted in the metrics.
    sink: Option<AuditSink>,
    metrics: Arc<Metrics>,
    conn: Arc<ConnectionInfo>,
}

impl AuditLayer {
    pub fn new(
        sink: Option<AuditSink>,
        metrics: Arc<Metrics>,
        conn: Arc<ConnectionInfo>,
    ) -> AuditLayer {
        AuditLayer {
            sink,
            metrics,
            conn,
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            inner,
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
            conn: self.conn.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    sink: Option<AuditSink>,
    metrics: Arc<Metrics>,
    conn: Arc<ConnectionInfo>,
}

impl<S, B> Service<Request<B>> for Audit<S>
where
    S: Service<Request<Counted<B>>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let sink = self.sink.clone();
        let metrics = self.metrics.clone();
        let record = Arc::new(CallRecord::new(
            self.conn.peer,
            self.conn.identity.clone(),
            req.uri(),
        ));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(record.clone());
        let body = Counted {
            body,
            record: Some(record.clone()),
        };
        let fut = self.inner.call(Request::from_parts(parts, body));
        Box::pin(async move {
            let mut resp = fut.await?;
            let status = grpc_status(resp.headers());
            if let Some(refusal) = resp.extensions().get::<RefusedFor>() {
                record.set_refusal(refusal.0);
            }
            resp.body_mut().on_end(
                Box::new(OnCallEnd {
                    record,
                    sink,
                    metrics,
                }),
                status,
            );
            Ok(resp)
        })
    }
}

/// The client's request body, counting its bytes into the call's record.
pub struct Counted<B> {
    body: B,
    record: Option<Arc<CallRecord>>,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(record)) = (&polled, &self.record) {
            if let Some(data) = frame.data_ref() {
                record.add_request_bytes(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
