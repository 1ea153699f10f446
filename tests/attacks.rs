//! The HTTP/2 attack suite (issue 15, item 2): the attack classes of the
//! last years, sent over mTLS by a raw client (`support::raw_h2`) to the
//! proxy binary in front of the real Temporal frontend.
//!
//! Each case asserts three things:
//! - **the proxy's reaction**: the GOAWAY and its code, REFUSED_STREAM, or
//!   the connection closed, each within a stated time;
//! - **its memory**: the VmRSS of the proxy's process (`/proc/PID/status`),
//!   sampled every 10 ms, stays within a stated bound over the baseline
//!   during the attack and comes back to within a stated bound of it
//!   afterwards, and its open fds come back to the baseline. The allocator
//!   (mimalloc) keeps part of what was freed for reuse, per thread; where
//!   that part is large, the test repeats the attack and checks that later
//!   rounds add (almost) nothing, which a leak would;
//! - **a bystander**: a legitimate client on a connection of its own calls
//!   GetSystemInfo on the frontend through the proxy every 25 ms during the
//!   attack, and on a fresh connection after it; every call succeeds.
//!
//! The proxy is the real binary (`ProxyProcess::spawn`, a debug build under
//! `cargo test`): its RSS is its own, not the test's. The bounds come from
//! measurement on the 2-core development machine, debug build, four tests
//! at once (nextest's `test-threads`); each comment gives the measured
//! figure and the bound is several times that. Every loop is bounded in
//! count and in time.
//!
//! The SETTINGS, WINDOW_UPDATE and PRIORITY floods, steady resets and
//! no-preface tests pass with the frame guard's flood and preface limits
//! (`server::frame_guard`), the handshakes-in-progress test with the
//! eviction of the oldest handshake (`server::handshakes`); each was
//! written first, failing, against the proxy without them.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use support::grpc::{self, code, path, pb, ClientTls};
use support::pki::TestPki;
use support::proxy::{config, rss_kib, ProxyProcess};
use support::raw_h2::{
    encode_frame, error_code, field, flags, frame_type, hpack, Field, GoAway, H2Conn, H2Options,
    Outcome, Step, PREFACE,
};
use support::temporal::TemporalServer;

/// Kilobytes (VmRSS is in kB).
type Kb = u64;
/// One MiB, in kB.
const MB: Kb = 1024;

// ---------------------------------------------------------------------------
// The test bed: the frontend, the proxy binary, the client's TLS settings.
// ---------------------------------------------------------------------------

struct Bed {
    _temporal: TemporalServer,
    pki: TestPki,
    proxy: ProxyProcess,
    tls: ClientTls,
}

impl Bed {
    /// The real frontend and the proxy binary in front of it, with `extra`
    /// appended to the test config.
    async fn start(extra: &str) -> Bed {
        Bed::start_with(|c| format!("{c}\n{extra}")).await
    }

    /// As `start`, with the config text changed by `edit`.
    async fn start_with(edit: impl FnOnce(String) -> String) -> Bed {
        let temporal = TemporalServer::start(&[]).await;
        let pki = TestPki::new();
        let proxy = ProxyProcess::spawn(&edit(config(&pki, &temporal.url(), ""))).await;
        let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
        Bed {
            _temporal: temporal,
            pki,
            proxy,
            tls,
        }
    }

    /// A raw HTTP/2 connection as the (valid) client certificate.
    async fn raw(&self) -> H2Conn {
        self.raw_with(&H2Options::default()).await
    }

    async fn raw_with(&self, opts: &H2Options) -> H2Conn {
        H2Conn::tls(self.proxy.addr, &self.tls, opts)
            .await
            .unwrap_or_else(|e| panic!("raw connection to the proxy: {e}"))
    }

    /// The proxy process's VmRSS now.
    fn rss(&self) -> Kb {
        rss_kib(self.proxy.pid())
    }

    /// Starts the bystander and the memory watch, once the proxy has served
    /// a few calls (so that the baseline includes its warmed-up state).
    async fn watch(&self) -> Watch {
        let bystander = Bystander::start(self).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let memory = Memory::start(self.proxy.pid());
        Watch { bystander, memory }
    }

    /// One GetSystemInfo on a fresh connection: the proxy still accepts and
    /// serves new clients.
    async fn fresh_call(&self) {
        let conn = self.proxy.grpc(&self.pki, &self.pki.client).await;
        let reply = conn
            .unary_timeout(
                path::GET_SYSTEM_INFO,
                &pb::get_system_info(),
                &[],
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(&reply, Ok(r) if r.is_ok()),
            "a fresh client after the attack: {reply:?}"
        );
    }
}

/// Open file descriptors of the process.
fn fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The soft limit on open files of this process (the proxy, its child,
/// inherits it).
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// How many attack connections a test may hold: `want`, or fewer when the
/// fd limit would not leave room (the test holds one fd per connection,
/// the proxy one, and both need some for themselves).
fn scaled(want: usize) -> usize {
    let n = want.min(fd_limit().saturating_sub(200) / 2);
    assert!(n >= 100, "fd limit {} is too low for this test", fd_limit());
    n
}

// ---------------------------------------------------------------------------
// The legitimate client and the memory watch.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Calls {
    ok: usize,
    failed: Vec<String>,
    slowest: Duration,
}

/// GetSystemInfo every 25 ms on a connection of its own until stopped.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Calls>,
}

impl Bystander {
    async fn start(bed: &Bed) -> Bystander {
        let conn = bed.proxy.grpc(&bed.pki, &bed.pki.client).await;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut calls = Calls::default();
            // Bounded: the test stops it, and no test runs 20 s.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                let reply = conn
                    .unary_timeout(
                        path::GET_SYSTEM_INFO,
                        &pb::get_system_info(),
                        &[],
                        Duration::from_secs(5),
                    )
                    .await;
                calls.slowest = calls.slowest.max(started.elapsed());
                match reply {
                    Ok(r) if r.is_ok() => calls.ok += 1,
                    other => calls.failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            calls
        });
        Bystander { stop, task }
    }
}

