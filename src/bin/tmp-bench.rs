//! `tmp-bench`: a gRPC load generator for temporal-mtls-proxy, the Temporal
//! frontend, and the proxies it is compared with (nginx, HAProxy).
//!
//! It speaks HTTP/2 with hyper, over mutual TLS (`--tls`) or cleartext h2c,
//! and calls one Temporal method with a precomputed request body.
//!
//! Load shapes:
//!
//! * closed loop (default): `--connections N` × `--concurrency M` workers,
//!   each sending its next call as soon as the previous one answers;
//! * open loop (`--rate R`): calls scheduled at fixed intervals, R per second
//!   in total, latency measured from the *scheduled* start (a worker that falls
//!   behind sends its late calls at once and their wait counts, as wrk2 does),
//!   so there is no coordinated omission;
//! * `--mode new-connection`: every call on a fresh TCP + TLS + HTTP/2
//!   connection, TLS session resumption disabled (full handshakes per second);
//! * `--mode hold`: `--hold-calls N` long polls held open for `--hold-for`
//!   (with `grpc-timeout` = hold time + 10 s, so a real frontend holds them
//!   too), so the proxy's memory per open call can be sampled from outside;
//! * `--mode idle`: `--connections N` connections (up to 64 dialed at once,
//!   TLS session resumption disabled) that each make one `--method` call,
//!   then stay open without calls for `--hold-for` (counted from when all
//!   are open), so the proxy's memory per idle connection can be sampled from
//!   outside; "idle: N of N connections open" on stderr tells when.
//!
//! The run ends at `--duration` (default 10 s) or after `--calls`, whichever
//! comes first. The report gives calls/s, errors by grpc-status (transport
//! errors apart), latency percentiles in µs from an HDR histogram, bytes/s of
//! gRPC message bytes, and the generator's own CPU time (from
//! `/proc/self/stat`) per call, so a reader sees when the generator is the
//! bottleneck. `--json` prints one JSON object on stdout instead.
//!
//! Open-loop precision: the schedule is kept by one OS thread that sleeps,
//! then spins the last `--pacer-spin-us` (80) before each call; its lag is
//! reported and counted in the latency. At high rates it spins most of the
//! time (about one core): on a small machine give the generator its own
//! cores (taskset) or pass `--pacer-spin-us 0` (then ~60 µs of OS timer
//! slack is added to each latency instead).
//!
//! Examples:
//!
//! ```text
//! # closed loop, tiny calls, h2c straight at a frontend
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7233 \
//!     --connections 4 --concurrency 32 --duration 10s
//!
//! # through the proxy over mTLS, 1 KiB payloads, JSON for scripts
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7443 --tls \
//!     --ca ca.pem --cert client.pem --key client.key --server-name proxy.local \
//!     --method start-workflow --payload-bytes 1024 --json
//!
//! # open loop at 5,000 calls/s for latency
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7443 --tls ... \
//!     --rate 5000 --connections 4 --concurrency 64 --duration 20s
//!
//! # full mTLS handshakes per second
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7443 --tls ... \
//!     --mode new-connection --connections 8 --concurrency 1
//!
//! # 10,000 long polls held for 30 s over 100 connections
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7443 --tls ... \
//!     --mode hold --hold-calls 10000 --connections 100 --hold-for 30s
//!
//! # 10,000 idle mTLS connections (one call each) held for 30 s
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7443 --tls ... \
//!     --mode idle --connections 10000 --hold-for 30s
//!
//! # 1 MiB messages against the fake frontend's echo method
//! cargo run --release --bin tmp-bench -- --target 127.0.0.1:7233 \
//!     --method echo --payload-bytes 1048576 --concurrency 4
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method as HttpMethod, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use temporal_mtls_proxy::tls::client::{client_config, ClientTlsMaterial};
use temporal_mtls_proxy::tls::material::{load_ca_bundle, load_certified_key};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CallMethod {
    /// Empty GetSystemInfoRequest (tiny calls).
    GetSystemInfo,
    /// StartWorkflowExecutionRequest with an input payload of --payload-bytes.
    StartWorkflow,
    /// `/test.Echo/Echo` with a raw message of --payload-bytes (fake frontend).
    Echo,
    /// PollWorkflowTaskQueueRequest (a long poll).
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Calls on long-lived HTTP/2 connections.
    Unary,
    /// Each call on a fresh connection (full TLS handshake, no resumption).
    NewConnection,
    /// Hold --hold-calls poll calls open for --hold-for.
    Hold,
    /// Open --connections connections, one call each, then hold them idle
    /// for --hold-for.
    Idle,
}

