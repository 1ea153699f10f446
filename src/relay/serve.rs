//! A client connection's HTTP/2, served by one task: the connection's
//! frames, every stream's call and response, and the keepalive pings are
//! all polled from [`Serve`], with no task per stream. New streams go to
//! the tower stack (`service`), which decides each call before anything is
//! forwarded; a graceful shutdown sends GOAWAY and lets the open streams
//! finish.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_service::Service;

use super::keepalive::Keepalive;
use super::stream::StreamTask;
use super::RecvBody;

/// The HTTP/2 settings of client connections, and their keepalive.
#[derive(Clone, Debug)]
pub struct Settings {
    pub builder: h2::server::Builder,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Why a client connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    H2(#[from] h2::Error),
    #[error("keepalive ping not answered within {}", humantime::format_duration(*.0))]
    PingTimeout(Duration),
}

impl ServeError {
    /// A keepalive ping went unanswered (a dead link).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ServeError::PingTimeout(_))
    }
}

pub struct Serve<T, S, B>
where
    S: Service<Request<RecvBody>, Response = Response<B>>,
{
    state: State<T>,
    service: S,
    streams: FuturesUnordered<StreamTask<S::Future, B>>,
    ping_interval: Duration,
    ping_timeout: Duration,
    keepalive: Option<Keepalive>,
    /// A graceful shutdown was asked for (applied once the handshake is
    /// done, if it was asked before).
    shutdown: bool,
}

// The connection is what the task holds for its whole life, inline; the
// handshake, briefly, boxed.
#[allow(clippy::large_enum_variant)]
enum State<T> {
    Handshaking(Pin<Box<h2::server::Handshake<T, Bytes>>>),
    Serving(h2::server::Connection<T, Bytes>),
}

impl<T, S, B> Serve<T, S, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RecvBody>, Response = Response<B>>,
{
    pub fn new(settings: &Settings, io: T, service: S) -> Serve<T, S, B> {
        Serve {
            state: State::Handshaking(Box::pin(settings.builder.handshake(io))),
            service,
            streams: FuturesUnordered::new(),
            ping_interval: settings.ping_interval,
            ping_timeout: settings.ping_timeout,
            keepalive: None,
            shutdown: false,
        }
    }

    /// GOAWAY now; the connection ends when its open streams have.
    pub fn graceful_shutdown(&mut self) {
        self.shutdown = true;
        if let State::Serving(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
    }
}

impl<T, S, B> Future for Serve<T, S, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RecvBody>, Response = Response<B>> + Unpin,
    S::Future: Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Result<(), ServeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Handshaking(handshake) = &mut this.state {
            let mut conn = match handshake.as_mut().poll(cx) {
                Poll::Ready(Ok(conn)) => conn,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            this.keepalive = conn
                .ping_pong()
                .map(|pings| Keepalive::new(pings, this.ping_interval, this.ping_timeout));
            if this.shutdown {
                conn.graceful_shutdown();
            }
            this.state = State::Serving(conn);
        }
        let State::Serving(conn) = &mut this.state else {
            unreachable!("the handshake is done");
        };
        // The streams first: what they send is written by the connection's
        // poll below, together (one write for many streams' frames).
        while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {}
        loop {
            if this.service.poll_ready(cx).is_pending() {
                break;
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    let call = this.service.call(request.map(RecvBody::new));
                    let mut task = StreamTask::new(call, respond);
                    // Polled once now (most calls get as far as the
                    // upstream at once); kept only if not done.
                    if Pin::new(&mut task).poll(cx).is_pending() {
                        this.streams.push(task);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if let Some(keepalive) = this.keepalive.as_mut() {
            if keepalive.poll_expired(cx).is_ready() {
                return Poll::Ready(Err(ServeError::PingTimeout(keepalive.timeout())));
            }
        }
        Poll::Pending
    }
}
