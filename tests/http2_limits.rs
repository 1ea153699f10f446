//! The listener's HTTP/2 limits hold: concurrent streams per connection and
//! the header list size; and the connection stays usable after a refusal.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::grpc::pb;
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

#[tokio::test]
async fn concurrent_streams_are_capped_per_connection() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&format!(
        "{}\n[http2]\nmax_concurrent_streams = 2\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = Arc::new(proxy.grpc(&pki, &pki.client).await);
    // Three polls of ~3 s (the frontend answers a 4 s poll a second early)
    // on one connection: two run at once, the third can only start when one
    // of them is done, so it ends at ~6 s.
    let polls: Vec<_> = (0..3)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.poll_workflow_task_queue(
                    "default",
                    &format!("streams-{i}"),
                    Duration::from_secs(4),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut elapsed = Vec::new();
    for p in polls {
        let reply = p.await.unwrap();
        assert!(reply.is_ok(), "{reply:?}");
        elapsed.push(reply.elapsed);
    }
    elapsed.sort();
    assert!(elapsed[1] < Duration::from_millis(4500), "{elapsed:?}");
    assert!(
        elapsed[2] >= Duration::from_millis(5000),
        "the third ran alongside: {elapsed:?}"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_connection_stays_usable() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&format!(
        "{}\n[http2]\nmax_header_list_size = \"16KiB\"\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let big = "x".repeat(32 * 1024);
    let refused = conn
        .unary(
            &format!("{WS}/GetSystemInfo"),
            &pb::get_system_info(),
            &[("x-big", &big)],
        )
        .await;
    assert!(!matches!(refused, Ok(ref r) if r.is_ok()), "{refused:?}");
    let ok = conn
        .unary(
            &format!("{WS}/GetSystemInfo"),
            &pb::get_system_info(),
            &[("x-small", "y")],
        )
        .await
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
}
