//! The frontend rotates its connections (max connection age, GOAWAY): calls
//! in flight on the old connection finish, new calls go to a new one, and
//! no call fails. The real frontend, with its max age cut to 2 s.

mod support;

use std::time::{Duration, Instant};

use support::cli::CliTls;
use support::grpc::{pb, ClientTls, GrpcConn};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

#[tokio::test]
async fn calls_survive_upstream_connection_rotation() {
    let temporal = TemporalServer::start_with(
        TemporalOpts::default()
            .dynamic("frontend.keepAliveMaxConnectionAge", "\"2s\"")
            .dynamic("frontend.keepAliveMaxConnectionAgeGrace", "\"30s\""),
    )
    .await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let conn = GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap();

    // A poll that is in flight when its upstream connection gets GOAWAY: the
    // frontend's grace lets it finish, and so does the proxy.
    let poller = GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap();
    let poll = tokio::spawn(async move {
        poller
            .poll_workflow_task_queue("default", "rotation-idle-queue", Duration::from_secs(8))
            .await
    });

    // A real SDK worker running workflows while connections rotate.
    let cli_tls = CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let addr = proxy.addr.to_string();
    let worker = tokio::spawn(async move {
        support::python::run_workflows(
            &addr,
            "default",
            Some(&cli_tls),
            20,
            Duration::from_secs(90),
        )
        .await
    });

    // Unary calls, one after another, for 10 s (several rotations).
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let reply = conn
            .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
            .await
            .unwrap();
        assert!(reply.is_ok(), "call {calls} failed: {reply:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let poll = poll.await.unwrap().unwrap();
    assert!(poll.is_ok(), "the in-flight poll failed: {poll:?}");
    assert!(poll.elapsed >= Duration::from_secs(5), "{:?}", poll.elapsed);

    let worker = worker.await.unwrap();
    worker.assert_success("workflows across rotations");
    assert_eq!(worker.json()["ok"], true);

    // The rotations really happened: the proxy had to open new connections.
    let opened = proxy.upstream_connections_opened();
    assert!(
        opened >= 3,
        "only {opened} upstream connections in 10 s with a 2 s max age"
    );
    assert!(calls > 100, "{calls}");
}

/// With a small per-connection stream budget, concurrent long polls spread
/// over several upstream connections instead of queueing behind each other.
#[tokio::test]
async fn more_upstream_connections_when_streams_run_out() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy =
        ProxyProcess::start(&config(&pki, &temporal.url(), "max_concurrent_streams = 2")).await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let conn = std::sync::Arc::new(GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap());
    let polls: Vec<_> = (0..5)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.poll_workflow_task_queue(
                    "default",
                    &format!("spread-{i}"),
                    Duration::from_secs(4),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for poll in polls {
        let reply = poll.await.unwrap();
        assert!(reply.is_ok(), "{reply:?}");
    }
    let opened = proxy.upstream_connections_opened();
    assert_eq!(opened, 3, "5 concurrent calls at 2 streams per connection");
}

/// `upstream.max_connections` caps the connections however many calls are
/// held (10 long polls at 2 streams per connection would want 5; the cap
/// is 3 and every poll still completes), and connections left idle for
/// `upstream.max_connection_idle` are closed, all but one. Before, 10,000
/// held calls opened 100 connections and none was ever closed.
#[tokio::test]
async fn upstream_connections_are_capped_and_idle_ones_closed() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(
        &pki,
        &temporal.url(),
        "max_concurrent_streams = 2\nmax_connections = 3\nmax_connection_idle = \"1s\"\n\
         [runtime]\nworker_threads = 1",
    ))
    .await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let conn = std::sync::Arc::new(GrpcConn::connect(proxy.addr, Some(&tls)).await.unwrap());
    let polls: Vec<_> = (0..10)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.poll_workflow_task_queue(
                    "default",
                    &format!("capped-{i}"),
                    Duration::from_secs(3),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for poll in polls {
        let reply = poll.await.unwrap();
        assert!(reply.is_ok(), "{reply:?}");
    }
    assert_eq!(proxy.upstream_connections_opened(), 3, "the cap");
    // Idle for 1 s, checked every second: all but one closed within a few.
    let gauge = "temporal_mtls_proxy_upstream_connections_open ";
    let mut open = None;
    for _ in 0..50 {
        let (_, metrics) = proxy.admin_get("/metrics").await;
        open = metrics
            .lines()
            .find_map(|l| l.strip_prefix(gauge))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if open == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(open, Some(1.0), "idle upstream connections left open");
    // The one kept still serves.
    let reply = conn
        .unary(
            support::grpc::path::GET_SYSTEM_INFO,
            &support::grpc::pb::get_system_info(),
            &[],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(proxy.upstream_connections_opened(), 3, "no new connection");
}