/// Peak VmRSS of the proxy, sampled every 10 ms.
struct Memory {
    pid: i32,
    baseline: Kb,
    baseline_fds: usize,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Memory {
    fn start(pid: i32) -> Memory {
        let baseline = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kb) = t
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    {
                        p.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Memory {
            pid,
            baseline,
            baseline_fds: fds_of(pid),
            peak,
            stop,
            task,
        }
    }
}

/// How far the proxy's RSS may grow over its baseline during an attack
/// (`peak`) and how close to the baseline it must be again
/// [`SETTLE_WITHIN`] after it (`settled`). The proxy's baseline is about
/// 35 MB (debug build, one upstream connection, one client). mimalloc keeps
/// some freed memory for reuse, so "settled" is not zero: a second round
/// of the same attack reuses it (the no-preface test checks that).
#[derive(Clone, Copy)]
struct Bounds {
    peak: Kb,
    settled: Kb,
}

const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// Attacks on one connection or a few hundred short-lived ones. Measured:
/// peak +2.3 MB (control floods, resets, HPACK bomb), +4.4 MB (rapid
/// reset on 150 connections), +8.2 MB (100 held streams), +10.5 to
/// +16.6 MB (CONTINUATION floods and the over-size literals: h2's header
/// buffers), and mostly the same after: the allocator keeps it for reuse.
const FEW_CONNECTIONS: Bounds = Bounds {
    peak: 48 * MB,
    settled: 32 * MB,
};

/// Twelve CONTINUATION floods in a row. Measured: +31 MB at the peak and
/// after (see the test: each of the proxy's threads keeps one set of
/// header buffers).
const CONTINUATION_ROUNDS: Bounds = Bounds {
    peak: 64 * MB,
    settled: 48 * MB,
};

/// 600 idle HTTP/2 connections. Measured: peak +30 to +50 MB (1,000: +50 MB,
/// about 50 kB per connection: TLS, h2 and the frame guard's buffers,
/// debug build), +12 to +37 MB a second after they closed (the
/// allocator's per-thread heaps keep what the proxy's threads freed).
const IDLE_CONNECTIONS: Bounds = Bounds {
    peak: 150 * MB,
    settled: 64 * MB,
};

/// 2,000 TCP connections in their TLS handshake, twice. Measured: peak +27
/// to +37 MB, +5 to +37 MB after (mimalloc purges freed pages a second
/// after they are freed, and only when an allocation comes by: a quiet
/// thread can keep all of it for the settle window); a leak would keep both
/// rounds' peaks.
const UNFINISHED_HANDSHAKES: Bounds = Bounds {
    peak: 100 * MB,
    settled: 48 * MB,
};

/// 500 connections without a preface, twice. Measured: peak +25 to +29 MB,
/// +5 to +12 MB after.
const NO_PREFACE: Bounds = Bounds {
    peak: 100 * MB,
    settled: 32 * MB,
};

/// The bystander and the memory watch of one attack.
struct Watch {
    bystander: Bystander,
    memory: Memory,
}

impl Watch {
    /// After two rounds of the same attack (RSS after each, `first_peak`
    /// the first round's peak growth): the second reused what the first
    /// took. What the proxy still holds over its baseline after both must
    /// stay within one round's peak and a half; a leak of a round's memory
    /// holds two. (Not "round 2 over round 1": the allocator returns a
    /// round's pages to the system on some runs and keeps them on others,
    /// measured 45 to 62 MB after the same round, so a round that happened
    /// to give its pages back made the next look like a leak.)
    fn assert_rounds_reused(&self, after_round: &[Kb], first_peak: Kb) {
        let held = after_round[1].saturating_sub(self.memory.baseline);
        assert!(
            held <= first_peak + first_peak / 2,
            "RSS after each round: {after_round:?} kB, baseline {} kB, {held} kB held; first round's peak +{first_peak} kB",
            self.memory.baseline
        );
    }

    /// The peak growth of the proxy's RSS over the baseline so far.
    fn growth(&self) -> Kb {
        self.memory
            .peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.memory.baseline)
    }

    /// Ends the attack's watch: asserts that the RSS grew by at most
    /// `bounds.peak` over the baseline, that it came back to within
    /// `bounds.settled` of it within [`SETTLE_WITHIN`], that the proxy's
    /// open fds came back to within 5 of the baseline, and that every
    /// bystander call succeeded (at least `min_calls` of them, none slower
    /// than 5 s), then makes one call on a fresh connection.
    async fn finish(self, bed: &Bed, what: &str, bounds: Bounds) -> Report {
        let Bounds {
            peak: peak_bound,
            settled: settled_bound,
        } = bounds;
        let settle_within = SETTLE_WITHIN;
        let baseline = self.memory.baseline;
        let pid = self.memory.pid;
        let started = Instant::now();
        // The bystander goes on calling after the attack, for at least
        // 500 ms and while the memory settles.
        let mut settled = rss_kib(pid).saturating_sub(baseline);
        while (settled > settled_bound || started.elapsed() < Duration::from_millis(500))
            && started.elapsed() < settle_within
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            settled = rss_kib(pid).saturating_sub(baseline);
        }
        let settle_time = started.elapsed();
        // Every connection of the attack is closed on the proxy's side too.
        let mut fds = fds_of(pid);
        while fds > self.memory.baseline_fds + 5 && started.elapsed() < settle_within {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fds = fds_of(pid);
        }
        self.memory.stop.store(true, Ordering::Relaxed);
        let growth = self.growth();
        let _ = self.memory.task.await;
        self.bystander.stop.store(true, Ordering::Relaxed);
        let calls = self.bystander.task.await.expect("bystander task");
        let report = Report {
            fds,
            baseline_fds: self.memory.baseline_fds,
            baseline,
            growth,
            settled,
            settle_time,
            calls,
        };
        eprintln!("{what}: {report}");
        assert!(
            report.calls.failed.is_empty(),
            "{what}: bystander calls failed: {:#?}",
            report.calls.failed
        );
        assert!(
            report.calls.ok >= 5,
            "{what}: only {} bystander calls",
            report.calls.ok
        );
        assert!(
            report.calls.slowest < Duration::from_secs(5),
            "{what}: slowest bystander call {:?}",
            report.calls.slowest
        );
        assert!(
            growth <= peak_bound,
            "{what}: the proxy's RSS grew by {growth} kB (bound {peak_bound} kB)"
        );
        assert!(
            settled <= settled_bound,
            "{what}: the proxy's RSS is still {settled} kB over its baseline after {settle_time:?} (bound {settled_bound} kB)"
        );
        assert!(
            report.fds <= report.baseline_fds + 5,
            "{what}: the proxy has {} fds open, {} before the attack",
            report.fds,
            report.baseline_fds
        );
        bed.fresh_call().await;
        report
    }
}

#[derive(Debug)]
struct Report {
    fds: usize,
    baseline_fds: usize,
    baseline: Kb,
    growth: Kb,
    settled: Kb,
    settle_time: Duration,
    calls: Calls,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS baseline {} kB, peak +{} kB, +{} kB after {:?}; fds {} -> {}; bystander {} ok, {} failed, slowest {:?}",
            self.baseline,
            self.growth,
            self.settled,
            self.settle_time,
            self.baseline_fds,
            self.fds,
            self.calls.ok,
            self.calls.failed.len(),
            self.calls.slowest
        )
    }
}

