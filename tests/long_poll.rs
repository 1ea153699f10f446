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
