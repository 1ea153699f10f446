//! What the proxy enforces on a client's HTTP/2 frames below the h2 codec, on the
//! decrypted byte stream (the TLS stream, under `TokioIo`): the only place
//! the frames are visible (below, they are encrypted; above, the codec consumes
//! them). [`FrameGuard`] wraps the stream and reads the frames going both
//! ways:
//!
//! - client PINGs, judged as grpc-go judges them (`ping`, below);
//! - client SETTINGS and RST_STREAM frames, each limited to a burst and a
//!   rate per connection (`flood`), which h2 leave unbounded;
//! - the client's preface, which must come within a deadline
//!   ([`FrameGuard::with_preface_timeout`]): the codec waits for it for ever;
//! - client header blocks, checked as grpc-go reads them, so that a field h2
//!   would refuse for the whole connection costs only its stream, and
//!   `:path` reaches the proxy as the frontend would see it (`hpack`,
//!   `inbound`);
//! - a stream WINDOW_UPDATE of 0, a stream error h2 would make a connection
//!   error, passed over (`inbound`).
//!
//! Frame heads and bytes are followed by `frames` and `inbound`; the rest of
//! this module is the I/O wrapper and the GOAWAY it writes on too many
//! pings, SETTINGS or resets (the same GOAWAY, with its own debug data).
//!
//! # Client PING enforcement
//!
//! The codec answers every client PING and exposes neither a hook nor a limit, so
//! a client can ping as often as it likes. The frontend behind us would not
//! allow that: grpc-go counts a PING sooner than `min_interval` after the
//! previous one as a strike (with no open streams and pings without streams
//! not permitted, a PING within two hours of the previous one is a strike),
//! forgives everything once the server has sent HEADERS or DATA, and when
//! the strikes exceed `max_strikes` it sends GOAWAY `ENHANCE_YOUR_CALM` with
//! debug data `too_many_pings` and closes the connection (a grpc-go client
//! then doubles its keepalive interval).
//!
//! The guard does the same from outside the codec. Bytes pass through
//! unchanged (but for the header blocks and window updates above); the
//! guard keeps a 9-byte header buffer and a payload countdown per direction
//! and buffers only header blocks it cannot judge where they lie.
//!
//! - **Inbound** (`poll_read`): the 24-byte client preface, then frame
//!   headers. PING without ACK is judged; HEADERS opening a new stream raise
//!   the highest client stream id (the GOAWAY's last-stream-id).
//! - **Outbound** (`poll_write`): the codec's frame boundaries (it may write part
//!   of a frame, or several, at once). HEADERS or DATA from the server reset
//!   the strikes, as grpc-go does, so pings during active calls (including
//!   BDP pings while a response streams) are never punished.
//! - **Open streams** matter only when `permit_without_stream` is false, and
//!   are tracked only then: a stream is open from the client's HEADERS that
//!   opens it until the server ends it (END_STREAM on HEADERS or DATA) or
//!   either side sends RST_STREAM, which is when grpc-go drops it from its
//!   active streams. The open ids live in a small `Vec` that reaches the
//!   connection's concurrency and is reused; past `MAX_TRACKED_STREAMS`
//!   (1024) the guard stops counting and assumes streams are open
//!   (lenient).
//!
//! **The GOAWAY.** When the strikes (or a flood bucket) run out (always
//! while reading, since only a client frame can trip it), the bytes of
//! that read are withheld from the codec and the guard writes its own GOAWAY
//! into the underlying stream at the next outbound frame boundary, before
//! any more of the codec's bytes, then flushes and shuts the write side down
//! (TLS close_notify, TCP FIN).
//! - If the codec is not in the middle of a frame (idle, or its last write
//!   ended on a boundary), the read that tripped writes the GOAWAY at once.
//! - If the codec is mid-frame, its writes are cut at the end of that frame
//!   (a short write, which the codec retries), and the next write or flush, at
//!   the boundary, writes the GOAWAY; a read waiting for that is woken.
//!
//! Then the guard lingers, as grpc-go does (grpc-go#5358): closing a socket
//! with unread bytes makes the kernel send RST instead of FIN, and a client
//! that gets RST may lose the GOAWAY unread, never learning why. So reads
//! discard what the client still sends until it closes (clients close on
//! GOAWAY and EOF) or one second passes, and only then return EOF, upon
//! which the codec ends the connection and drops its calls. Meanwhile the codec's
//! writes are accepted and discarded: nothing more reaches the client.
//!
//! The GOAWAY's last-stream-id is the highest stream id the client opened,
//! or the one the codec announced in its own GOAWAY if lower (ids must never
//! grow between GOAWAYs): no processed stream is ever claimed unprocessed,
//! so a client never retries a call that ran. The codec writes its SETTINGS
//! before it first reads, so the GOAWAY never precedes the server preface.
//!
//! A flooding client that also stops reading can leave the GOAWAY write
//! pending, exactly as it would leave the codec's writes pending: what bounds a
//! connection's life (max age and its grace) must end it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub use flood::Flood;
use frames::{goaway_frame, Frames};
use inbound::{Inbound, Tripped};
use ping::{ClientFrames, Enforcer, ServerFrames};
pub use ping::{GuardEvents, PingPolicy};

