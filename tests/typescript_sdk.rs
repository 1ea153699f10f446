//! The official TypeScript SDK (the third real client, after the `temporal`
//! CLI and the Python SDK) through the proxy over mTLS: a worker
//! (NativeConnection, SDK core) and a client (Connection, grpc-js) run
//! `tests/typescript/sdk.js` against the real Temporal dev server, with an
//! authorization policy that grants the test certificate its own namespace
//! only.
//!
//! Each test has its own dev server and proxy, so they run side by side
//! under nextest; the 75 s idle test dominates the file's wall time.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cli::{self, CliTls};
use support::grpc::code;
use support::pki::{ClientCert, ClientSpec, TestPki};
use support::proxy::{config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};
use support::typescript::{run_sdk, NodeOutput};

/// The namespace the test certificate is granted.
const NS: &str = "ts-main";
/// A namespace it is not granted.
const OTHER_NS: &str = "ts-other";
const WORKER_URI: &str = "spiffe://example.org/ns/ts-main/sa/ts-worker";

const POLICY: &str = r#"
[authz]
mode = "enforce"

[[authz.rule]]
name = "ts-workers"
match = { uri = "spiffe://example.org/ns/ts-main/*" }
namespaces = ["ts-main"]
roles = ["worker", "writer"]
"#;

/// 8 MiB: the dev server's payload limit (`limit.blobSize.error`, 2 MiB by
/// default) raised so that a 3.5 MiB activity result is allowed; the SDK
/// reads the limit from DescribeNamespace and enforces it before sending.
const BLOB_LIMIT_8MIB: (&str, &str) = ("limit.blobSize.error", "8388608");

struct Setup {
    temporal: TemporalServer,
    pki: TestPki,
    proxy: ProxyProcess,
    worker: ClientCert,
}

async fn setup(opts: TemporalOpts) -> Setup {
    let temporal = TemporalServer::start_with(opts).await;
    let pki = TestPki::new();
    let worker = pki.client_cert(
        "ts-worker",
        ClientSpec {
            uris: vec![WORKER_URI.into()],
            ..ClientSpec::cn("ts-worker")
        },
    );
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), POLICY)).await;
    Setup {
        temporal,
        pki,
        proxy,
        worker,
    }
}

impl Setup {
    fn tls(&self) -> CliTls {
        CliTls::mtls(
            &self.pki.ca,
            &self.worker.cert,
            &self.worker.key,
            "localhost",
        )
    }

    /// sdk.js through the proxy over mTLS as the test worker.
    async fn proxied(&self, mode: &str, extra: &[&str], timeout: Duration) -> NodeOutput {
        let addr = self.proxy.addr.to_string();
        run_sdk(mode, &addr, NS, Some(&self.tls()), extra, timeout).await
    }

    /// sdk.js straight to the dev server (h2c, no TLS, no proxy).
    async fn direct(&self, mode: &str, extra: &[&str], timeout: Duration) -> NodeOutput {
        run_sdk(mode, &self.temporal.address(), NS, None, extra, timeout).await
    }
}

/// The run's JSON, or a panic with everything it printed.
fn result(out: &NodeOutput, what: &str) -> Value {
    out.assert_success(what);
    let v = out.json();
    assert_eq!(v["ok"], true, "{what}: {out}");
    eprintln!("{what}: sdk.js printed {v:#}");
    v
}

