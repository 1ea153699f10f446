//! Real Temporal traffic through the proxy over mTLS: the `temporal` CLI and
//! the Python SDK against the real dev server, and what the proxy carries
//! unchanged (messages, trailers, status details, `grpc-timeout`).

mod support;

use std::time::Duration;

use support::cli::{self, CliTls};
use support::grpc::{pb, ClientTls, GrpcConn};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

fn cli_tls(pki: &TestPki) -> CliTls {
    CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost")
}

fn grpc_tls(pki: &TestPki) -> ClientTls {
    ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost")
}

#[tokio::test]
async fn cli_describes_and_lists_namespaces_and_starts_and_lists_workflows() {
    let temporal = TemporalServer::start(&["extra1"]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let addr = proxy.addr.to_string();
    let tls = cli_tls(&pki);

    let described = cli::describe_namespace(&addr, Some(&tls), "extra1").await;
    described.assert_success("describe extra1");
    assert_eq!(described.json()["namespaceInfo"]["name"], "extra1");

    let listed = cli::list_namespaces(&addr, Some(&tls)).await;
    listed.assert_success("list namespaces");
    let names = cli::namespace_names(&listed);
    assert!(
        names.contains(&"default".to_owned()) && names.contains(&"extra1".to_owned()),
        "{names:?}"
    );

    let started = cli::start_workflow(
        &addr,
        Some(&tls),
        "extra1",
        "Greeting",
        "q-cli",
        "wf-through-proxy",
    )
    .await;
    started.assert_success("start workflow");
    // Visibility in the dev server is eventually consistent.
    let mut ids = Vec::new();
    for _ in 0..50 {
        let out = cli::list_workflows(&addr, Some(&tls), "extra1").await;
        out.assert_success("list workflows");
        ids = cli::workflow_ids(&out);
        if ids.contains(&"wf-through-proxy".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ids.contains(&"wf-through-proxy".to_owned()), "{ids:?}");
}

/// A real SDK worker: long polls, task completions, activity heartbeats and
/// many calls on one connection, to completion of several workflows.
#[tokio::test]
async fn sdk_worker_runs_workflows_with_activities_to_completion() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let out = support::python::run_workflows(
        &proxy.addr.to_string(),
        "default",
        Some(&cli_tls(&pki)),
        5,
        Duration::from_secs(120),
    )
    .await;
    out.assert_success("python worker through the proxy");
    let result = out.json();
    assert_eq!(result["ok"], true, "{result}");
    let results = result["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{result}");
    assert!(
        results
            .iter()
            .all(|r| r.as_str().is_some_and(|s| s.starts_with("Hello, "))),
        "{result}"
    );
}

/// Responses, error statuses with their details, and messages arrive
/// byte-for-byte as the frontend sent them.
#[tokio::test]
async fn responses_and_error_details_pass_unchanged() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let direct = GrpcConn::connect(temporal.addr, None).await.unwrap();
    let proxied = GrpcConn::connect(proxy.addr, Some(&grpc_tls(&pki)))
        .await
        .unwrap();

    let path = format!("{WS}/DescribeNamespace");
    let a = direct
        .unary(&path, &pb::describe_namespace("default"), &[])
        .await
        .unwrap();
    let b = proxied
        .unary(&path, &pb::describe_namespace("default"), &[])
        .await
        .unwrap();
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(a.messages, b.messages);

    // NOT_FOUND with a google.rpc.Status in grpc-status-details-bin.
    let a = direct
        .unary(&path, &pb::describe_namespace("no-such-ns"), &[])
        .await
        .unwrap();
    let b = proxied
        .unary(&path, &pb::describe_namespace("no-such-ns"), &[])
        .await
        .unwrap();
    assert_eq!(b.grpc_status, Some(5), "{b:?}");
    assert_eq!(a.grpc_status, b.grpc_status);
    assert_eq!(a.grpc_message, b.grpc_message);
    let details = b
        .metadata("grpc-status-details-bin")
        .expect("status details carried");
    assert_eq!(a.metadata("grpc-status-details-bin"), Some(details));
}

