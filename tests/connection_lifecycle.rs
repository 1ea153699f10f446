//! Connection lifecycle toward clients: idle connections and old ones are
//! closed with GOAWAY, calls in flight finish within the grace, and the
//! number of connections is bounded. Intervals are scaled down from the
//! defaults (2 min idle, 5 min age, 80 s grace) in the test configs.

mod support;

use std::time::{Duration, Instant};

use support::grpc::pb;
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

async fn proxy_with(temporal: &TemporalServer, pki: &TestPki, sections: &str) -> ProxyProcess {
    ProxyProcess::start(&format!("{}\n{sections}", config(pki, &temporal.url(), ""))).await
}

#[tokio::test]
async fn idle_connection_is_closed_with_goaway() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(
        &temporal,
        &pki,
        "[keepalive]\nmax_connection_idle = \"1s\"\n",
    )
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(reply.is_ok());
    let idle_from = Instant::now();
    let closed = conn.wait_closed(Duration::from_secs(10)).await;
    assert_eq!(
        closed,
        Some(Ok(())),
        "closed cleanly (GOAWAY), not with an error"
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle_from.elapsed()
    );
}

/// A long poll keeps its connection busy: idle only counts without calls.
#[tokio::test]
async fn open_call_is_not_idle() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(
        &temporal,
        &pki,
        "[keepalive]\nmax_connection_idle = \"1s\"\n",
    )
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .poll_workflow_task_queue("default", "idle-test", Duration::from_secs(4))
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert!(
        reply.elapsed >= Duration::from_secs(2),
        "{:?}",
        reply.elapsed
    );
    // Had the poll's time counted as idle, GOAWAY would have come at ~1 s
    // and the connection would end with the poll. It is still open, and
    // only now starts its idle second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!conn.is_closed(), "closed while a call was open");
    assert_eq!(conn.wait_closed(Duration::from_secs(5)).await, Some(Ok(())));
}

#[tokio::test]
async fn max_age_sends_goaway_and_the_call_in_flight_finishes_in_the_grace() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(
        &temporal,
        &pki,
        "[keepalive]\nmax_connection_age = \"1s\"\nmax_connection_age_grace = \"20s\"\n",
    )
    .await;
    let conn = std::sync::Arc::new(proxy.grpc(&pki, &pki.client).await);
    let poller = conn.clone();
    let poll = tokio::spawn(async move {
        poller
            .poll_workflow_task_queue("default", "age-test", Duration::from_secs(5))
            .await
    });
    let reply = poll.await.unwrap().unwrap();
    assert!(reply.is_ok(), "the poll in flight was cut: {reply:?}");
    assert!(
        reply.elapsed >= Duration::from_secs(3),
        "{:?}",
        reply.elapsed
    );
    // GOAWAY came at ~1 s: once its last call is done, the connection ends.
    assert_eq!(conn.wait_closed(Duration::from_secs(5)).await, Some(Ok(())));
}

#[tokio::test]
async fn max_age_grace_bounds_how_long_calls_may_run() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(
        &temporal,
        &pki,
        "[keepalive]\nmax_connection_age = \"1s\"\nmax_connection_age_grace = \"1s\"\n",
    )
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let started = Instant::now();
    let reply = conn
        .poll_workflow_task_queue("default", "grace-test", Duration::from_secs(20))
        .await;
    assert!(!matches!(reply, Ok(ref r) if r.is_ok()), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("max_connection_age_grace over"))
        })
        .await
        .expect("the cut is logged");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_counted_and_logged() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(&temporal, &pki, "[limits]\nmax_connections = 2\n").await;
    let a = proxy.grpc(&pki, &pki.client).await;
    let b = proxy.grpc(&pki, &pki.client).await;
    let tls =
        support::grpc::ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let third = support::grpc::GrpcConn::connect(proxy.addr, Some(&tls)).await;
    assert!(third.is_err(), "a third connection was served");
    let line = proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("limits.max_connections reached"))
        })
        .await
        .expect("refusal logged");
    assert_eq!(line["refused_total"], 1);
    // The two admitted connections work; closing one admits a new one.
    for conn in [&a, &b] {
        let r = conn
            .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
            .await
            .unwrap();
        assert!(r.is_ok());
    }
    drop(a);
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(c) = support::grpc::GrpcConn::connect(proxy.addr, Some(&tls)).await {
            admitted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = admitted.expect("a new connection once one closed");
    let r = c
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(r.is_ok());
}

/// A real SDK worker keeps running workflows while the proxy rotates its
/// connections every second: no workflow fails and no workflow task fails.
#[tokio::test]
async fn sdk_worker_runs_across_forced_connection_rotations() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = proxy_with(
        &temporal,
        &pki,
        "[keepalive]\nmax_connection_age = \"1s\"\nmax_connection_age_grace = \"60s\"\n",
    )
    .await;
    let tls = support::cli::CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    // 20 workflows, one started every 0.25 s: a run of about 5 s.
    let mut args: Vec<String> = [
        "--mode",
        "run",
        "--address",
        &proxy.addr.to_string(),
        "--workflows",
        "20",
        "--interval",
        "0.25",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(support::python::tls_args(&tls));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = support::python::run_python(&args, Duration::from_secs(120)).await;
    out.assert_success("workflows across rotations");
    let result = out.json();
    assert_eq!(result["ok"], true, "{result}");
    let rotations = proxy
        .logs()
        .iter()
        .filter(|v| v["message"] == "max_connection_age reached: GOAWAY")
        .count();
    assert!(
        rotations >= 2,
        "only {rotations} rotations during the run: {result}"
    );
    // Every workflow's history is free of failed workflow tasks.
    for id in result["workflow_ids"].as_array().expect("workflow ids") {
        let id = id.as_str().unwrap();
        let history = support::cli::temporal_cli(
            &temporal.address(),
            None,
            &["workflow", "show", "-w", id, "-o", "json"],
        )
        .await;
        history.assert_success("workflow show");
        assert!(
            history.stdout.contains("WORKFLOW_EXECUTION_COMPLETED")
                || history.stdout.contains("WorkflowExecutionCompleted"),
            "{id}: {}",
            history.stdout
        );
        assert!(
            !history.stdout.contains("WORKFLOW_TASK_FAILED")
                && !history.stdout.contains("WorkflowTaskFailed"),
            "{id} had a failed workflow task"
        );
    }
}
