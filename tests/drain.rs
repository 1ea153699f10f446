//! Graceful shutdown: on SIGTERM the listener closes, connections get
//! GOAWAY, calls in flight finish (up to the drain timeout) and the process
//! exits 0.

mod support;

use std::time::Duration;

use support::grpc::{ClientTls, GrpcConn};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

async fn start(drain_timeout: &str) -> (TemporalServer, TestPki, ProxyProcess) {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let text = format!(
        "{}\n[shutdown]\ndrain_timeout = \"{drain_timeout}\"\n",
        config(&pki, &temporal.url(), "")
    );
    // Signals and exit codes: the binary as a child process.
    let proxy = ProxyProcess::spawn(&text).await;
    (temporal, pki, proxy)
}

fn tls(pki: &TestPki) -> ClientTls {
    ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost")
}

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish_then_exits_0() {
    let (_temporal, pki, mut proxy) = start("30s").await;
    let conn = GrpcConn::connect(proxy.addr, Some(&tls(&pki)))
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        conn.poll_workflow_task_queue("default", "drain-queue", Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.signal("TERM");
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("draining"))
        })
        .await
        .expect("drain started");

    // The listener is closed: new connections are refused.
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "still accepting after SIGTERM"
    );

    let reply = poll.await.unwrap().unwrap();
    assert!(reply.is_ok(), "the poll in flight was cut: {reply:?}");
    assert!(
        reply.elapsed >= Duration::from_secs(3),
        "{:?}",
        reply.elapsed
    );

    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited");
    assert_eq!(status.code(), Some(0));
    proxy
        .wait_log(Duration::from_secs(5), |v| v["message"] == "drained")
        .await
        .expect("drained is logged");
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait() {
    let (_temporal, pki, mut proxy) = start("1s").await;
    let conn = GrpcConn::connect(proxy.addr, Some(&tls(&pki)))
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        conn.poll_workflow_task_queue("default", "drain-queue-2", Duration::from_secs(50))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exited within the drain timeout");
    assert_eq!(status.code(), Some(0));
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("drain timeout reached"))
        })
        .await
        .expect("the cut is logged");
    // The client learns its call ended (it does not hang for 50 s).
    let reply = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("call ended");
    assert!(!matches!(reply, Ok(Ok(ref r)) if r.is_ok()), "{reply:?}");
}

#[tokio::test]
async fn second_signal_exits_at_once() {
    let (_temporal, pki, mut proxy) = start("60s").await;
    let conn = GrpcConn::connect(proxy.addr, Some(&tls(&pki)))
        .await
        .unwrap();
    let _poll = tokio::spawn(async move {
        conn.poll_workflow_task_queue("default", "drain-queue-3", Duration::from_secs(50))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.signal("TERM");
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("draining"))
        })
        .await
        .expect("drain started");
    proxy.signal("INT");
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exited at once");
    assert_eq!(status.code(), Some(1));
}
