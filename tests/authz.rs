//! Who may call what, through the real Temporal dev server (with two extra
//! namespaces) and real clients, with three identities: a worker of
//! namespace A, a reader of A, and a platform admin.

mod support;

use std::time::Duration;

use support::cli::{self, CliTls};
use support::grpc::{code, gzip, pb, ClientTls, GrpcConn, GrpcReply};
use support::pki::{ClientCert, ClientSpec, TestPki};
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";
const WORKER_URI: &str = "spiffe://example.org/ns/nsa/sa/worker";

const POLICY: &str = r#"
[[authz.rule]]
name = "a-workers"
match = { uri = "spiffe://example.org/ns/nsa/*" }
namespaces = ["nsa"]
roles = ["worker", "writer"]

[[authz.rule]]
name = "a-readers"
match = { cn = "reader-a", ou = "Team-A" }
namespaces = ["nsa"]
roles = ["reader"]

[[authz.rule]]
name = "platform-admins"
match = { o = "platform", cn = "*-admin" }
namespaces = ["*"]
roles = ["admin"]
"#;

struct Setup {
    temporal: TemporalServer,
    pki: TestPki,
    proxy: ProxyProcess,
    worker: ClientCert,
    reader: ClientCert,
    admin: ClientCert,
}

async fn setup(mode: &str, extra: &str) -> Setup {
    let temporal = TemporalServer::start(&["nsa", "nsb"]).await;
    let pki = TestPki::new();
    let worker = pki.client_cert(
        "worker-a",
        ClientSpec {
            uris: vec![WORKER_URI.into()],
            ..ClientSpec::cn("worker-a")
        },
    );
    let reader = pki.client_cert(
        "reader-a",
        ClientSpec {
            ou: vec!["team-a".into()],
            ..ClientSpec::cn("reader-a")
        },
    );
    let admin = pki.client_cert(
        "admin",
        ClientSpec {
            o: vec!["Platform".into()],
            ..ClientSpec::cn("ops-admin")
        },
    );
    let text = format!(
        "{}\n[authz]\nmode = \"{mode}\"\n{POLICY}\n{extra}",
        config(&pki, &temporal.url(), "")
    );
    let proxy = ProxyProcess::start(&text).await;
    Setup {
        temporal,
        pki,
        proxy,
        worker,
        reader,
        admin,
    }
}

impl Setup {
    fn cli_tls(&self, who: &ClientCert) -> CliTls {
        CliTls::mtls(&self.pki.ca, &who.cert, &who.key, "localhost")
    }

    async fn conn(&self, who: &ClientCert) -> GrpcConn {
        GrpcConn::connect(
            self.proxy.addr,
            Some(&ClientTls::mtls(
                &self.pki.ca,
                &who.cert,
                &who.key,
                "localhost",
            )),
        )
        .await
        .unwrap()
    }

    async fn cli(&self, who: &ClientCert, args: &[&str]) -> cli::CliOutput {
        cli::temporal_cli(&self.proxy.addr.to_string(), Some(&self.cli_tls(who)), args).await
    }

    /// Starts a workflow in `ns` directly on the frontend (no proxy).
    async fn seed_workflow(&self, ns: &str, id: &str) {
        cli::start_workflow(&self.temporal.address(), None, ns, "Seed", "seed-q", id)
            .await
            .assert_success("seed workflow");
    }
}

fn assert_denied(out: &cli::CliOutput, needle: &str) {
    assert!(!out.success(), "allowed: {}", out.stdout);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in {}",
        out.stderr
    );
}

fn assert_status(reply: &GrpcReply, status: i32) {
    assert_eq!(reply.http_status, 200, "{reply:?}");
    assert_eq!(reply.grpc_status, Some(status), "{reply:?}");
}