// ---------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------

/// `n` copies of `frame`, concatenated.
fn repeat(frame: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() * n);
    for _ in 0..n {
        out.extend_from_slice(frame);
    }
    out
}

/// Queues `bytes` on `conn` in pieces of 64 KiB, so the writer task sends
/// them as they go and a closed connection stops the flood early. Returns
/// how many bytes were queued.
fn flood(conn: &H2Conn, bytes: &[u8]) -> usize {
    let mut queued = 0;
    for piece in bytes.chunks(64 * 1024) {
        if conn.closed().is_some() || conn.send_bytes(piece.to_vec()).is_err() {
            break;
        }
        queued += piece.len();
    }
    queued
}

/// The HPACK block of a GetSystemInfo request on `conn` (literals).
fn request_block(conn: &H2Conn) -> Vec<u8> {
    support::raw_h2::encode_block(&conn.request_headers(path::GET_SYSTEM_INFO, &[]))
}

/// Waits until `conn` has a GOAWAY and is closed, up to `within`; returns
/// the last GOAWAY (if any), the close reason (if closed) and the time.
async fn wait_goaway_and_close(
    conn: &H2Conn,
    within: Duration,
) -> (Option<GoAway>, Option<String>, Duration) {
    let started = Instant::now();
    let closed = conn.wait_closed(within).await;
    let elapsed = started.elapsed();
    // A write error (the proxy closed first) can come before the reader has
    // seen the GOAWAY that preceded the close: give the reader a moment.
    if closed.is_some() && conn.goaways().is_empty() {
        let give = Instant::now() + Duration::from_secs(1);
        while conn.goaways().is_empty() && Instant::now() < give {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    (conn.goaways().last().cloned(), closed, elapsed)
}

/// Asserts a GOAWAY with `code` and a closed connection.
fn assert_goaway(what: &str, seen: &(Option<GoAway>, Option<String>, Duration), code: u32) {
    let (goaway, closed, elapsed) = seen;
    let Some(g) = goaway else {
        panic!("{what}: no GOAWAY after {elapsed:?} (closed: {closed:?})");
    };
    assert_eq!(
        g.error_code,
        code,
        "{what}: {g}, expected {}",
        error_code::name(code)
    );
    assert!(
        closed.is_some(),
        "{what}: {g} but the connection was still open after {elapsed:?}"
    );
}

/// Asserts the GOAWAY's debug data.
fn assert_debug(seen: &(Option<GoAway>, Option<String>, Duration), debug: &str) {
    let got = seen.0.as_ref().map(|g| show(&g.debug));
    assert_eq!(got.as_deref(), Some(debug), "{seen:?}");
}

// ---------------------------------------------------------------------------
// A client that writes and never reads (until told to).
// ---------------------------------------------------------------------------

/// TLS with the client certificate, the HTTP/2 preface and empty SETTINGS
/// sent, and nothing read: the proxy's answers (ACKs) pile up in its socket.
struct Deaf {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
}

/// What a [`Deaf`] client found when it finally read.
#[derive(Debug, Default)]
struct Heard {
    ping_acks: usize,
    settings_acks: usize,
    goaway: Option<GoAway>,
    /// EOF or a read error, with the time it came.
    closed: Option<(String, Duration)>,
}

impl Deaf {
    async fn connect(bed: &Bed) -> Deaf {
        let mut tls = grpc::raw_tls(bed.proxy.addr, &bed.tls)
            .await
            .unwrap_or_else(|e| panic!("TLS to the proxy: {e}"));
        let mut first = PREFACE.to_vec();
        first.extend(encode_frame(frame_type::SETTINGS, 0, 0, &[]));
        tls.write_all(&first).await.expect("preface");
        tls.flush().await.expect("flush");
        Deaf { tls }
    }

    /// Writes `bytes` until they are all written or a write makes no
    /// progress for `stall` (the proxy stopped reading: back-pressure).
    /// Returns the bytes written.
    async fn write(&mut self, bytes: &[u8], stall: Duration) -> usize {
        let mut written = 0;
        for piece in bytes.chunks(16 * 1024) {
            match tokio::time::timeout(stall, self.tls.write_all(piece)).await {
                Ok(Ok(())) => written += piece.len(),
                _ => break,
            }
        }
        let _ = tokio::time::timeout(stall, self.tls.flush()).await;
        written
    }

    /// Reads frames until EOF, a read error or `within`.
    async fn hear(&mut self, within: Duration) -> Heard {
        let started = Instant::now();
        let deadline = started + within;
        let mut heard = Heard::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match tokio::time::timeout(deadline - now, self.tls.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) => {
                    heard.closed = Some(("EOF".into(), started.elapsed()));
                    break;
                }
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    heard.closed = Some((format!("read: {e}"), started.elapsed()));
                    break;
                }
            }
            // Whole frames off the front of the buffer.
            let mut at = 0;
            while buf.len() >= at + 9 {
                let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
                if buf.len() < at + 9 + len {
                    break;
                }
                let (ty, fl) = (buf[at + 3], buf[at + 4]);
                let payload = &buf[at + 9..at + 9 + len];
                match ty {
                    frame_type::PING if fl & flags::ACK != 0 => heard.ping_acks += 1,
                    frame_type::SETTINGS if fl & flags::ACK != 0 => heard.settings_acks += 1,
                    frame_type::GOAWAY if payload.len() >= 8 => {
                        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        heard.goaway = Some(GoAway {
                            last_stream_id: be(&payload[..4]) & 0x7fff_ffff,
                            error_code: be(&payload[4..8]),
                            debug: payload[8..].to_vec(),
                        });
                    }
                    _ => {}
                }
                at += 9 + len;
            }
            buf.drain(..at);
        }
        heard
    }
}

