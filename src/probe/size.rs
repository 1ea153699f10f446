//! The message-size check: the largest request message the path accepts,
//! found by a bounded search with GetSystemInfo requests padded by an
//! unknown field (the frontend ignores it, so the call does no work). A
//! size is "accepted" when the call ends OK; anything else refuses it.
//!
//! The search tries 1 KiB, then the maximum, then halves the gap between
//! the largest accepted and the smallest refused size geometrically (so a
//! 100 KiB limit is found as closely as a 4 MiB one). A refusal in grpc-go's
//! words, `grpc: received message larger than max (N vs. L)` (the frontend's
//! and the proxy's), names the limit L: then L and L + 1 are tried, and two
//! probes settle it exactly. At most [`MAX_PROBES`] requests in all.
//!
//! Sizes are of the protobuf message, without gRPC's 5-byte prefix, as the
//! limits count them.

use std::time::Duration;

use serde::Serialize;

use super::conn::Answer;
use super::{pb, CallReport, Check, Details, Link, Outcome, GET_SYSTEM_INFO};

/// The smallest size tried: any path must accept it.
pub const MIN_SIZE: usize = 1024;
/// Requests the search sends at most.
pub const MAX_PROBES: usize = 12;
/// The frontend's own limit (grpc-go's default, not overridden by
/// Temporal): a path that accepts less refuses requests the frontend takes.
const FRONTEND_LIMIT: usize = 4 << 20;
/// The words SDKs recognise a too-large message by (and then fail the
/// workflow task instead of retrying it).
const GRPC_GO_TOO_LARGE: &str = "grpc: received message larger than max";

/// The search's state: what has been accepted and refused so far.
#[derive(Debug)]
struct Search {
    min: usize,
    max: usize,
    accepted: Option<usize>,
    refused: Option<usize>,
    /// The limit a refusal named.
    named: Option<usize>,
    probes: usize,
}

impl Search {
    fn new(min: usize, max: usize) -> Search {
        Search {
            min,
            max: max.max(min),
            accepted: None,
            refused: None,
            named: None,
            probes: 0,
        }
    }

    /// The next size to try, or `None` when the search is done.
    fn next(&self) -> Option<usize> {
        if self.probes >= MAX_PROBES {
            return None;
        }
        match (self.accepted, self.refused) {
            (None, None) => Some(self.min),
            // The smallest size was refused: nothing to search.
            (None, Some(_)) => None,
            (Some(a), None) if a < self.max => Some(self.max),
            (Some(_), None) => None,
            (Some(a), Some(r)) if r <= a + 1 => None,
            (Some(a), Some(r)) => match self.named {
                // The named limit itself, then one byte above it.
                Some(limit) if a < limit && limit < r => Some(limit),
                Some(limit) if limit == a => Some(a + 1),
                _ => Some(geometric_mid(a, r)),
            },
        }
    }

    fn record(&mut self, size: usize, accepted: bool, named: Option<usize>) {
        self.probes += 1;
        if accepted {
            self.accepted = Some(self.accepted.map_or(size, |a| a.max(size)));
        } else {
            self.refused = Some(self.refused.map_or(size, |r| r.min(size)));
            if named.is_some() {
                self.named = named;
            }
        }
    }
}

/// A size strictly between `a` and `b` (`a + 1 < b`), near their geometric
/// mean.
fn geometric_mid(a: usize, b: usize) -> usize {
    let mid = ((a.max(1) as f64) * (b as f64)).sqrt() as usize;
    mid.clamp(a + 1, b - 1)
}

/// L of grpc-go's `... larger than max (N vs. L)`.
fn named_limit(message: &str) -> Option<usize> {
    let at = message.find(GRPC_GO_TOO_LARGE)?;
    let rest = &message[at + GRPC_GO_TOO_LARGE.len()..];
    let inside = rest.trim_start().strip_prefix('(')?;
    let (_, limit) = inside.split_once(" vs. ")?;
    let digits: String = limit.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[derive(Debug, Serialize)]
pub struct SizeDetails {
    /// The largest message accepted (`None`: not even the smallest).
    pub largest_accepted: Option<usize>,
    /// The smallest message refused (`None`: every size tried passed).
    pub smallest_refused: Option<usize>,
    /// How the smallest refused size was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<CallReport>,
    /// The gap the search left between the two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
    pub probes: usize,
    pub max_tried: usize,
    /// Every request sent, in order.
    pub tried: Vec<Tried>,
}

#[derive(Debug, Serialize)]
pub struct Tried {
    pub size: usize,
    /// `OK`, or how it was refused (a gRPC status name, `HTTP 413`, ...).
    pub status: String,
}

/// `4194304 B (4.0 MiB)`.
pub fn bytes(n: usize) -> String {
    let human = if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / f64::from(1 << 10))
    } else {
        return format!("{n} B");
    };
    format!("{n} B ({human})")
}

/// Whether the refusal is in grpc-go's words (what SDKs act on).
fn in_grpc_go_words(a: &Answer) -> bool {
    a.grpc_status == Some(8)
        && a.grpc_message
            .as_deref()
            .is_some_and(|m| m.starts_with(GRPC_GO_TOO_LARGE))
}