/// `grpc-timeout` reaches the frontend: a poll with a 3 s deadline comes
/// back (empty) when the frontend honours it, not after its usual minute.
#[tokio::test]
async fn grpc_timeout_is_forwarded() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let conn = GrpcConn::connect(proxy.addr, Some(&grpc_tls(&pki)))
        .await
        .unwrap();
    let reply = conn
        .poll_workflow_task_queue("default", "q-deadline", Duration::from_secs(3))
        .await
        .unwrap();
    // The frontend answers before the deadline with an empty poll result
    // (or DEADLINE_EXCEEDED); either way it knew the deadline.
    assert!(reply.is_ok() || reply.grpc_status == Some(4), "{reply:?}");
    assert!(
        reply.elapsed < Duration::from_secs(20),
        "{:?}",
        reply.elapsed
    );
}

/// Request metadata reaches the upstream unchanged and hop-by-hop headers do
/// not (a fake upstream echoes what it received; the real server cannot).
#[tokio::test]
async fn metadata_passes_and_trailers_come_back() {
    let upstream = support::fake_upstream::FakeUpstream::start().await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = GrpcConn::connect(proxy.addr, Some(&grpc_tls(&pki)))
        .await
        .unwrap();
    let reply = conn
        .unary(
            support::fake_upstream::ECHO,
            b"payload",
            &[
                ("grpc-timeout", "70S"),
                ("temporal-namespace", "default"),
                ("client-name", "temporal-python"),
                ("x-custom-bin", "AAEC"),
                (
                    "x-forwarded-client-cert",
                    "Hash=forged;Subject=\"CN=admin\"",
                ),
            ],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    // The client's own identity claim is replaced by the verified one.
    let fingerprint: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pki.client.der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let xfcc = reply
        .metadata("echo-x-forwarded-client-cert")
        .expect("identity header");
    assert!(
        xfcc.starts_with(&format!("Hash={fingerprint};Subject=\"")),
        "{xfcc}"
    );
    assert!(
        xfcc.contains(";URI=spiffe://example.org/ns/payments/sa/worker"),
        "{xfcc}"
    );
    assert!(!xfcc.contains("forged"), "{xfcc}");
    assert_eq!(reply.message(), &b"payload"[..]);
    for (name, value) in [
        ("echo-grpc-timeout", "70S"),
        ("echo-temporal-namespace", "default"),
        ("echo-client-name", "temporal-python"),
        ("echo-x-custom-bin", "AAEC"),
        ("echo-te", "trailers"),
        ("echo-content-type", "application/grpc"),
    ] {
        assert_eq!(
            reply.metadata(name).as_deref(),
            Some(value),
            "{name}: {reply:?}"
        );
    }
}

/// A response the upstream breaks off part-way still ends with a gRPC
/// status, never as a reset or a silently truncated call; so does one that
/// ends without grpc-status. The connection stays usable.
#[tokio::test]
async fn broken_upstream_responses_end_with_a_status() {
    let upstream = support::fake_upstream::FakeUpstream::start().await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = GrpcConn::connect(proxy.addr, Some(&grpc_tls(&pki)))
        .await
        .unwrap();

    let reset = conn
        .unary(support::fake_upstream::RESET_MID_STREAM, b"", &[])
        .await
        .unwrap();
    assert_eq!(reset.http_status, 200);
    assert_eq!(reset.grpc_status, Some(14), "{reset:?}");
    assert!(
        reset
            .grpc_message
            .as_deref()
            .unwrap_or("")
            .contains("during the response"),
        "{reset:?}"
    );

    let no_status = conn
        .unary(support::fake_upstream::NO_STATUS, b"", &[])
        .await
        .unwrap();
    assert_eq!(no_status.grpc_status, Some(13), "{no_status:?}");
    assert_eq!(
        no_status.grpc_message.as_deref(),
        Some("upstream ended the response without grpc-status")
    );

    let ok = conn
        .unary(support::fake_upstream::ECHO, b"again", &[])
        .await
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
}
