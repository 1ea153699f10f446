//! The frame guard below hyper (`server::frame_guard`: the inbound frame
//! reader with its header check, the outbound frame splitter, the PING
//! enforcement), both directions, with arbitrary read and write splits: a
//! mock socket that delivers the client's bytes in reads of any size and
//! accepts the server's writes short, and a mock hyper reading into buffers
//! of any size and writing in pieces of any size, interleaved as the input
//! says.
//!
//! - With a policy that never trips: every byte the server writes reaches
//!   the socket unchanged; what hyper reads does not depend on how the
//!   reads were split (it equals one whole read of the input); when every
//!   frame is valid (header blocks of valid fields, no zero stream window
//!   increment) it is the input itself.
//! - With a policy that trips (every PING after the first a strike): at
//!   most one trip; hyper reads a prefix of what the never-tripping guard
//!   gives; the socket gets the server's bytes up to a frame boundary, then
//!   at most one GOAWAY ENHANCE_YOUR_CALM "too_many_pings" whose last stream
//!   id is one the client opened (or 0), then nothing.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{FrameGuard, PingPolicy};
use temporal_mtls_proxy_fuzz::h2frames::{boundaries, frames, Frame, HEADERS, PREFACE};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Arbitrary)]
struct Input {
    preface: bool,
    client: Vec<Frame>,
    server: Vec<Frame>,
    /// Socket read sizes and write acceptance sizes (0 counts as 1).
    socket_reads: Vec<u8>,
    socket_writes: Vec<u8>,
    ops: Vec<Op>,
    permit_without_stream: bool,
    max_strikes: u8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// hyper reads into a buffer of this size (0 counts as 1).
    Read(u16),
    /// hyper writes this many of its next bytes (0 counts as 1).
    Write(u16),
    Flush,
}

/// The client's end of the connection, as the guard's socket.
struct Socket {
    input: Vec<u8>,
    read_at: usize,
    reads: Vec<u8>,
    read_n: usize,
    written: Arc<Mutex<Vec<u8>>>,
    writes: Vec<u8>,
    write_n: usize,
    shut: bool,
}

fn size(sizes: &[u8], n: &mut usize, default: usize) -> usize {
    if sizes.is_empty() {
        return default;
    }
    let s = sizes[*n % sizes.len()];
    *n += 1;
    usize::from(s).max(1)
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.input.len() - this.read_at;
        let n = size(&this.reads, &mut this.read_n, usize::MAX)
            .min(left)
            .min(buf.remaining());
        buf.put_slice(&this.input[this.read_at..this.read_at + n]);
        this.read_at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        assert!(!this.shut, "write after shutdown");
        let n = size(&this.writes, &mut this.write_n, usize::MAX).min(buf.len());
        this.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut = true;
        Poll::Ready(Ok(()))
    }
}

struct Run {
    /// What hyper read.
    read: Vec<u8>,
    /// What reached the socket.
    written: Vec<u8>,
    trips: u64,
}

