//! `temporal-loadgen`: a gRPC load generator for temporal-mtls-proxy, the
//! Temporal frontend, and the proxies it is compared with (nginx, HAProxy).
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
//! The code: `target.rs` (what is sent where), `conn.rs` (dialing, one
//! call), `load.rs` (the workers of each mode, the open-loop pacer),
//! `stats.rs` (counting, the histogram), `report.rs` (the text report); the
//! JSON report is put together in `run` below.
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
//! Build with `cargo build --release -p temporal-mtls-proxy-tools` (then
//! `target/release/temporal-loadgen`), or run with `cargo run --release -p
//! temporal-mtls-proxy-tools --bin temporal-loadgen -- ARGS`. Examples:
//!
//! ```text
//! # closed loop, tiny calls, h2c straight at a frontend
//! temporal-loadgen --target 127.0.0.1:7233 \
//!     --connections 4 --concurrency 32 --duration 10s
//!
//! # through the proxy over mTLS, 1 KiB payloads, JSON for scripts
//! temporal-loadgen --target 127.0.0.1:7443 --tls \
//!     --ca ca.pem --cert client.pem --key client.key --server-name proxy.local \
//!     --method start-workflow --payload-bytes 1024 --json
//!
//! # open loop at 5,000 calls/s for latency
//! temporal-loadgen --target 127.0.0.1:7443 --tls ... \
//!     --rate 5000 --connections 4 --concurrency 64 --duration 20s
//!
//! # full mTLS handshakes per second
//! temporal-loadgen --target 127.0.0.1:7443 --tls ... \
//!     --mode new-connection --connections 8 --concurrency 1
//!
//! # 10,000 long polls held for 30 s over 100 connections
//! temporal-loadgen --target 127.0.0.1:7443 --tls ... \
//!     --mode hold --hold-calls 10000 --connections 100 --hold-for 30s
//!
//! # 10,000 idle mTLS connections (one call each) held for 30 s
//! temporal-loadgen --target 127.0.0.1:7443 --tls ... \
//!     --mode idle --connections 10000 --hold-for 30s
//!
//! # 1 MiB messages against the fake frontend's echo method
//! temporal-loadgen --target 127.0.0.1:7233 \
//!     --method echo --payload-bytes 1048576 --concurrency 4
//! ```

mod conn;
mod load;
mod report;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::conn::connect;
use crate::load::{holder, idle, spawn_pacer, worker, Plan};
use crate::report::text_report;
use crate::stats::{cpu_seconds, Live, Stats};
use crate::target::{build_target, method_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CallMethod {
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
pub(crate) enum Mode {
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
#[command(name = "temporal-loadgen", version)]
pub(crate) struct Args {
    /// Address to load, host:port.
    #[arg(long)]
    pub(crate) target: String,
    /// Use TLS (mutual TLS with --cert/--key); without it, h2c.
    #[arg(long)]
    pub(crate) tls: bool,
    /// CA bundle (PEM) that verifies the server's certificate.
    #[arg(long, requires = "tls")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate chain (PEM).
    #[arg(long, requires_all = ["tls", "key"])]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires_all = ["tls", "cert"])]
    pub(crate) key: Option<PathBuf>,
    /// TLS server name (SNI and verification); default: the target's host.
    #[arg(long, requires = "tls")]
    pub(crate) server_name: Option<String>,
    /// `:authority` of the requests; default: the target.
    #[arg(long)]
    pub(crate) authority: Option<String>,
    /// An extra request header on every call, `NAME:VALUE` (repeatable),
    /// e.g. `--header 'authorization:Bearer eyJ...'`. Added after the
    /// generator's own headers (content-type, te, user-agent, grpc-timeout),
    /// which a header of the same name replaces.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub(crate) headers: Vec<String>,
    /// The gRPC method to call.
    #[arg(long, value_enum, default_value = "get-system-info")]
    pub(crate) method: CallMethod,
    /// Payload size for start-workflow and echo.
    #[arg(long, default_value_t = 0)]
    pub(crate) payload_bytes: usize,
    /// start-workflow: a new workflow id per call (copies the body per call);
    /// without it every call reuses one id, which a real server refuses with
    /// ALREADY_EXISTS after the first.
    #[arg(long)]
    pub(crate) unique_workflow_ids: bool,
    /// Open loop: the pacer thread spins this long before each scheduled
    /// time for precision (costs CPU at high rates); 0 sleeps only, which
    /// adds up to the OS timer slack (~60 µs) to every measured latency.
    #[arg(long, default_value_t = 80)]
    pub(crate) pacer_spin_us: u64,
    /// Temporal namespace put in the requests.
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// Number of HTTP/2 connections (in new-connection mode: parallel
    /// dialers; in idle mode: the connections held open).
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Concurrent streams (workers) per connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// How long to run (always bounded).
    #[arg(long, default_value = "10s")]
    pub(crate) duration: humantime::Duration,
    /// Stop after this many calls (whichever of --calls and --duration first).
    #[arg(long)]
    pub(crate) calls: Option<u64>,
    /// Open loop: calls per second in total, on a fixed schedule.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Load mode.
    #[arg(long, value_enum, default_value = "unary")]
    pub(crate) mode: Mode,
    /// Hold mode: number of poll calls kept open, round-robin over
    /// --connections. Keep calls per connection under the server's HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS (hyper's default: 200): the excess
    /// would wait inside the generator and not be open on the server.
    #[arg(long, default_value_t = 1000)]
    pub(crate) hold_calls: usize,
    /// Hold mode: how long to keep the polls open; idle mode: how long to
    /// keep the connections open, from when all are open.
    #[arg(long, default_value = "30s")]
    pub(crate) hold_for: humantime::Duration,
    /// Per-call timeout (unary and new-connection modes; idle mode: the dial
    /// and its one call).
    #[arg(long, default_value = "30s")]
    pub(crate) timeout: humantime::Duration,
    /// Runtime worker threads of the generator; default: all CPUs.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
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

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("loadgen-worker");
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("temporal-loadgen: cannot start the runtime: {e}");
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
            eprintln!("temporal-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