#[tokio::test]
async fn worker_runs_activities_signals_queries_updates_children_timers_and_failures() {
    let s =
        setup(TemporalOpts::namespaces(&[NS]).dynamic(BLOB_LIMIT_8MIB.0, BLOB_LIMIT_8MIB.1)).await;
    let out = s.proxied("features", &[], Duration::from_secs(120)).await;
    let v = result(&out, "TypeScript worker through the proxy");
    let ctx = || format!("stderr:\n{}\njson: {v:#}", out.stderr);

    // Activities, a timer, a child workflow, signals, a query and updates.
    let f = &v["feature"];
    assert_eq!(f["status"], "COMPLETED", "{}", ctx());
    let r = &f["result"];
    assert_eq!(r["greeting"], "Hello, ts!", "{}", ctx());
    // The heartbeating activity outlives its 2 s heartbeat timeout only if
    // its heartbeats arrive; its second attempt sees the first one's last
    // recorded heartbeat.
    assert_eq!(r["heartbeat"]["attempt"], 2, "{}", ctx());
    let resumed = r["heartbeat"]["resumedFrom"].as_i64().unwrap_or(0);
    assert!((1..=10).contains(&resumed), "heartbeat details: {}", ctx());
    assert!(
        r["timerMs"].as_i64().unwrap_or(0) >= 1000,
        "timer: {}",
        ctx()
    );
    assert_eq!(
        r["child"],
        json!({"greeting": "child of ts", "parentWorkflowId": f["workflowId"]}),
        "{}",
        ctx()
    );
    // The ~3.5 MiB activity result arrives whole.
    let big = &r["big"];
    assert_eq!(big["length"], 3_670_016, "{}", ctx());
    assert_eq!(big["checksum"], big["expectedChecksum"], "{}", ctx());
    assert_eq!(
        big["activityChecksum"],
        big["expectedChecksum"],
        "{}",
        ctx()
    );
    assert_eq!(r["items"], json!(["apple", "pear"]), "{}", ctx());
    assert_eq!(f["query"], json!(["apple", "pear"]), "{}", ctx());
    assert_eq!(f["previousLabel"], "initial", "{}", ctx());
    assert_eq!(r["label"], "blue", "{}", ctx());
    let rejected = &f["rejectedUpdate"];
    assert_eq!(rejected["class"], "WorkflowUpdateFailedError", "{}", ctx());
    assert_eq!(
        rejected["cause"]["message"],
        "label must be a non-empty string",
        "{}",
        ctx()
    );

    // Continue-as-new: three runs, the client follows them to the last.
    let c = &v["counter"];
    assert_eq!(c["result"]["n"], 3, "{}", ctx());
    assert_eq!(c["firstRunStatus"], "CONTINUED_AS_NEW", "{}", ctx());
    assert_eq!(c["latestRunStatus"], "COMPLETED", "{}", ctx());
    assert_eq!(c["latestRunId"], c["result"]["runId"], "{}", ctx());
    assert_ne!(c["latestRunId"], c["firstRunId"], "{}", ctx());
    assert!(
        c["result"]["continuedFromExecutionRunId"].is_string(),
        "{}",
        ctx()
    );

    // ApplicationFailures reach the client intact: type, message, details,
    // nonRetryable; from an activity (wrapped in an ActivityFailure, one
    // attempt only) and from the workflow itself.
    let a = &v["activityFailure"];
    assert_eq!(a["failed"], true, "{}", ctx());
    assert_eq!(a["cause"]["class"], "ActivityFailure", "{}", ctx());
    assert_eq!(a["cause"]["activityType"], "declinePayment", "{}", ctx());
    assert_eq!(
        a["cause"]["retryState"],
        "NON_RETRYABLE_FAILURE",
        "{}",
        ctx()
    );
    let app = &a["cause"]["cause"];
    assert_eq!(app["class"], "ApplicationFailure", "{}", ctx());
    assert_eq!(app["type"], "PaymentDeclined", "{}", ctx());
    assert_eq!(app["message"], "card 4242 declined", "{}", ctx());
    assert_eq!(
        app["details"],
        json!([{"code": 51, "reason": "insufficient funds"}, "second detail"]),
        "{}",
        ctx()
    );
    assert_eq!(app["nonRetryable"], true, "{}", ctx());

    let w = &v["workflowFailure"];
    assert_eq!(w["failed"], true, "{}", ctx());
    let app = &w["cause"];
    assert_eq!(app["class"], "ApplicationFailure", "{}", ctx());
    assert_eq!(app["type"], "OrderInvalid", "{}", ctx());
    assert_eq!(app["message"], "order A-17 is invalid", "{}", ctx());
    assert_eq!(
        app["details"],
        json!([{"order": "A-17", "missing": ["address", "payment"]}]),
        "{}",
        ctx()
    );
    assert_eq!(app["nonRetryable"], true, "{}", ctx());

    // Nothing the worker or client needed was refused.
    let denied: Vec<_> = s
        .proxy
        .logs()
        .into_iter()
        .filter(|l| l.to_string().contains("permission denied"))
        .collect();
    assert!(denied.is_empty(), "denials in the proxy log: {denied:#?}");
}