/// gRPC load generator for temporal-mtls-proxy and the Temporal frontend.
#[derive(Debug, Parser)]
#[command(name = "tmp-bench", version)]
struct Args {
    /// Address to load, host:port.
    #[arg(long)]
    target: String,
    /// Use TLS (mutual TLS with --cert/--key); without it, h2c.
    #[arg(long)]
    tls: bool,
    /// CA bundle (PEM) that verifies the server's certificate.
    #[arg(long, requires = "tls")]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM).
    #[arg(long, requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires_all = ["tls", "cert"])]
    key: Option<PathBuf>,
    /// TLS server name (SNI and verification); default: the target's host.
    #[arg(long, requires = "tls")]
    server_name: Option<String>,
    /// `:authority` of the requests; default: the target.
    #[arg(long)]
    authority: Option<String>,
    /// The gRPC method to call.
    #[arg(long, value_enum, default_value = "get-system-info")]
    method: CallMethod,
    /// Payload size for start-workflow and echo.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// start-workflow: a new workflow id per call (copies the body per call);
    /// without it every call reuses one id, which a real server refuses with
    /// ALREADY_EXISTS after the first.
    #[arg(long)]
    unique_workflow_ids: bool,
    /// Open loop: the pacer thread spins this long before each scheduled
    /// time for precision (costs CPU at high rates); 0 sleeps only, which
    /// adds up to the OS timer slack (~60 µs) to every measured latency.
    #[arg(long, default_value_t = 80)]
    pacer_spin_us: u64,
    /// Temporal namespace put in the requests.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Number of HTTP/2 connections (in new-connection mode: parallel
    /// dialers; in idle mode: the connections held open).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent streams (workers) per connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run (always bounded).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Stop after this many calls (whichever of --calls and --duration first).
    #[arg(long)]
    calls: Option<u64>,
    /// Open loop: calls per second in total, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Load mode.
    #[arg(long, value_enum, default_value = "unary")]
    mode: Mode,
    /// Hold mode: number of poll calls kept open, round-robin over
    /// --connections. Keep calls per connection under the server's HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS (hyper's default: 200): the excess
    /// would wait inside the generator and not be open on the server.
    #[arg(long, default_value_t = 1000)]
    hold_calls: usize,
    /// Hold mode: how long to keep the polls open; idle mode: how long to
    /// keep the connections open, from when all are open.
    #[arg(long, default_value = "30s")]
    hold_for: humantime::Duration,
    /// Per-call timeout (unary and new-connection modes; idle mode: the dial
    /// and its one call).
    #[arg(long, default_value = "30s")]
    timeout: humantime::Duration,
    /// Runtime worker threads of the generator; default: all CPUs.
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

const SYSTEM_INFO_PATH: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
const START_WORKFLOW_PATH: &str =
    "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
const POLL_PATH: &str = "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue";
const ECHO_PATH: &str = "/test.Echo/Echo";

// ---------------------------------------------------------------------------
// Protobuf and gRPC framing, by hand.

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A length-delimited field (strings, bytes, embedded messages).
fn put_len_field(buf: &mut BytesMut, field: u32, bytes: &[u8]) {
    put_varint(buf, (u64::from(field) << 3) | 2);
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

fn message(fields: &[(u32, &[u8])]) -> BytesMut {
    let mut buf = BytesMut::new();
    for (field, bytes) in fields {
        put_len_field(&mut buf, *field, bytes);
    }
    buf
}

fn payload_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The protobuf message of a call (without the gRPC frame header).
fn request_message(method: CallMethod, namespace: &str, payload_bytes: usize) -> BytesMut {
    let ns = namespace.as_bytes();
    match method {
        CallMethod::GetSystemInfo => BytesMut::new(),
        CallMethod::Echo => BytesMut::from(&payload_data(payload_bytes)[..]),
        CallMethod::StartWorkflow => {
            let workflow_type = message(&[(1, b"tmp-bench-workflow")]);
            let task_queue = message(&[(1, b"tmp-bench")]);
            let payload = message(&[(2, &payload_data(payload_bytes))]);
            let payloads = message(&[(1, &payload)]);
            // google.protobuf.Duration{seconds: 60}: a workflow started on a
            // real server without a worker times out instead of piling up.
            let execution_timeout = [0x08, 60];
            message(&[
                (1, ns),
                (2, &workflow_id_template()),
                (3, &workflow_type),
                (4, &task_queue),
                (5, &payloads),
                (6, &execution_timeout),
            ])
        }
        CallMethod::Poll => {
            let task_queue = message(&[(1, b"tmp-bench")]);
            message(&[(1, ns), (2, &task_queue), (3, b"tmp-bench")])
        }
    }
}

/// The workflow id of start-workflow calls: the process id then 16 hex
/// digits, zero here and a per-call counter with `--unique-workflow-ids`.
fn workflow_id_template() -> Vec<u8> {
    format!("tmp-bench-{}-{:016x}", std::process::id(), 0).into_bytes()
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + msg.len());
    buf.put_u8(0);
    buf.put_u32(msg.len() as u32);
    buf.put_slice(msg);
    buf.freeze()
}

fn method_path(method: CallMethod) -> &'static str {
    match method {
        CallMethod::GetSystemInfo => SYSTEM_INFO_PATH,
        CallMethod::StartWorkflow => START_WORKFLOW_PATH,
        CallMethod::Echo => ECHO_PATH,
        CallMethod::Poll => POLL_PATH,
    }
}

