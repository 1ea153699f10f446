//! The service that sends a call to the upstream on a pooled connection and
//! returns the upstream's response with its body streaming back
//! ([`UpstreamBody`]). Bodies are never buffered: frames flow as they
//! arrive. The call is sent on the `h2` connection from the call's own
//! task, and its request body is pumped by that task too (while it waits
//! for the response, then while it reads the response body): no task and
//! no channel per call. Errors and bodies are this module's own types; the
//! stack turns them into the client's at one boundary (`layers::upstream`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::RecvStream;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, Uri};
use http_body::Frame;
use http_body_util::BodyExt;

use super::pump::RequestPump;
use super::{CallError, Pool, RequestBody, StreamError, StreamLease};
use crate::grpc::names;
use crate::relay::RecvBody;

/// How many times a call that never reached the upstream (its connection
/// closed between choosing it and sending) is tried on another connection.
const MAX_UNSENT_RETRIES: usize = 3;

#[derive(Clone)]
pub struct Forward {
    pool: Arc<Pool>,
    scheme: Scheme,
}

impl Forward {
    pub fn new(pool: Arc<Pool>, tls: bool) -> Forward {
        Forward {
            pool,
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
        }
    }
}

/// The upstream's response body, holding its stream's slot on the upstream
/// connection until it ends or is dropped (dropped unfinished, h2 resets
/// the upstream stream).
pub struct UpstreamBody {
    recv: RecvBody,
    /// The rest of the request body, when the response began before it was
    /// all sent.
    pump: Option<RequestPump>,
    _lease: StreamLease,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = StreamError;

    /// The window is given back as each chunk is handed on; what the client
    /// connection has not yet written is bounded by its budget (see
    /// `call::body`), and the client stream's own window decides when the
    /// next chunk is read.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        if let Err(e) = drive(&mut this.pump, cx) {
            return Poll::Ready(Some(Err(e)));
        }
        Pin::new(&mut this.recv)
            .poll_frame(cx)
            .map_err(StreamError::Upstream)
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

impl<B> tower_service::Service<Request<B>> for Forward
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::BoxError>,
{
    type Response = Response<UpstreamBody>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, CallError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let pool = self.pool.clone();
        let req = to_upstream(req, &self.scheme);
        // `send`'s future itself, not one wrapping it: an `async` block
        // would hold `req` beside the future it was moved into.
        Box::pin(send(pool, req))
    }
}

