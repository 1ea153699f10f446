//! Client PING enforcement for hyper's HTTP/2 server, the way grpc-go (and so
//! the Temporal frontend) does it.
//!
//! hyper answers every client PING and exposes neither a hook nor a limit, so
//! a client can ping as often as it likes. The frontend behind us would not
//! allow that: grpc-go counts a PING sooner than `min_interval` after the
//! previous one as a strike (with no open streams and pings without streams
//! not permitted, a PING within two hours of the previous one is a strike),
//! forgives everything once the server has sent HEADERS or DATA, and when
//! the strikes exceed `max_strikes` it sends GOAWAY `ENHANCE_YOUR_CALM` with
//! debug data `too_many_pings` and closes the connection (a grpc-go client
//! then doubles its keepalive interval).
//!
//! [`H2Guard`] does the same from outside hyper: it wraps the decrypted byte
//! stream (the TLS stream, under `TokioIo`) and reads the HTTP/2 frame
//! headers going both ways. This is the only place the frames are visible:
//! below it they are encrypted, above it hyper consumes them. Bytes pass
//! through unchanged; the guard keeps a 9-byte header buffer and a payload
//! countdown per direction and never buffers or copies payloads.
//!
//! - **Inbound** (`poll_read`): the 24-byte client preface, then frame
//!   headers. PING without ACK is judged; HEADERS opening a new stream raise
//!   the highest client stream id (the GOAWAY's last-stream-id).
//! - **Outbound** (`poll_write`): hyper's frame boundaries (it may write part
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
//! **The GOAWAY.** When the strikes run out (always while reading, since
//! only a PING can trip it), the bytes of that read are withheld from hyper
//! and the guard writes its own GOAWAY into the underlying stream at the
//! next outbound frame boundary, before any more of hyper's bytes, then
//! flushes and shuts the write side down (TLS close_notify, TCP FIN).
//! - If hyper is not in the middle of a frame (idle, or its last write
//!   ended on a boundary), the read that tripped writes the GOAWAY at once.
//! - If hyper is mid-frame, its writes are cut at the end of that frame
//!   (a short write, which hyper retries), and the next write or flush, at
//!   the boundary, writes the GOAWAY; a read waiting for that is woken.
//!
//! Then the guard lingers, as grpc-go does (grpc-go#5358): closing a socket
//! with unread bytes makes the kernel send RST instead of FIN, and a client
//! that gets RST may lose the GOAWAY unread, never learning why. So reads
//! discard what the client still sends until it closes (clients close on
//! GOAWAY and EOF) or one second passes, and only then return EOF, upon
//! which hyper ends the connection and drops its calls. Meanwhile hyper's
//! writes are accepted and discarded: nothing more reaches the client.
//!
//! The GOAWAY's last-stream-id is the highest stream id the client opened,
//! or the one hyper announced in its own GOAWAY if lower (ids must never
//! grow between GOAWAYs): no processed stream is ever claimed unprocessed,
//! so a client never retries a call that ran. hyper writes its SETTINGS
//! before it first reads, so the GOAWAY never precedes the server preface.
//!
//! A flooding client that also stops reading can leave the GOAWAY write
//! pending, exactly as it would leave hyper's writes pending: what bounds a
//! connection's life (max age and its grace) must end it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use inbound::{FrameSink, Inbound, Tripped};

mod hpack;
mod huffman;
mod inbound;

/// Bytes read per read while header bytes are held (they go to the guard's
/// buffer, not hyper's).
const HELD_READ: usize = 8 * 1024;

/// grpc-go's keepalive enforcement policy (`keepalive.EnforcementPolicy`
/// plus its fixed strike limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingPolicy {
    /// A client PING sooner than this after the previous one is a strike.
    pub min_interval: Duration,
    /// Whether PINGs are allowed while the client has no open stream. When
    /// they are not, such a PING is a strike unless the previous one was
    /// more than two hours earlier (grpc-go's rule).
    pub permit_without_stream: bool,
    /// Strikes tolerated; the one after them closes the connection.
    pub max_strikes: u32,
}

impl Default for PingPolicy {
    /// The Temporal frontend's values: 10 s, pings without streams
    /// permitted, and grpc-go's two strikes.
    fn default() -> Self {
        PingPolicy {
            min_interval: Duration::from_secs(10),
            permit_without_stream: true,
            max_strikes: 2,
        }
    }
}

/// What the guard reports; the caller logs and counts.
pub trait GuardEvents: Send + Sync + 'static {
    /// The connection broke the ping policy: it is being sent GOAWAY
    /// `too_many_pings` and closed. Called at most once per connection.
    fn too_many_pings(&self);
}

/// A plain counter is enough for metrics and tests.
impl GuardEvents for AtomicU64 {
    fn too_many_pings(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }
}

/// The decrypted stream of one client connection, as hyper sees it, with
/// grpc-go's PING enforcement applied. See the module documentation.
pub struct H2Guard<IO> {
    io: IO,
    inbound: Inbound,
    outbound: Frames,
    enforcer: Enforcer,
    phase: Phase,
    events: Arc<dyn GuardEvents>,
    clock: Clock,
    /// How long to read and discard after the GOAWAY.
    linger: Duration,
    /// A read waiting for hyper's write to reach a frame boundary.
    read_waker: Option<Waker>,
}

impl<IO> H2Guard<IO> {
    /// Wraps `io`, the server side of an HTTP/2 connection (after TLS).
    pub fn new(io: IO, policy: PingPolicy, events: Arc<dyn GuardEvents>) -> Self {
        Self::with_clock(io, policy, events, Clock::Tokio)
    }

    fn with_clock(io: IO, policy: PingPolicy, events: Arc<dyn GuardEvents>, clock: Clock) -> Self {
        H2Guard {
            io,
            inbound: Inbound::default(),
            outbound: Frames::default(),
            enforcer: Enforcer::new(policy),
            phase: Phase::Serving,
            events,
            clock,
            linger: LINGER,
            read_waker: None,
        }
    }
}

