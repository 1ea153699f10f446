//! What went over one probe connection at the HTTP/2 frame level, read off
//! the decrypted bytes between TLS and hyper: the PINGs the probe sent and
//! the ACKs that came back, the server's own PINGs, and a GOAWAY with its
//! error code and debug data. hyper reports a GOAWAY only as a connection
//! error (and not at all when its code is NO_ERROR), and never says whether
//! its keepalive PINGs went out; the keepalive check needs both for a
//! reliable answer.
//!
//! The tap only reads: bytes pass through unchanged.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER_LEN: usize = 9;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
/// What the client sends before its first frame.
const CLIENT_PREFACE_LEN: usize = 24;
/// Debug data kept from a GOAWAY (grpc-go sends a few words).
const MAX_DEBUG_DATA: usize = 256;

/// A GOAWAY the server sent.
#[derive(Debug, Clone)]
pub struct GoAway {
    pub at: Instant,
    pub error_code: u32,
    pub debug_data: String,
}

/// What the tap saw, so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// PINGs the probe sent (not ACKs), when.
    pub pings_sent: Vec<Instant>,
    /// ACKs of those PINGs, when.
    pub ping_acks: Vec<Instant>,
    /// PINGs the server sent.
    pub server_pings: usize,
    /// The last GOAWAY received.
    pub goaway: Option<GoAway>,
}

pub type Log = Arc<Mutex<Seen>>;

/// Reads `Seen` without caring whether a panicking thread held the lock
/// (the data is plain counters).
pub fn seen(log: &Log) -> Seen {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The frames of one direction, parsed as they pass.
#[derive(Debug)]
struct Frames {
    /// Bytes still to skip before the first frame (the client preface).
    skip: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: usize,
    kind: u8,
    flags: u8,
    /// The payload of a GOAWAY being read (kept up to a bound).
    payload: Vec<u8>,
}

/// A frame that was seen in full (its header; a GOAWAY's payload).
enum Frame {
    Ping {
        ack: bool,
    },
    GoAway {
        error_code: u32,
        debug_data: Vec<u8>,
    },
    Other,
}

impl Frames {
    fn new(skip: usize) -> Frames {
        Frames {
            skip,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            remaining: 0,
            kind: 0,
            flags: 0,
            payload: Vec::new(),
        }
    }

    /// Feeds bytes that passed; `each` gets every frame completed by them.
    fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.header_len < FRAME_HEADER_LEN {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    let h = self.header;
                    self.remaining =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    self.kind = h[3];
                    self.flags = h[4];
                    self.payload.clear();
                    if self.remaining == 0 {
                        self.complete(&mut each);
                    }
                }
                continue;
            }
            let n = self.remaining.min(bytes.len());
            if self.kind == FRAME_GOAWAY {
                let keep = (8 + MAX_DEBUG_DATA)
                    .saturating_sub(self.payload.len())
                    .min(n);
                self.payload.extend_from_slice(&bytes[..keep]);
            }
            self.remaining -= n;
            bytes = &bytes[n..];
            if self.remaining == 0 {
                self.complete(&mut each);
            }
        }
    }

    fn complete(&mut self, each: &mut impl FnMut(Frame)) {
        self.header_len = 0;
        let frame = match self.kind {
            FRAME_PING => Frame::Ping {
                ack: self.flags & FLAG_ACK != 0,
            },
            FRAME_GOAWAY if self.payload.len() >= 8 => Frame::GoAway {
                error_code: u32::from_be_bytes([
                    self.payload[4],
                    self.payload[5],
                    self.payload[6],
                    self.payload[7],
                ]),
                debug_data: self.payload[8..].to_vec(),
            },
            _ => Frame::Other,
        };
        each(frame);
    }
}

/// An I/O stream with the tap on it; `pending` is what was already read
/// from `inner` before hyper took over (the server's first bytes).
pub struct Tapped<T> {
    inner: T,
    pending: Bytes,
    log: Log,
    reads: Frames,
    writes: Frames,
}

impl<T> Tapped<T> {
    pub fn new(inner: T, pending: Bytes) -> (Tapped<T>, Log) {
        let log = Log::default();
        let mut tapped = Tapped {
            inner,
            pending: Bytes::new(),
            log: log.clone(),
            reads: Frames::new(0),
            writes: Frames::new(CLIENT_PREFACE_LEN),
        };
        saw_read(&mut tapped.reads, &log, &pending);
        tapped.pending = pending;
        (tapped, log)
    }

    fn saw_write(&mut self, bytes: &[u8]) {
        let log = &self.log;
        self.writes.feed(bytes, |frame| {
            if let Frame::Ping { ack: false } = frame {
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pings_sent
                    .push(Instant::now());
            }
        });
    }
}

fn saw_read(reads: &mut Frames, log: &Log, bytes: &[u8]) {
    reads.feed(bytes, |frame| {
        let mut seen = log.lock().unwrap_or_else(PoisonError::into_inner);
        match frame {
            Frame::Ping { ack: true } => seen.ping_acks.push(Instant::now()),
            Frame::Ping { ack: false } => seen.server_pings += 1,
            Frame::GoAway {
                error_code,
                debug_data,
            } => {
                seen.goaway = Some(GoAway {
                    at: Instant::now(),
                    error_code,
                    debug_data: String::from_utf8_lossy(&debug_data).into_owned(),
                })
            }
            Frame::Other => {}
        }
    });
}

impl<T: AsyncRead + Unpin> AsyncRead for Tapped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            saw_read(&mut this.reads, &this.log, &buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tapped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.saw_write(&buf[..n]);
        }
        polled
    }

    // Vectored writes are left to the default (the first non-empty slice):
    // simple to observe, and the probe is no throughput test.

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_seen_however_the_bytes_are_split() {
        let mut wire = frame(0x4, 0, &[0; 12]);
        wire.extend(frame(FRAME_PING, 0, &[1; 8]));
        wire.extend(frame(FRAME_PING, FLAG_ACK, &[1; 8]));
        let mut goaway = vec![0, 0, 0, 0, 0, 0, 0, 11];
        goaway.extend_from_slice(b"too_many_pings");
        wire.extend(frame(FRAME_GOAWAY, 0, &goaway));
        for chunk in [1, 2, 7, 9, 10, wire.len()] {
            let mut frames = Frames::new(0);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                frames.feed(piece, |f| {
                    got.push(match f {
                        Frame::Ping { ack } => format!("ping ack={ack}"),
                        Frame::GoAway {
                            error_code,
                            debug_data,
                        } => format!(
                            "goaway {error_code} {}",
                            String::from_utf8_lossy(&debug_data)
                        ),
                        Frame::Other => "other".into(),
                    })
                });
            }
            assert_eq!(
                got,
                [
                    "other",
                    "ping ack=false",
                    "ping ack=true",
                    "goaway 11 too_many_pings"
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn the_client_preface_is_not_a_frame() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(FRAME_PING, 0, &[0; 8]));
        let mut frames = Frames::new(CLIENT_PREFACE_LEN);
        let mut pings = 0;
        frames.feed(&wire, |f| {
            if let Frame::Ping { ack: false } = f {
                pings += 1;
            }
        });
        assert_eq!(pings, 1);
    }
}