pub async fn check(link: &mut Link<'_>, max: usize, timeout: Duration) -> Check {
    let mut search = Search::new(MIN_SIZE, max);
    let mut refusal: Option<(usize, Answer)> = None;
    let mut notes = Vec::new();
    let mut tried = Vec::new();
    while let Some(size) = search.next() {
        let message = pb::padded_get_system_info(size);
        // Large requests take longer to send: a second per MiB more.
        let allowed = timeout + Duration::from_secs((size >> 20) as u64);
        let answer = link.unary(GET_SYSTEM_INFO, &message, &[], allowed).await;
        let accepted = answer.is_ok();
        notes.push(format!(
            "{}: {}",
            bytes(size),
            if accepted {
                "OK".to_owned()
            } else {
                answer.summary()
            }
        ));
        tried.push(Tried {
            size,
            status: answer.status_name(),
        });
        let named = answer.grpc_message.as_deref().and_then(named_limit);
        search.record(size, accepted, named);
        if !accepted && refusal.as_ref().is_none_or(|(s, _)| size < *s) {
            refusal = Some((size, answer));
        }
    }
    let (outcome, reason) = judge(&search, refusal.as_ref().map(|(_, a)| a));
    Check::new("message_size", outcome, reason)
        .notes(notes)
        .details(Details::Size(SizeDetails {
            largest_accepted: search.accepted,
            smallest_refused: search.refused,
            refusal: refusal.as_ref().map(|(_, a)| CallReport::from(a)),
            resolution: match (search.accepted, search.refused) {
                (Some(a), Some(r)) => Some(r - a),
                _ => None,
            },
            probes: search.probes,
            max_tried: search.max,
            tried,
        }))
}

fn judge(search: &Search, refusal: Option<&Answer>) -> (Outcome, String) {
    let how = refusal.map(Answer::summary).unwrap_or_default();
    match (search.accepted, search.refused) {
        (None, _) => (
            Outcome::Fail,
            format!("even a {} request was refused: {how}", bytes(search.min)),
        ),
        (Some(a), None) => (
            Outcome::Pass,
            format!(
                "every size tried was accepted, up to {} (--max-size)",
                bytes(a)
            ),
        ),
        (Some(a), Some(r)) => {
            let within = if r > a + 1 {
                format!(" (the limit is within {} B)", r - a)
            } else {
                String::new()
            };
            let mut reason = format!(
                "largest request accepted {}, smallest refused {}{within}: {how}",
                bytes(a),
                bytes(r)
            );
            let mut outcome = Outcome::Pass;
            if a < FRONTEND_LIMIT {
                outcome = Outcome::Warn;
                reason.push_str(
                    "; below the frontend's 4 MiB, so the path refuses requests the frontend would take",
                );
            }
            if !refusal.is_some_and(in_grpc_go_words) {
                outcome = Outcome::Warn;
                reason.push_str(&format!(
                    "; not refused in grpc-go's words (RESOURCE_EXHAUSTED \"{GRPC_GO_TOO_LARGE} ...\"), \
                     which SDKs need to fail a workflow task instead of retrying it"
                ));
            }
            (outcome, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a path with `limit`, naming it in
    /// refusals or not; returns (accepted, refused, probes).
    fn run(limit: usize, max: usize, names_it: bool) -> (Option<usize>, Option<usize>, usize) {
        let mut s = Search::new(MIN_SIZE, max);
        while let Some(size) = s.next() {
            assert!(s.probes < MAX_PROBES);
            let accepted = size <= limit;
            s.record(size, accepted, (!accepted && names_it).then_some(limit));
        }
        (s.accepted, s.refused, s.probes)
    }

    #[test]
    fn a_named_limit_is_found_exactly() {
        for limit in [2048, 100 * 1024, 4 << 20, (64 << 20) - 1] {
            let (a, r, probes) = run(limit, 64 << 20, true);
            assert_eq!((a, r), (Some(limit), Some(limit + 1)), "limit {limit}");
            assert!(probes <= 4, "{probes} probes for {limit}");
        }
    }

    #[test]
    fn an_unnamed_limit_is_bracketed_within_about_one_percent() {
        for limit in [1500, 100 * 1024, 1 << 20, (1 << 20) - 5, 4 << 20, 40 << 20] {
            let (a, r, probes) = run(limit, 64 << 20, false);
            let (a, r) = (a.unwrap(), r.unwrap());
            assert!(a <= limit && limit < r, "{a} <= {limit} < {r}");
            assert!(probes <= MAX_PROBES);
            assert!(
                (r - a) as f64 <= limit as f64 * 0.012 + 1.0,
                "limit {limit}: [{a}, {r}) after {probes} probes"
            );
        }
    }

    #[test]
    fn the_ends_stop_the_search() {
        assert_eq!(run(100, 64 << 20, true), (None, Some(MIN_SIZE), 1));
        assert_eq!(run(usize::MAX, 64 << 20, true), (Some(64 << 20), None, 2));
    }

    #[test]
    fn grpc_go_names_the_limit() {
        assert_eq!(
            named_limit("grpc: received message larger than max (5242880 vs. 4194304)"),
            Some(4_194_304)
        );
        assert_eq!(
            named_limit("grpc: received message larger than max (102401 vs. 102400) (limits.max_request_message)"),
            Some(102_400)
        );
        assert_eq!(
            named_limit("grpc: received message after decompression larger than max 4194304"),
            None
        );
        assert_eq!(named_limit("request too large"), None);
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(102_400), "102400 B (100.0 KiB)");
        assert_eq!(bytes(4 << 20), "4194304 B (4.0 MiB)");
    }
}