/// What the real server records when a worker's workflow task completion is
/// over the frontend's 4 MiB limit: SDK core sees the frontend's
/// RESOURCE_EXHAUSTED "grpc: received message ... larger than max", fails
/// the task as GrpcMessageTooLarge, and the server terminates the run. The
/// history is exactly this (checked against the dev server, Server 1.32):
/// the workflow task failure is recorded by the history service with cause
/// FORCE_CLOSE_COMMAND, and the termination's reason is GrpcMessageTooLarge.
fn assert_grpc_message_too_large(out: &NodeOutput, what: &str) {
    let v = result(out, what);
    let ctx = format!("{what}: stderr:\n{}\njson: {v:#}", out.stderr);
    assert_eq!(v["status"], "TERMINATED", "{ctx}");
    assert_eq!(
        v["history"]["eventTypes"],
        json!([
            "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED",
            "EVENT_TYPE_WORKFLOW_TASK_STARTED",
            "EVENT_TYPE_WORKFLOW_TASK_FAILED",
            "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED"
        ]),
        "{ctx}"
    );
    let failures = v["history"]["workflowTaskFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(failures.len(), 1, "{ctx}");
    assert_eq!(
        failures[0]["cause"], "WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND",
        "{ctx}"
    );
    assert_eq!(
        v["history"]["terminated"]["reason"], "GrpcMessageTooLarge",
        "{ctx}"
    );
    assert!(
        v["closedAfterS"].as_f64().unwrap_or(f64::MAX) < 60.0,
        "{ctx}"
    );
}

#[tokio::test]
async fn over_4mib_workflow_task_completion_ends_with_grpc_message_too_large_as_directly() {
    let s = setup(TemporalOpts::namespaces(&[NS])).await;
    // 4.5 MiB of activity inputs in one completion (three of 1.5 MiB: each
    // payload under the 2 MiB blob limit the SDK checks itself). With the
    // SDK's default gzip the wire message is small and only its
    // decompressed size is over the limit; without compression both are.
    let t = Duration::from_secs(110);
    let gzip: &[&str] = &["--wait-seconds", "60"];
    let plain: &[&str] = &["--wait-seconds", "60", "--no-compression"];
    let (direct_gzip, direct_plain, proxied_gzip, proxied_plain) = tokio::join!(
        s.direct("large-completion", gzip, t),
        s.direct("large-completion", plain, t),
        s.proxied("large-completion", gzip, t),
        s.proxied("large-completion", plain, t),
    );
    // The baseline: the worker straight to the dev server.
    assert_grpc_message_too_large(&direct_gzip, "direct, gzip");
    assert_grpc_message_too_large(&direct_plain, "direct, uncompressed");
    // Through the proxy, the same end. (What the proxy logged about the
    // size limit, for when it does not.)
    let size_lines: Vec<_> = s
        .proxy
        .logs()
        .into_iter()
        .filter(|l| {
            let t = l.to_string();
            t.contains("RESOURCE_EXHAUSTED") || t.contains("exceeds the limit")
        })
        .collect();
    eprintln!("proxy log lines about the size limit: {size_lines:#?}");
    assert_grpc_message_too_large(&proxied_gzip, "through the proxy, gzip");
    assert_grpc_message_too_large(&proxied_plain, "through the proxy, uncompressed");
}

#[tokio::test]
async fn worker_idle_for_75s_picks_up_new_work_at_once() {
    let s = setup(TemporalOpts::namespaces(&[NS])).await;
    let out = s
        .proxied("idle", &["--idle-seconds", "75"], Duration::from_secs(140))
        .await;
    let v = result(&out, "idle TypeScript worker through the proxy");
    let ctx = format!("stderr:\n{}\njson: {v:#}", out.stderr);
    assert_eq!(v["before"]["result"], "Hello, before!", "{ctx}");
    // Measured by the script around a 75 s timer, which may fire a
    // millisecond early by its clock.
    assert!(v["idleS"].as_f64().unwrap_or(0.0) >= 74.9, "{ctx}");
    assert_eq!(v["after"]["result"], "Hello, after!", "{ctx}");
    let after = v["after"]["elapsedS"].as_f64().unwrap_or(f64::MAX);
    assert!(
        after < 5.0,
        "the workflow started after 75 s idle took {after} s: {ctx}"
    );
}

/// A gRPC refusal as sdk.js reports it: PERMISSION_DENIED from the proxy,
/// naming the namespace.
fn assert_permission_denied(v: &Value, what: &str, ctx: &str) {
    assert_eq!(v["ok"], false, "{what} was allowed: {ctx}");
    assert_eq!(
        v["code"],
        code::PERMISSION_DENIED,
        "{what}: not PERMISSION_DENIED: {ctx}"
    );
    let details = v["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("permission denied") && details.contains(&format!("\"{OTHER_NS}\"")),
        "{what}: the message does not name the namespace: {ctx}"
    );
}

