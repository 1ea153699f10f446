//! The workers of each load mode: closed and open loop (`worker`, with the
//! open loop's pacer thread), held polls (`holder`) and idle connections
//! (`idle`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::conn::{call, connect, dial, Outcome, Sender};
use crate::stats::{Live, Stats};
use crate::target::Target;
use crate::{round3, Args};

/// What a worker is to do.
pub(crate) struct Plan {
    pub(crate) target: Arc<Target>,
    pub(crate) live: Arc<Live>,
    pub(crate) deadline: Instant,
    pub(crate) limit: u64,
    pub(crate) timeout: Duration,
    /// Open loop: the scheduled start times of this worker's calls.
    pub(crate) schedule: Option<tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>>,
    pub(crate) new_connection: bool,
}

/// Open loop: one OS thread hands out the scheduled start times, call `k`
/// at `start + k / rate`, round-robin to the workers. A worker still busy
/// finds its calls queued, and their latency counts from the scheduled time.
/// The thread sleeps until `spin` before each time, then spins to it.
/// Returns how late it handed out the times: (mean, max) in µs, a lag the
/// measured latencies include.
pub(crate) fn spawn_pacer(
    start: std::time::Instant,
    rate: f64,
    run_for: Duration,
    limit: u64,
    spin: Duration,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<std::time::Instant>>,
) -> std::thread::JoinHandle<(f64, u64)> {
    std::thread::Builder::new()
        .name("loadgen-pacer".into())
        .spawn(move || {
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
        .expect("spawn the pacer thread")
}

pub(crate) async fn worker(mut plan: Plan, mut sender: Option<Sender>) -> Stats {
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
pub(crate) async fn holder(plan: Plan, mut sender: Sender) -> Stats {
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
pub(crate) async fn idle(
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
