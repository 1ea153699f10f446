//! The long-poll check (asked for with `--long-poll`): a PollWorkflowTaskQueue
//! on a task queue nobody serves, on a connection of its own that pings as
//! an SDK's does, with a `grpc-timeout` one second above the duration. The
//! frontend holds such a poll until a second before the deadline (or until
//! its own long-poll expiration, `matching.longPollExpirationInterval`, 1 min
//! by default, comes first) and then answers OK with an empty response.
//!
//! A poll that ends any other way was cut on the path: an intermediary's
//! timeout (HTTP 504 from nginx, whose `grpc_read_timeout` is 60 s by
//! default; UNAVAILABLE from a proxy; a reset stream). The check says after
//! how long, and how.

use std::time::Duration;

use serde::Serialize;

use super::conn::{self, Answer, Target};
use super::tap;
use super::{pb, seconds, CallReport, Check, Details, Outcome, POLL_WORKFLOW_TASK_QUEUE};

/// The poller's identity, as the frontend and audit lines see it.
const IDENTITY: &str = "temporal-mtls-proxy-probe";
/// How much longer than its deadline the probe waits for the poll's answer.
const ANSWER_GRACE: Duration = Duration::from_secs(20);
/// The poll's deadline, above the duration asked for: the frontend answers
/// an unserved poll a second before it.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
/// Codes a frontend answers a poll with at once, for what the request is
/// (rather than a path cutting it).
const REFUSALS: &[i32] = &[3, 5, 7, 9, 12, 16];

#[derive(Debug, Serialize)]
pub struct LongPollDetails {
    pub namespace: String,
    pub task_queue: String,
    pub asked_seconds: f64,
    /// How long the poll was held.
    pub held_seconds: f64,
    /// The poll's answer.
    pub answer: CallReport,
    /// A GOAWAY that came on the poll's connection (error code name and
    /// debug data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goaway: Option<String>,
}

pub async fn check(
    target: &Target,
    namespace: &str,
    task_queue: &str,
    duration: Duration,
    ping_interval: Duration,
) -> Check {
    let conn = match conn::connect(target, Some(ping_interval)).await {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                "long_poll",
                Outcome::Fail,
                format!("cannot open the connection: {e}"),
            )
        }
    };
    let deadline = duration + DEADLINE_MARGIN;
    let headers = [
        ("grpc-timeout", format!("{}m", deadline.as_millis())),
        ("temporal-namespace", namespace.to_owned()),
    ];
    let answer = conn
        .unary(
            POLL_WORKFLOW_TASK_QUEUE,
            &pb::poll_workflow_task_queue(namespace, task_queue, IDENTITY),
            &headers,
            deadline + ANSWER_GRACE,
        )
        .await;
    let goaway = tap::seen(&conn.tap)
        .goaway
        .map(|g| format!("{:?} {:?}", h2::Reason::from(g.error_code), g.debug_data));
    let (outcome, reason) = judge(&answer, duration, namespace, goaway.as_deref());
    Check::new("long_poll", outcome, reason)
        .namespace(namespace)
        .details(Details::LongPoll(LongPollDetails {
            namespace: namespace.to_owned(),
            task_queue: task_queue.to_owned(),
            asked_seconds: seconds(duration),
            held_seconds: seconds(answer.elapsed),
            answer: CallReport::from(&answer),
            goaway,
        }))
}

fn judge(
    answer: &Answer,
    duration: Duration,
    namespace: &str,
    goaway: Option<&str>,
) -> (Outcome, String) {
    let held = answer.elapsed.as_secs_f64();
    let asked = humantime::format_duration(duration);
    let how = match goaway {
        Some(g) => format!("{}; GOAWAY {g}", answer.summary()),
        None => answer.summary(),
    };
    if answer.is_ok() {
        // The frontend answers a second before the deadline, i.e. at the
        // duration asked for.
        if answer.elapsed + Duration::from_millis(1500) >= duration {
            return (
                Outcome::Pass,
                format!("held {held:.1} s and answered OK (an empty poll) by the frontend"),
            );
        }
        return (
            Outcome::Warn,
            format!(
                "answered OK by the frontend after {held:.1} s, before the {asked} asked for (its \
                 matching.longPollExpirationInterval is shorter): the path held the poll that \
                 long; longer was not tried"
            ),
        );
    }
    if answer.timed_out {
        return (
            Outcome::Fail,
            format!(
                "no answer within {held:.1} s, well past the poll's deadline: neither the \
                 frontend nor the path ended it"
            ),
        );
    }
    if let Some(code) = answer.grpc_status.filter(|c| REFUSALS.contains(c)) {
        let hint = if code == 7 {
            format!(" (polling needs the worker role on {namespace:?})")
        } else {
            String::new()
        };
        return (
            Outcome::Fail,
            format!("long poll refused after {held:.1} s: {how}{hint}"),
        );
    }
    if answer.grpc_status == Some(4) && answer.elapsed >= duration {
        return (
            Outcome::Fail,
            format!(
                "ended at its deadline with {how} instead of an empty poll response from the \
                 frontend"
            ),
        );
    }
    (
        Outcome::Fail,
        format!(
            "long poll cut after {held:.1} s by the path ({how}): an intermediary's read timeout \
             is below Temporal's 70 s long polls (nginx's grpc_read_timeout is 60 s by default, \
             Envoy's route timeout 15 s)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(secs: f64, http: u16, status: Option<i32>) -> Answer {
        Answer {
            elapsed: Duration::from_secs_f64(secs),
            http_status: Some(http),
            grpc_status: status,
            ..Answer::default()
        }
    }

    #[test]
    fn an_empty_answer_at_the_duration_passes() {
        let (o, r) = judge(
            &answer(75.0, 200, Some(0)),
            Duration::from_secs(75),
            "default",
            None,
        );
        assert_eq!(o, Outcome::Pass, "{r}");
        let (o, r) = judge(
            &answer(56.0, 200, Some(0)),
            Duration::from_secs(75),
            "default",
            None,
        );
        assert_eq!(o, Outcome::Warn, "{r}");
    }

    #[test]
    fn a_gateway_timeout_is_a_cut_and_says_after_how_long() {
        let mut a = answer(60.02, 504, None);
        a.server = Some("nginx/1.22.1".into());
        let (o, r) = judge(&a, Duration::from_secs(75), "default", None);
        assert_eq!(o, Outcome::Fail);
        assert!(
            r.starts_with("long poll cut after 60.0 s by the path (HTTP 504 from nginx/1.22.1"),
            "{r}"
        );
        let (o, r) = judge(
            &answer(0.01, 200, Some(7)),
            Duration::from_secs(75),
            "billing",
            None,
        );
        assert_eq!(o, Outcome::Fail);
        assert!(r.contains("refused") && r.contains("worker role"), "{r}");
    }
}