#[tokio::test]
async fn worker_certificate_is_refused_on_a_namespace_it_is_not_granted() {
    let s = setup(TemporalOpts::namespaces(&[NS, OTHER_NS])).await;
    let out = s
        .proxied(
            "denied",
            &["--other-namespace", OTHER_NS],
            Duration::from_secs(90),
        )
        .await;
    let v = result(&out, "TypeScript client and worker on a foreign namespace");
    let ctx = format!("stderr:\n{}\njson: {v:#}", out.stderr);

    // Its own namespace works, as a client and as a worker.
    assert_eq!(v["ownDescribe"], json!({"ok": true, "name": NS}), "{ctx}");
    assert_eq!(v["ownWorkflow"], "Hello, own!", "{ctx}");

    // The client (grpc-js): DescribeNamespace and StartWorkflowExecution.
    assert_permission_denied(&v["otherDescribe"], "DescribeNamespace", &ctx);
    assert!(
        v["otherDescribe"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("DescribeNamespace"),
        "{ctx}"
    );
    assert_permission_denied(&v["otherStart"], "StartWorkflowExecution", &ctx);
    assert!(
        v["otherStart"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("StartWorkflowExecution"),
        "{ctx}"
    );
    // The worker (SDK core): Worker.create describes its namespace first
    // and fails with the status core got.
    let w = &v["otherWorker"];
    assert_eq!(w["ok"], false, "a worker was created on {OTHER_NS}: {ctx}");
    let msg = w["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("PermissionDenied")
            && msg.contains("permission denied")
            && msg.contains(OTHER_NS),
        "worker error is not PERMISSION_DENIED naming {OTHER_NS}: {ctx}"
    );

    // Nothing reached the frontend: no workflow in the other namespace.
    let list = cli::list_workflows(&s.temporal.address(), None, OTHER_NS).await;
    list.assert_success("list workflows directly");
    assert!(
        cli::workflow_ids(&list).is_empty(),
        "a workflow was started in {OTHER_NS}: {}",
        list.stdout
    );
}