#[tokio::test]
async fn worker_of_a_runs_workflows_in_a_and_is_denied_in_b() {
    let s = setup("enforce", "").await;
    let out = support::python::run_workflows(
        &s.proxy.addr.to_string(),
        "nsa",
        Some(&s.cli_tls(&s.worker)),
        3,
        Duration::from_secs(120),
    )
    .await;
    out.assert_success("worker in nsa");
    assert_eq!(out.json()["ok"], true);

    let start = s
        .cli(
            &s.worker,
            &[
                "workflow",
                "start",
                "--type",
                "T",
                "--task-queue",
                "q",
                "--workflow-id",
                "w",
                "-n",
                "nsb",
            ],
        )
        .await;
    assert_denied(
        &start,
        &format!("{WORKER_URI} may not call StartWorkflowExecution on namespace \"nsb\""),
    );
    assert_denied(
        &s.cli(&s.worker, &["workflow", "list", "-n", "nsb"]).await,
        "ListWorkflowExecutions",
    );
    assert_denied(
        &s.cli(
            &s.worker,
            &["operator", "namespace", "describe", "-n", "nsb"],
        )
        .await,
        "DescribeNamespace on namespace \"nsb\"",
    );
    let conn = s.conn(&s.worker).await;
    let poll = conn
        .unary(
            &format!("{WS}/PollWorkflowTaskQueue"),
            &pb::poll_workflow_task_queue("nsb", "q", "w"),
            &[],
        )
        .await
        .unwrap();
    assert_status(&poll, code::PERMISSION_DENIED);
    // Denied calls never reach the frontend: nothing was started in nsb.
    let listed = cli::list_workflows(&s.temporal.address(), None, "nsb").await;
    assert!(cli::workflow_ids(&listed).is_empty(), "{}", listed.stdout);
}

#[tokio::test]
async fn reader_of_a_reads_but_cannot_write() {
    let s = setup("enforce", "").await;
    s.seed_workflow("nsa", "seeded").await;
    s.cli(
        &s.reader,
        &["operator", "namespace", "describe", "-n", "nsa"],
    )
    .await
    .assert_success("describe nsa");
    s.cli(&s.reader, &["workflow", "list", "-n", "nsa"])
        .await
        .assert_success("list nsa");
    s.cli(
        &s.reader,
        &["workflow", "show", "-w", "seeded", "-n", "nsa"],
    )
    .await
    .assert_success("history of nsa");

    assert_denied(
        &s.cli(
            &s.reader,
            &[
                "workflow",
                "start",
                "--type",
                "T",
                "--task-queue",
                "q",
                "--workflow-id",
                "r",
                "-n",
                "nsa",
            ],
        )
        .await,
        "StartWorkflowExecution on namespace \"nsa\"",
    );
    assert_denied(
        &s.cli(
            &s.reader,
            &[
                "workflow", "signal", "-w", "seeded", "--name", "sig", "-n", "nsa",
            ],
        )
        .await,
        "SignalWorkflowExecution",
    );
    assert_denied(
        &s.cli(
            &s.reader,
            &[
                "workflow",
                "terminate",
                "-w",
                "seeded",
                "-n",
                "nsa",
                "--reason",
                "test",
            ],
        )
        .await,
        "TerminateWorkflowExecution",
    );
    // Nor read anything in another namespace.
    assert_denied(
        &s.cli(&s.reader, &["workflow", "list", "-n", "nsb"]).await,
        "nsb",
    );
}

#[tokio::test]
async fn admin_registers_a_namespace_and_others_cannot() {
    let s = setup("enforce", "").await;
    s.cli(
        &s.admin,
        &["operator", "namespace", "create", "-n", "created-by-admin"],
    )
    .await
    .assert_success("admin registers a namespace");
    s.cli(
        &s.admin,
        &[
            "operator",
            "namespace",
            "describe",
            "-n",
            "created-by-admin",
        ],
    )
    .await
    .assert_success("describe new namespace");
    assert_denied(
        &s.cli(
            &s.worker,
            &["operator", "namespace", "create", "-n", "nsa-2"],
        )
        .await,
        "RegisterNamespace",
    );
    // Cluster-wide reads need a rule on "*": the admin has one, the worker not.
    s.cli(&s.admin, &["operator", "namespace", "list"])
        .await
        .assert_success("admin lists namespaces");
    assert_denied(
        &s.cli(&s.worker, &["operator", "namespace", "list"]).await,
        "ListNamespaces",
    );
}

