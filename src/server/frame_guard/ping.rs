//! grpc-go's client PING enforcement, as the guard applies it: the policy,
//! what the guard reports, and the enforcer that judges each frame head
//! (its state: the last PING, the strikes, the client's open streams, and
//! the SETTINGS and RST_STREAM buckets and the WINDOW_UPDATE and PRIORITY
//! ratios of `flood`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::flood::{
    Bucket, Flood, Ratio, PRIORITY_PER_STREAM, RESETS_BURST, RESETS_PER_SECOND, SETTINGS_BURST,
    SETTINGS_PER_SECOND, WINDOW_UPDATES_BASE, WINDOW_UPDATES_PER_DATA_FRAME,
};
use super::frames::{
    FrameHead, OnFrame, DATA, FLAG_ACK, FLAG_END_STREAM, GOAWAY, HEADERS, PING, PRIORITY,
    RST_STREAM, SETTINGS, STREAM_ID_MASK, WINDOW_UPDATE,
};
use super::inbound::FrameSink;
use super::Clock;

/// grpc-go's `defaultPingTimeout`: without streams (and not permitted), a
/// PING is fine only this long after the previous one.
const NO_STREAM_PING_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);
/// Open streams tracked per connection before the guard stops counting and
/// assumes there are some (only when pings without streams are refused).
pub(super) const MAX_TRACKED_STREAMS: usize = 1024;

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

/// What the guard reports; the caller logs and counts. At most one of
/// these per connection.
pub trait GuardEvents: Send + Sync + 'static {
    /// The connection broke the ping policy or flooded SETTINGS or
    /// RST_STREAM frames: it is being sent GOAWAY `ENHANCE_YOUR_CALM` (debug
    /// data [`Flood::debug_data`]) and closed.
    fn flood(&self, kind: Flood);
    /// The client sent no complete HTTP/2 preface in time: the connection
    /// is closed (without GOAWAY: it never spoke HTTP/2).
    fn preface_timeout(&self);
}

/// A plain counter is enough for metrics and tests.
impl GuardEvents for AtomicU64 {
    fn flood(&self, _: Flood) {
        self.fetch_add(1, Ordering::Relaxed);
    }

    fn preface_timeout(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }
}

/// The enforcer, as the inbound side's frame sink.
pub(super) struct ClientFrames<'a> {
    pub(super) enforcer: &'a mut Enforcer,
    pub(super) clock: &'a Clock,
}

impl FrameSink for ClientFrames<'_> {
    fn frame(&mut self, head: FrameHead) -> bool {
        self.enforcer.client_frame(head, self.clock)
    }
}

pub(super) struct ServerFrames<'a>(pub(super) &'a mut Enforcer);

impl OnFrame for ServerFrames<'_> {
    fn head(&mut self, head: FrameHead) -> bool {
        self.0.server_frame(head);
        // The codec's own GOAWAY: learn its last-stream-id.
        head.kind == GOAWAY && head.stream == 0
    }

    fn word(&mut self, word: u32) {
        self.0.server_goaway(word & STREAM_ID_MASK);
    }
}

/// grpc-go's `handlePing` and the state it reads.
#[derive(Debug)]
pub(super) struct Enforcer {
    pub(super) policy: PingPolicy,
    pub(super) last_ping: Option<Instant>,
    pub(super) strikes: u32,
    /// The server sent HEADERS or DATA since the last PING: the next PING
    /// clears the strikes and is not judged (grpc-go's `resetPingStrikes`).
    pub(super) reset_strikes: bool,
    pub(super) max_client_stream: u32,
    /// The last-stream-id of the codec's own GOAWAY, if it sent one.
    pub(super) server_goaway: Option<u32>,
    pub(super) open: OpenStreams,
    settings: Bucket,
    resets: Bucket,
    /// Per DATA frame sent to the client.
    window_updates: Ratio,
    /// Per stream the client opened.
    priorities: Ratio,
    /// Why the enforcer tripped, once it has.
    pub(super) tripped: Option<Flood>,
}