// ---------------------------------------------------------------------------
// Connections and calls.

/// Everything a worker needs to dial and to build a request.
struct Target {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// `--unique-workflow-ids`: where the 16 hex digits of the id are.
    unique_id_at: Option<usize>,
    next_id: AtomicU64,
}

impl Target {
    /// The request body of one call: the precomputed one, or a copy with the
    /// next workflow id.
    fn body(&self) -> Bytes {
        match self.unique_id_at {
            None => self.body.clone(),
            Some(at) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut body = BytesMut::from(&self.body[..]);
                body[at..at + 16].copy_from_slice(format!("{id:016x}").as_bytes());
                body.freeze()
            }
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, &'static str> {
    dial(target).await.map(|(sender, _)| sender)
}

/// Opens one HTTP/2 connection: the sender of its requests and the task
/// that drives it (it finishes when the connection closes).
async fn dial(target: &Target) -> Result<(Sender, JoinHandle<()>), &'static str> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|_| "connect")?;
    let _ = tcp.set_nodelay(true);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_send_buf_size(4 << 20);
    match &target.tls {
        None => {
            let (sender, conn) = builder
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(|_| "h2-handshake")?;
            Ok((sender, tokio::spawn(async move { _ = conn.await })))
        }
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|_| "tls-handshake")?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("no-alpn-h2");
            }
            let (sender, conn) = builder
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|_| "h2-handshake")?;
            Ok((sender, tokio::spawn(async move { _ = conn.await })))
        }
    }
}

enum Outcome {
    /// A gRPC answer: its grpc-status and the message bytes received.
    Grpc { status: String, received: u64 },
    /// No gRPC answer: what failed.
    Transport(String),
}

async fn call(sender: &mut Sender, target: &Target) -> Outcome {
    let mut req = Request::new(Full::new(target.body()));
    *req.method_mut() = HttpMethod::POST;
    *req.uri_mut() = target.uri.clone();
    *req.headers_mut() = target.headers.clone();
    let resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(_) => return Outcome::Transport("http2".into()),
    };
    if resp.status() != http::StatusCode::OK {
        return Outcome::Transport(format!("http-{}", resp.status().as_u16()));
    }
    let mut status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => return Outcome::Transport("body".into()),
        };
        match frame.into_data() {
            Ok(data) => received += data.len() as u64,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    if let Some(s) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
                        status = Some(s.to_owned());
                    }
                }
            }
        }
    }
    match status {
        Some(status) => Outcome::Grpc { status, received },
        None => Outcome::Transport("no-grpc-status".into()),
    }
}

// ---------------------------------------------------------------------------
// Statistics.

/// What one worker measured; merged at the end.
struct Stats {
    /// Allocated at the first recorded call (~190 KiB each): in hold mode
    /// most holders never finish a call, and there may be 10,000 of them.
    hist: Option<Histogram<u64>>,
    ok: u64,
    grpc_errors: BTreeMap<String, u64>,
    transport_errors: BTreeMap<String, u64>,
    sent: u64,
    received: u64,
    late: u64,
    unsent: u64,
    held_to_end: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: None,
            ok: 0,
            grpc_errors: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            sent: 0,
            received: 0,
            late: 0,
            unsent: 0,
            held_to_end: 0,
        }
    }

    fn calls(&self) -> u64 {
        self.ok
            + self.grpc_errors.values().sum::<u64>()
            + self.transport_errors.values().sum::<u64>()
    }

    /// Records a finished call; `latency` from its (scheduled) start.
    fn record(&mut self, outcome: Outcome, latency: Duration, body_len: usize, live: &Live) {
        live.calls.fetch_add(1, Ordering::Relaxed);
        self.sent += body_len as u64;
        match outcome {
            Outcome::Grpc { status, received } => {
                self.received += received;
                self.hist
                    .get_or_insert_with(new_histogram)
                    .saturating_record((latency.as_micros() as u64).max(1));
                if status == "0" {
                    self.ok += 1;
                } else {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    *self.grpc_errors.entry(status).or_default() += 1;
                }
            }
            Outcome::Transport(what) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                *self.transport_errors.entry(what).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        match (&mut self.hist, other.hist) {
            (Some(mine), Some(theirs)) => mine.add(&theirs).expect("same histogram bounds"),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.ok += other.ok;
        for (k, v) in other.grpc_errors {
            *self.grpc_errors.entry(k).or_default() += v;
        }
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        self.sent += other.sent;
        self.received += other.received;
        self.late += other.late;
        self.unsent += other.unsent;
        self.held_to_end += other.held_to_end;
    }
}

/// Counters the progress line reads while the run goes.
#[derive(Default)]
struct Live {
    calls: AtomicU64,
    errors: AtomicU64,
    open: AtomicI64,
    peak_open: AtomicI64,
    issued: AtomicU64,
}

impl Live {
    /// Takes one call from the `--calls` budget; false when it is spent.
    fn take(&self, limit: u64) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < limit
    }

    fn open_inc(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    fn open_dec(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// User and system CPU seconds of this process, from `/proc/self/stat`
/// (fields 14 and 15, in USER_HZ = 100 ticks per second on Linux).
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / 100.0, stime / 100.0))
}