/// Where the connection is with respect to enforcement.
enum Phase {
    /// Passing bytes through and watching frames.
    Serving,
    /// Tripped: this GOAWAY goes out at the next outbound frame boundary.
    GoAway {
        frame: [u8; GOAWAY_FRAME_LEN],
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

impl<IO: AsyncRead + AsyncWrite + Unpin> H2Guard<IO> {
    /// Watches bytes hyper got written.
    fn inspect_outbound(&mut self, bytes: &[u8]) {
        self.outbound
            .feed(bytes, &mut ServerFrames(&mut self.enforcer));
    }

    fn trip(&mut self) {
        self.phase = Phase::GoAway {
            frame: goaway_frame(self.enforcer.goaway_last_stream()),
            written: 0,
        };
        self.events.too_many_pings();
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

    /// A write after the guard tripped: finish hyper's current frame and no
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
        // Make sure hyper reads again soon, so the linger timer is armed.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(buf.len()))
    }

    /// After the GOAWAY: discard the client's bytes (in hyper's buffer)
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

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Serving => {
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
                                // Nothing read (EOF), or something for hyper.
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
                        // Nothing from the decision on reaches hyper; the
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
                        // hyper is mid-frame and will keep writing (it only
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

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2Guard<IO> {
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
                // hyper may be parked on a read of the client, which may
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
                // hyper gave up mid-frame: no GOAWAY can follow it.
                let res = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                this.close();
                Poll::Ready(res)
            }
        }
    }
}

// ===== HTTP/2 framing (RFC 9113 §4.1, §3.4) =====

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEAD_LEN: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
/// END_STREAM on DATA and HEADERS, ACK on PING: the same bit.
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const TOO_MANY_PINGS: &[u8; 14] = b"too_many_pings";
const GOAWAY_FRAME_LEN: usize = HEAD_LEN + 8 + TOO_MANY_PINGS.len();

/// grpc-go's `defaultPingTimeout`: without streams (and not permitted), a
/// PING is fine only this long after the previous one.
const NO_STREAM_PING_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);
/// Open streams tracked per connection before the guard stops counting and
/// assumes there are some (only when pings without streams are refused).
const MAX_TRACKED_STREAMS: usize = 1024;

fn goaway_frame(last_stream: u32) -> [u8; GOAWAY_FRAME_LEN] {
    let mut frame = [0u8; GOAWAY_FRAME_LEN];
    let len = (GOAWAY_FRAME_LEN - HEAD_LEN) as u32;
    frame[..3].copy_from_slice(&len.to_be_bytes()[1..]);
    frame[3] = GOAWAY;
    // Flags 0, stream 0.
    frame[9..13].copy_from_slice(&(last_stream & STREAM_ID_MASK).to_be_bytes());
    frame[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    frame[17..].copy_from_slice(TOO_MANY_PINGS);
    frame
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHead {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn decode(b: &[u8; HEAD_LEN]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & STREAM_ID_MASK,
        }
    }
}

/// What a direction does with the frames it sees.
trait OnFrame {
    /// Each frame header, as soon as its 9 bytes are in. True asks for the
    /// first four payload bytes, delivered to `word`.
    fn head(&mut self, head: FrameHead) -> bool;
    fn word(&mut self, _word: u32) {}
}

/// Splits a byte stream into frames across arbitrary chunking, keeping a
/// header's worth of bytes and a countdown of payload to skip.
#[derive(Debug, Default)]
struct Frames {
    head: [u8; HEAD_LEN],
    /// Bytes of `head` received.
    have: u8,
    /// Payload bytes still to pass.
    skip: u32,
    /// Collecting the first payload word into `word`.
    capture: bool,
    word: [u8; 4],
    word_have: u8,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8], on: &mut impl OnFrame) {
        while !bytes.is_empty() {
            if self.capture {
                let at = usize::from(self.word_have);
                let take = (4 - at).min(bytes.len());
                self.word[at..at + take].copy_from_slice(&bytes[..take]);
                self.word_have += take as u8;
                self.skip -= take as u32;
                bytes = &bytes[take..];
                if self.word_have == 4 {
                    self.capture = false;
                    on.word(u32::from_be_bytes(self.word));
                }
            } else if self.skip > 0 {
                let take = (self.skip as usize).min(bytes.len());
                self.skip -= take as u32;
                bytes = &bytes[take..];
            } else {
                let at = usize::from(self.have);
                let take = (HEAD_LEN - at).min(bytes.len());
                self.head[at..at + take].copy_from_slice(&bytes[..take]);
                self.have += take as u8;
                bytes = &bytes[take..];
                if usize::from(self.have) == HEAD_LEN {
                    self.have = 0;
                    let head = FrameHead::decode(&self.head);
                    self.skip = head.len;
                    if on.head(head) && head.len >= 4 {
                        self.capture = true;
                        self.word_have = 0;
                    }
                }
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }

    /// Bytes that may pass before the next boundary, or that complete the
    /// header in progress (then the payload length is known); 0 at a
    /// boundary.
    fn until_boundary(&self) -> usize {
        if self.skip > 0 {
            self.skip as usize
        } else if self.have > 0 {
            HEAD_LEN - usize::from(self.have)
        } else {
            0
        }
    }
}

/// The enforcer, as the inbound side's frame sink.
struct ClientFrames<'a> {
    enforcer: &'a mut Enforcer,
    clock: &'a Clock,
}

impl FrameSink for ClientFrames<'_> {
    fn frame(&mut self, head: FrameHead) -> bool {
        self.enforcer.client_frame(head, self.clock)
    }
}

struct ServerFrames<'a>(&'a mut Enforcer);

impl OnFrame for ServerFrames<'_> {
    fn head(&mut self, head: FrameHead) -> bool {
        self.0.server_frame(head);
        // hyper's own GOAWAY: learn its last-stream-id.
        head.kind == GOAWAY && head.stream == 0
    }

    fn word(&mut self, word: u32) {
        self.0.server_goaway(word & STREAM_ID_MASK);
    }
}

// ===== The policy =====

/// grpc-go's `handlePing` and the state it reads.
#[derive(Debug)]
struct Enforcer {
    policy: PingPolicy,
    last_ping: Option<Instant>,
    strikes: u32,
    /// The server sent HEADERS or DATA since the last PING: the next PING
    /// clears the strikes and is not judged (grpc-go's `resetPingStrikes`).
    reset_strikes: bool,
    max_client_stream: u32,
    /// The last-stream-id of hyper's own GOAWAY, if it sent one.
    server_goaway: Option<u32>,
    open: OpenStreams,
}

impl Enforcer {
    fn new(policy: PingPolicy) -> Enforcer {
        Enforcer {
            policy,
            last_ping: None,
            strikes: 0,
            reset_strikes: false,
            max_client_stream: 0,
            server_goaway: None,
            open: OpenStreams::default(),
        }
    }

    fn tracks_streams(&self) -> bool {
        !self.policy.permit_without_stream
    }

