//! A small h2c upstream for what the real Temporal server cannot show or
//! produce on demand: echoing the metadata it received, and failing a
//! response part-way (a reset stream, a response without grpc-status).
//! Correctness of Temporal traffic itself is tested against the real server.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Paths the fake upstream answers.
pub const ECHO: &str = "/test.Echo/Echo";
pub const RESET_MID_STREAM: &str = "/test.Fault/ResetMidStream";
pub const NO_STATUS: &str = "/test.Fault/NoStatus";

pub struct FakeUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle))
                        .await;
                });
            }
        });
        FakeUpstream { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn frames(frames: Vec<Result<Frame<Bytes>, std::io::Error>>) -> BoxBody {
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

async fn handle(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut resp = Response::builder()
        .header("content-type", "application/grpc")
        .body(frames(Vec::new()))
        .unwrap();
    match path.as_str() {
        ECHO => {
            // The request message back, and every request header as an
            // `echo-<name>` trailer, so the client sees what arrived.
            let mut trailers = HeaderMap::new();
            for (name, value) in &headers {
                let echo = format!("echo-{}", name.as_str());
                trailers.append(http::HeaderName::try_from(echo).unwrap(), value.clone());
            }
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            *resp.body_mut() = frames(vec![Ok(Frame::data(body)), Ok(Frame::trailers(trailers))]);
        }
        RESET_MID_STREAM => {
            // Part of a message, then (once it has been sent) a reset.
            let part = futures_util::stream::iter(vec![Ok(Frame::data(Bytes::from_static(&[
                0, 0, 0, 0, 10, 1, 2,
            ])))]);
            let fault = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err(std::io::Error::other("injected fault"))
            });
            *resp.body_mut() =
                BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(part, fault)));
        }
        NO_STATUS => {
            *resp.body_mut() = frames(vec![Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))]);
        }
        _ => {
            resp.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("12"));
        }
    }
    Ok(resp)
}
