//! Nothing in the proxy cuts a call that the client and the frontend keep
//! alive: a PollWorkflowTaskQueue held open for more than 75 s completes
//! normally (OK, empty poll result) through the proxy.

mod support;

use std::time::Duration;

use support::grpc::pb;
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};

#[tokio::test]
async fn long_poll_of_80_seconds_completes() {
    // The frontend holds a poll until the client's deadline (see
    // TemporalOpts::long_polls_to_deadline): 80 s here, answered at ~79 s.
    let temporal =
        TemporalServer::start_with(TemporalOpts::default().long_polls_to_deadline()).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .poll_workflow_task_queue("default", "long-poll-queue", Duration::from_secs(80))
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert!(
        pb::task_token(&reply.message()).is_empty(),
        "an empty poll result"
    );
    assert!(
        reply.elapsed >= Duration::from_secs(75),
        "the poll was held {:?}",
        reply.elapsed
    );
}

/// A long poll the client gives up on before the frontend answers (an SDK
/// worker shutting down resets its polls) still gets its audit line, with
/// no status: before, only calls that had a response were audited.
#[tokio::test]
async fn a_long_poll_the_client_cancels_is_still_audited() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let audit = tempfile::NamedTempFile::new().unwrap();
    let extra = format!("[audit]\nsink = {:?}\n", audit.path().display().to_string());
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), &extra)).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    // A 60 s poll the client drops after 1 s (its stream is reset).
    let gave_up = conn
        .unary_timeout(
            support::grpc::path::POLL_WORKFLOW_TASK_QUEUE,
            &pb::poll_workflow_task_queue("default", "cancelled-poll-queue", "test"),
            &[("grpc-timeout", "60S")],
            Duration::from_secs(1),
        )
        .await;
    assert!(
        gave_up.is_err(),
        "the poll answered within 1 s: {gave_up:?}"
    );
    let mut line = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(audit.path()).unwrap();
        line = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON lines"))
            .find(|v| {
                v["method"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("/PollWorkflowTaskQueue"))
            });
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = line.expect("an audit line for the cancelled poll");
    assert_eq!(line["grpc_status"], serde_json::Value::Null, "{line}");
    assert_eq!(line["response_bytes"], 0, "{line}");
    // Written when the client gave up, not when the frontend would answer.
    let ms = line["duration_ms"].as_f64().unwrap_or_default();
    assert!((900.0..30_000.0).contains(&ms), "{line}");
}
