//! The keepalive check: a connection of its own, one call, then no calls
//! for `--idle` while hyper sends a PING every `--ping-interval` of silence
//! (the SDKs' keepalive: 30 s, with or without calls), then one more call.
//! It is tolerated when no GOAWAY came, every PING was answered and the
//! call after the idle period succeeds on the same connection.
//!
//! The tap (`tap`) counts the PINGs and ACKs on the wire and reads a GOAWAY's
//! code and debug data: grpc-go's ENHANCE_YOUR_CALM `too_many_pings` (what
//! the proxy's ping enforcement sends too) is a failure; a GOAWAY NO_ERROR
//! is an idle timeout of the path, which clients survive by reconnecting
//! (a warning); a connection closed without GOAWAY is a failure.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::conn::{self, Target};
use super::tap::{self, Seen};
use super::{millis, pb, seconds, CallReport, Check, Details, Outcome, GET_SYSTEM_INFO};

const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug, Serialize)]
pub struct KeepaliveDetails {
    pub ping_interval_seconds: f64,
    pub idle_seconds: f64,
    pub pings_sent: usize,
    pub pings_answered: usize,
    /// The slowest PING's round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ping_rtt_ms: Option<f64>,
    /// PINGs the server sent (the proxy pings quiet connections too).
    pub server_pings: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goaway: Option<GoAwayReport>,
    /// When the connection ended before the idle period did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_after_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_after_idle: Option<CallReport>,
}

#[derive(Debug, Serialize)]
pub struct GoAwayReport {
    pub error_code: u32,
    pub error: String,
    pub debug_data: String,
    /// Since the idle period began.
    pub after_seconds: f64,
}

fn code_name(code: u32) -> String {
    format!("{:?}", h2::Reason::from(code))
}

fn max_rtt(seen: &Seen) -> Option<Duration> {
    seen.pings_sent
        .iter()
        .zip(&seen.ping_acks)
        .map(|(sent, ack)| ack.saturating_duration_since(*sent))
        .max()
}

pub async fn check(
    target: &Target,
    ping_interval: Duration,
    idle: Duration,
    timeout: Duration,
) -> Check {
    let conn = match conn::connect(target, Some(ping_interval)).await {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                "keepalive",
                Outcome::Fail,
                format!("cannot open the connection: {e}"),
            )
        }
    };
    let request = pb::get_system_info();
    let first = conn.unary(GET_SYSTEM_INFO, &request, &[], timeout).await;
    if !first.is_ok() {
        return Check::new(
            "keepalive",
            Outcome::Fail,
            format!(
                "the first call on the connection failed: {}",
                first.summary()
            ),
        );
    }
    let idle_from = Instant::now();
    let closed = tokio::select! {
        () = tokio::time::sleep(idle) => None,
        ended = conn.closed() => Some(ended),
    };
    let after = match closed {
        None => Some(conn.unary(GET_SYSTEM_INFO, &request, &[], timeout).await),
        Some(_) => None,
    };
    let seen = tap::seen(&conn.tap);
    let closed = closed.or_else(|| conn.ended());
    let since_idle = |at: Instant| seconds(at.saturating_duration_since(idle_from));
    let goaway = seen.goaway.as_ref().map(|g| GoAwayReport {
        error_code: g.error_code,
        error: code_name(g.error_code),
        debug_data: g.debug_data.clone(),
        after_seconds: since_idle(g.at),
    });
    let every = humantime::format_duration(ping_interval);
    let pings = format!(
        "{} PING(s) sent, {} answered",
        seen.pings_sent.len(),
        seen.ping_acks.len()
    );
    let (outcome, reason) = match (&goaway, &closed, &after) {
        (Some(g), _, _) if g.error_code == ENHANCE_YOUR_CALM => (
            Outcome::Fail,
            format!(
                "a PING every {every} is not tolerated: GOAWAY {} {:?} after {:.1} s idle ({pings}); \
                 the path wants fewer pings (SDKs ping every 30 s)",
                g.error, g.debug_data, g.after_seconds
            ),
        ),
        (Some(g), _, _) if g.error_code != 0 => (
            Outcome::Fail,
            format!(
                "GOAWAY {} {:?} after {:.1} s idle ({pings})",
                g.error, g.debug_data, g.after_seconds
            ),
        ),
        (Some(g), _, _) => (
            Outcome::Warn,
            format!(
                "the path closed the idle connection after {:.1} s (GOAWAY NO_ERROR{}): an idle \
                 timeout shorter than --idle; clients reconnect on their next call ({pings})",
                g.after_seconds,
                if g.debug_data.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", g.debug_data)
                }
            ),
        ),
        (None, Some(ended), _) => (
            Outcome::Fail,
            format!(
                "the connection ended after {:.1} s idle without GOAWAY ({}); calls in flight \
                 would fail ({pings})",
                since_idle(ended.at),
                ended.error.as_deref().unwrap_or("closed by the peer")
            ),
        ),
        (None, None, Some(a)) if !a.is_ok() => (
            Outcome::Fail,
            format!(
                "after {} idle the connection could not make a call: {} ({pings})",
                humantime::format_duration(idle),
                a.summary()
            ),
        ),
        _ if seen.pings_sent.is_empty() => (
            Outcome::Warn,
            format!(
                "no PING was sent: --idle ({}) is shorter than --ping-interval ({every}); the \
                 connection stayed usable",
                humantime::format_duration(idle)
            ),
        ),
        _ => (
            Outcome::Pass,
            format!(
                "idle {} with a PING every {every}: {pings}, no GOAWAY; a call after it OK",
                humantime::format_duration(idle)
            ),
        ),
    };
    let rtt = max_rtt(&seen);
    let mut notes = Vec::new();
    if let Some(rtt) = rtt {
        notes.push(format!("slowest PING round trip {} ms", millis(rtt)));
    }
    if seen.server_pings > 0 {
        notes.push(format!("the server sent {} PING(s)", seen.server_pings));
    }
    Check::new("keepalive", outcome, reason)
        .notes(notes)
        .details(Details::Keepalive(KeepaliveDetails {
            ping_interval_seconds: seconds(ping_interval),
            idle_seconds: seconds(idle),
            pings_sent: seen.pings_sent.len(),
            pings_answered: seen.ping_acks.len(),
            max_ping_rtt_ms: rtt.map(millis),
            server_pings: seen.server_pings,
            closed_after_seconds: closed.as_ref().map(|e| since_idle(e.at)),
            goaway,
            call_after_idle: after.as_ref().map(CallReport::from),
        }))
}