mod flood;
mod frames;
pub(crate) mod hpack;
mod huffman;
mod inbound;
mod ping;

/// Bytes read per read while header bytes are held (they go to the guard's
/// buffer, not the codec's).
const HELD_READ: usize = 8 * 1024;

/// The decrypted stream of one client connection, as the codec sees it, with
/// the guard's checks applied. See the module documentation.
pub struct FrameGuard<IO> {
    io: IO,
    inbound: Inbound,
    outbound: Frames,
    enforcer: Enforcer,
    phase: Phase,
    events: Arc<dyn GuardEvents>,
    clock: Clock,
    /// How long to read and discard after the GOAWAY.
    linger: Duration,
    /// A read waiting for the codec's write to reach a frame boundary.
    read_waker: Option<Waker>,
    /// How long the client has for its preface, from the first read.
    preface_timeout: Option<Duration>,
    preface_deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> FrameGuard<IO> {
    /// Wraps `io`, the server side of an HTTP/2 connection (after TLS).
    pub fn new(io: IO, policy: PingPolicy, events: Arc<dyn GuardEvents>) -> Self {
        Self::with_clock(io, policy, events, Clock::Tokio)
    }

    fn with_clock(io: IO, policy: PingPolicy, events: Arc<dyn GuardEvents>, clock: Clock) -> Self {
        FrameGuard {
            io,
            inbound: Inbound::default(),
            outbound: Frames::default(),
            enforcer: Enforcer::new(policy),
            phase: Phase::Serving,
            events,
            clock,
            linger: LINGER,
            read_waker: None,
            preface_timeout: None,
            preface_deadline: None,
        }
    }

    /// Closes the connection (reads see EOF) when the client's HTTP/2
    /// preface is not complete `timeout` after the codec first reads. The codec
    /// waits for it forever, and its graceful shutdown waits for it too, so
    /// neither `max_connection_idle` nor a drain would end such a
    /// connection.
    pub fn with_preface_timeout(mut self, timeout: Duration) -> Self {
        self.preface_timeout = Some(timeout);
        self
    }
}

/// Where the connection is with respect to enforcement.
enum Phase {
    /// Passing bytes through and watching frames.
    Serving,
    /// Tripped: this GOAWAY goes out at the next outbound frame boundary.
    GoAway {
        frame: Vec<u8>,
        written: usize,
    },
    Flush,
    Shutdown,
    /// GOAWAY sent and the write side shut: reads discard the client's
    /// bytes until it closes or the timer fires; writes are discarded.
    Lingering(Pin<Box<Sleep>>),
    /// Reads see EOF; writes are discarded.
    Closed,
}

/// grpc-go's wait between its GOAWAY and closing the socket.
const LINGER: Duration = Duration::from_secs(1);
/// Reads drained in one poll while lingering, before yielding.
const DRAIN_READS: usize = 16;

/// Where "now" comes from: tokio's clock, or in tests one they move by hand
/// (the crate's tokio has no `test-util`, so `time::pause` is unavailable).
#[derive(Clone)]
enum Clock {
    Tokio,
    #[cfg(test)]
    Manual(Arc<std::sync::Mutex<Instant>>),
}

impl Clock {
    fn now(&self) -> Instant {
        match self {
            Clock::Tokio => Instant::now(),
            #[cfg(test)]
            Clock::Manual(now) => *now.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> FrameGuard<IO> {
    /// Watches bytes the codec got written.
    fn inspect_outbound(&mut self, bytes: &[u8]) {
        self.outbound
            .feed(bytes, &mut ServerFrames(&mut self.enforcer));
    }

    fn trip(&mut self) {
        let kind = self.enforcer.tripped.unwrap_or(Flood::Pings);
        self.phase = Phase::GoAway {
            frame: goaway_frame(self.enforcer.goaway_last_stream(), kind.debug_data()),
            written: 0,
        };
        self.events.flood(kind);
    }

    /// Whether the preface deadline passed (then the connection is
    /// closed); arms it on the first read.
    fn preface_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = self.preface_timeout else {
            return false;
        };
        if self.inbound.preface_done() {
            self.preface_timeout = None;
            self.preface_deadline = None;
            return false;
        }
        let deadline = self
            .preface_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.preface_timeout = None;
        self.preface_deadline = None;
        self.events.preface_timeout();
        self.close();
        true
    }

    /// Writes the GOAWAY, flushes and shuts the write side down, then
    /// starts lingering. Only at an outbound frame boundary.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let io = Pin::new(&mut self.io);
            let step = match &mut self.phase {
                Phase::Serving | Phase::Lingering(_) | Phase::Closed => return Poll::Ready(Ok(())),
                Phase::GoAway { frame, written } => {
                    match ready!(io.poll_write(cx, &frame[*written..])) {
                        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            *written += n;
                            if *written == frame.len() {
                                self.phase = Phase::Flush;
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Phase::Flush => match ready!(io.poll_flush(cx)) {
                    Ok(()) => {
                        self.phase = Phase::Shutdown;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Phase::Shutdown => {
                    // The GOAWAY is flushed; failing to close politely
                    // changes nothing for the peer.
                    let _ = ready!(io.poll_shutdown(cx));
                    self.phase = Phase::Lingering(Box::pin(tokio::time::sleep(self.linger)));
                    self.wake_reader();
                    return Poll::Ready(Ok(()));
                }
            };
            if let Err(e) = step {
                self.close();
                return Poll::Ready(Err(e));
            }
        }
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.wake_reader();
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
    }

    /// A write after the guard tripped: finish the codec's current frame and no
    /// more, then inject the GOAWAY.
    fn poll_write_tripped(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let room = self.outbound.until_boundary();
        if room > 0 {
            let buf = &buf[..room.min(buf.len())];
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
            self.inspect_outbound(&buf[..n.min(buf.len())]);
            if self.outbound.at_boundary() {
                self.wake_reader();
            }
            return Poll::Ready(Ok(n));
        }
        ready!(self.poll_goaway(cx))?;
        // Make sure the codec reads again soon, so the linger timer is armed.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(buf.len()))
    }

    /// After the GOAWAY: discard the client's bytes (in the codec's buffer)
    /// until it closes or the linger ends, then report EOF.
    fn poll_linger(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Phase::Lingering(until) = &mut self.phase else {
            return Poll::Ready(Ok(()));
        };
        if until.as_mut().poll(cx).is_ready() {
            self.close();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        for _ in 0..DRAIN_READS {
            match Pin::new(&mut self.io).poll_read(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if buf.filled().len() > before => buf.set_filled(before),
                // EOF or a broken connection: nothing left to protect.
                Poll::Ready(_) => {
                    self.close();
                    return Poll::Ready(Ok(()));
                }
            }
        }
        // A client still sending: let other tasks run, then drain on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for FrameGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Serving => {
                    if this.preface_expired(cx) {
                        return Poll::Ready(Ok(()));
                    }
                    // Judged bytes first, then held ones wait for more.
                    if this.inbound.has_ready() {
                        this.inbound.take_ready(buf);
                        return Poll::Ready(Ok(()));
                    }
                    let mut sink = ClientFrames {
                        enforcer: &mut this.enforcer,
                        clock: &this.clock,
                    };
                    let tripped = if this.inbound.holding() {
                        let mut chunk = [0u8; HELD_READ];
                        let mut more = ReadBuf::new(&mut chunk);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut more))?;
                        if more.filled().is_empty() {
                            this.inbound.release_held();
                            continue;
                        }
                        this.inbound.push(more.filled(), &mut sink).is_err()
                    } else {
                        let before = buf.filled().len();
                        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                        let read = buf.filled().len() - before;
                        match this
                            .inbound
                            .scan(&mut buf.filled_mut()[before..], &mut sink)
                        {
                            Ok(pass) => {
                                buf.set_filled(before + pass);
                                // Nothing read (EOF), or something for the codec.
                                if read == 0 || pass > 0 {
                                    return Poll::Ready(Ok(()));
                                }
                                false
                            }
                            Err(Tripped) => {
                                buf.set_filled(before);
                                true
                            }
                        }
                    };
                    if tripped {
                        // Nothing from the decision on reaches the codec; the
                        // GOAWAY's last-stream-id already covers any stream
                        // these bytes opened.
                        this.inbound.discard();
                        this.trip();
                    }
                }
                Phase::Lingering(_) => return this.poll_linger(cx, buf),
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::GoAway { .. } | Phase::Flush | Phase::Shutdown => {
                    if !this.outbound.at_boundary() {
                        // The codec is mid-frame and will keep writing (it only
                        // stops when the stream is not writable, and then a
                        // wake-up is registered); its writes inject the
                        // GOAWAY and wake this read.
                        this.read_waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    ready!(this.poll_goaway(cx))?;
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FrameGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Serving => {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
                this.inspect_outbound(&buf[..n.min(buf.len())]);
                Poll::Ready(Ok(n))
            }
            Phase::Lingering(_) | Phase::Closed => Poll::Ready(Ok(buf.len())),
            Phase::GoAway { .. } | Phase::Flush | Phase::Shutdown => {
                this.poll_write_tripped(cx, buf)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Serving => {
                let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
                let mut left = n;
                for buf in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(buf.len());
                    this.inspect_outbound(&buf[..take]);
                    left -= take;
                }
                Poll::Ready(Ok(n))
            }
            Phase::Lingering(_) | Phase::Closed => {
                Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
            }
            // Rare: one slice at a time keeps the boundary arithmetic simple.
            Phase::GoAway { .. } | Phase::Flush | Phase::Shutdown => {
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                this.poll_write_tripped(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Serving => Pin::new(&mut this.io).poll_flush(cx),
            Phase::Lingering(_) | Phase::Closed => Poll::Ready(Ok(())),
            Phase::GoAway { .. } | Phase::Flush | Phase::Shutdown => {
                if !this.outbound.at_boundary() {
                    return Pin::new(&mut this.io).poll_flush(cx);
                }
                ready!(this.poll_goaway(cx))?;
                // The codec may be parked on a read of the client, which may
                // never come: have it read again so the linger timer is armed.
                cx.waker().wake_by_ref();
                Poll::Ready(Ok(()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Serving => Pin::new(&mut this.io).poll_shutdown(cx),
            Phase::Lingering(_) | Phase::Closed => Poll::Ready(Ok(())),
            Phase::GoAway { .. } | Phase::Flush | Phase::Shutdown => {
                if this.outbound.at_boundary() {
                    return this.poll_goaway(cx);
                }
                // The codec gave up mid-frame: no GOAWAY can follow it.
                let res = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                this.close();
                Poll::Ready(res)
            }
        }
    }
}

#[cfg(test)]
mod tests;
