//! Rate limits for log lines a peer can cause. Each place that logs such a
//! line has a [`Site`]; a site lets [`BURST`] lines through per second and
//! counts the rest. The first line a site lets through after a second in
//! which it suppressed some is preceded by one summary line (`suppressed`:
//! how many, `site`: which), so an operator sees that a flood happened and
//! how big it was without the flood reaching the log. Suppressed lines are
//! also counted in `log_lines_suppressed_total{site}`.
//!
//! Lock-free: a site is three atomics, and deciding costs two atomic
//! operations in the common case.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Lines a site lets through per second.
pub const BURST: u64 = 10;

/// One place in the code that logs a line a peer can cause.
pub struct Site {
    name: &'static str,
    /// The second (since start) the counts below are for.
    second: AtomicU64,
    /// Lines asked for in that second.
    asked: AtomicU64,
    /// Lines suppressed and not yet summarised.
    pending: AtomicU64,
    /// Lines suppressed since start.
    total: AtomicU64,
}

impl Site {
    pub const fn new(name: &'static str) -> Site {
        Site {
            name,
            second: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Lines suppressed at this site since start.
    pub fn suppressed(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// True when the caller may log its line now; false when it is counted
    /// instead. May log the summary of earlier suppressed lines first.
    pub fn admit(&self) -> bool {
        self.admit_at(now_second())
    }

    /// Logs the summary of lines suppressed and not yet summarised (run
    /// periodically, so a flood that stopped is reported too).
    pub fn flush(&self) {
        let suppressed = self.pending.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            summary(self.name, suppressed);
        }
    }

    fn admit_at(&self, now: u64) -> bool {
        let seen = self.second.load(Ordering::Relaxed);
        if now != seen
            && self
                .second
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.asked.store(0, Ordering::Relaxed);
        }
        if self.asked.fetch_add(1, Ordering::Relaxed) < BURST {
            self.flush();
            return true;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        false
    }
}

fn summary(site: &str, suppressed: u64) {
    tracing::warn!(
        site,
        suppressed,
        "similar log lines suppressed (rate limit); see log_lines_suppressed_total"
    );
}

/// How often [`report`] summarises what every site suppressed.
pub const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Summarises, every [`REPORT_INTERVAL`], what each site suppressed since
/// its last summary; runs until the process ends.
pub async fn report() {
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tick.tick().await;
        for site in SITES {
            site.flush();
        }
    }
}

fn now_second() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

/// Every site, for the metrics.
pub static SITES: [&Site; 14] = [
    &HANDSHAKE_REFUSED,
    &CONNECTION_LIMIT,
    &TOO_MANY_PINGS,
    &TOO_MANY_SETTINGS,
    &TOO_MANY_RESETS,
    &TOO_MANY_WINDOW_UPDATES,
    &TOO_MANY_PRIORITY_FRAMES,
    &PREFACE_TIMEOUT,
    &PING_TIMEOUT,
    &CALL_DENIED,
    &CALL_REFUSED,
    &MESSAGE_TOO_LARGE,
    &UPSTREAM_CONNECT_FAILED,
    &UPSTREAM_CONNECTION_CAP,
];

pub static HANDSHAKE_REFUSED: Site = Site::new("handshake_refused");
pub static CONNECTION_LIMIT: Site = Site::new("connection_limit");
pub static TOO_MANY_PINGS: Site = Site::new("too_many_pings");
pub static TOO_MANY_SETTINGS: Site = Site::new("too_many_settings");
pub static TOO_MANY_RESETS: Site = Site::new("too_many_resets");
pub static TOO_MANY_WINDOW_UPDATES: Site = Site::new("too_many_window_updates");
pub static TOO_MANY_PRIORITY_FRAMES: Site = Site::new("too_many_priority_frames");
/// TLS done, but no HTTP/2 preface in time.
pub static PREFACE_TIMEOUT: Site = Site::new("preface_timeout");
pub static PING_TIMEOUT: Site = Site::new("ping_timeout");
/// Calls denied by policy (enforce and audit mode).
pub static CALL_DENIED: Site = Site::new("call_denied");
/// Calls refused for what they carry (malformed requests, paths, tokens).
pub static CALL_REFUSED: Site = Site::new("call_refused");
pub static MESSAGE_TOO_LARGE: Site = Site::new("message_too_large");
pub static UPSTREAM_CONNECT_FAILED: Site = Site::new("upstream_connect_failed");
pub static UPSTREAM_CONNECTION_CAP: Site = Site::new("upstream_connection_cap");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_and_the_next_second_passes_again() {
        let site = Site::new("test");
        let passed = (0..100).filter(|_| site.admit_at(7)).count();
        assert_eq!(passed as u64, BURST);
        assert_eq!(site.suppressed(), 100 - BURST);
        assert!(site.admit_at(8), "a new second lets lines through again");
        assert_eq!(site.pending.load(Ordering::Relaxed), 0, "summarised");
        assert_eq!(site.suppressed(), 100 - BURST, "the total stays");
    }
}
