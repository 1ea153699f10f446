//! Counting: what each worker measured (calls by outcome, bytes, an HDR
//! histogram of latencies), merged at the end; the live counters of the
//! progress line; the generator's own CPU time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::conn::Outcome;

/// What one worker measured; merged at the end.
pub(crate) struct Stats {
    /// Allocated at the first recorded call (~190 KiB each): in hold mode
    /// most holders never finish a call, and there may be 10,000 of them.
    pub(crate) hist: Option<Histogram<u64>>,
    pub(crate) ok: u64,
    pub(crate) grpc_errors: BTreeMap<String, u64>,
    pub(crate) transport_errors: BTreeMap<String, u64>,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) late: u64,
    pub(crate) unsent: u64,
    pub(crate) held_to_end: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

impl Stats {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn calls(&self) -> u64 {
        self.ok
            + self.grpc_errors.values().sum::<u64>()
            + self.transport_errors.values().sum::<u64>()
    }

    /// Records a finished call; `latency` from its (scheduled) start.
    pub(crate) fn record(
        &mut self,
        outcome: Outcome,
        latency: Duration,
        body_len: usize,
        live: &Live,
    ) {
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

    pub(crate) fn merge(&mut self, other: Stats) {
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
pub(crate) struct Live {
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) open: AtomicI64,
    pub(crate) peak_open: AtomicI64,
    pub(crate) issued: AtomicU64,
}

impl Live {
    /// Takes one call from the `--calls` budget; false when it is spent.
    pub(crate) fn take(&self, limit: u64) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < limit
    }

    pub(crate) fn open_inc(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn open_dec(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// User and system CPU seconds of this process, from `/proc/self/stat`
/// (fields 14 and 15, in USER_HZ = 100 ticks per second on Linux).
pub(crate) fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / 100.0, stime / 100.0))
}
