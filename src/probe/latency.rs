//! The latency check: N GetSystemInfo round trips, one after another on the
//! main connection (as an SDK's calls share one), within a time limit; the
//! percentiles of their durations, from sending the request to the end of
//! its trailers.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{millis, pb, Check, Details, Link, Outcome, GET_SYSTEM_INFO};

#[derive(Debug, Serialize, PartialEq)]
pub struct LatencyDetails {
    /// Calls made (within the limit).
    pub calls: usize,
    /// Calls that did not end OK.
    pub failed: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[Duration], p: u32) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn details(mut took: Vec<Duration>, failed: usize) -> LatencyDetails {
    took.sort_unstable();
    let total: Duration = took.iter().sum();
    let mean = match u32::try_from(took.len()) {
        Ok(n) if n > 0 => total / n,
        _ => Duration::ZERO,
    };
    LatencyDetails {
        calls: took.len(),
        failed,
        min_ms: millis(took.first().copied().unwrap_or_default()),
        p50_ms: millis(percentile(&took, 50)),
        p90_ms: millis(percentile(&took, 90)),
        p99_ms: millis(percentile(&took, 99)),
        max_ms: millis(took.last().copied().unwrap_or_default()),
        mean_ms: millis(mean),
    }
}

pub async fn check(link: &mut Link<'_>, calls: u32, limit: Duration, timeout: Duration) -> Check {
    let request = pb::get_system_info();
    let deadline = Instant::now() + limit;
    let mut took = Vec::with_capacity(calls as usize);
    let mut failed = 0;
    let mut first_failure = None;
    for _ in 0..calls {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let answer = link
            .unary(GET_SYSTEM_INFO, &request, &[], timeout.min(left))
            .await;
        took.push(answer.elapsed);
        if !answer.is_ok() {
            failed += 1;
            first_failure.get_or_insert_with(|| answer.summary());
        }
    }
    let made = took.len();
    let d = details(took, failed);
    let numbers = format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
    );
    let (outcome, reason) = if made == 0 {
        (Outcome::Fail, "no call could be made".to_owned())
    } else if failed > 0 {
        (
            Outcome::Fail,
            format!(
                "{failed} of {made} GetSystemInfo calls failed (first: {}); {numbers}",
                first_failure.unwrap_or_default()
            ),
        )
    } else if made < calls as usize {
        (
            Outcome::Warn,
            format!(
                "only {made} of {calls} GetSystemInfo calls within {} (--latency-limit); {numbers}",
                humantime::format_duration(limit)
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!("{made} GetSystemInfo calls on one connection: {numbers}"),
        )
    };
    let notes = vec![format!("min {} ms, mean {} ms", d.min_ms, d.mean_ms)];
    Check::new("latency", outcome, reason)
        .notes(notes)
        .details(Details::Latency(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50), Duration::from_millis(100));
        assert_eq!(percentile(&ms, 90), Duration::from_millis(180));
        assert_eq!(percentile(&ms, 99), Duration::from_millis(198));
        assert_eq!(percentile(&ms, 100), Duration::from_millis(200));
        assert_eq!(percentile(&ms[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn details_sort_what_they_are_given() {
        let d = details(
            vec![
                Duration::from_micros(3000),
                Duration::from_micros(1000),
                Duration::from_micros(2000),
            ],
            0,
        );
        assert_eq!(
            (d.min_ms, d.p50_ms, d.max_ms, d.mean_ms),
            (1.0, 2.0, 3.0, 2.0)
        );
        assert_eq!(d.calls, 3);
    }
}
