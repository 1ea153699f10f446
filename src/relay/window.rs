//! Data sent on an h2 stream only within the window the peer has granted:
//! a chunk waits (and whoever reads the other side with it) until the peer
//! makes room, so what the proxy holds for a stream is one chunk, never
//! what the sender chooses to push.

use std::task::{Context, Poll};

use bytes::Bytes;
use h2::SendStream;

/// A chunk on its way to `send`; `end`: the stream ends with it.
pub struct Outgoing {
    pub data: Bytes,
    pub end: bool,
}

/// The stream can take no more: the peer reset it or the connection is
/// gone (whoever waits on the call learns why from the other half).
#[derive(Debug)]
pub struct Gone;

/// Sends `out` as the window allows: ready when all of it is handed to h2.
pub fn poll_send(
    send: &mut SendStream<Bytes>,
    out: &mut Outgoing,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Gone>> {
    if out.data.is_empty() {
        return Poll::Ready(if out.end {
            send.send_data(Bytes::new(), true).map_err(|_| Gone)
        } else {
            Ok(())
        });
    }
    loop {
        send.reserve_capacity(out.data.len());
        let window = match send.capacity() {
            0 => match send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(n))) => n,
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Err(Gone)),
                Poll::Pending => return Poll::Pending,
            },
            n => n,
        };
        let chunk = out.data.split_to(window.min(out.data.len()));
        let last = out.data.is_empty();
        if send.send_data(chunk, last && out.end).is_err() {
            return Poll::Ready(Err(Gone));
        }
        if last {
            return Poll::Ready(Ok(()));
        }
    }
}

/// Ready once the peer's window has room for at least one byte (so that a
/// body is read only when what it yields can be sent).
pub fn poll_room(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
    if send.capacity() > 0 {
        return Poll::Ready(Ok(()));
    }
    send.reserve_capacity(1);
    loop {
        match send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(0))) => continue,
            Poll::Ready(Some(Ok(_))) => return Poll::Ready(Ok(())),
            Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Err(Gone)),
            Poll::Pending => return Poll::Pending,
        }
    }
}
