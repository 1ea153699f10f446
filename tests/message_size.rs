//! Message-size limits per message and per direction, through the real
//! frontend: an over-size request is refused before it is forwarded (as
//! soon as its declared length is read), an over-size response ends the call
//! with RESOURCE_EXHAUSTED, and the connection stays usable after either.

mod support;

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;

use support::grpc::{channel_body, pb, GrpcConn};
use support::pki::{TestPki, GOOD_CLIENT_SPIFFE};
use support::proxy::{self, config, ProxyProcess};
use support::temporal::TemporalServer;
use temporal_mtls_proxy::logging::limit::BURST;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

/// A DescribeNamespace request padded with an unknown field to `size` bytes.
fn padded_describe(ns: &str, size: usize) -> Vec<u8> {
    let base = pb::describe_namespace(ns);
    let pad = size - base.len() - 4;
    pb::concat(&[base, pb::field_bytes(1000, &vec![b'p'; pad])])
}

async fn assert_usable(conn: &GrpcConn) {
    let ok = conn
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(
        ok.is_ok(),
        "the connection is not usable after the refusal: {ok:?}"
    );
}

#[tokio::test]
async fn oversize_request_is_refused_and_the_next_call_succeeds() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    // Once without and once with authorization (which reads the namespace
    // from the message itself): the same refusal either way.
    for authz in ["", "[authz]\n[[authz.rule]]\nname = \"all\"\nmatch = { cn = \"good-client\" }\nnamespaces = [\"*\"]\nroles = [\"admin\"]\n"] {
        let proxy = ProxyProcess::start(&format!(
            "{}\n[limits]\nmax_request_message = \"2KiB\"\n{authz}",
            config(&pki, &temporal.url(), "")
        ))
        .await;
        let conn = proxy.grpc(&pki, &pki.client).await;
        let fits = conn
            .unary(&format!("{WS}/DescribeNamespace"), &padded_describe("default", 2048), &[])
            .await
            .unwrap();
        assert!(fits.is_ok(), "a message at the limit: {fits:?}");
        let reply = conn
            .unary(&format!("{WS}/DescribeNamespace"), &padded_describe("default", 3000), &[])
            .await
            .unwrap();
        assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
        let message = reply.grpc_message.clone().unwrap_or_default();
        assert!(
            message.starts_with("grpc: received message larger than max (3000 vs. 2048)"),
            "{message}"
        );
        assert_usable(&conn).await;
    }
}

/// The declared length is enough: the rest of the message is never waited
/// for (here it is never even sent).
#[tokio::test]
async fn declared_length_over_the_limit_is_refused_at_the_prefix() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let (tx, body) = channel_body(4);
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(10u32 << 20).to_be_bytes());
    tx.send(Ok(Frame::data(Bytes::from(prefix)))).await.unwrap();
    let req = conn
        .request_builder(&format!("{WS}/StartWorkflowExecution"), &[])
        .body(body)
        .unwrap();
    let reply = conn
        .request_timeout(req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
    assert!(reply
        .grpc_message
        .unwrap_or_default()
        .starts_with("grpc: received message larger than max (10485760 vs. 4194304)"));
    drop(tx);
    assert_usable(&conn).await;
}

#[tokio::test]
async fn oversize_response_ends_the_call_with_resource_exhausted() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    // Sizes of two real responses, measured directly on the frontend.
    let direct = GrpcConn::connect(temporal.addr, None).await.unwrap();
    let small = direct
        .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
        .await
        .unwrap()
        .message()
        .len();
    let large = direct
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("default"),
            &[],
        )
        .await
        .unwrap()
        .message()
        .len();
    assert!(small < large, "{small} {large}");
    let limit = (small + large) / 2;
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\nmax_response_message = {limit}\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("default"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.http_status, 200);
    assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
    assert!(
        reply.messages.is_empty(),
        "no part of the message was passed on"
    );
    let message = reply.grpc_message.unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "grpc: received message larger than max ({large} vs. {limit})"
        )),
        "{message}"
    );
    assert_usable(&conn).await;
}