/// Plays `ops`, then reads to EOF and writes everything left.
fn run(
    input: &[u8],
    server: &[u8],
    policy: PingPolicy,
    socket_reads: &[u8],
    socket_writes: &[u8],
    ops: &[Op],
) -> Run {
    let written = Arc::new(Mutex::new(Vec::new()));
    let socket = Socket {
        input: input.to_vec(),
        read_at: 0,
        reads: socket_reads.to_vec(),
        read_n: 0,
        written: written.clone(),
        writes: socket_writes.to_vec(),
        write_n: 0,
        shut: false,
    };
    let events = Arc::new(AtomicU64::new(0));
    let mut guard = FrameGuard::new(socket, policy, events.clone());
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = Vec::new();
    let mut sent = 0;
    let mut eof = false;
    let mut room = vec![0u8; 1 << 16];
    let mut step = |guard: &mut FrameGuard<Socket>,
                    op: &Op,
                    read: &mut Vec<u8>,
                    sent: &mut usize,
                    eof: &mut bool| {
        match *op {
            Op::Read(n) => {
                if *eof {
                    return;
                }
                let n = usize::from(n).max(1).min(room.len());
                let mut buf = ReadBuf::new(&mut room[..n]);
                match Pin::new(&mut *guard).poll_read(&mut cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        if buf.filled().is_empty() {
                            *eof = true;
                        }
                        read.extend_from_slice(buf.filled());
                    }
                    Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                    Poll::Pending => {}
                }
            }
            Op::Write(n) => {
                let end = (*sent + usize::from(n).max(1)).min(server.len());
                if *sent == end {
                    return;
                }
                match Pin::new(&mut *guard).poll_write(&mut cx, &server[*sent..end]) {
                    Poll::Ready(Ok(k)) => {
                        assert!(k <= end - *sent && k > 0, "wrote {k} of {}", end - *sent);
                        *sent += k;
                    }
                    Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                    Poll::Pending => {}
                }
            }
            Op::Flush => match Pin::new(&mut *guard).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(e)) => panic!("flush failed: {e}"),
            },
        }
    };
    for op in ops {
        step(&mut guard, op, &mut read, &mut sent, &mut eof);
    }
    // Drain both ways; a read may wait for hyper's write to reach a frame
    // boundary, so alternate. Each turn moves at least one byte (socket
    // reads and writes may be a byte each) until both are done.
    for _ in 0..server.len() + input.len() + 1000 {
        if eof && sent == server.len() {
            break;
        }
        step(
            &mut guard,
            &Op::Write(u16::MAX),
            &mut read,
            &mut sent,
            &mut eof,
        );
        step(
            &mut guard,
            &Op::Read(u16::MAX),
            &mut read,
            &mut sent,
            &mut eof,
        );
    }
    // A tripped guard waits for hyper to finish its frame before reading
    // on; hyper always does, but a server stream cut mid-frame does not.
    let stalled = events.load(Ordering::Relaxed) > 0 && !boundaries(server).contains(&server.len());
    if !stalled {
        assert!(eof, "hyper never read EOF");
    }
    assert_eq!(sent, server.len(), "hyper could not write everything");
    step(&mut guard, &Op::Flush, &mut read, &mut sent, &mut eof);
    let _ = Pin::new(&mut guard).poll_shutdown(&mut cx);
    let written = written.lock().unwrap().clone();
    Run {
        read,
        written,
        trips: events.load(Ordering::Relaxed),
    }
}

const NEVER: PingPolicy = PingPolicy {
    min_interval: Duration::ZERO,
    permit_without_stream: true,
    max_strikes: 0,
};