/// Sends `batch` up to `batches` times, 1 ms apart, until the connection
/// closes or `within` passes. Returns the batches sent.
async fn flood_paced(conn: &H2Conn, batch: &[u8], batches: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut sent = 0;
    while sent < batches && Instant::now() < deadline && conn.closed().is_none() {
        if conn.send_bytes(batch.to_vec()).is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sent
}

/// HEADERS + RST_STREAM(CANCEL) on `n` new streams of `conn`.
fn open_and_reset(conn: &H2Conn, n: usize) -> Vec<u8> {
    let block = request_block(conn);
    let mut bytes = Vec::new();
    for _ in 0..n {
        let id = conn.next_stream_id();
        bytes.extend(encode_frame(
            frame_type::HEADERS,
            flags::END_HEADERS,
            id,
            &block,
        ));
        bytes.extend(encode_frame(
            frame_type::RST_STREAM,
            0,
            id,
            &error_code::CANCEL.to_be_bytes(),
        ));
    }
    bytes
}

/// A literal header field (without indexing, new name) of exactly `size`
/// encoded bytes.
fn literal_of_size(name: &[u8], size: usize) -> Vec<u8> {
    for int_len in 1..=5 {
        let Some(value) = size.checked_sub(2 + name.len() + int_len) else {
            break;
        };
        let mut out = Vec::with_capacity(size);
        hpack::literal(&mut out, 0x00, name, &vec![b'a'; value]);
        if out.len() == size {
            return out;
        }
    }
    panic!("no literal of {size} bytes");
}

// ---------------------------------------------------------------------------
// Rapid reset (CVE-2023-44487).
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rapid_reset_on_one_connection_gets_goaway_enhance_your_calm() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // 1,000 streams opened and cancelled in one burst: past
    // `max_pending_accept_reset_streams` (20) the connection is closed.
    let bytes = open_and_reset(&conn, 1000);
    let started = Instant::now();
    flood(&conn, &bytes);
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(5)).await;
    eprintln!("rapid reset: {:?} after {:?}", seen.0, started.elapsed());
    assert_goaway("rapid reset", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_resets");
    assert!(seen.2 < Duration::from_secs(2), "closed after {:?}", seen.2);
    watch
        .finish(&bed, "rapid reset, one connection", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn rapid_reset_on_many_connections_gets_goaway_on_each() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // 50 connections at once, each opening and cancelling 100 streams in a
    // burst, three rounds (an attacker reconnecting).
    let mut closed_within = Duration::ZERO;
    for round in 0..3 {
        let mut conns = Vec::new();
        for _ in 0..50 {
            conns.push(bed.raw().await);
        }
        for c in &conns {
            let bytes = open_and_reset(c, 100);
            flood(c, &bytes);
        }
        for (i, c) in conns.iter().enumerate() {
            let seen = wait_goaway_and_close(c, Duration::from_secs(5)).await;
            assert_goaway(
                &format!("rapid reset, round {round}, connection {i}"),
                &seen,
                error_code::ENHANCE_YOUR_CALM,
            );
            assert_debug(&seen, "too_many_resets");
            closed_within = closed_within.max(seen.2);
        }
    }
    eprintln!("rapid reset x150: last closed {closed_within:?} after the flood");
    watch
        .finish(&bed, "rapid reset, 150 connections", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn steady_resets_get_goaway_enhance_your_calm() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // 10 connections each opening and cancelling 2 streams per ms, for at
    // most 8 s: below h2's burst limit of 20 pending resets, 16,000 resets
    // per connection by the end. Measured: every connection had its
    // GOAWAY within 1.2 s, after 24 to 2,233 streams (h2's own limit where
    // resets piled up before hyper accepted their streams, the frame
    // guard's reset budget where they did not).
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(Arc::new(bed.raw().await));
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(8);
                let mut resets = 0;
                while Instant::now() < deadline && c.closed().is_none() {
                    if c.send_bytes(open_and_reset(&c, 2)).is_err() {
                        break;
                    }
                    resets += 2;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                resets
            })
        })
        .collect();
    let mut resets = Vec::new();
    for t in tasks {
        resets.push(t.await.unwrap());
    }
    eprintln!(
        "steady resets: {resets:?} per connection in {:?}; goaways {:?}",
        started.elapsed(),
        conns
            .iter()
            .map(|c| c.goaways().last().cloned().map(|g| g.to_string()))
            .collect::<Vec<_>>()
    );
    for (i, c) in conns.iter().enumerate() {
        let seen = wait_goaway_and_close(c, Duration::from_secs(2)).await;
        assert_goaway(
            &format!("steady resets, connection {i}"),
            &seen,
            error_code::ENHANCE_YOUR_CALM,
        );
        assert_debug(&seen, "too_many_resets");
    }
    watch.finish(&bed, "steady resets", FEW_CONNECTIONS).await;
}

// ---------------------------------------------------------------------------
// CONTINUATION floods.
// ---------------------------------------------------------------------------

/// HEADERS without END_HEADERS on a new stream: the request's fields (and
/// `tail`), then `continuation` sent `n` times (paced), until the proxy
/// closes the connection. Returns the CONTINUATION frames sent and what the
/// proxy did.
async fn continuation_flood(
    bed: &Bed,
    tail: &[u8],
    continuation: &[u8],
    n: usize,
) -> (usize, (Option<GoAway>, Option<String>, Duration)) {
    let conn = bed.raw().await;
    let id = conn.next_stream_id();
    let mut block = request_block(&conn);
    block.extend_from_slice(tail);
    conn.send_frame(frame_type::HEADERS, 0, id, &block).unwrap();
    let frame = encode_frame(frame_type::CONTINUATION, 0, id, continuation);
    // Batches of about 64 KiB.
    let per_batch = (64 * 1024 / frame.len()).max(1);
    let batch = repeat(&frame, per_batch);
    let batches = flood_paced(&conn, &batch, n.div_ceil(per_batch), Duration::from_secs(8)).await;
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(5)).await;
    (batches * per_batch, seen)
}

#[tokio::test]
async fn continuation_flood_of_16k_frames_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // Up to 4,096 CONTINUATION frames of 16 KiB (64 MiB), each a complete
    // 16 KiB field. h2 allows a header block max_header_list_size /
    // max_frame_size frames plus a quarter, at least 5 (here 5).
    // Twelve rounds, one connection each: what the first ones take (h2's
    // header buffers, kept by the allocator) the later ones reuse.
    let mut after_round = Vec::new();
    for round in 0..12 {
        let field = literal_of_size(b"x-flood", 16 * 1024);
        let (sent, seen) = continuation_flood(&bed, &[], &field, 4096).await;
        eprintln!("CONTINUATION flood, 16 KiB, round {round}: about {sent} frames sent; {seen:?}");
        assert_goaway(
            "CONTINUATION flood, 16 KiB",
            &seen,
            error_code::ENHANCE_YOUR_CALM,
        );
        assert_debug(&seen, "too_many_continuations");
        assert!(seen.2 < Duration::from_secs(2), "closed after {:?}", seen.2);
        after_round.push(bed.rss());
    }
    // Measured: +12.5 MB after the first round, then +6 to +8, +6 and +4
    // MB (the proxy's threads each keep a set of freed buffers in their
    // own heap), then 0 to 2 MB in all for rounds 5 to 12. A leak of even
    // 1 MB a round would add 7 MB there; bound 6 MB.
    assert!(
        after_round[11] <= after_round[4] + 6 * MB,
        "RSS after each round: {after_round:?} kB"
    );
    watch
        .finish(
            &bed,
            "CONTINUATION flood, 16 KiB frames",
            CONTINUATION_ROUNDS,
        )
        .await;
}

