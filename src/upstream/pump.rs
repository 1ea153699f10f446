//! A call's request body, sent on its upstream stream as it arrives. Driven
//! by whoever waits on the call (the response future, then the response
//! body), not by a task of its own. A chunk is read from the client only
//! once the previous one is within the upstream stream's window, so the
//! proxy holds at most one chunk per stream and a client that uploads
//! faster than the frontend reads waits on its own stream's window.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::{Reason, SendStream};
use http_body::Body;

use super::{BoxError, RequestBody};
use crate::relay::window::{poll_send, Outgoing};

pub struct RequestPump {
    body: RequestBody,
    send: SendStream<Bytes>,
    /// A chunk read from the client, not yet all within the window.
    pending: Option<Outgoing>,
}

impl RequestPump {
    pub fn new(body: RequestBody, send: SendStream<Bytes>) -> RequestPump {
        RequestPump {
            body,
            send,
            pending: None,
        }
    }

    /// Ready with `Ok` when the body is sent, or when the upstream stream
    /// can take no more (it was reset or its connection is gone: the
    /// response says how the call ended); with the client body's error when
    /// that failed, after resetting the upstream stream.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            if let Some(out) = self.pending.as_mut() {
                let sent = ready!(poll_send(&mut self.send, out, cx));
                let end = out.end;
                self.pending = None;
                if sent.is_err() || end {
                    return Poll::Ready(Ok(()));
                }
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers never come: the body sent upstream has them
                    // removed (`forward::NoTrailers`).
                    if let Ok(data) = frame.into_data() {
                        let end = self.body.is_end_stream();
                        if !data.is_empty() || end {
                            self.pending = Some(Outgoing { data, end });
                        }
                    }
                }
                Some(Err(e)) => {
                    self.send.send_reset(Reason::CANCEL);
                    return Poll::Ready(Err(e));
                }
                // The stream ends with an empty END_STREAM DATA frame.
                None => {
                    self.pending = Some(Outgoing {
                        data: Bytes::new(),
                        end: true,
                    });
                }
            }
        }
    }
}