// ---------------------------------------------------------------------------
// Workers.

struct Plan {
    target: Arc<Target>,
    live: Arc<Live>,
    deadline: Instant,
    limit: u64,
    timeout: Duration,
    /// Open loop: the scheduled start times of this worker's calls.
    schedule: Option<tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>>,
    new_connection: bool,
}

/// Open loop: one OS thread hands out the scheduled start times, call `k`
/// at `start + k / rate`, round-robin to the workers. A worker still busy
/// finds its calls queued, and their latency counts from the scheduled time.
/// The thread sleeps until `spin` before each time, then spins to it.
/// Returns how late it handed out the times: (mean, max) in µs, a lag the
/// measured latencies include.
fn spawn_pacer(
    start: std::time::Instant,
    rate: f64,
    run_for: Duration,
    limit: u64,
    spin: Duration,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<std::time::Instant>>,
) -> std::thread::JoinHandle<(f64, u64)> {
    std::thread::spawn(move || {
        let end = start + run_for;
        let mut k: u64 = 0;
        let (mut lag_sum, mut lag_max) = (0u64, 0u64);
        while k < limit {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            if at >= end {
                break;
            }
            let now = std::time::Instant::now();
            if at > now + spin {
                std::thread::sleep(at - now - spin);
            }
            while std::time::Instant::now() < at {
                std::hint::spin_loop();
            }
            // A closed channel means that worker stopped; the rest go on.
            let _ = workers[(k % workers.len() as u64) as usize].send(at);
            let lag = at.elapsed().as_micros() as u64;
            lag_sum += lag;
            lag_max = lag_max.max(lag);
            k += 1;
        }
        (lag_sum as f64 / k.max(1) as f64, lag_max)
    })
}