    /// A frame from the client; true if it breaks the policy.
    fn client_frame(&mut self, head: FrameHead, clock: &Clock) -> bool {
        match head.kind {
            // Client stream ids only grow: a lower one is trailers.
            HEADERS if head.stream > self.max_client_stream => {
                self.max_client_stream = head.stream;
                if self.tracks_streams() {
                    self.open.insert(head.stream);
                }
                false
            }
            RST_STREAM => {
                self.open.remove(head.stream);
                false
            }
            PING if head.flags & FLAG_ACK == 0 => self.ping(clock.now()),
            _ => false,
        }
    }

    fn server_frame(&mut self, head: FrameHead) {
        match head.kind {
            DATA | HEADERS => {
                self.reset_strikes = true;
                if head.flags & FLAG_END_STREAM != 0 {
                    self.open.remove(head.stream);
                }
            }
            RST_STREAM => self.open.remove(head.stream),
            _ => {}
        }
    }

    fn server_goaway(&mut self, last_stream: u32) {
        self.server_goaway = Some(
            self.server_goaway
                .map_or(last_stream, |s| s.min(last_stream)),
        );
    }

    fn goaway_last_stream(&self) -> u32 {
        self.server_goaway
            .map_or(self.max_client_stream, |s| s.min(self.max_client_stream))
    }

    /// A client PING (not an ACK) at `now`; true past the last strike.
    fn ping(&mut self, now: Instant) -> bool {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.reset_strikes) {
            self.strikes = 0;
            return false;
        }
        let min = if self.tracks_streams() && !self.open.any() {
            NO_STREAM_PING_INTERVAL
        } else {
            self.policy.min_interval
        };
        if last.is_some_and(|last| now.saturating_duration_since(last) < min) {
            self.strikes += 1;
        }
        self.strikes > self.policy.max_strikes
    }
}

/// Ids of the client's open streams, kept only when pings without streams
/// are refused. A linear scan, run on stream ends only: a connection has at
/// most its concurrency limit of them, usually a handful.
#[derive(Debug, Default)]
struct OpenStreams {
    ids: Vec<u32>,
    /// More than `MAX_TRACKED_STREAMS` were open at once; from then on the
    /// connection counts as always having streams.
    overflowed: bool,
}