#[tokio::test]
async fn continuation_flood_of_empty_frames_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // Up to 200,000 empty CONTINUATION frames (1.8 MB of frame heads),
    // which add nothing to the block and count all the same.
    let (sent, seen) = continuation_flood(&bed, &[], &[], 200_000).await;
    eprintln!("CONTINUATION flood, empty: about {sent} frames sent; {seen:?}");
    assert_goaway(
        "CONTINUATION flood, empty",
        &seen,
        error_code::ENHANCE_YOUR_CALM,
    );
    assert_debug(&seen, "too_many_continuations");
    assert!(seen.2 < Duration::from_secs(2), "closed after {:?}", seen.2);
    watch
        .finish(&bed, "CONTINUATION flood, empty frames", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn continuation_flood_of_one_endless_value_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // One literal declaring a 1 GiB value, then up to 64 MiB of it in
    // 16 KiB CONTINUATION frames. The HPACK decoder refuses a string
    // longer than the header list may be (PROTOCOL_ERROR, measured after
    // fewer than 30 frames), before it has buffered more than the list.
    let mut tail = vec![0x00];
    hpack::string(&mut tail, b"x-endless");
    hpack::integer(&mut tail, 0x00, 7, 1 << 30);
    let (sent, seen) = continuation_flood(&bed, &tail, &vec![b'a'; 16 * 1024], 4096).await;
    eprintln!("CONTINUATION flood, endless value: about {sent} frames sent; {seen:?}");
    assert_goaway(
        "CONTINUATION flood, endless value",
        &seen,
        error_code::PROTOCOL_ERROR,
    );
    assert!(seen.2 < Duration::from_secs(2), "closed after {:?}", seen.2);
    watch
        .finish(&bed, "CONTINUATION flood, endless value", FEW_CONNECTIONS)
        .await;
}

// ---------------------------------------------------------------------------
// HPACK.
// ---------------------------------------------------------------------------

/// A GetSystemInfo call with `fields` as its headers.
fn call_steps(fields: Vec<Field>, fragment: Option<usize>) -> [Step; 2] {
    [
        Step::Headers {
            fields,
            end_stream: false,
            fragment,
        },
        Step::data(grpc::frame(&pb::get_system_info(), false).to_vec(), true),
    ]
}

#[tokio::test]
async fn hpack_bomb_gets_goaway_header_list_way_too_large() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // One entry of 4,000 bytes fills the dynamic table (4,096): a call
    // carrying it is served ...
    let mut fields = conn.request_headers(path::GET_SYSTEM_INFO, &[]);
    fields.push(Field::Indexing(b"x-bomb".to_vec(), vec![b'b'; 4000]));
    let (_, first) = conn
        .run(&call_steps(fields, None), Duration::from_secs(5))
        .await;
    assert!(first.is_ok(), "the call that indexes the entry: {first}");
    // ... and blocks that reference it 16,000 times each (16 KB on the
    // wire, 64 MB decoded) end the connection on the first one.
    let mut block = request_block(&conn);
    block.extend(std::iter::repeat_n(0x80 | 62, 16_000));
    let mut bombs = 0;
    while bombs < 20 && conn.closed().is_none() && conn.goaways().is_empty() {
        let id = conn.next_stream_id();
        conn.send_frame(
            frame_type::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            id,
            &block,
        )
        .unwrap();
        let o = conn.wait_stream(id, Duration::from_secs(5)).await;
        assert!(!o.is_ok(), "a bomb was served: {o}");
        bombs += 1;
    }
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(2)).await;
    eprintln!("HPACK bomb: {bombs} block(s) sent; {seen:?}");
    assert_goaway("HPACK bomb", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "header_list_way_too_large");
    assert_eq!(bombs, 1, "blocks sent before the GOAWAY");
    watch.finish(&bed, "HPACK bomb", FEW_CONNECTIONS).await;
}

#[tokio::test]
async fn oversize_literal_is_refused_and_a_huge_one_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    let huge = |size: usize| {
        let mut fields = conn.request_headers(path::GET_SYSTEM_INFO, &[]);
        fields.push(field("x-huge", vec![b'h'; size]));
        call_steps(fields, Some(16 * 1024))
    };
    // A 100 KiB value, over max_header_list_size (64 KiB): h2 answers
    // HTTP 431 and resets the stream; the connection goes on.
    let (_, o) = conn.run(&huge(100 * 1024), Duration::from_secs(5)).await;
    eprintln!("over-size literal, 100 KiB: {o}");
    assert_eq!(o.response().and_then(|r| r.http_status), Some(431), "{o}");
    let (_, o) = conn
        .run(
            &call_steps(conn.request_headers(path::GET_SYSTEM_INFO, &[]), None),
            Duration::from_secs(5),
        )
        .await;
    assert!(o.is_ok(), "a call after the 431: {o}");
    // A 1 MiB value takes 64 frames: too many CONTINUATIONs.
    let (_, o) = conn.run(&huge(1024 * 1024), Duration::from_secs(5)).await;
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(2)).await;
    eprintln!("over-size literal, 1 MiB: {o}; {seen:?}");
    assert_goaway("1 MiB literal", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_continuations");
    watch
        .finish(&bed, "over-size literal", FEW_CONNECTIONS)
        .await;
}

// ---------------------------------------------------------------------------
// Control-frame floods.
// ---------------------------------------------------------------------------

/// `n` frames of `ty`/`fl` on `stream` with `payload`, sent on a reading
/// client in one go; returns what the proxy did within 5 s.
async fn control_flood(
    conn: &H2Conn,
    ty: u8,
    fl: u8,
    stream: u32,
    payload: &[u8],
    n: usize,
) -> (Option<GoAway>, Option<String>, Duration) {
    let frame = encode_frame(ty, fl, stream, payload);
    // Batches of up to 64 KiB, never more frames than asked for.
    let per_batch = (64 * 1024 / frame.len()).clamp(1, n.max(1));
    let batch = repeat(&frame, per_batch);
    flood_paced(conn, &batch, n.div_ceil(per_batch), Duration::from_secs(5)).await;
    wait_goaway_and_close(conn, Duration::from_secs(3)).await
}

#[tokio::test]
async fn ping_flood_gets_goaway_too_many_pings() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // Up to 100,000 PINGs (1.7 MB): the third within 10 s of another is
    // over grpc-go's two strikes.
    let seen = control_flood(&conn, frame_type::PING, 0, 0, &[7; 8], 100_000).await;
    let (_, _, acks) = conn.counters();
    eprintln!("PING flood: {seen:?}, {} ACKs", acks.len());
    assert_goaway("PING flood", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_pings");
    // Measured: none (the guard withholds the read that tripped it).
    assert!(acks.len() <= 3, "{} PINGs answered", acks.len());
    watch.finish(&bed, "PING flood", FEW_CONNECTIONS).await;
}