/// A compressed message small on the wire but over the limit once
/// decompressed is refused too (where the proxy decompresses: namespace
/// authorization).
#[tokio::test]
async fn decompressed_size_counts_where_the_proxy_decompresses() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\nmax_request_message = \"4KiB\"\n[authz]\n[[authz.rule]]\nname = \"all\"\nmatch = {{ cn = \"good-client\" }}\nnamespaces = [\"*\"]\nroles = [\"admin\"]\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let big = padded_describe("default", 64 * 1024);
    let compressed = support::grpc::gzip(&big);
    assert!(compressed.len() < 4096);
    let reply = conn
        .raw_compressed(&format!("{WS}/DescribeNamespace"), &compressed, &[])
        .await
        .unwrap();
    assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
    assert!(reply
        .grpc_message
        .unwrap_or_default()
        .contains("after decompression"));
    assert_usable(&conn).await;
}

/// The value of the exposition line for exactly `series` (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    proxy::sample(metrics, series).unwrap_or(0.0)
}

/// An over-size request is logged at warn level with who sent what (peer,
/// client identity, method); a flood of them is rate-limited in the log
/// (the rest counted as suppressed) but every one is counted in the metric.
#[tokio::test]
async fn oversize_requests_are_logged_with_peer_identity_and_method_rate_limited() {
    const REFUSED: &str = "gRPC message over the size limit refused (RESOURCE_EXHAUSTED)";
    const REFUSALS: &str =
        r#"temporal_mtls_proxy_message_size_refusals_total{direction="request"}"#;
    const SUPPRESSED: &str =
        r#"temporal_mtls_proxy_log_lines_suppressed_total{site="message_too_large"}"#;
    const FLOOD: usize = 50;
    let method = format!("{WS}/DescribeNamespace");
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\nmax_request_message = \"2KiB\"\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let refused = |v: &serde_json::Value| v["message"] == REFUSED;

    let started = std::time::Instant::now();
    let reply = conn
        .unary(&method, &padded_describe("default", 3000), &[])
        .await
        .unwrap();
    assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
    let line = proxy
        .wait_log(Duration::from_secs(10), refused)
        .await
        .unwrap_or_else(|| panic!("no refusal logged; logs: {:#?}", proxy.logs()));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["method"], method.as_str(), "{line}");
    assert_eq!(line["direction"], "request", "{line}");
    // The identity's display name: the good client's SPIFFE ID (before its
    // CN), as on its connection's own line.
    assert_eq!(line["identity"], GOOD_CLIENT_SPIFFE, "{line}");
    let accepted = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "connection accepted"
        })
        .await
        .expect("connection line");
    assert_eq!(accepted["identity"], GOOD_CLIENT_SPIFFE, "{accepted}");
    let peer = line["peer"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(peer.starts_with("127.0.0.1:"), "{line}");
    assert_eq!(line["peer"], accepted["peer"], "{line}\n{accepted}");

    for _ in 0..FLOOD {
        let reply = conn
            .unary(&method, &padded_describe("default", 3000), &[])
            .await
            .unwrap();
        assert_eq!(reply.grpc_status, Some(8), "{reply:?}");
    }
    // The refusals were logged within this many distinct seconds at most.
    let seconds = started.elapsed().as_secs() + 2;
    assert_usable(&conn).await;
    let total = (FLOOD + 1) as f64;
    // Counted when each call ends: wait until all of them are.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, metrics) = proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        if sample(&metrics, REFUSALS) >= total || std::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&metrics, REFUSALS),
        total,
        "every refusal is counted"
    );
    let suppressed = sample(&metrics, SUPPRESSED);
    assert!(suppressed > 0.0, "nothing suppressed:\n{metrics}");
    // Every refusal was either logged or counted as suppressed (the lines
    // reach the captured log through the log writer's thread).
    let logged = || proxy.logs().iter().filter(|v| refused(v)).count() as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while logged() + suppressed < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = logged();
    assert_eq!(
        lines + suppressed,
        total,
        "{lines} logged, {suppressed} suppressed"
    );
    let allowed = (BURST * seconds) as f64;
    assert!(
        lines <= allowed && lines < total,
        "{lines} of {total} refusals logged (at most {allowed} allowed): not rate-limited"
    );
    // The flood is summarised in its own line.
    let summary = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("similar log lines suppressed"))
                && v["site"] == "message_too_large"
        })
        .await
        .unwrap_or_else(|| panic!("no summary line; logs: {:#?}", proxy.logs()));
    assert!(summary["suppressed"].as_u64().unwrap_or(0) > 0, "{summary}");
}
