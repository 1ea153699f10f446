//! One stream of a client connection, polled by the connection's task: the
//! call's future (the tower stack deciding and forwarding it), then its
//! response sent to the client as the client's window allows. A client that
//! resets the stream ends it at once: the call's future (and with it the
//! upstream stream) is dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::Response;
use http_body::Body;

use super::window::{poll_room, poll_send, Outgoing};

pub struct StreamTask<F, B> {
    state: State<F, B>,
}

enum State<F, B> {
    Calling {
        call: F,
        respond: SendResponse<Bytes>,
    },
    Sending {
        body: B,
        send: SendStream<Bytes>,
        /// A chunk read from the body, not yet all within the window.
        pending: Option<Outgoing>,
    },
    Done,
}

impl<F, B> StreamTask<F, B> {
    pub fn new(call: F, respond: SendResponse<Bytes>) -> StreamTask<F, B> {
        StreamTask {
            state: State::Calling { call, respond },
        }
    }
}

impl<F, B, E> Future for StreamTask<F, B>
where
    F: Future<Output = Result<Response<B>, E>> + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Calling { call, respond } => {
                    let response = match Pin::new(call).poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        // The stack answers every call (its errors are
                        // gRPC statuses); a service error is a reset.
                        Poll::Ready(Err(_)) => {
                            respond.send_reset(Reason::INTERNAL_ERROR);
                            self.state = State::Done;
                            continue;
                        }
                        Poll::Pending => {
                            if respond.poll_reset(cx).is_ready() {
                                self.state = State::Done;
                                continue;
                            }
                            return Poll::Pending;
                        }
                    };
                    let (head, body) = response.into_parts();
                    let end = body.is_end_stream();
                    let head = Response::from_parts(head, ());
                    self.state = match respond.send_response(head, end) {
                        Ok(send) if !end => State::Sending {
                            body,
                            send,
                            pending: None,
                        },
                        Ok(_) => State::Done,
                        Err(e) => {
                            tracing::debug!(error = %e, "response headers not sent");
                            State::Done
                        }
                    };
                }
                State::Sending {
                    body,
                    send,
                    pending,
                } => {
                    if let Some(out) = pending.as_mut() {
                        let sent = match poll_send(send, out, cx) {
                            Poll::Ready(sent) => sent,
                            Poll::Pending => return pending_unless_reset(send, cx),
                        };
                        let end = out.end;
                        *pending = None;
                        if sent.is_err() || end {
                            self.state = State::Done;
                        }
                        continue;
                    }
                    // Read the body only when what it yields can be sent.
                    match poll_room(send, cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => {
                            self.state = State::Done;
                            continue;
                        }
                        Poll::Pending => return pending_unless_reset(send, cx),
                    }
                    let frame = match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Ready(frame) => frame,
                        Poll::Pending => return pending_unless_reset(send, cx),
                    };
                    match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                let end = body.is_end_stream();
                                if !data.is_empty() || end {
                                    *pending = Some(Outgoing { data, end });
                                }
                            }
                            Err(frame) => {
                                if let Ok(trailers) = frame.into_trailers() {
                                    let _ = send.send_trailers(trailers);
                                }
                                self.state = State::Done;
                            }
                        },
                        Some(Err(_)) => {
                            send.send_reset(Reason::INTERNAL_ERROR);
                            self.state = State::Done;
                        }
                        None => {
                            *pending = Some(Outgoing {
                                data: Bytes::new(),
                                end: true,
                            });
                        }
                    }
                }
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Pending, unless the client reset the stream: then done (the body, and
/// with it the upstream stream, is dropped).
fn pending_unless_reset(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<()> {
    ready!(send.poll_reset(cx)).ok();
    Poll::Ready(())
}