impl Enforcer {
    pub(super) fn new(policy: PingPolicy) -> Enforcer {
        Enforcer {
            policy,
            last_ping: None,
            strikes: 0,
            reset_strikes: false,
            max_client_stream: 0,
            server_goaway: None,
            open: OpenStreams::default(),
            settings: Bucket::new(SETTINGS_BURST, SETTINGS_PER_SECOND),
            resets: Bucket::new(RESETS_BURST, RESETS_PER_SECOND),
            window_updates: Ratio::new(WINDOW_UPDATES_BASE, WINDOW_UPDATES_PER_DATA_FRAME),
            priorities: Ratio::new(PRIORITY_PER_STREAM, PRIORITY_PER_STREAM),
            tripped: None,
        }
    }

    pub(super) fn tracks_streams(&self) -> bool {
        !self.policy.permit_without_stream
    }

    /// A frame from the client; true if it breaks the policy (why:
    /// `tripped`).
    pub(super) fn client_frame(&mut self, head: FrameHead, clock: &Clock) -> bool {
        match head.kind {
            // Client stream ids only grow: a lower one is trailers.
            HEADERS if head.stream > self.max_client_stream => {
                self.max_client_stream = head.stream;
                self.priorities.cause();
                if self.tracks_streams() {
                    self.open.insert(head.stream);
                }
                false
            }
            RST_STREAM => {
                self.open.remove(head.stream);
                !self.resets.take(clock.now()) && self.trip(Flood::Resets)
            }
            SETTINGS if head.flags & FLAG_ACK == 0 => {
                !self.settings.take(clock.now()) && self.trip(Flood::Settings)
            }
            PING if head.flags & FLAG_ACK == 0 => self.ping(clock.now()) && self.trip(Flood::Pings),
            WINDOW_UPDATE => !self.window_updates.take() && self.trip(Flood::WindowUpdates),
            PRIORITY => !self.priorities.take() && self.trip(Flood::Priorities),
            _ => false,
        }
    }

    fn trip(&mut self, kind: Flood) -> bool {
        self.tripped.get_or_insert(kind);
        true
    }

    pub(super) fn server_frame(&mut self, head: FrameHead) {
        match head.kind {
            DATA | HEADERS => {
                if head.kind == DATA {
                    self.window_updates.cause();
                }
                self.reset_strikes = true;
                if head.flags & FLAG_END_STREAM != 0 {
                    self.open.remove(head.stream);
                }
            }
            RST_STREAM => self.open.remove(head.stream),
            _ => {}
        }
    }

    pub(super) fn server_goaway(&mut self, last_stream: u32) {
        self.server_goaway = Some(
            self.server_goaway
                .map_or(last_stream, |s| s.min(last_stream)),
        );
    }

    pub(super) fn goaway_last_stream(&self) -> u32 {
        self.server_goaway
            .map_or(self.max_client_stream, |s| s.min(self.max_client_stream))
    }

    /// A client PING (not an ACK) at `now`; true past the last strike.
    pub(super) fn ping(&mut self, now: Instant) -> bool {
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
pub(super) struct OpenStreams {
    pub(super) ids: Vec<u32>,
    /// More than `MAX_TRACKED_STREAMS` were open at once; from then on the
    /// connection counts as always having streams.
    pub(super) overflowed: bool,
}

impl OpenStreams {
    pub(super) fn insert(&mut self, id: u32) {
        if self.ids.len() < MAX_TRACKED_STREAMS {
            self.ids.push(id);
        } else {
            self.overflowed = true;
        }
    }

    pub(super) fn remove(&mut self, id: u32) {
        if let Some(i) = self.ids.iter().position(|&open| open == id) {
            self.ids.swap_remove(i);
        }
    }

    pub(super) fn any(&self) -> bool {
        self.overflowed || !self.ids.is_empty()
    }
}