#[tokio::test]
async fn decisions_use_the_body_gzip_last_occurrence_and_refuse_header_mismatch() {
    let s = setup("enforce", "").await;
    let conn = s.conn(&s.worker).await;
    let describe = format!("{WS}/DescribeNamespace");

    // gzip-compressed requests are decided on their content.
    let allowed = conn
        .raw_compressed(&describe, &gzip(&pb::describe_namespace("nsa")), &[])
        .await
        .unwrap();
    assert!(allowed.is_ok(), "{allowed:?}");
    assert_eq!(
        pb::namespace_name(&allowed.message()).as_deref(),
        Some("nsa")
    );
    let denied = conn
        .raw_compressed(&describe, &gzip(&pb::describe_namespace("nsb")), &[])
        .await
        .unwrap();
    assert_status(&denied, code::PERMISSION_DENIED);

    // The namespace field twice: the last one counts, as for the frontend.
    let smuggle = pb::concat(&[pb::field_string(1, "nsa"), pb::field_string(1, "nsb")]);
    let reply = conn.unary(&describe, &smuggle, &[]).await.unwrap();
    assert_status(&reply, code::PERMISSION_DENIED);
    assert!(reply.grpc_message.unwrap_or_default().contains("\"nsb\""));
    let honest = pb::concat(&[pb::field_string(1, "nsb"), pb::field_string(1, "nsa")]);
    let reply = conn.unary(&describe, &honest, &[]).await.unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(pb::namespace_name(&reply.message()).as_deref(), Some("nsa"));

    // The client-asserted header must agree with the body.
    let reply = conn
        .unary(
            &describe,
            &pb::describe_namespace("nsa"),
            &[("temporal-namespace", "nsb")],
        )
        .await
        .unwrap();
    assert_status(&reply, code::INVALID_ARGUMENT);
    assert!(reply.grpc_message.unwrap_or_default().contains("disagrees"));
    let reply = conn
        .unary(
            &describe,
            &pb::describe_namespace("nsa"),
            &[("temporal-namespace", "nsa")],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");

    // Malformed protobuf is refused as the frontend refuses it (INTERNAL,
    // grpc-go's unmarshal text), and never forwarded.
    let reply = conn
        .unary(&describe, &[0x0a, 0x05, b'n'], &[])
        .await
        .unwrap();
    assert_status(&reply, code::INTERNAL);
    assert!(reply
        .grpc_message
        .as_deref()
        .unwrap_or_default()
        .starts_with("grpc: error unmarshalling request: "));
}

#[tokio::test]
async fn unknown_methods_are_denied_unless_a_rule_names_them() {
    let path = format!("{WS}/SomeFutureMethod");
    let extra = format!(
        "[[authz.rule]]\nname = \"future-api\"\nmatch = {{ cn = \"ops-admin\" }}\nnamespaces = [\"*\"]\nmethods = [\"{path}\"]\n"
    );
    let s = setup("enforce", &extra).await;
    let worker = s.conn(&s.worker).await;
    let reply = worker
        .unary(&path, &pb::describe_namespace("nsa"), &[])
        .await
        .unwrap();
    assert_status(&reply, code::PERMISSION_DENIED);
    assert!(reply
        .grpc_message
        .unwrap_or_default()
        .contains("not in this proxy's Temporal method table"),);
    // Named by a rule: forwarded, and the frontend answers for itself.
    let admin = s.conn(&s.admin).await;
    let reply = admin
        .unary(&path, &pb::describe_namespace("nsa"), &[])
        .await
        .unwrap();
    assert_status(&reply, code::UNIMPLEMENTED);
}

#[tokio::test]
async fn identities_without_rules_may_only_connect() {
    let s = setup("enforce", "").await;
    let stranger = s.pki.client.clone();
    let conn = s.conn(&stranger).await;
    let info = conn
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(info.is_ok(), "{info:?}");
    let health = conn
        .unary(
            "/grpc.health.v1.Health/Check",
            &pb::health_check("temporal.api.workflowservice.v1.WorkflowService"),
            &[],
        )
        .await
        .unwrap();
    assert!(health.is_ok(), "{health:?}");
    let reply = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("nsa"),
            &[],
        )
        .await
        .unwrap();
    assert_status(&reply, code::PERMISSION_DENIED);
    assert!(reply
        .grpc_message
        .unwrap_or_default()
        .contains("no authorization rule matches"));
}

