//! Self-checks of the test-support helpers against the real Temporal dev
//! server, without the proxy: the dev server fixture, the `temporal` CLI,
//! the Python SDK worker and the raw gRPC client.

mod support;

use std::time::{Duration, Instant};

use support::cli;
use support::grpc::{self, code, pb, GrpcConn};
use support::python;
use support::temporal::{TemporalOpts, TemporalServer};

const NS: &str = "selftest-ns";

#[tokio::test]
async fn dev_server_serves_cli_namespaces_and_workflows() {
    let server = TemporalServer::start(&[NS]).await;
    let addr = server.address();

    let health = cli::cluster_health(&addr, None).await;
    health.assert_success("cluster health");
    assert_eq!(health.json()["status"], "SERVING", "{health}");

    let d = cli::describe_namespace(&addr, None, NS).await;
    d.assert_success("describe namespace");
    assert_eq!(d.json()["namespaceInfo"]["name"], NS, "{d}");

    let missing = cli::describe_namespace(&addr, None, "nope").await;
    assert!(
        !missing.success(),
        "describing a missing namespace: {missing}"
    );
    assert!(missing.stderr.contains("not found"), "{missing}");

    let list = cli::list_namespaces(&addr, None).await;
    list.assert_success("list namespaces");
    let names = cli::namespace_names(&list);
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
    assert!(names.iter().any(|n| n == NS), "{names:?}");

    let started = cli::start_workflow(
        &addr,
        None,
        NS,
        "SelftestType",
        "selftest-q",
        "selftest-wf-1",
    )
    .await;
    started.assert_success("workflow start");
    assert_eq!(started.json()["workflowId"], "selftest-wf-1", "{started}");
    assert_eq!(started.json()["namespace"], NS, "{started}");

    // Visibility is asynchronous: poll the list for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let wfs = cli::list_workflows(&addr, None, NS).await;
        wfs.assert_success("workflow list");
        if cli::workflow_ids(&wfs)
            .iter()
            .any(|id| id == "selftest-wf-1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "workflow never listed: {wfs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other namespace does not see it.
    let other = cli::list_workflows(&addr, None, "default").await;
    other.assert_success("workflow list default");
    assert!(cli::workflow_ids(&other).is_empty(), "{other}");
}

#[tokio::test]
async fn cli_reports_connection_failure_without_hanging() {
    let port = support::tools::free_port();
    let out = cli::temporal_cli_timeout(
        &format!("127.0.0.1:{port}"),
        None,
        &["operator", "cluster", "health"],
        Duration::from_secs(20),
    )
    .await;
    assert!(!out.success(), "{out}");
    assert!(!out.timed_out, "{out}");
}

#[tokio::test]
async fn python_worker_runs_workflows_with_an_activity() {
    let server = TemporalServer::start(&[NS]).await;
    let addr = server.address();

    let out = python::run_workflows(&addr, NS, None, 2, Duration::from_secs(150)).await;
    out.assert_success("worker.py --mode run");
    let v = out.json();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(
        v["results"],
        serde_json::json!(["Hello, n0!", "Hello, n1!"]),
        "{out}"
    );
    assert_eq!(v["workflow_ids"].as_array().map(Vec::len), Some(2), "{out}");

    // `call` mode: a gRPC error is data, not a failure.
    let out = python::run_python(
        &[
            "--mode",
            "call",
            "--rpc",
            "describe_namespace",
            "--address",
            &addr,
            "--namespace",
            "nope",
        ],
        Duration::from_secs(60),
    )
    .await;
    out.assert_success("worker.py --mode call");
    let v = out.json();
    assert_eq!(v["ok"], false, "{out}");
    assert_eq!(v["status"], "NOT_FOUND", "{out}");
    assert_eq!(v["code"], 5, "{out}");

    let out = python::run_python(
        &[
            "--mode",
            "call",
            "--rpc",
            "get_system_info",
            "--address",
            &addr,
        ],
        Duration::from_secs(60),
    )
    .await;
    out.assert_success("worker.py --mode call get_system_info");
    assert_eq!(out.json()["ok"], true, "{out}");

    // A short poll on an empty queue returns OK and empty just before the deadline.
    let out = python::run_python(
        &[
            "--mode",
            "poll",
            "--address",
            &addr,
            "--namespace",
            NS,
            "--timeout",
            "3",
        ],
        Duration::from_secs(60),
    )
    .await;
    out.assert_success("worker.py --mode poll");
    let v = out.json();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["empty"], true, "{out}");
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    assert!((1.5..3.5).contains(&elapsed), "{out}");
}

#[tokio::test]
async fn python_worker_reports_unreachable_server_as_data() {
    let port = support::tools::free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = python::run_python(
        &["--mode", "call", "--address", &addr],
        Duration::from_secs(60),
    )
    .await;
    out.assert_success("worker.py --mode call (no server)");
    let v = out.json();
    assert_eq!(v["ok"], false, "{out}");
}

#[tokio::test]
async fn grpc_conn_plaintext_unary_calls() {
    let server = TemporalServer::start(&[NS]).await;
    let conn = GrpcConn::connect(server.addr, None)
        .await
        .expect("h2c connect");

    let r = conn
        .unary(grpc::path::GET_SYSTEM_INFO, &pb::get_system_info(), &[])
        .await
        .expect("GetSystemInfo");
    assert_eq!(r.http_status, 200);
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert_eq!(r.messages.len(), 1, "{r:?}");
    assert!(!r.message().is_empty(), "{r:?}");
    let version = pb::server_version(&r.message()).expect("server_version");
    assert!(version.starts_with("1."), "{version}");
    assert!(r.trailers.is_some(), "{r:?}");

    let r = conn
        .unary(
            grpc::path::DESCRIBE_NAMESPACE,
            &pb::describe_namespace("nope"),
            &[],
        )
        .await
        .expect("DescribeNamespace nope");
    assert_eq!(r.grpc_status, Some(code::NOT_FOUND), "{r:?}");
    assert!(r.messages.is_empty(), "{r:?}");
    let msg = r.grpc_message.clone().unwrap_or_default();
    assert!(
        msg.contains("nope is not found"),
        "grpc-message percent-decoded: {msg:?}"
    );

    let r = conn
        .unary(
            grpc::path::DESCRIBE_NAMESPACE,
            &pb::describe_namespace(NS),
            &[("grpc-timeout", "5S"), ("temporal-namespace", NS)],
        )
        .await
        .expect("DescribeNamespace");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert_eq!(pb::namespace_name(&r.message()).as_deref(), Some(NS));

    // gzip-compressed request, as recent SDKs send them.
    let r = conn
        .raw_compressed(
            grpc::path::DESCRIBE_NAMESPACE,
            &grpc::gzip(&pb::describe_namespace(NS)),
            &[],
        )
        .await
        .expect("compressed DescribeNamespace");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert_eq!(pb::namespace_name(&r.message()).as_deref(), Some(NS));

    let r = conn
        .unary(grpc::path::LIST_NAMESPACES, &pb::list_namespaces(), &[])
        .await
        .expect("ListNamespaces");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    let names = pb::namespace_names(&r.message());
    assert!(names.iter().any(|n| n == NS), "{names:?}");

    let r = conn
        .unary(
            grpc::path::LIST_WORKFLOW_EXECUTIONS,
            &pb::list_workflow_executions(NS),
            &[],
        )
        .await
        .expect("ListWorkflowExecutions");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");

    let r = conn
        .unary(
            grpc::path::HEALTH_CHECK,
            &pb::health_check("temporal.api.workflowservice.v1.WorkflowService"),
            &[],
        )
        .await
        .expect("Health/Check");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert_eq!(pb::health_status(&r.message()), Some(1), "SERVING");

    // grpc-timeout reaches the server: an empty long poll with a 3 s
    // deadline comes back OK and empty about 1 s before it.
    let r = conn
        .unary(
            grpc::path::POLL_WORKFLOW_TASK_QUEUE,
            &pb::poll_workflow_task_queue(NS, "selftest-empty-q", "selftest"),
            &[("grpc-timeout", "3S")],
        )
        .await
        .expect("PollWorkflowTaskQueue");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert!(pb::task_token(&r.message()).is_empty(), "{r:?}");
    assert!(
        r.elapsed >= Duration::from_millis(1500) && r.elapsed < Duration::from_millis(3500),
        "{:?}",
        r.elapsed
    );

    // Unknown method: UNIMPLEMENTED, trailers-only.
    let r = conn
        .unary(
            "/temporal.api.workflowservice.v1.WorkflowService/NoSuchMethod",
            &[],
            &[],
        )
        .await
        .expect("unknown method");
    assert_eq!(r.grpc_status, Some(code::UNIMPLEMENTED), "{r:?}");

    // Several calls at once on the one connection.
    let calls = (0..8).map(|_| conn.unary(grpc::path::GET_SYSTEM_INFO, &[], &[]));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.expect("concurrent call").grpc_status, Some(code::OK));
    }
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn grpc_conn_connect_errors_carry_text() {
    let port = support::tools::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let err = GrpcConn::connect(addr, None)
        .await
        .err()
        .expect("nothing listens");
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test]
async fn dev_server_restarts_on_the_same_port() {
    let mut server = TemporalServer::start(&[NS]).await;
    let port = server.port;
    assert!(server.is_running());
    let rss = server.rss_kb().unwrap_or(0);
    assert!(rss > 0);

    server.stop().await;
    assert!(!server.is_running());
    assert!(GrpcConn::connect(server.addr, None).await.is_err());

    server.restart().await;
    assert_eq!(server.port, port);
    let conn = GrpcConn::connect(server.addr, None)
        .await
        .expect("connect after restart");
    let r = conn
        .unary(
            grpc::path::DESCRIBE_NAMESPACE,
            &pb::describe_namespace(NS),
            &[],
        )
        .await
        .expect("DescribeNamespace after restart");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert!(
        server.log_tail().contains("start #2"),
        "{}",
        server.log_tail()
    );
}

#[tokio::test]
async fn dynamic_config_is_passed() {
    // The value is JSON: a duration is a quoted string. (Unquoted `5s` makes
    // start-dev exit with "invalid JSON value for key".)
    let server = TemporalServer::start_with(
        TemporalOpts::namespaces(&[NS]).dynamic("matching.longPollExpirationInterval", "\"5s\""),
    )
    .await;
    let conn = GrpcConn::connect(server.addr, None).await.expect("connect");
    // With a 5 s server-side expiration (minus up to ~20% jitter) a poll with
    // a 30 s deadline comes back OK and empty well before the deadline.
    let r = conn
        .unary(
            grpc::path::POLL_WORKFLOW_TASK_QUEUE,
            &pb::poll_workflow_task_queue(NS, "selftest-empty-q", "selftest"),
            &[("grpc-timeout", "30S")],
        )
        .await
        .expect("poll");
    assert_eq!(r.grpc_status, Some(code::OK), "{r:?}");
    assert!(r.elapsed < Duration::from_secs(6), "{:?}", r.elapsed);
}