async fn send(
    pool: Arc<Pool>,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, CallError> {
    let (parts, body) = req.into_parts();
    let mut tries = 0;
    let (lease, mut sender) = loop {
        let lease = pool.lease().await.map_err(CallError::Unavailable)?;
        let mut sender = lease.sender();
        match std::future::poll_fn(|cx| sender.poll_ready(cx)).await {
            Ok(()) => break (lease, sender),
            // Nothing was written: the connection closed or got GOAWAY
            // since it was chosen. Safe to send on another connection.
            Err(e) => {
                lease.close();
                if tries == MAX_UNSENT_RETRIES {
                    return Err(CallError::Failed(StreamError::Upstream(e)));
                }
                tries += 1;
                tracing::debug!(conn = lease.connection_id(), error = %e, "upstream connection closed before the call was sent; retrying");
            }
        }
    };
    let end = http_body::Body::is_end_stream(&body);
    let (response, stream) = sender
        .send_request(Request::from_parts(parts, ()), end)
        .map_err(|e| CallError::Failed(StreamError::Upstream(e)))?;
    let mut pump = (!end).then(|| RequestPump::new(body, stream));
    let mut response = std::pin::pin!(response);
    let response = std::future::poll_fn(|cx| {
        drive(&mut pump, cx)?;
        response.as_mut().poll(cx).map_err(StreamError::Upstream)
    })
    .await
    .map_err(CallError::Failed)?;
    Ok(from_upstream(response, pump, lease))
}

/// Moves the rest of the request body on, if any is left (`None` once it
/// is all sent); the client body's failure, once.
fn drive(pump: &mut Option<RequestPump>, cx: &mut Context<'_>) -> Result<(), StreamError> {
    let Some(p) = pump.as_mut() else {
        return Ok(());
    };
    match p.poll(cx) {
        Poll::Pending => Ok(()),
        Poll::Ready(result) => {
            *pump = None;
            result.map_err(StreamError::Request)
        }
    }
}

/// Rewrites the client's request for the upstream: scheme of the upstream
/// hop, path and `:authority` kept, hop-by-hop headers dropped (HTTP/2
/// forbids them; `te: trailers` is the one allowed and gRPC needs it).
///
/// The upstream connection is shared by every client of this worker, so
/// nothing a client sends may reach it in a form the frontend treats as a
/// connection error: request trailers (a second HEADERS on a stream, which
/// grpc-go answers with GOAWAY PROTOCOL_ERROR, failing every call on the
/// connection) are dropped and the stream ends with an empty END_STREAM
/// DATA frame instead; `content-length` (which gRPC does not use) is
/// dropped, so it can never disagree with the body sent.
fn to_upstream<B>(req: Request<B>, scheme: &Scheme) -> Request<RequestBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::BoxError>,
{
    let (mut parts, body) = req.into_parts();
    // The URI's parts are moved, not re-parsed: only the scheme changes.
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(scheme.clone());
    if uri.authority.is_none() {
        uri.authority = Some(Authority::from_static("localhost"));
    }
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    // Cannot fail: scheme, authority and path are all set.
    parts.uri = Uri::from_parts(uri).unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = NoTrailers(Some(body));
    Request::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

/// A request body without its trailers: the body ends where they would
/// have come (the pump then ends the stream with an empty DATA frame).
struct NoTrailers<B>(Option<B>);

impl<B> http_body::Body for NoTrailers<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let Some(body) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                self.0 = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    /// Never exact: nothing downstream may take it for a `content-length`
    /// (the client's, if it sent one, is dropped on purpose).
    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(self.0.as_ref().map_or(0, |b| b.size_hint().lower()));
        hint
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove(names::KEEP_ALIVE);
    headers.remove(names::PROXY_CONNECTION);
    if headers
        .get(http::header::TE)
        .is_some_and(|te| te != "trailers")
    {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

fn from_upstream(
    resp: Response<RecvStream>,
    pump: Option<RequestPump>,
    lease: StreamLease,
) -> Response<UpstreamBody> {
    let (mut parts, recv) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        UpstreamBody {
            recv: RecvBody::new(recv),
            pump,
            _lease: lease,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_grpc_headers_kept() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("grpc-timeout", "70S".parse().unwrap());
        h.insert("temporal-namespace", "default".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("grpc-timeout").unwrap(), "70S");
        assert_eq!(h.get("temporal-namespace").unwrap(), "default");
    }

    /// What a client sends must never reach the shared upstream connection
    /// in a form grpc-go treats as a connection error: request trailers are
    /// dropped, and no content-length is claimed.
    #[tokio::test]
    async fn request_trailers_and_content_length_never_go_upstream() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-trailer", "1".parse().unwrap());
        let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
            Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"\0\0\0\0\0",
            ))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let req = Request::builder()
            .uri("http://proxy.example/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo")
            .header("content-length", "5")
            .body(body)
            .unwrap();
        let out = to_upstream(req, &Scheme::HTTP);
        assert!(out.headers().get("content-length").is_none());
        assert_eq!(http_body::Body::size_hint(out.body()).exact(), None);
        let collected = out.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\0");
    }

    #[test]
    fn request_uri_is_rewritten_for_the_upstream_hop() {
        let req = Request::builder()
            .uri("https://proxy.example:7443/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let out = to_upstream(req, &Scheme::HTTP);
        assert_eq!(
            out.uri().to_string(),
            "http://proxy.example:7443/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"
        );
    }
}
