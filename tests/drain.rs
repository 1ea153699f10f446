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

/// At shutdown the audit writer gets as long as it keeps writing: a sink
/// that takes lines slowly (a pipe to a busy log shipper) still gets every
/// line before the process exits 0. Before, the wait was cut at 5 s and the
/// lines still queued were lost without a word.
#[tokio::test]
async fn a_slow_audit_sink_gets_every_line_before_exit() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    const CALLS: usize = 4000;
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());

    // The reader opens the pipe at once (the proxy's open waits for it), then
    // reads nothing until told, then about 200 KB/s.
    let go = Arc::new(AtomicBool::new(false));
    let reader = {
        let (fifo, go) = (fifo.clone(), go.clone());
        std::thread::spawn(move || {
            let mut pipe = std::fs::File::open(&fifo).expect("open the pipe");
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let started = Instant::now();
            let (mut text, mut piece) = (Vec::new(), [0u8; 4096]);
            loop {
                match pipe.read(&mut piece).expect("read the pipe") {
                    0 => break,
                    n => text.extend_from_slice(&piece[..n]),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (String::from_utf8(text).expect("utf-8"), started.elapsed())
        })
    };

    // Every call is denied by the proxy itself: no upstream is needed.
    let text = format!(
        "{}\n[authz]\nmode = \"enforce\"\n\
         [[authz.rule]]\nname = \"someone-else\"\nmatch = {{ cn = \"nobody\" }}\n\
         namespaces = [\"x\"]\nroles = [\"reader\"]\n\
         [audit]\nsink = {:?}\nbuffer = 20000\n\
         [shutdown]\ndrain_timeout = \"5s\"\n",
        config(&pki, "http://127.0.0.1:9", ""),
        fifo.display().to_string(),
    );
    let mut proxy = ProxyProcess::spawn(&text).await;
    {
        let conn = GrpcConn::connect(proxy.addr, Some(&tls(&pki)))
            .await
            .unwrap();
        let describe = b"\x0a\x01x"; // DescribeNamespaceRequest{namespace: "x"}
        for batch in 0..CALLS / 100 {
            let calls = (0..100).map(|_| {
                conn.unary(
                    "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace",
                    describe,
                    &[],
                )
            });
            for reply in futures_util::future::join_all(calls).await {
                let reply = reply.unwrap_or_else(|e| panic!("batch {batch}: {e}"));
                assert_eq!(reply.grpc_status, Some(7), "{reply:?}");
            }
        }
    }
    proxy.signal("TERM");
    go.store(true, Ordering::Release);
    let status = proxy
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("exited");
    let (audit, took) = reader.join().expect("reader");
    assert_eq!(status.code(), Some(0));
    assert!(
        took > Duration::from_secs(6),
        "the sink was not slow enough to prove anything: read in {took:?}"
    );
    let lines = audit
        .lines()
        .filter(|l| l.contains("DescribeNamespace"))
        .count();
    assert_eq!(lines, CALLS, "audit lines written before exit");
}