fuzz_target!(|input: Input| {
    let mut client = Vec::new();
    if input.preface {
        client.extend_from_slice(PREFACE);
    }
    let mut hpack = loona_hpack::Encoder::new();
    for f in &input.client {
        f.encode(&mut hpack, &mut client);
    }
    let mut server = Vec::new();
    let mut server_hpack = loona_hpack::Encoder::new();
    for f in &input.server {
        f.encode(&mut server_hpack, &mut server);
    }
    let _rt = runtime().enter();
    // A SETTINGS, RST_STREAM, WINDOW_UPDATE or PRIORITY flood trips the
    // guard whatever the ping policy (`frame_guard/flood.rs`: bursts of 100
    // SETTINGS, 1000 resets; 100 WINDOW_UPDATEs before any DATA, 100
    // PRIORITY frames per stream plus 100); such inputs are not what the
    // invariants below are about.
    let skip = if input.preface { PREFACE.len() } else { 0 };
    let parsed = frames(&client[skip..]);
    let settings = parsed
        .iter()
        .filter(|(h, _)| h.kind == 4 && h.flags & 1 == 0)
        .count();
    let resets = parsed.iter().filter(|(h, _)| h.kind == 3).count();
    let window_updates = parsed.iter().filter(|(h, _)| h.kind == 8).count();
    let priorities = parsed.iter().filter(|(h, _)| h.kind == 2).count();
    if settings > 100 || resets > 1000 || window_updates > 100 || priorities > 100 {
        return;
    }

    // Never tripping: the split does not matter, bytes pass.
    let split = run(
        &client,
        &server,
        NEVER,
        &input.socket_reads,
        &input.socket_writes,
        &input.ops,
    );
    let whole = run(&client, &server, NEVER, &[], &[], &[]);
    assert_eq!(split.trips, 0);
    assert_eq!(
        split.written, server,
        "server bytes changed on their way out"
    );
    assert_eq!(
        split.read, whole.read,
        "what hyper reads depends on the read splits"
    );
    // Valid: every frame valid, and no pseudo-header in trailers (a block
    // on a stream already opened), where none belongs.
    let mut max_stream = 0;
    let trailers_clean = input.client.iter().all(|f| match f.valid_headers() {
        Some((stream, pseudo)) if stream <= max_stream => !pseudo,
        Some((stream, _)) => {
            max_stream = stream;
            true
        }
        None => true,
    });
    let valid = input.preface && trailers_clean && input.client.iter().all(Frame::is_valid);
    if valid {
        assert_eq!(
            split.read, client,
            "valid client bytes changed on their way in"
        );
    }

    // Tripping: every PING after the first is a strike.
    let policy = PingPolicy {
        min_interval: Duration::from_secs(3600),
        permit_without_stream: input.permit_without_stream,
        max_strikes: u32::from(input.max_strikes % 4),
    };
    let tripped = run(
        &client,
        &server,
        policy,
        &input.socket_reads,
        &input.socket_writes,
        &input.ops,
    );
    assert!(tripped.trips <= 1);
    assert!(
        whole.read.starts_with(&tripped.read),
        "a tripped guard passed bytes the others did not"
    );
    if tripped.trips == 0 {
        assert_eq!(tripped.read, whole.read);
        assert_eq!(tripped.written, server);
        return;
    }
    let common = tripped
        .written
        .iter()
        .zip(&server)
        .take_while(|(a, b)| a == b)
        .count();
    let rest = &tripped.written[common..];
    if rest.is_empty() {
        // No GOAWAY could follow: hyper's bytes ended mid-frame.
        assert_eq!(common, server.len(), "server bytes lost");
        assert!(
            !boundaries(&server).contains(&common),
            "tripped at a frame boundary, but no GOAWAY"
        );
        return;
    }
    // The GOAWAY starts where a server frame ended.
    let cut = boundaries(&server)
        .into_iter()
        .filter(|&b| b <= common)
        .max()
        .unwrap();
    let rest = &tripped.written[cut..];
    assert_eq!(
        rest.len(),
        9 + 8 + 14,
        "after the GOAWAY something else was written: {rest:?}"
    );
    assert_eq!(&rest[..9], &[0, 0, 22, 7, 0, 0, 0, 0, 0]);
    assert_eq!(&rest[13..17], &[0, 0, 0, 0xb]);
    assert_eq!(&rest[17..], b"too_many_pings");
    let last = u32::from_be_bytes(rest[9..13].try_into().unwrap());
    // The highest stream the client opened, or lower: what hyper's own
    // GOAWAY announced.
    let mut allowed: Vec<u32> = if input.preface {
        frames(&client[24..])
            .iter()
            .filter(|(h, _)| h.kind == HEADERS)
            .map(|(h, _)| h.stream)
            .collect()
    } else {
        Vec::new()
    };
    allowed.extend(
        frames(&server[..cut])
            .iter()
            .filter(|(h, p)| h.kind == 7 && h.stream == 0 && p.len() >= 4)
            .map(|(_, p)| u32::from_be_bytes(p[..4].try_into().unwrap()) & 0x7fff_ffff),
    );
    assert!(last == 0 || allowed.contains(&last), "GOAWAY last stream {last}: not a stream the client opened nor one hyper announced ({allowed:?})");
});

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}