impl OpenStreams {
    fn insert(&mut self, id: u32) {
        if self.ids.len() < MAX_TRACKED_STREAMS {
            self.ids.push(id);
        } else {
            self.overflowed = true;
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(i) = self.ids.iter().position(|&open| open == id) {
            self.ids.swap_remove(i);
        }
    }

    fn any(&self) -> bool {
        self.overflowed || !self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! Real peers over an in-memory pipe: hyper's HTTP/2 server behind the
    //! guard, the `h2` crate's client (or hand-written frames) in front.
    //! Time is a clock the tests move by hand: the crate's tokio has no
    //! `test-util`, so `time::pause` is not available; hyper needs no timer
    //! here (no keepalive or header timeout configured).

    use std::convert::Infallible;
    use std::future::poll_fn;
    use std::sync::Mutex;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Frame, Incoming};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::*;

    /// A failsafe on awaits that should end promptly; only a failing test
    /// waits it out.
    const PROMPTLY: Duration = Duration::from_secs(10);
    const SETTINGS: u8 = 0x4;
    const WINDOW_UPDATE: u8 = 0x8;
    const END_HEADERS: u8 = 0x4;
    const BIG: usize = 1 << 20;
    const SDK_PING_INTERVAL: Duration = Duration::from_secs(30);

    type TestBody = BoxBody<Bytes, Infallible>;
    type Chunks = Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>;

    /// A response body the test feeds, one DATA frame per chunk.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
        }
    }

    async fn respond(
        req: Request<Incoming>,
        chunks: Chunks,
    ) -> Result<Response<TestBody>, Infallible> {
        let body = match req.uri().path() {
            // An open stream on which the server sends nothing (a long poll).
            "/hang" => std::future::pending().await,
            "/stream" => {
                let rx = chunks
                    .lock()
                    .unwrap()
                    .take()
                    .expect("one /stream call per test");
                ChannelBody(rx).boxed()
            }
            "/big" => Full::new(Bytes::from(vec![b'x'; BIG])).boxed(),
            "/echo" => Full::new(req.into_body().collect().await.unwrap().to_bytes()).boxed(),
            _ => Full::new(Bytes::from_static(b"ok")).boxed(),
        };
        Ok(Response::new(body))
    }

    fn guarded<IO>(
        io: IO,
        policy: PingPolicy,
    ) -> (H2Guard<IO>, Arc<AtomicU64>, Arc<Mutex<Instant>>) {
        let events = Arc::new(AtomicU64::new(0));
        let now = Arc::new(Mutex::new(Instant::now()));
        let guard = H2Guard::with_clock(io, policy, events.clone(), Clock::Manual(now.clone()));
        (guard, events, now)
    }

    fn serve<IO>(guard: H2Guard<IO>, chunks: Chunks) -> JoinHandle<Result<(), hyper::Error>>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |req| respond(req, chunks.clone()));
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(guard), service),
        )
    }

    struct Peer {
        send: h2::client::SendRequest<Bytes>,
        pings: h2::PingPong,
        client: JoinHandle<Result<(), h2::Error>>,
        server: JoinHandle<Result<(), hyper::Error>>,
        events: Arc<AtomicU64>,
        now: Arc<Mutex<Instant>>,
        chunks: mpsc::Sender<Bytes>,
    }

    /// hyper behind the guard, and an `h2` client, over a pipe that holds
    /// `capacity` bytes each way.
    async fn connect(policy: PingPolicy, capacity: usize) -> Peer {
        connect_with(policy, capacity, false).await
    }

    /// `vectored`: the server's side takes vectored writes, as a TLS stream
    /// does, so hyper hands over frame heads and payloads in separate
    /// slices.
    async fn connect_with(policy: PingPolicy, capacity: usize, vectored: bool) -> Peer {
        let (client_io, server_io) = tokio::io::duplex(capacity);
        let (chunks, rx) = mpsc::channel(1);
        let rx = Arc::new(Mutex::new(Some(rx)));
        let (server, events, now) = if vectored {
            let (guard, events, now) = guarded(Vectored(server_io), policy);
            (serve(guard, rx), events, now)
        } else {
            let (guard, events, now) = guarded(server_io, policy);
            (serve(guard, rx), events, now)
        };
        let (send, mut conn) = h2::client::handshake(client_io).await.unwrap();
        let pings = conn.ping_pong().unwrap();
        let client = tokio::spawn(conn);
        Peer {
            send,
            pings,
            client,
            server,
            events,
            now,
            chunks,
        }
    }

    impl Peer {
        fn advance(&self, by: Duration) {
            *self.now.lock().unwrap() += by;
        }

        fn events(&self) -> u64 {
            self.events.load(Ordering::Relaxed)
        }

        async fn ping(&mut self) -> Result<(), h2::Error> {
            let pong = timeout(PROMPTLY, self.pings.ping(h2::Ping::opaque())).await;
            pong.expect("a ping is answered or refused promptly")
                .map(drop)
        }

        /// Starts a GET; the response future keeps the stream open.
        async fn start(&mut self, path: &str) -> h2::client::ResponseFuture {
            let req = Request::get(format!("http://guard.test{path}"))
                .body(())
                .unwrap();
            let mut send = self.send.clone().ready().await.unwrap();
            send.send_request(req, true).unwrap().0
        }

        async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
            let response = timeout(PROMPTLY, self.start(path).await)
                .await
                .unwrap()
                .unwrap();
            let status = response.status();
            let mut body = response.into_body();
            let mut all = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                body.flow_control().release_capacity(chunk.len()).unwrap();
                all.extend_from_slice(&chunk);
            }
            (status, Bytes::from(all))
        }

        /// Pings back to back until one is refused; how many were answered.
        async fn flood(&mut self, pings: usize) -> usize {
            for answered in 0..pings {
                if self.ping().await.is_err() {
                    return answered;
                }
            }
            pings
        }

        /// The connection got GOAWAY too_many_pings and closed, on both ends.
        async fn assert_refused(self) {
            let ended = timeout(PROMPTLY, self.client)
                .await
                .expect("client connection ends");
            let err = ended
                .unwrap()
                .expect_err("the client connection ends in an error");
            assert!(err.is_go_away() && err.is_remote(), "{err}");
            assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err}");
            assert!(err.to_string().contains("too_many_pings"), "{err}");
            let served = timeout(PROMPTLY, self.server)
                .await
                .expect("hyper's connection ends");
            let _ = served.unwrap();
            assert_eq!(self.events.load(Ordering::Relaxed), 1);
        }
    }

    /// A pipe that takes vectored writes, copying at most 1000 bytes of
    /// the slices per write so that writes end anywhere in a frame.
    struct Vectored(DuplexStream);

    impl AsyncRead for Vectored {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Vectored {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut chunk = [0u8; 1000];
            let mut len = 0;
            for buf in bufs {
                let take = (chunk.len() - len).min(buf.len());
                chunk[len..len + take].copy_from_slice(&buf[..take]);
                len += take;
            }
            Pin::new(&mut self.0).poll_write(cx, &chunk[..len])
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Whole frames, or a panic on a truncated one.
    fn parse(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::decode(bytes[..HEAD_LEN].try_into().unwrap());
            let end = HEAD_LEN + head.len as usize;
            frames.push((head, bytes[HEAD_LEN..end].to_vec()));
            bytes = &bytes[end..];
        }
        frames
    }

    /// The complete frames at the start of `bytes` (a partial one at the end
    /// is left out).
    fn complete_frames(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some(head) = bytes.get(..HEAD_LEN) {
            let head = FrameHead::decode(head.try_into().unwrap());
            let end = HEAD_LEN + head.len as usize;
            let Some(payload) = bytes.get(HEAD_LEN..end) else {
                break;
            };
            frames.push((head, payload.to_vec()));
            bytes = &bytes[end..];
        }
        frames
    }

    fn too_many_pings_payload(last_stream: u32) -> Vec<u8> {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        payload.extend_from_slice(b"too_many_pings");
        payload
    }

    // ----- 1. floods -----

    #[tokio::test]
    async fn ping_flood_without_streams_gets_goaway_too_many_pings() {
        let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
        // First ping: nothing to compare with; then three strikes, and the
        // third (over max_strikes = 2) is refused, as grpc-go does.
        assert_eq!(peer.flood(5).await, 3);
        peer.assert_refused().await;
    }

    #[tokio::test]
    async fn ping_flood_with_an_idle_stream_gets_goaway_too_many_pings() {
        let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
        let poll = peer.start("/hang").await;
        assert_eq!(peer.flood(5).await, 3);
        // Stream 1 is at or below the GOAWAY's last-stream-id (it may have
        // run), so h2 fails it with the connection's end, not a refusal.
        let err = timeout(PROMPTLY, poll)
            .await
            .unwrap()
            .expect_err("the open call fails");
        assert!(err.is_io(), "{err}");
        peer.assert_refused().await;
    }

    #[tokio::test]
    async fn goaway_is_whole_frames_then_eof_and_names_the_last_client_stream() {
        let (mut client, server_io) = tokio::io::duplex(64 * 1024);
        let (guard, events, _now) = guarded(server_io, PingPolicy::default());
        let server = serve(guard, Arc::default());
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        // GET /hang on stream 1 (HPACK: :method GET, :scheme http,
        // :path "/hang", :authority "x").
        let block = [
            0x82, 0x86, 0x44, 5, b'/', b'h', b'a', b'n', b'g', 0x41, 1, b'x',
        ];
        out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 1, &block));
        for i in 0..4 {
            out.extend(frame(PING, 0, 0, &[i; 8]));
        }
        client.write_all(&out).await.unwrap();

        let mut got = Vec::new();
        timeout(PROMPTLY, client.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let frames = parse(&got);
        assert_eq!(frames[0].0.kind, SETTINGS, "the server preface comes first");
        let (head, payload) = frames.last().unwrap();
        assert_eq!((head.kind, head.flags, head.stream), (GOAWAY, 0, 0));
        assert_eq!(payload, &too_many_pings_payload(1));
        assert_eq!(events.load(Ordering::Relaxed), 1);
        drop(client);
        let served = timeout(PROMPTLY, server)
            .await
            .expect("hyper's connection ends");
        assert!(served.unwrap().is_ok());
    }

    #[tokio::test]
    async fn goaway_waits_for_the_frame_hyper_is_writing() {
        let (mut client, io) = tokio::io::duplex(64 * 1024);
        let (mut guard, events, _now) = guarded(io, PingPolicy::default());
        // hyper's side: SETTINGS, then half of a DATA frame.
        let data = frame(DATA, 0, 1, &[7; 100]);
        guard.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        guard.write_all(&data[..50]).await.unwrap();
        // The client's side: a stream, then a flood.
        let mut out = PREFACE.to_vec();
        out.extend(frame(HEADERS, END_HEADERS, 5, &[0x82]));
        for _ in 0..4 {
            out.extend(frame(PING, 0, 0, &[0; 8]));
        }
        client.write_all(&out).await.unwrap();

        // The read that trips withholds its bytes and cannot inject
        // mid-frame: it waits.
        let mut buf = [0u8; 512];
        let mut read = ReadBuf::new(&mut buf);
        let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut guard).poll_read(cx, &mut read))).await;
        assert!(first.is_pending());
        assert!(read.filled().is_empty());
        assert_eq!(events.load(Ordering::Relaxed), 1);

        // hyper's next write is cut at the end of its frame...
        let mut rest = data[50..].to_vec();
        let rest_of_frame = rest.len();
        rest.extend(frame(PING, FLAG_ACK, 0, &[0; 8]));
        assert_eq!(guard.write(&rest).await.unwrap(), rest_of_frame);
        // ...and the one after injects the GOAWAY; it and all later writes
        // are discarded.
        let ack = &rest[rest_of_frame..];
        assert_eq!(guard.write(ack).await.unwrap(), ack.len());
        assert_eq!(guard.write(ack).await.unwrap(), ack.len());

        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        // The client's bytes are drained until it closes, then EOF.
        client.write_all(&frame(PING, 0, 0, &[9; 8])).await.unwrap();
        drop(client);
        assert_eq!(guard.read(&mut buf).await.unwrap(), 0, "reads see EOF");
        let frames = parse(&got);
        let kinds: Vec<u8> = frames.iter().map(|(h, _)| h.kind).collect();
        assert_eq!(kinds, [SETTINGS, DATA, GOAWAY]);
        assert_eq!(frames[1].1, [7; 100]);
        assert_eq!(frames[2].1, too_many_pings_payload(5));
    }

    #[tokio::test]
    async fn goaway_follows_the_data_frame_hyper_is_stuck_in() {
        // hyper answers /big in 16 KiB DATA frames; the client stops reading
        // 2 KiB in, so hyper blocks in the middle of the first one.
        let (client, server_io) = tokio::io::duplex(1024);
        let (guard, events, _now) = guarded(server_io, PingPolicy::default());
        let server = serve(guard, Arc::default());
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        let block = [0x82, 0x86, 0x44, 4, b'/', b'b', b'i', b'g', 0x41, 1, b'x'];
        out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 1, &block));
        wr.write_all(&out).await.unwrap();
        let mut got = vec![0u8; 2048];
        rd.read_exact(&mut got).await.unwrap();

        // The last reset was that DATA frame's head: four pings are one
        // free and three strikes.
        let mut flood = Vec::new();
        for i in 0..4 {
            flood.extend(frame(PING, 0, 0, &[i; 8]));
        }
        wr.write_all(&flood).await.unwrap();
        timeout(PROMPTLY, async {
            while events.load(Ordering::Relaxed) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the flood trips the guard");

        // Draining lets hyper finish its frame; then comes the GOAWAY.
        timeout(PROMPTLY, rd.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let frames = parse(&got);
        let data: Vec<_> = frames.iter().filter(|(h, _)| h.kind == DATA).collect();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].0.len, 16_384);
        let kinds: Vec<u8> = frames.iter().rev().take(2).map(|(h, _)| h.kind).collect();
        assert_eq!(kinds, [GOAWAY, DATA]);
        assert_eq!(frames.last().unwrap().1, too_many_pings_payload(1));
        // The client closes; hyper reads EOF and ends.
        drop((rd, wr));
        let served = timeout(PROMPTLY, server).await.unwrap().unwrap();
        assert!(served.is_ok(), "{served:?}");
    }

    #[tokio::test]
    async fn a_client_that_keeps_the_connection_open_is_cut_off_after_the_linger() {
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let (mut guard, events, _now) = guarded(server_io, PingPolicy::default());
        guard.linger = Duration::from_millis(50);
        let server = serve(guard, Arc::default());
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        for i in 0..4 {
            out.extend(frame(PING, 0, 0, &[i; 8]));
        }
        wr.write_all(&out).await.unwrap();
        // Keep pinging after the GOAWAY, never closing.
        let flooder = tokio::spawn(async move {
            while wr.write_all(&frame(PING, 0, 0, &[0; 8])).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut got = Vec::new();
        timeout(PROMPTLY, rd.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(parse(&got).last().unwrap().1, too_many_pings_payload(0));
        let started = std::time::Instant::now();
        let served = timeout(PROMPTLY, server)
            .await
            .expect("hyper ends after the linger");
        assert!(served.unwrap().is_ok());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(events.load(Ordering::Relaxed), 1);
        drop(rd);
        flooder.await.unwrap();
    }

    // ----- 2. SDK keepalive -----

    async fn sdk_pings_for_ten_minutes(peer: &mut Peer) {
        for _ in 0..20 {
            peer.advance(SDK_PING_INTERVAL);
            peer.ping()
                .await
                .expect("an SDK keepalive ping is never refused");
        }
        assert_eq!(peer.events(), 0);
        assert_eq!(
            peer.get("/").await,
            (StatusCode::OK, Bytes::from_static(b"ok"))
        );
    }

    #[tokio::test]
    async fn sdk_pinging_every_30s_without_streams_is_never_refused() {
        let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
        sdk_pings_for_ten_minutes(&mut peer).await;
    }

    #[tokio::test]
    async fn sdk_pinging_every_30s_during_a_long_poll_is_never_refused() {
        let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
        let _poll = peer.start("/hang").await;
        sdk_pings_for_ten_minutes(&mut peer).await;
    }

    // ----- 3. active calls -----

    #[tokio::test]
    async fn fast_pings_while_the_server_sends_data_are_not_strikes() {
        let mut peer = connect(PingPolicy::default(), 64 * 1024).await;
        let response = timeout(PROMPTLY, peer.start("/stream").await)
            .await
            .unwrap()
            .unwrap();
        let mut body = response.into_body();
        for i in 0..10u8 {
            peer.chunks.send(Bytes::from(vec![i; 100])).await.unwrap();
            let chunk = body.data().await.unwrap().unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            // No time passes at all: every ping would be a strike, but the
            // DATA before it resets them.
            peer.ping()
                .await
                .expect("a ping during an active response is not refused");
        }
        assert_eq!(peer.events(), 0);
        // The response goes quiet (the last ping used up the last reset):
        // the next three pings are strikes, and the third is refused.
        assert_eq!(peer.flood(5).await, 2);
        peer.assert_refused().await;
    }

    // ----- 4. pings without streams refused -----

    fn strict() -> PingPolicy {
        PingPolicy {
            permit_without_stream: false,
            ..PingPolicy::default()
        }
    }

    #[tokio::test]
    async fn slow_pings_without_streams_are_strikes_when_not_permitted() {
        let mut peer = connect(strict(), 64 * 1024).await;
        for _ in 0..3 {
            peer.advance(Duration::from_secs(60));
            peer.ping().await.unwrap();
        }
        peer.advance(Duration::from_secs(60));
        assert!(peer.ping().await.is_err());
        peer.assert_refused().await;
    }

    #[tokio::test]
    async fn a_finished_call_leaves_no_open_stream_when_not_permitted() {
        let mut peer = connect(strict(), 64 * 1024).await;
        assert_eq!(peer.get("/").await.0, StatusCode::OK);
        // The response reset the strikes, so the first ping is free; then
        // there is no stream, and slow pings are strikes again.
        for _ in 0..3 {
            peer.advance(Duration::from_secs(60));
            peer.ping().await.unwrap();
        }
        peer.advance(Duration::from_secs(60));
        assert!(peer.ping().await.is_err());
        peer.assert_refused().await;
    }

    #[tokio::test]
    async fn slow_pings_during_a_long_poll_are_fine_when_not_permitted() {
        let mut peer = connect(strict(), 64 * 1024).await;
        let _poll = peer.start("/hang").await;
        sdk_pings_for_ten_minutes(&mut peer).await;
    }

    // ----- 5. the parser alone -----

    #[derive(Default, Debug, PartialEq)]
    struct Seen {
        heads: Vec<FrameHead>,
        words: Vec<u32>,
    }

    impl OnFrame for Seen {
        fn head(&mut self, head: FrameHead) -> bool {
            self.heads.push(head);
            head.kind == GOAWAY
        }

        fn word(&mut self, word: u32) {
            self.words.push(word);
        }
    }

    fn client_bytes() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
        out.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));
        out.extend(frame(HEADERS, END_HEADERS, 1, &[0x82; 20]));
        out.extend(frame(DATA, 0, 1, &[0xab; 1000]));
        out.extend(frame(PING, 0, 0, &[1; 8]));
        out.extend(frame(PING, FLAG_ACK, 0, &[2; 8]));
        out.extend(frame(DATA, FLAG_END_STREAM, 1, &[]));
        out.extend(frame(HEADERS, END_HEADERS | FLAG_END_STREAM, 3, &[0x82; 5]));
        out.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        out.extend(frame(GOAWAY, 0, 0, b"\x80\0\0\x03\0\0\0\0bye"));
        out.extend(frame(DATA, 0, 1, &vec![0xcd; 70_000]));
        out.extend(frame(PING, 0, 0, &[3; 8]));
        out
    }

    impl FrameSink for Seen {
        fn frame(&mut self, head: FrameHead) -> bool {
            self.heads.push(head);
            false
        }
    }

    #[test]
    fn parser_finds_the_same_frames_however_the_bytes_are_split() {
        let bytes = client_bytes();
        let mut whole = Seen::default();
        let mut inbound = Inbound::default();
        let passed = inbound.feed(&bytes, &mut whole).unwrap();
        assert_eq!(passed, bytes, "valid frames pass unchanged");
        assert!(!inbound.holding());
        let kinds: Vec<(u8, u8, u32)> = whole
            .heads
            .iter()
            .map(|h| (h.kind, h.flags, h.stream))
            .collect();
        assert_eq!(
            kinds,
            [
                (SETTINGS, 0, 0),
                (WINDOW_UPDATE, 0, 0),
                (HEADERS, END_HEADERS, 1),
                (DATA, 0, 1),
                (PING, 0, 0),
                (PING, FLAG_ACK, 0),
                (DATA, FLAG_END_STREAM, 1),
                (HEADERS, END_HEADERS | FLAG_END_STREAM, 3),
                (RST_STREAM, 0, 3),
                (GOAWAY, 0, 0),
                (DATA, 0, 1),
                (PING, 0, 0),
            ]
        );
        assert_eq!(whole.heads[10].len, 70_000);

        for chunk in [1, 2, 3, 5, 8, 9, 10, 17, 4096] {
            let mut seen = Seen::default();
            let mut inbound = Inbound::default();
            let mut passed = Vec::new();
            for piece in bytes.chunks(chunk) {
                passed.extend(inbound.feed(piece, &mut seen).unwrap());
            }
            assert_eq!(seen, whole, "in chunks of {chunk}");
            assert_eq!(passed, bytes, "in chunks of {chunk}");
            assert!(!inbound.holding());
        }
    }

    #[test]
    fn enforcer_sees_the_same_pings_and_streams_byte_by_byte() {
        let bytes = client_bytes();
        let clock = Clock::Manual(Arc::new(Mutex::new(Instant::now())));
        let run = |chunk: usize| {
            let mut enforcer = Enforcer::new(PingPolicy {
                max_strikes: 10,
                ..strict()
            });
            let mut inbound = Inbound::default();
            for piece in bytes.chunks(chunk) {
                let mut client = ClientFrames {
                    enforcer: &mut enforcer,
                    clock: &clock,
                };
                inbound.feed(piece, &mut client).expect("no trip");
            }
            (
                enforcer.strikes,
                enforcer.max_client_stream,
                enforcer.open.ids.clone(),
            )
        };
        // Two pings (the ACK is not one): the second is a strike. Stream 1
        // is open (only the server ends it); stream 3 was reset.
        assert_eq!(run(bytes.len()), (1, 3, vec![1]));
        assert_eq!(run(1), run(bytes.len()));
    }

    #[test]
    fn preface_mismatch_turns_the_parser_off() {
        let mut seen = Seen::default();
        let mut inbound = Inbound::default();
        inbound.feed(b"GET / HTTP/1.1\r\n\r\n", &mut seen).unwrap();
        inbound
            .feed(&frame(PING, 0, 0, &[0; 8]), &mut seen)
            .unwrap();
        assert!(inbound.not_http2);
        assert!(seen.heads.is_empty());
    }

    #[test]
    fn outbound_boundaries_and_hypers_goaway_are_tracked() {
        let mut enforcer = Enforcer::new(PingPolicy::default());
        enforcer.max_client_stream = 9;
        let mut frames = Frames::default();
        let bytes = frame(GOAWAY, 0, 0, b"\0\0\0\x07\0\0\0\0");
        for (i, byte) in bytes.iter().enumerate() {
            assert_eq!(frames.at_boundary(), i == 0);
            frames.feed(std::slice::from_ref(byte), &mut ServerFrames(&mut enforcer));
        }
        assert!(frames.at_boundary());
        assert_eq!(
            enforcer.goaway_last_stream(),
            7,
            "never above hyper's own GOAWAY"
        );
        let mut frames = Frames::default();
        frames.feed(
            &frame(DATA, 0, 1, &[0; 10])[..4],
            &mut ServerFrames(&mut enforcer),
        );
        assert_eq!(frames.until_boundary(), 5);
        frames.feed(&[0; 5], &mut ServerFrames(&mut enforcer));
        assert_eq!(frames.until_boundary(), 10);
        assert!(enforcer.reset_strikes);
    }

    #[test]
    fn enforcer_follows_grpc_go() {
        let t0 = Instant::now();
        let mut e = Enforcer::new(PingPolicy::default());
        assert!(!e.ping(t0));
        // Exactly the minimum interval is not a strike.
        assert!(!e.ping(t0 + Duration::from_secs(10)));
        assert_eq!(e.strikes, 0);
        assert!(!e.ping(t0 + Duration::from_secs(11)));
        assert!(!e.ping(t0 + Duration::from_secs(12)));
        assert_eq!(e.strikes, 2);
        // Server activity forgives, and that ping is not judged.
        e.server_frame(FrameHead {
            len: 5,
            kind: DATA,
            flags: 0,
            stream: 1,
        });
        assert!(!e.ping(t0 + Duration::from_secs(12)));
        assert_eq!(e.strikes, 0);
        assert!(!e.ping(t0 + Duration::from_secs(12)));
        assert!(!e.ping(t0 + Duration::from_secs(12)));
        assert!(e.ping(t0 + Duration::from_secs(12)));

        // Not permitted without streams: two hours apart is fine.
        let mut e = Enforcer::new(strict());
        assert!(!e.ping(t0));
        assert!(!e.ping(t0 + Duration::from_secs(2 * 3600)));
        assert_eq!(e.strikes, 0);
        assert!(!e.ping(t0 + Duration::from_secs(3 * 3600)));
        assert_eq!(e.strikes, 1);
    }

    #[test]
    fn open_streams_close_once_however_they_end() {
        let mut e = Enforcer::new(strict());
        let clock = Clock::Tokio;
        let head = |kind, flags, stream| FrameHead {
            len: 0,
            kind,
            flags,
            stream,
        };
        for id in [1, 3, 5, 7] {
            e.client_frame(head(HEADERS, END_HEADERS, id), &clock);
        }
        // Client trailers on stream 1 do not open it again.
        e.client_frame(head(HEADERS, END_HEADERS | FLAG_END_STREAM, 1), &clock);
        e.server_frame(head(HEADERS, FLAG_END_STREAM, 1)); // trailers-only
        e.server_frame(head(HEADERS, END_HEADERS, 3));
        e.server_frame(head(DATA, FLAG_END_STREAM, 3));
        e.server_frame(head(RST_STREAM, 0, 3)); // hyper's NO_ERROR reset after
        e.client_frame(head(RST_STREAM, 0, 5), &clock);
        assert_eq!(e.open.ids, [7]);
        e.server_frame(head(RST_STREAM, 0, 7));
        assert!(!e.open.any());

        let mut e = Enforcer::new(strict());
        for id in 0..=MAX_TRACKED_STREAMS as u32 {
            e.client_frame(head(HEADERS, END_HEADERS, 2 * id + 1), &clock);
        }
        for id in 0..=MAX_TRACKED_STREAMS as u32 {
            e.server_frame(head(RST_STREAM, 0, 2 * id + 1));
        }
        assert!(e.open.any(), "past the cap, streams are assumed open");
        // With pings permitted without streams, nothing is tracked at all.
        let mut e = Enforcer::new(PingPolicy::default());
        e.client_frame(head(HEADERS, END_HEADERS, 1), &clock);
        assert_eq!(e.open.ids.capacity(), 0);
    }

    // ----- 6. transparency -----

    #[tokio::test]
    async fn calls_pass_through_unchanged_even_through_a_narrow_pipe() {
        calls_pass_through_unchanged(false).await;
    }

    #[tokio::test]
    async fn calls_pass_through_unchanged_with_vectored_writes() {
        calls_pass_through_unchanged(true).await;
    }

    async fn calls_pass_through_unchanged(vectored: bool) {
        // 1 KiB pipe: hyper's writes and reads split frames everywhere.
        let mut peer = connect_with(PingPolicy::default(), 1024, vectored).await;
        assert_eq!(
            peer.get("/").await,
            (StatusCode::OK, Bytes::from_static(b"ok"))
        );
        let (status, body) = peer.get("/big").await;
        assert_eq!((status, body.len()), (StatusCode::OK, BIG));
        assert!(body.iter().all(|&b| b == b'x'));

        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let req = Request::post("http://guard.test/echo").body(()).unwrap();
        let mut send = peer.send.clone().ready().await.unwrap();
        let (response, mut upload) = send.send_request(req, false).unwrap();
        let mut rest = Bytes::from(payload.clone());
        while !rest.is_empty() {
            upload.reserve_capacity(rest.len());
            let room = poll_fn(|cx| upload.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            upload
                .send_data(rest.split_to(room.min(rest.len())), rest.len() <= room)
                .unwrap();
        }
        let response = timeout(PROMPTLY, response).await.unwrap().unwrap();
        let mut body = response.into_body();
        let mut echoed = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            echoed.extend_from_slice(&chunk);
        }
        assert_eq!(echoed, payload);
        assert_eq!(peer.events(), 0);

        // Both parsers are still in step with the frames: a flood now gets
        // a well-formed GOAWAY.
        peer.advance(Duration::from_secs(60));
        assert_eq!(peer.flood(5).await, 3);
        peer.assert_refused().await;
    }

    // ----- 7. header blocks -----

    /// hyper behind the guard and a client writing raw frames: the server's
    /// answers, frame by frame, until `until` says stop.
    struct RawPeer {
        io: DuplexStream,
        server: JoinHandle<Result<(), hyper::Error>>,
        encoder: loona_hpack::Encoder<'static>,
        read: Vec<u8>,
    }

    impl RawPeer {
        async fn connect() -> RawPeer {
            let (mut io, server_io) = tokio::io::duplex(64 * 1024);
            let (guard, _, _) = guarded(server_io, PingPolicy::default());
            let server = serve(guard, Arc::new(Mutex::new(None)));
            io.write_all(PREFACE).await.unwrap();
            io.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
            RawPeer {
                io,
                server,
                encoder: loona_hpack::Encoder::new(),
                read: Vec::new(),
            }
        }

        /// A GET of `/` on `stream` with `extra` fields after the usual
        /// ones (END_STREAM on the HEADERS), split into frames of `split`
        /// bytes of block.
        async fn request(&mut self, stream: u32, extra: &[(&[u8], &[u8])], split: usize) {
            let mut fields: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"guard.test"),
            ];
            fields.extend_from_slice(extra);
            let block = self.encoder.encode(fields);
            let chunks: Vec<&[u8]> = block.chunks(split).collect();
            let mut bytes = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let end = if i == chunks.len() - 1 {
                    END_HEADERS
                } else {
                    0
                };
                let (kind, flags) = if i == 0 {
                    (HEADERS, FLAG_END_STREAM | end)
                } else {
                    (0x9, end)
                };
                bytes.extend(frame(kind, flags, stream, chunk));
            }
            // Byte by byte: the block is cut everywhere.
            for byte in bytes {
                self.io.write_all(&[byte]).await.unwrap();
            }
        }

        /// Reads frames until one on `stream` ends it (RST_STREAM, or
        /// END_STREAM) or the connection goes away; returns its kind and,
        /// for RST_STREAM and GOAWAY, the error code.
        async fn outcome(&mut self, stream: u32) -> (u8, u32) {
            loop {
                let frames = complete_frames(&self.read);
                let used: usize = frames.iter().map(|(h, _)| HEAD_LEN + h.len as usize).sum();
                for (head, payload) in &frames {
                    let code = || u32::from_be_bytes(payload[..4].try_into().unwrap());
                    match head.kind {
                        RST_STREAM if head.stream == stream => return (RST_STREAM, code()),
                        GOAWAY => {
                            return (
                                GOAWAY,
                                u32::from_be_bytes(payload[4..8].try_into().unwrap()),
                            )
                        }
                        DATA | HEADERS
                            if head.stream == stream && head.flags & FLAG_END_STREAM != 0 =>
                        {
                            return (head.kind, 0)
                        }
                        _ => {}
                    }
                }
                self.read.drain(..used);
                let mut buf = [0u8; 4096];
                let n = timeout(PROMPTLY, self.io.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "connection closed");
                self.read.extend_from_slice(&buf[..n]);
            }
        }
    }

    const PROTOCOL_ERROR: u32 = 0x1;

    #[tokio::test]
    async fn a_field_h2_refuses_resets_only_its_stream() {
        let mut peer = RawPeer::connect().await;
        let mut stream = 1;
        for (bad, split) in [
            (&[(&b"X-Upper"[..], &b"1"[..])][..], 4096),
            (&[(b"x-ctl", b"a\x01b")], 4096),
            (&[(b":foo", b"bar")], 4096),
            // In CONTINUATION frames of three bytes.
            (&[(b"Spread-Over-Frames", b"value")], 3),
        ] {
            peer.request(stream, bad, split).await;
            assert_eq!(
                peer.outcome(stream).await,
                (RST_STREAM, PROTOCOL_ERROR),
                "{bad:?}"
            );
            // The connection serves on, and the table is in step: the next
            // request reuses indexed fields.
            peer.request(stream + 2, &[(b"x-ok", b"1")], split).await;
            assert_eq!(peer.outcome(stream + 2).await.0, DATA, "after {bad:?}");
            stream += 4;
        }
        // A request referring to the indexed uppercase field again.
        peer.request(stream, &[(b"X-Upper", b"1")], 4096).await;
        assert_eq!(peer.outcome(stream).await, (RST_STREAM, PROTOCOL_ERROR));
        assert!(!peer.server.is_finished());
    }

    /// h2's own client Huffman-codes its literals: every valid value byte
    /// decodes back to what was sent, and the block passes unchanged.
    #[tokio::test]
    async fn huffman_coded_blocks_of_a_real_client_decode_exactly() {
        let (client_io, mut server_io) = tokio::io::duplex(1 << 20);
        let (mut send, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        let values: Vec<Vec<u8>> = vec![
            (0x20..0x7f).collect(),
            (0x80..=0xff).collect(),
            b"\tabc\t".to_vec(),
            b"application/grpc".to_vec(),
        ];
        for (i, value) in values.iter().enumerate() {
            let req = Request::post("http://guard.test/x")
                .header(
                    format!("x-value-{i}"),
                    http::HeaderValue::from_bytes(value).unwrap(),
                )
                .body(())
                .unwrap();
            let _ = send.send_request(req, true).unwrap();
        }
        let mut bytes = Vec::new();
        let mut check = hpack::HeaderCheck::default();
        let mut seen = Vec::new();
        while seen.len() < values.len() {
            let mut buf = [0u8; 8192];
            let n = timeout(PROMPTLY, server_io.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            bytes.extend_from_slice(&buf[..n]);
            let frames = complete_frames(bytes.get(PREFACE.len()..).unwrap_or_default());
            seen = frames
                .into_iter()
                .filter(|(h, _)| h.kind == HEADERS)
                .collect();
        }
        for (i, (head, block)) in seen.iter().enumerate() {
            assert!(head.flags & END_HEADERS != 0);
            assert_eq!(check.check(block, true), hpack::Verdict::Clean, "block {i}");
            let literal = check
                .literals
                .iter()
                .find(|(n, _)| n == format!("x-value-{i}").as_bytes())
                .expect("decoded");
            assert_eq!(literal.1, values[i], "value {i}");
        }
    }

    /// A stream WINDOW_UPDATE of 0 is a stream error; h2 would close the
    /// connection for it. It changes nothing, so it is passed over.
    #[tokio::test]
    async fn a_zero_window_update_on_a_stream_does_not_close_the_connection() {
        let mut peer = RawPeer::connect().await;
        peer.request(1, &[], 4096).await;
        // Split across two writes: the frame is held until complete.
        let update = frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0]);
        peer.io.write_all(&update[..5]).await.unwrap();
        peer.io.write_all(&update[5..]).await.unwrap();
        assert_eq!(peer.outcome(1).await.0, DATA);
        peer.request(3, &[], 4096).await;
        assert_eq!(peer.outcome(3).await.0, DATA);
        assert!(!peer.server.is_finished());
    }
}
