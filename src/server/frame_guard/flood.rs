//! Control-frame floods h2 leave unbounded: client SETTINGS
//! frames (each one h2 applies and acknowledges; CVE-2019-9515) and
//! RST_STREAM frames at a steady pace (h2's
//! `max_pending_accept_reset_streams` only bounds resets of streams not yet
//! accepted, so a client opening and resetting streams just under it runs
//! forever; CVE-2023-44487's slow form). Each is a token bucket per
//! connection: a burst, then a steady rate. Past it the connection gets
//! GOAWAY `ENHANCE_YOUR_CALM`, as grpc-go answers a ping flood and Envoy
//! its control-frame floods.
//!
//! WINDOW_UPDATE and PRIORITY frames are bounded by what makes them
//! legitimate, as Envoy bounds them: a client returns window for the DATA
//! it was sent, so its WINDOW_UPDATEs are bounded by a base plus a
//! multiple of the DATA frames the proxy sent it; PRIORITY frames (which
//! h2 ignores; RFC 9113 deprecates them, gRPC clients never send them) by
//! a multiple of the streams it opened, plus one.
//!
//! The numbers leave legitimate clients far below them: a client sends one
//! SETTINGS at the start and a few more when its BDP estimate grows
//! (grpc-go: at most one per doubling of a 64 KiB window up to 16 MiB, so
//! about ten); it resets a stream when it cancels a call, and the burst
//! covers cancelling every one of `http2.max_concurrent_streams` (1000)
//! calls at once.

use std::time::Duration;

use tokio::time::Instant;

/// SETTINGS frames (not ACKs) a client may send at once.
pub const SETTINGS_BURST: u32 = 100;
/// SETTINGS frames per second a client may send after its burst.
pub const SETTINGS_PER_SECOND: u32 = 10;
/// RST_STREAM frames a client may send at once.
pub const RESETS_BURST: u32 = 1000;
/// RST_STREAM frames per second a client may send after its burst.
pub const RESETS_PER_SECOND: u32 = 100;
/// WINDOW_UPDATE frames a client may send before it was sent any DATA
/// (h2 and grpc-go clients send one or two at the start to open their
/// connection window, and a few more as their BDP estimate grows).
pub const WINDOW_UPDATES_BASE: u64 = 100;
/// WINDOW_UPDATE frames per DATA frame sent to the client (Envoy's
/// default): a client sends at most about one per DATA frame received.
pub const WINDOW_UPDATES_PER_DATA_FRAME: u64 = 10;
/// PRIORITY frames per stream the client opened, plus one (Envoy's).
pub const PRIORITY_PER_STREAM: u64 = 100;

/// What a connection was closed for, and the GOAWAY debug data that says
/// so (grpc-go's `too_many_pings`; the others in the same form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    Pings,
    Settings,
    Resets,
    WindowUpdates,
    Priorities,
}

impl Flood {
    pub fn debug_data(self) -> &'static [u8] {
        match self {
            Flood::Pings => b"too_many_pings",
            Flood::Settings => b"too_many_settings",
            Flood::Resets => b"too_many_resets",
            Flood::WindowUpdates => b"too_many_window_updates",
            Flood::Priorities => b"too_many_priority_frames",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Flood::Pings => "too_many_pings",
            Flood::Settings => "too_many_settings",
            Flood::Resets => "too_many_resets",
            Flood::WindowUpdates => "too_many_window_updates",
            Flood::Priorities => "too_many_priority_frames",
        }
    }
}

/// Frames allowed as a multiple of what justifies them: `base +
/// per_cause × causes`.
#[derive(Debug)]
pub(super) struct Ratio {
    base: u64,
    per_cause: u64,
    frames: u64,
    causes: u64,
}

impl Ratio {
    pub(super) fn new(base: u64, per_cause: u64) -> Ratio {
        Ratio {
            base,
            per_cause,
            frames: 0,
            causes: 0,
        }
    }

    /// Something that justifies more frames (a DATA frame sent, a stream
    /// opened).
    pub(super) fn cause(&mut self) {
        self.causes = self.causes.saturating_add(1);
    }

    /// One frame; false past the allowance.
    pub(super) fn take(&mut self) -> bool {
        self.frames += 1;
        self.frames
            <= self
                .base
                .saturating_add(self.per_cause.saturating_mul(self.causes))
    }
}

/// `burst` frames at once, refilled at `per_second`. Whole tokens, with
/// the refill's remainder kept, so that no rate is lost to rounding.
#[derive(Debug)]
pub(super) struct Bucket {
    burst: u32,
    per_second: u32,
    tokens: u32,
    /// When `tokens` was last refilled (the part of a token not yet
    /// earned is the time since).
    since: Option<Instant>,
}

impl Bucket {
    pub(super) fn new(burst: u32, per_second: u32) -> Bucket {
        Bucket {
            burst,
            per_second,
            tokens: burst,
            since: None,
        }
    }

    /// One frame at `now`; false when the bucket is empty.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        if self.per_second > 0 {
            let per_token = Duration::from_secs(1) / self.per_second;
            let elapsed = now.saturating_duration_since(since);
            let earned = elapsed.as_nanos() / per_token.as_nanos().max(1);
            if earned > 0 {
                let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                self.tokens = self.tokens.saturating_add(earned).min(self.burst);
                self.since = Some(if self.tokens == self.burst {
                    now
                } else {
                    since + per_token * earned
                });
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_allows_its_base_then_per_cause() {
        let mut r = Ratio::new(3, 2);
        assert!((0..3).all(|_| r.take()));
        assert!(!r.take());
        // The refused frame counts: two causes allow 4 more in all.
        r.cause();
        r.cause();
        assert!((0..3).all(|_| r.take()));
        assert!(!r.take());
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, 10);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 10 per second: one every 100 ms.
        assert!(!b.take(t0 + Duration::from_millis(99)));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(150)));
        assert!(b.take(t0 + Duration::from_millis(200)));
        // A long quiet refills to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[test]
    fn a_steady_pace_under_the_rate_never_runs_out() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2, 100);
        // 50 per second for 100 s.
        for i in 0..5000u64 {
            assert!(b.take(t0 + Duration::from_millis(20 * i)), "frame {i}");
        }
    }

    #[test]
    fn a_steady_pace_over_the_rate_runs_out_after_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RESETS_BURST, RESETS_PER_SECOND);
        // 2 per ms, the pace the outside probe used.
        let first_refused = (0..10_000u64)
            .find(|i| !b.take(t0 + Duration::from_micros(500 * i)))
            .expect("refused");
        // About burst / (1 - rate/pace) frames: 1000 / 0.95.
        assert!((1000..1100).contains(&first_refused), "{first_refused}");
    }
}