#[tokio::test]
async fn audit_mode_forwards_what_enforce_denies_and_logs_it() {
    let audit_log = tempfile::NamedTempFile::new().unwrap();
    let extra = format!(
        "[audit]\nsink = {:?}\n",
        audit_log.path().display().to_string()
    );
    let s = setup("audit", &extra).await;
    let conn = s.conn(&s.worker).await;
    let reply = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("nsb"),
            &[],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "forwarded in audit mode: {reply:?}");
    assert_eq!(pb::namespace_name(&reply.message()).as_deref(), Some("nsb"));
    s.proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("call would be denied"))
                && v["namespace"] == "nsb"
        })
        .await
        .expect("the would-be denial is logged");
    let line = wait_audit_line(audit_log.path(), |v| v["namespace"] == "nsb").await;
    assert_eq!(line["decision"], "audit_deny", "{line}");
    assert_eq!(line["reason"], "not_granted", "{line}");
    assert_eq!(line["grpc_status"], 0, "{line}");
}

async fn wait_audit_line(
    path: &std::path::Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("audit lines are JSON");
            if pred(&v) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no matching audit line in {}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// One JSON line per call with who, what, where, the decision and its
/// rule, the status, bytes each way and the duration.
#[tokio::test]
async fn audit_log_has_one_line_per_call() {
    let audit_log = tempfile::NamedTempFile::new().unwrap();
    let extra = format!(
        "[audit]\nsink = {:?}\n",
        audit_log.path().display().to_string()
    );
    let s = setup("enforce", &extra).await;
    let conn = s.conn(&s.worker).await;
    let ok = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("nsa"),
            &[],
        )
        .await
        .unwrap();
    assert!(ok.is_ok());
    let denied = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("nsb"),
            &[],
        )
        .await
        .unwrap();
    assert_status(&denied, code::PERMISSION_DENIED);

    let allowed = wait_audit_line(audit_log.path(), |v| v["namespace"] == "nsa").await;
    assert_eq!(allowed["method"], format!("{WS}/DescribeNamespace"));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["rule"], "a-workers");
    assert_eq!(allowed["grpc_status"], 0);
    assert_eq!(allowed["identity"]["uri"], WORKER_URI);
    assert_eq!(
        allowed["request_bytes"],
        5 + pb::describe_namespace("nsa").len()
    );
    assert!(allowed["response_bytes"].as_u64().unwrap() > 5);
    assert!(allowed["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(allowed["identity"]["fingerprint"].as_str().unwrap().len() == 64);
    assert!(allowed["duration_ms"].as_f64().is_some());
    assert!(allowed["time"].as_str().is_some());

    let denied = wait_audit_line(audit_log.path(), |v| v["namespace"] == "nsb").await;
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["reason"], "not_granted");
    assert_eq!(denied["grpc_status"], 7);
    assert_eq!(denied["response_bytes"], 0);
}