/// A flood of `frame` by a client that reads nothing until it is done.
async fn deaf_flood(bed: &Bed, frame: &[u8], n: usize) -> (usize, Heard) {
    let mut deaf = Deaf::connect(bed).await;
    let bytes = repeat(frame, n);
    let started = Instant::now();
    let written = deaf.write(&bytes, Duration::from_secs(2)).await;
    let write_time = started.elapsed();
    let heard = deaf.hear(Duration::from_secs(5)).await;
    eprintln!(
        "deaf flood: {} of {} bytes written in {write_time:?}; heard {heard:?}",
        written,
        bytes.len()
    );
    (written, heard)
}

#[tokio::test]
async fn ping_flood_from_a_client_that_never_reads_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // 200,000 PINGs (3.4 MB) written without reading a byte, then read.
    let (_, heard) = deaf_flood(
        &bed,
        &encode_frame(frame_type::PING, 0, 0, &[9; 8]),
        200_000,
    )
    .await;
    let g = heard.goaway.as_ref().expect("a GOAWAY");
    assert_eq!(g.error_code, error_code::ENHANCE_YOUR_CALM, "{g}");
    assert_eq!(show(&g.debug), "too_many_pings");
    assert!(heard.closed.is_some(), "{heard:?}");
    // Measured: none.
    assert!(heard.ping_acks <= 3, "{heard:?}");
    watch
        .finish(&bed, "PING flood, deaf client", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn settings_flood_gets_goaway_enhance_your_calm() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // Up to 100,000 SETTINGS frames (1.5 MB), each one h2 would apply and
    // acknowledge (CVE-2019-9515).
    let payload = [0u8, 3, 0, 0, 0, 100]; // MAX_CONCURRENT_STREAMS = 100
    let seen = control_flood(&conn, frame_type::SETTINGS, 0, 0, &payload, 100_000).await;
    let (acks, _, _) = conn.counters();
    eprintln!("SETTINGS flood: {seen:?}, {acks} ACKs");
    assert_goaway("SETTINGS flood", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_settings");
    // Measured: 1 (of the client's first SETTINGS).
    assert!(acks < 1000, "{acks} SETTINGS acknowledged");
    watch.finish(&bed, "SETTINGS flood", FEW_CONNECTIONS).await;
}

#[tokio::test]
async fn settings_flood_from_a_client_that_never_reads_gets_goaway() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    // 200,000 empty SETTINGS (1.8 MB) written without reading, then read.
    let (_, heard) = deaf_flood(
        &bed,
        &encode_frame(frame_type::SETTINGS, 0, 0, &[]),
        200_000,
    )
    .await;
    let g = heard.goaway.as_ref().expect("a GOAWAY");
    assert_eq!(g.error_code, error_code::ENHANCE_YOUR_CALM, "{g}");
    assert_eq!(show(&g.debug), "too_many_settings");
    assert!(heard.closed.is_some(), "{heard:?}");
    // Measured: 1.
    assert!(heard.settings_acks < 1000, "{heard:?}");
    watch
        .finish(&bed, "SETTINGS flood, deaf client", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn window_update_flood_gets_goaway_enhance_your_calm() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // 200,000 connection WINDOW_UPDATEs of 1 (a 200 KB increase in all, far
    // from overflowing the window): each is work for the proxy and none
    // is needed, as no DATA is sent. Envoy limits WINDOW_UPDATEs by the
    // DATA frames it has sent.
    let seen = control_flood(
        &conn,
        frame_type::WINDOW_UPDATE,
        0,
        0,
        &1u32.to_be_bytes(),
        200_000,
    )
    .await;
    eprintln!("WINDOW_UPDATE flood: {seen:?}");
    assert_goaway("WINDOW_UPDATE flood", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_window_updates");
    watch
        .finish(&bed, "WINDOW_UPDATE flood", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn window_update_past_the_maximum_gets_goaway_flow_control_error() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // 10 increments of 2^30 on the connection: the window passes 2^31 - 1
    // on the second (RFC 9113 §6.9.1).
    let seen = control_flood(
        &conn,
        frame_type::WINDOW_UPDATE,
        0,
        0,
        &0x4000_0000u32.to_be_bytes(),
        10,
    )
    .await;
    assert_goaway(
        "WINDOW_UPDATE overflow",
        &seen,
        error_code::FLOW_CONTROL_ERROR,
    );
    assert!(seen.2 < Duration::from_secs(2), "closed after {:?}", seen.2);
    watch
        .finish(&bed, "WINDOW_UPDATE overflow", FEW_CONNECTIONS)
        .await;
}

#[tokio::test]
async fn priority_flood_gets_goaway_enhance_your_calm() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // 200,000 PRIORITY frames, one per idle stream 1, 3, 5, ... (2.8 MB):
    // h2 ignores each, and never says stop. Envoy allows about 100 per
    // stream opened.
    let mut bytes = Vec::new();
    for i in 0..200_000u32 {
        bytes.extend(encode_frame(
            frame_type::PRIORITY,
            0,
            2 * i + 1,
            &[0, 0, 0, 0, 16],
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for piece in bytes.chunks(64 * 1024) {
        if conn.closed().is_some() || Instant::now() > deadline {
            break;
        }
        let _ = conn.send_bytes(piece.to_vec());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(3)).await;
    eprintln!("PRIORITY flood: {seen:?}");
    assert_goaway("PRIORITY flood", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_debug(&seen, "too_many_priority_frames");
    watch.finish(&bed, "PRIORITY flood", FEW_CONNECTIONS).await;
}

#[tokio::test]
async fn empty_data_flood_gets_goaway_too_many_data_frames() {
    let bed = Bed::start("").await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    // A call's HEADERS, then up to 210,000 empty DATA frames on it.
    let id = conn.next_stream_id();
    conn.send_headers(
        id,
        &conn.request_headers(path::GET_SYSTEM_INFO, &[]),
        false,
        None,
    )
    .unwrap();
    let frame = encode_frame(frame_type::DATA, 0, id, &[]);
    let batch = repeat(&frame, 7000);
    let sent = flood_paced(&conn, &batch, 30, Duration::from_secs(5)).await;
    let seen = wait_goaway_and_close(&conn, Duration::from_secs(3)).await;
    eprintln!("empty DATA flood: {} frames sent; {seen:?}", sent * 7000);
    assert_goaway("empty DATA flood", &seen, error_code::ENHANCE_YOUR_CALM);
    assert_eq!(
        seen.0.as_ref().map(|g| show(&g.debug)),
        Some("too_many_data_frames".into())
    );
    watch
        .finish(&bed, "empty DATA flood", FEW_CONNECTIONS)
        .await;
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// Streams and connections held.
// ---------------------------------------------------------------------------

/// HEADERS of a DescribeNamespace call on a new stream, and no body: the
/// proxy waits for the message to read its namespace.
fn open_stream(conn: &H2Conn) -> u32 {
    let id = conn.next_stream_id();
    conn.send_headers(
        id,
        &conn.request_headers(path::DESCRIBE_NAMESPACE, &[]),
        false,
        None,
    )
    .unwrap();
    id
}

/// Namespace authorization on (so the proxy reads each request's first
/// message), the test client admin everywhere, and a first message due
/// within 2 s.
const READS_FIRST_MESSAGE: &str = r#"
[limits]
first_message_timeout = "2s"

[authz]
mode = "enforce"

[[authz.rule]]
name = "test-client"
match = { cn = "client" }
namespaces = ["*"]
roles = ["admin"]
"#;

#[tokio::test]
async fn streams_beyond_max_concurrent_streams_are_refused_and_unfinished_ones_time_out() {
    let bed = Bed::start(&format!(
        "[http2]\nmax_concurrent_streams = 100\n{READS_FIRST_MESSAGE}"
    ))
    .await;
    let watch = bed.watch().await;
    let conn = bed.raw().await;
    let opened = Instant::now();
    // 100 calls opened and never finished (no message, no END_STREAM) ...
    let held: Vec<u32> = (0..100).map(|_| open_stream(&conn)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ... then 50 more, beyond the limit: each refused at once.
    let beyond: Vec<u32> = (0..50).map(|_| open_stream(&conn)).collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    for id in &beyond {
        let o = conn
            .wait_stream(*id, deadline.saturating_duration_since(Instant::now()))
            .await;
        assert!(
            matches!(
                o,
                Outcome::Reset {
                    code: error_code::REFUSED_STREAM,
                    ..
                }
            ),
            "stream {id} beyond the limit: {o}"
        );
    }
    // The held ones end with DEADLINE_EXCEEDED when their first message
    // is 2 s late (measured: 2.0 s; bound 4 s).
    let deadline = opened + Duration::from_secs(4);
    for id in &held {
        let o = conn
            .wait_stream(*id, deadline.saturating_duration_since(Instant::now()))
            .await;
        assert_eq!(
            o.grpc_status(),
            Some(code::DEADLINE_EXCEEDED),
            "held stream {id}: {o}"
        );
    }
    let ended = opened.elapsed();
    eprintln!("held streams: 100 ended after {ended:?}");
    // The connection is usable again, for a full 100 calls.
    let message = pb::get_system_info();
    let calls: Vec<_> = (0..100)
        .map(|_| conn.call(path::GET_SYSTEM_INFO, &[], &message))
        .collect();
    for (i, o) in futures_join(calls).await.into_iter().enumerate() {
        assert!(o.is_ok(), "call {i} after the held streams: {o}");
    }
    assert!(conn.closed().is_none(), "{:?}", conn.closed());
    watch.finish(&bed, "streams held", FEW_CONNECTIONS).await;
}

/// Awaits all of `futures` at once, in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// `n` connections, at most `at_once` of them connecting at a time.
async fn connect_many<T: Send + 'static, F>(
    n: usize,
    at_once: usize,
    connect: impl Fn(usize) -> F,
) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let permits = permits.clone();
        let connecting = connect(i);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            connecting.await
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.expect("connect task"));
    }
    out
}

// Two runtime threads: the client's side of thousands of handshakes is
// work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_after_the_handshake_get_goaway_at_max_idle() {
    let bed = Bed::start("[keepalive]\nmax_connection_idle = \"6s\"\n").await;
    let watch = bed.watch().await;
    // 600, not 2,000: a TLS handshake costs both sides (debug builds) 2 to
    // 3 ms of the two cores, and more beside the other tests: 2,000 took
    // 6 s alone, 1,000 took 2.2 s alone and 7.6 s beside the other
    // connection-heavy tests. All of them must be idle at once, so the
    // idle timeout must be longer than the connecting, and the test within
    // 20 s. (The unfinished-handshake test holds 2,000.)
    let n = scaled(600);
    let (addr, tls) = (bed.proxy.addr, bed.tls.clone());
    let started = Instant::now();
    let fds_before = fds_of(bed.proxy.pid());
    let conns = connect_many(n, 32, |_| {
        let tls = tls.clone();
        async move { H2Conn::tls(addr, &tls, &H2Options::default()).await }
    })
    .await;
    let conns: Vec<H2Conn> = conns
        .into_iter()
        .map(|c| c.unwrap_or_else(|e| panic!("idle connection: {e}")))
        .collect();
    let connected = started.elapsed();
    let growth = watch.growth();
    let fds = fds_of(bed.proxy.pid()).saturating_sub(fds_before);
    // All of them open at once, on both sides (measured: connected in 1.3
    // s alone).
    assert!(
        connected < Duration::from_secs(6),
        "connecting took {connected:?}"
    );
    assert_eq!(conns.iter().filter(|c| c.closed().is_none()).count(), n);
    assert!(fds >= n, "the proxy holds {fds} more fds than before");
    // Each closed with GOAWAY NO_ERROR after 6 s without calls: at most
    // 6 s after the last one connected, plus 2 s.
    let deadline = started + connected + Duration::from_secs(8);
    let mut codes = std::collections::BTreeMap::new();
    for c in &conns {
        let _ = c
            .wait_closed(deadline.saturating_duration_since(Instant::now()))
            .await;
        let code = c.goaways().last().map(|g| error_code::name(g.error_code));
        *codes.entry((code, c.closed().is_some())).or_insert(0) += 1;
    }
    eprintln!(
        "idle connections: {n} in {connected:?}, RSS +{growth} kB, {fds} more fds; by {:?}: (GOAWAY, closed) {codes:?}",
        started.elapsed(),
    );
    assert_eq!(
        codes.get(&(Some("NO_ERROR".to_string()), true)),
        Some(&n),
        "(GOAWAY, closed): connections {codes:?}"
    );
    drop(conns);
    watch
        .finish(&bed, "idle connections", IDLE_CONNECTIONS)
        .await;
}

// Two runtime threads: the client's side of thousands of handshakes is
// work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_are_closed_at_the_handshake_timeout() {
    // Longer than the connecting, which is quantised by retransmitted SYNs
    // (1 s, then 3 s: a client port that meets a TIME_WAIT left by an
    // earlier round or test on this loopback waits for its SYN's retry):
    // measured 1.1 to 7.2 s for 2,000, before this proxy or after it.
    const TIMEOUT: u64 = 12;
    let bed = Bed::start_with(|c| {
        c.replace(
            "[tls]\n",
            &format!("[tls]\nhandshake_timeout = \"{TIMEOUT}s\"\n"),
        )
    })
    .await;
    let watch = bed.watch().await;
    let n = scaled(2000);
    let addr = bed.proxy.addr;
    let mut after_round = Vec::new();
    let mut first_peak = 0;
    // Two rounds: the memory the first took is reused by the second (a
    // leak would add up).
    for round in 0..2 {
        let fds_before = fds_of(bed.proxy.pid());
        // Half send nothing, half the first 100 bytes of a 512-byte
        // ClientHello record.
        let started = Instant::now();
        let socks = connect_many(n, 32, |i| async move {
            let mut tcp = TcpStream::connect(addr).await.expect("TCP connect");
            if i % 2 == 1 {
                let mut hello = vec![
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ];
                hello.resize(100, 0x2a);
                let _ = tcp.write_all(&hello).await;
            }
            tcp
        })
        .await;
        let connected = started.elapsed();
        let fds = fds_of(bed.proxy.pid()) - fds_before;
        // All of them held at once (the timeout is longer than the
        // connecting) ...
        assert!(
            connected < Duration::from_secs(TIMEOUT),
            "connecting took {connected:?}"
        );
        assert!(fds + 50 >= n, "the proxy holds {fds} more fds than before");
        // ... while the bystander's calls go on, and new clients still get
        // in.
        bed.fresh_call().await;
        let growth = watch.growth();
        if round == 0 {
            first_peak = growth;
        }
        // Each closed TIMEOUT after it connected: by TIMEOUT after the
        // last, plus 2 s.
        let mut closed = 0;
        let mut last = Duration::ZERO;
        let deadline = started + connected + Duration::from_secs(TIMEOUT + 2);
        for mut s in socks {
            let mut b = [0u8; 512];
            let r =
                tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), async {
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
            if r.is_ok() {
                closed += 1;
                last = last.max(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = bed.rss();
        after_round.push(rss);
        eprintln!(
            "round {round}: {n} unfinished handshakes in {connected:?}: RSS peak +{growth} kB, {rss} kB after, {fds} more fds; {closed} closed, the last at {last:?}"
        );
        assert_eq!(closed, n, "connections still open 2 s after their timeout");
    }
    // A leak of what the connections held would add a round's peak again.
    watch.assert_rounds_reused(&after_round, first_peak);
    watch
        .finish(&bed, "unfinished handshakes", UNFINISHED_HANDSHAKES)
        .await;
}

// Two runtime threads: the client's side of thousands of handshakes is
// work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_the_http2_preface_are_closed_at_the_handshake_timeout() {
    let bed =
        Bed::start_with(|c| c.replace("[tls]\n", "[tls]\nhandshake_timeout = \"2s\"\n")).await;
    let watch = bed.watch().await;
    let n = scaled(500);
    let (addr, tls) = (bed.proxy.addr, bed.tls.clone());
    let mut after_round = Vec::new();
    let mut first_peak = 0;
    // Two rounds: the memory the first took is reused by the second (a
    // leak would add up).
    for round in 0..2 {
        let started = Instant::now();
        // The TLS handshake done, then nothing: no preface.
        let streams = connect_many(n, 32, |_| {
            let tls = tls.clone();
            async move { grpc::raw_tls(addr, &tls).await.expect("TLS") }
        })
        .await;
        let connected = started.elapsed();
        let growth = watch.growth();
        if round == 0 {
            first_peak = growth;
        }
        let mut closed = 0;
        let mut goaways = 0;
        let mut last = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(5);
        for tls in streams {
            let mut deaf = Deaf { tls };
            let heard = deaf
                .hear(deadline.saturating_duration_since(Instant::now()))
                .await;
            if heard.closed.is_some() {
                closed += 1;
                last = last.max(started.elapsed());
            }
            goaways += usize::from(heard.goaway.is_some());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = bed.rss();
        after_round.push(rss);
        eprintln!(
            "round {round}: {n} connections without preface in {connected:?}: RSS peak +{growth} kB, {rss} kB after; {closed} closed ({goaways} with GOAWAY), the last at {last:?}"
        );
        assert_eq!(closed, n, "connections without a preface still open");
        // Closed at the handshake timeout (2 s) after the handshake.
        // Measured: the last 2.5 s after the first connected; bound 5 s
        // plus the time to connect them all.
        assert!(
            last < connected + Duration::from_secs(5),
            "the last closed at {last:?}"
        );
    }
    // A leak of what the connections held would add a round's peak (+25
    // MB) again.
    watch.assert_rounds_reused(&after_round, first_peak);
    watch.finish(&bed, "no preface", NO_PREFACE).await;
}

#[tokio::test]
async fn handshakes_in_progress_leave_room_for_new_clients() {
    let bed = Bed::start_with(|c| {
        c.replace("[tls]\n", "[tls]\nhandshake_timeout = \"10s\"\n")
            + "\n[limits]\nmax_connections = 300\n"
    })
    .await;
    let watch = bed.watch().await;
    // 300 TCP connections that never send a byte: as many as the proxy
    // takes, all in their TLS handshake for the next 10 s.
    let addr = bed.proxy.addr;
    let socks = connect_many(300, 64, |_| async move {
        TcpStream::connect(addr).await.expect("TCP connect")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A legitimate client that completes its handshake gets in, at once.
    let started = Instant::now();
    let tls = bed.tls.clone();
    let conn = tokio::time::timeout(
        Duration::from_secs(3),
        grpc::GrpcConn::connect(bed.proxy.addr, Some(&tls)),
    )
    .await;
    let reply = match &conn {
        Ok(Ok(c)) => Some(
            c.unary_timeout(
                path::GET_SYSTEM_INFO,
                &pb::get_system_info(),
                &[],
                Duration::from_secs(3),
            )
            .await,
        ),
        _ => None,
    };
    eprintln!(
        "a new client with 300 handshakes in progress: connect {:?}, call {reply:?}, after {:?}",
        conn.as_ref().map(|r| r.as_ref().map(|_| "connected")),
        started.elapsed()
    );
    assert!(
        matches!(&reply, Some(Ok(r)) if r.is_ok()),
        "a new client was locked out by handshakes in progress"
    );
    // It took the place of the oldest handshake, which was closed (one per
    // new connection while all places were taken; measured 2).
    let (_, metrics) = bed.proxy.admin_get("/metrics").await;
    let evicted: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"temporal_mtls_proxy_handshake_failures_total{reason="evicted"} "#)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no evicted count: {metrics}"));
    assert!((1..=5).contains(&evicted), "{evicted} evicted");
    drop(socks);
    watch
        .finish(&bed, "handshakes in progress", FEW_CONNECTIONS)
        .await;
}