async fn worker(mut plan: Plan, mut sender: Option<Sender>) -> Stats {
    let mut stats = Stats::new();
    let body_len = plan.target.body.len();
    loop {
        let scheduled = match plan.schedule.as_mut() {
            Some(schedule) => match schedule.recv().await {
                // More than a second behind at the end: overloaded; the
                // remaining calls are counted, not sent.
                Some(_) if Instant::now() > plan.deadline + Duration::from_secs(1) => {
                    stats.unsent += 1;
                    continue;
                }
                Some(at) => Instant::from_std(at),
                None => break,
            },
            None => {
                let now = Instant::now();
                if now >= plan.deadline || !plan.live.take(plan.limit) {
                    break;
                }
                now
            }
        };
        let sent_at = Instant::now();
        if sent_at.duration_since(scheduled) > Duration::from_millis(1) {
            stats.late += 1;
        }
        plan.live.open_inc();
        let outcome = tokio::time::timeout(plan.timeout, async {
            if plan.new_connection {
                match connect(&plan.target).await {
                    Ok(mut fresh) => call(&mut fresh, &plan.target).await,
                    Err(what) => Outcome::Transport(what.into()),
                }
            } else {
                match sender.as_mut() {
                    Some(sender) => call(sender, &plan.target).await,
                    None => Outcome::Transport("connect".into()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Outcome::Transport("timeout".into()));
        plan.live.open_dec();
        stats.record(outcome, scheduled.elapsed(), body_len, &plan.live);
    }
    stats
}

/// Hold mode: keeps one poll call open until the deadline, re-polling if the
/// server answers early (after 100 ms if it answered with an error).
async fn holder(plan: Plan, mut sender: Sender) -> Stats {
    let mut stats = Stats::new();
    let body_len = plan.target.body.len();
    while Instant::now() < plan.deadline {
        let started = Instant::now();
        plan.live.open_inc();
        let result = tokio::time::timeout_at(plan.deadline, call(&mut sender, &plan.target)).await;
        plan.live.open_dec();
        match result {
            Err(_) => {
                stats.held_to_end += 1;
                plan.live.calls.fetch_add(1, Ordering::Relaxed);
                stats.sent += body_len as u64;
                break;
            }
            Ok(outcome) => {
                let failed = !matches!(&outcome, Outcome::Grpc { status, .. } if status == "0");
                stats.record(outcome, started.elapsed(), body_len, &plan.live);
                if failed {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    stats
}

/// Idle mode: at most this many connections are being dialed at once.
const IDLE_DIALERS: usize = 64;

/// An idle connection: its sender (dropped to close it), its connection
/// task (finished when the connection has closed), and the task that counts
/// its closing in `Live::open`.
type IdleConnection = (Sender, tokio::task::AbortHandle, JoinHandle<()>);

/// Idle mode: opens --connections connections, IDLE_DIALERS at a time, each
/// making one call (the dial and the call within --timeout, latency from
/// the dial); keeps those whose call answered OK, without calls, for
/// --hold-for from when all are open (their tasks answer the server's
/// pings), then closes them. Returns the calls' statistics and the "idle"
/// part of the report.
async fn idle(
    args: &Args,
    target: &Arc<Target>,
    live: &Arc<Live>,
) -> Result<(Stats, Value), String> {
    let n = args.connections;
    let started = Instant::now();
    let dialers: Vec<_> = (0..n.min(IDLE_DIALERS))
        .map(|_| {
            tokio::spawn(idle_dialer(
                target.clone(),
                live.clone(),
                n as u64,
                *args.timeout,
            ))
        })
        .collect();
    let mut stats = Stats::new();
    let mut open = Vec::with_capacity(n);
    for dialer in dialers {
        let (dialer_stats, kept) = dialer.await.map_err(|e| format!("dialer failed: {e}"))?;
        stats.merge(dialer_stats);
        open.extend(kept);
    }
    let open_s = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "idle: {} of {n} connections open in {open_s:.1} s",
            open.len()
        );
    }
    tokio::time::sleep(*args.hold_for).await;
    let opened = open.len();
    let open_at_end = open
        .iter()
        .filter(|(_, conn, _)| !conn.is_finished())
        .count();

    // Without its sender hyper ends a connection (GOAWAY, then close);
    // whatever is left after 5 s is dropped.
    let mut tasks = Vec::with_capacity(open.len());
    let mut conns = Vec::with_capacity(open.len());
    for (sender, conn, watcher) in open {
        drop(sender);
        conns.push(conn);
        tasks.push(watcher);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    for conn in conns {
        conn.abort();
    }
    Ok((
        stats,
        json!({
            "dialers": n.min(IDLE_DIALERS),
            "opened": opened,
            "open_s": round3(open_s),
            "hold_for_s": args.hold_for.as_secs_f64(),
            "open_at_end": open_at_end,
        }),
    ))
}

/// Idle mode: one dialer. Takes connections from the budget of `n` until
/// it is spent; returns the calls' statistics and the connections kept.
async fn idle_dialer(
    target: Arc<Target>,
    live: Arc<Live>,
    n: u64,
    timeout: Duration,
) -> (Stats, Vec<IdleConnection>) {
    let mut stats = Stats::new();
    let mut kept = Vec::new();
    let body_len = target.body.len();
    while live.take(n) {
        let begun = Instant::now();
        let (outcome, conn) = tokio::time::timeout(timeout, async {
            match dial(&target).await {
                Ok((mut sender, conn)) => (call(&mut sender, &target).await, Some((sender, conn))),
                Err(what) => (Outcome::Transport(what.into()), None),
            }
        })
        .await
        .unwrap_or_else(|_| (Outcome::Transport("timeout".into()), None));
        let ok = matches!(&outcome, Outcome::Grpc { status, .. } if status == "0");
        stats.record(outcome, begun.elapsed(), body_len, &live);
        // A connection whose call failed is dropped (and closes).
        if let (true, Some((sender, conn))) = (ok, conn) {
            live.open_inc();
            let abort = conn.abort_handle();
            let live = live.clone();
            let watcher = tokio::spawn(async move {
                let _ = conn.await;
                live.open_dec();
            });
            kept.push((sender, abort, watcher));
        }
    }
    (stats, kept)
}

// ---------------------------------------------------------------------------
// Setup and report.

fn build_target(args: &Args) -> Result<Target, String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&args.target)
        .map_err(|e| format!("cannot resolve {}: {e}", args.target))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", args.target))?;
    let tls = if args.tls {
        let ca = args.ca.as_ref().ok_or("--tls needs --ca")?;
        let roots = load_ca_bundle(ca).map_err(|e| e.to_string())?;
        let client_key = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                Some(load_certified_key(cert, key).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let material = ClientTlsMaterial {
            roots: Arc::new(roots),
            client_key,
        };
        let mut config = (*client_config(&material).map_err(|e| e.to_string())?).clone();
        // Full handshakes: per call, or per idle connection as each of many
        // clients would make.
        if matches!(args.mode, Mode::NewConnection | Mode::Idle) {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let host = match &args.server_name {
            Some(name) => name.clone(),
            None => args
                .target
                .rsplit_once(':')
                .map_or(args.target.as_str(), |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned(),
        };
        let name = ServerName::try_from(host).map_err(|e| format!("bad server name: {e}"))?;
        Some((TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    let scheme = if args.tls { "https" } else { "http" };
    let authority = args.authority.as_deref().unwrap_or(&args.target);
    let method = if args.mode == Mode::Hold {
        CallMethod::Poll
    } else {
        args.method
    };
    let uri: Uri = format!("{scheme}://{authority}{}", method_path(method))
        .parse()
        .map_err(|e| format!("bad authority {authority}: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        HeaderName::from_static("te"),
        HeaderValue::from_static("trailers"),
    );
    headers.insert(
        HeaderName::from_static("user-agent"),
        HeaderValue::from_static("tmp-bench"),
    );
    if args.mode == Mode::Hold {
        // Long enough that a real frontend holds the poll for the whole run.
        let ms = (args.hold_for.as_millis() + 10_000).min(99_999_999);
        headers.insert(
            HeaderName::from_static("grpc-timeout"),
            HeaderValue::from_str(&format!("{ms}m")).expect("digits"),
        );
    }
    let body = grpc_frame(&request_message(
        method,
        &args.namespace,
        args.payload_bytes,
    ));
    let unique_id_at = if args.unique_workflow_ids && method == CallMethod::StartWorkflow {
        let id = workflow_id_template();
        let at = body
            .windows(id.len())
            .position(|w| w == id)
            .expect("the workflow id is in the request");
        Some(at + id.len() - 16)
    } else {
        None
    };
    Ok(Target {
        addr,
        tls,
        uri,
        headers,
        body,
        unique_id_at,
        next_id: AtomicU64::new(0),
    })
}

async fn run(args: Args) -> Result<Value, String> {
    if args.connections == 0 || args.concurrency == 0 {
        return Err("--connections and --concurrency must be at least 1".into());
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
    }
    let target = Arc::new(build_target(&args)?);
    let live = Arc::new(Live::default());

    // Long-lived connections first, so their handshakes are not measured.
    let mut senders = Vec::new();
    if !matches!(args.mode, Mode::NewConnection | Mode::Idle) {
        for _ in 0..args.connections {
            let sender = connect(&target)
                .await
                .map_err(|what| format!("cannot connect to {}: {what}", args.target))?;
            senders.push(sender);
        }
    }

    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let run_for = match args.mode {
        Mode::Hold | Mode::Idle => *args.hold_for,
        _ => *args.duration,
    };
    let deadline = start + run_for;
    let limit = args.calls.unwrap_or(u64::MAX);
    let workers = match args.mode {
        Mode::Hold => args.hold_calls,
        // Its own dialers, below.
        Mode::Idle => 0,
        _ => args.connections * args.concurrency,
    };

    let progress = if args.json || args.quiet {
        None
    } else {
        let live = live.clone();
        Some(tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let mut last = 0;
            loop {
                tick.tick().await;
                let calls = live.calls.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4}s] calls {calls} ({}/s)  errors {}  open {}",
                    start.elapsed().as_secs(),
                    calls - last,
                    live.errors.load(Ordering::Relaxed),
                    live.open.load(Ordering::Relaxed),
                );
                last = calls;
            }
        }))
    };

    let mut tasks = Vec::with_capacity(workers);
    let mut pacer_inputs = Vec::new();
    for w in 0..workers {
        let schedule = args.rate.map(|_| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            pacer_inputs.push(tx);
            rx
        });
        let plan = Plan {
            target: target.clone(),
            live: live.clone(),
            deadline,
            limit,
            timeout: *args.timeout,
            schedule,
            new_connection: args.mode == Mode::NewConnection,
        };
        let sender = senders.get(w % senders.len().max(1)).cloned();
        tasks.push(match args.mode {
            Mode::Hold => tokio::spawn(holder(plan, sender.expect("connected"))),
            _ => tokio::spawn(worker(plan, sender)),
        });
    }
    let pacer = match args.rate {
        Some(rate) if !matches!(args.mode, Mode::Hold | Mode::Idle) => Some(spawn_pacer(
            start.into_std(),
            rate,
            run_for,
            limit,
            Duration::from_micros(args.pacer_spin_us),
            pacer_inputs,
        )),
        _ => None,
    };
    let mut stats = Stats::new();
    let mut idle_report = None;
    if args.mode == Mode::Idle {
        let (idle_stats, report) = idle(&args, &target, &live).await?;
        stats.merge(idle_stats);
        idle_report = Some(report);
    }
    for task in tasks {
        stats.merge(task.await.map_err(|e| format!("worker failed: {e}"))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut pacer_lag = None;
    if let Some(pacer) = pacer {
        pacer_lag = pacer.join().ok();
    }
    let cpu_after = cpu_seconds();
    if let Some(progress) = progress {
        progress.abort();
    }
    drop(senders);

    let calls = stats.calls();
    let per_sec = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let (user, sys) = match (cpu_before, cpu_after) {
        (Some((u0, s0)), Some((u1, s1))) => (u1 - u0, s1 - s0),
        _ => (f64::NAN, f64::NAN),
    };
    let cpu_total = user + sys;
    let latency = if let Some(h) = stats.hist.as_ref().filter(|h| !h.is_empty()) {
        json!({
            "min": h.min(),
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p99_9": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": (h.mean() * 10.0).round() / 10.0,
        })
    } else {
        Value::Null
    };
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let open_loop = args.rate.map(|rate| {
        json!({
            "rate": rate,
            "scheduled": ((rate * run_for.as_secs_f64()).floor() as u64).min(limit),
            "late_calls": stats.late,
            "unsent": stats.unsent,
            "pacer_lag_us": pacer_lag.map(|(mean, max)| json!({"mean": round3(mean), "max": max})),
        })
    });
    let hold = (args.mode == Mode::Hold).then(|| {
        json!({
            "hold_calls": args.hold_calls,
            "hold_for_s": run_for.as_secs_f64(),
            "peak_open": live.peak_open.load(Ordering::Relaxed),
            "open_at_end": stats.held_to_end,
            "completed_early": calls,
        })
    });
    let calls_json = if args.mode == Mode::Hold {
        calls + stats.held_to_end
    } else {
        calls
    };
    Ok(json!({
        "target": args.target,
        "tls": args.tls,
        "mode": args.mode.to_possible_value().map(|v| v.get_name().to_owned()),
        "method": method_path(if args.mode == Mode::Hold { CallMethod::Poll } else { args.method }),
        "payload_bytes": args.payload_bytes,
        "request_bytes": target.body.len(),
        "connections": args.connections,
        "concurrency": args.concurrency,
        "threads": args.threads.unwrap_or_else(default_threads),
        "elapsed_s": round3(elapsed),
        "calls": calls_json,
        "ok": stats.ok,
        "calls_per_sec": round(per_sec(calls)),
        "errors": {
            "grpc_status": stats.grpc_errors,
            "transport": stats.transport_errors,
        },
        "latency_us": latency,
        "bytes_sent": stats.sent,
        "bytes_received": stats.received,
        "bytes_sent_per_sec": round(per_sec(stats.sent)),
        "bytes_received_per_sec": round(per_sec(stats.received)),
        "cpu": {
            "user_s": round3(user),
            "sys_s": round3(sys),
            "us_per_call": if calls > 0 { round(cpu_total * 1e6 / calls as f64) } else { 0.0 },
            "utilization": if elapsed > 0.0 { round3(cpu_total / elapsed) } else { 0.0 },
        },
        "open_loop": open_loop,
        "hold": hold,
        "idle": idle_report,
    }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn text_report(r: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    out.push_str(&format!(
        "target {} ({}), mode {}, {}\n",
        f(&r["target"]),
        if r["tls"] == true { "mTLS" } else { "h2c" },
        f(&r["mode"]),
        r["method"].as_str().unwrap_or(""),
    ));
    out.push_str(&format!(
        "  {} connections x {} streams, {} threads, request {} bytes\n",
        f(&r["connections"]),
        f(&r["concurrency"]),
        f(&r["threads"]),
        f(&r["request_bytes"]),
    ));
    out.push_str(&format!(
        "calls     {} in {} s: {} calls/s, {} ok\n",
        f(&r["calls"]),
        f(&r["elapsed_s"]),
        f(&r["calls_per_sec"]),
        f(&r["ok"]),
    ));
    out.push_str(&format!(
        "errors    grpc-status {}  transport {}\n",
        r["errors"]["grpc_status"], r["errors"]["transport"]
    ));
    let l = &r["latency_us"];
    out.push_str(&format!(
        "latency   µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p99_9"]),
        f(&l["max"]),
        f(&l["mean"]),
    ));
    out.push_str(&format!(
        "bytes/s   sent {}  received {}  (gRPC message bytes)\n",
        f(&r["bytes_sent_per_sec"]),
        f(&r["bytes_received_per_sec"]),
    ));
    let c = &r["cpu"];
    out.push_str(&format!(
        "generator cpu user {} s  sys {} s  = {} µs/call, {} cores busy\n",
        f(&c["user_s"]),
        f(&c["sys_s"]),
        f(&c["us_per_call"]),
        f(&c["utilization"]),
    ));
    if !r["open_loop"].is_null() {
        let o = &r["open_loop"];
        out.push_str(&format!(
            "open loop {} calls/s scheduled: {} calls, {} sent more than 1 ms late, \
             {} not sent (more than 1 s behind at the end)\n\
             pacer     handed out calls late by mean {} µs, max {} µs (included in latency)\n",
            f(&o["rate"]),
            f(&o["scheduled"]),
            f(&o["late_calls"]),
            f(&o["unsent"]),
            f(&o["pacer_lag_us"]["mean"]),
            f(&o["pacer_lag_us"]["max"]),
        ));
    }
    if !r["hold"].is_null() {
        let h = &r["hold"];
        out.push_str(&format!(
            "hold      {} polls for {} s: peak open {}, open at end {}, completed early {}\n",
            f(&h["hold_calls"]),
            f(&h["hold_for_s"]),
            f(&h["peak_open"]),
            f(&h["open_at_end"]),
            f(&h["completed_early"]),
        ));
    }
    if !r["idle"].is_null() {
        let i = &r["idle"];
        out.push_str(&format!(
            "idle      {} of {} connections opened in {} s ({} dialing at once), \
             held {} s: open at end {}\n",
            f(&i["opened"]),
            f(&r["connections"]),
            f(&i["open_s"]),
            f(&i["dialers"]),
            f(&i["hold_for_s"]),
            f(&i["open_at_end"]),
        ));
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tmp-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_out = args.json;
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json_out {
                println!("{report}");
            } else {
                print!("{}", text_report(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tmp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one length-delimited field: (field number, contents, rest).
    fn read_field(buf: &[u8]) -> (u64, &[u8], &[u8]) {
        let (tag, n) = read_varint(buf);
        assert_eq!(tag & 7, 2, "length-delimited");
        let (len, m) = read_varint(&buf[n..]);
        let body = &buf[n + m..n + m + len as usize];
        (tag >> 3, body, &buf[n + m + len as usize..])
    }

    fn read_varint(buf: &[u8]) -> (u64, usize) {
        let mut v = 0u64;
        for (i, b) in buf.iter().enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return (v, i + 1);
            }
        }
        panic!("truncated varint");
    }

    #[test]
    fn varints_encode_as_protobuf_does() {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 300);
        put_varint(&mut buf, 1);
        assert_eq!(&buf[..], &[0xac, 0x02, 0x01]);
    }

    #[test]
    fn start_workflow_request_has_the_fields_and_payload() {
        let msg = request_message(CallMethod::StartWorkflow, "ns1", 3000);
        let mut fields = Vec::new();
        let mut rest = &msg[..];
        while !rest.is_empty() {
            let (field, body, tail) = read_field(rest);
            fields.push((field, body.to_vec()));
            rest = tail;
        }
        let numbers: Vec<u64> = fields.iter().map(|f| f.0).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
        assert_eq!(fields[0].1, b"ns1");
        // input: Payloads{1: Payload{2: data}}
        let (f, payload, _) = read_field(&fields[4].1);
        assert_eq!(f, 1);
        let (f, data, _) = read_field(payload);
        assert_eq!(f, 2);
        assert_eq!(data.len(), 3000);
    }

    #[test]
    fn grpc_frames_carry_the_length() {
        let frame = grpc_frame(b"abc");
        assert_eq!(&frame[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&grpc_frame(b"")[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn unique_workflow_ids_change_per_call() {
        let args = Args::parse_from([
            "tmp-bench",
            "--target",
            "127.0.0.1:1",
            "--method",
            "start-workflow",
            "--payload-bytes",
            "10",
            "--unique-workflow-ids",
        ]);
        let target = build_target(&args).unwrap();
        let (a, b) = (target.body(), target.body());
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
        let id = |n: u64| format!("tmp-bench-{}-{n:016x}", std::process::id()).into_bytes();
        assert!(a.windows(id(0).len()).any(|w| w == id(0)));
        assert!(b.windows(id(1).len()).any(|w| w == id(1)));
    }
}
