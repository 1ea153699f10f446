//! The admin listener: /metrics counts exactly the calls made (a known
//! sequence with a denied call and a refused handshake), /healthz, and
//! /readyz following the upstream and the drain.

mod support;

use std::time::Duration;

use support::grpc::{pb, raw_tls, ClientTls};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";

/// The value of the sample `name{labels...}` whose labels include all of
/// `labels` (each `key="value"`).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|l| set.split(',').any(|p| p == *l))
            .then(|| value.trim().parse().ok())?
    })
}

const POLICY: &str = "[authz]\n[[authz.rule]]\nname = \"readers\"\nmatch = { cn = \"good-client\" }\nnamespaces = [\"default\"]\nroles = [\"reader\"]\n";

#[tokio::test]
async fn metrics_count_exactly_the_calls_made() {
    let temporal = TemporalServer::start(&["other"]).await;
    let pki = TestPki::new();
    let proxy =
        ProxyProcess::start(&format!("{}\n{POLICY}", config(&pki, &temporal.url(), ""))).await;

    // A refused handshake: no client certificate.
    let no_cert = ClientTls::new(&pki.ca, "localhost");
    if let Ok(mut s) = raw_tls(proxy.addr, &no_cert).await {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 64];
        let _ = s.read(&mut b).await;
    }
    // Two GetSystemInfo, one allowed DescribeNamespace, one denied.
    let conn = proxy.grpc(&pki, &pki.client).await;
    for _ in 0..2 {
        let r = conn
            .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
            .await
            .unwrap();
        assert!(r.is_ok());
    }
    let ok = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("default"),
            &[],
        )
        .await
        .unwrap();
    assert!(ok.is_ok());
    let denied = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("other"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(denied.grpc_status, Some(7));
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"] == "TLS handshake refused"
        })
        .await
        .expect("refusal logged");

    let (status, m) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let p = "temporal_mtls_proxy_";
    let calls = format!("{p}calls_total");
    assert_eq!(
        sample(
            &m,
            &calls,
            &[
                "method=\"GetSystemInfo\"",
                "namespace=\"\"",
                "grpc_status=\"OK\""
            ]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &calls,
            &[
                "method=\"DescribeNamespace\"",
                "namespace=\"default\"",
                "grpc_status=\"OK\""
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &calls,
            &[
                "method=\"DescribeNamespace\"",
                "namespace=\"other\"",
                "grpc_status=\"PERMISSION_DENIED\""
            ]
        ),
        Some(1.0)
    );
    let decisions = format!("{p}authz_decisions_total");
    assert_eq!(
        sample(&m, &decisions, &["rule=\"readers\"", "decision=\"allow\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &decisions,
            &["rule=\"authenticated\"", "decision=\"allow\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, &decisions, &["rule=\"none\"", "decision=\"deny\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!("{p}handshake_failures_total"),
            &["reason=\"no_client_certificate\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, &format!("{p}connections_accepted_total"), &[]),
        Some(2.0)
    );
    assert_eq!(sample(&m, &format!("{p}connections_open"), &[]), Some(1.0));
    assert_eq!(
        sample(
            &m,
            &format!("{p}call_duration_seconds_count"),
            &["method=\"DescribeNamespace\""]
        ),
        Some(2.0)
    );
    assert!(
        sample(&m, &format!("{p}certificate_expiry_min_seconds"), &[])
            .is_some_and(|s| s > 86_400.0)
    );
    assert!(sample(&m, &format!("{p}upstream_connections_open"), &[]).is_some_and(|n| n >= 1.0));
}

#[tokio::test]
async fn readyz_follows_the_upstream_and_healthz_the_process() {
    let mut temporal = TemporalServer::start_with(TemporalOpts::default()).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "").replace(
        "[admin]\naddress = \"127.0.0.1:0\"\n",
        "[admin]\naddress = \"127.0.0.1:0\"\nupstream_check_interval = \"200ms\"\nupstream_check_timeout = \"1s\"\n",
    ))
    .await;
    let wait_ready = |want: u16| {
        let proxy = &proxy;
        async move {
            for _ in 0..100 {
                let (status, body) = proxy.admin_get("/readyz").await;
                if status == want {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("readyz never answered {want}");
        }
    };
    // The `ready` gauge says what /readyz says, for alerts without a probe.
    let ready_gauge = || {
        let proxy = &proxy;
        async move {
            let (_, metrics) = proxy.admin_get("/metrics").await;
            sample(&metrics, "temporal_mtls_proxy_ready", &[])
        }
    };
    assert!(wait_ready(200).await.contains("ok upstream"));
    assert_eq!(ready_gauge().await, Some(1.0));
    assert_eq!(proxy.admin_get("/healthz").await.0, 200);

    temporal.stop().await;
    let body = wait_ready(503).await;
    assert!(body.contains("fail upstream"), "{body}");
    assert_eq!(ready_gauge().await, Some(0.0));
    assert_eq!(
        proxy.admin_get("/healthz").await.0,
        200,
        "the process still serves"
    );

    temporal.restart().await;
    assert!(wait_ready(200).await.contains("ok upstream"));
    assert_eq!(ready_gauge().await, Some(1.0));
}

#[tokio::test]
async fn sigterm_turns_readiness_off_while_calls_drain() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    // SIGTERM: the binary as a child process.
    let proxy = ProxyProcess::spawn(&format!(
        "{}\n[shutdown]\ndrain_timeout = \"30s\"\nunready_delay = \"1s\"\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let poll = tokio::spawn(async move {
        conn.poll_workflow_task_queue("default", "drain-ready", Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    // Readiness goes first; the listener still accepts during unready_delay.
    let mut saw_unready = false;
    for _ in 0..20 {
        let (status, body) = proxy.admin_get("/readyz").await;
        if status == 503 {
            assert!(body.contains("draining"), "{body}");
            saw_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_unready);
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_ok(),
        "listener closed before readiness had time to propagate"
    );
    let reply = poll.await.unwrap().unwrap();
    assert!(reply.is_ok(), "{reply:?}");
}

const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// By default Health/Check goes to the frontend (the SDKs' connect check
/// gets the frontend's own answer); `[health] local = true` answers from
/// the proxy's readiness instead.
#[tokio::test]
async fn health_checks_pass_through_or_answer_locally() {
    let mut temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let check = pb::health_check("temporal.api.workflowservice.v1.WorkflowService");

    let forwarded = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let conn = forwarded.grpc(&pki, &pki.client).await;
    let r = conn.unary(HEALTH, &check, &[]).await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        pb::health_status(&r.message()),
        Some(1),
        "SERVING from the frontend"
    );

    let local = ProxyProcess::start(&format!(
        "{}\n[health]\nlocal = true\n",
        config(&pki, &temporal.url(), "").replace(
            "[admin]\naddress = \"127.0.0.1:0\"\n",
            "[admin]\naddress = \"127.0.0.1:0\"\nupstream_check_interval = \"200ms\"\nupstream_check_timeout = \"1s\"\n",
        )
    ))
    .await;
    let lconn = local.grpc(&pki, &pki.client).await;
    let mut status = None;
    for _ in 0..50 {
        let r = lconn.unary(HEALTH, &check, &[]).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
        status = pb::health_status(&r.message());
        if status == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(1), "SERVING once ready");

    temporal.stop().await;
    // Forwarded: the frontend is gone, so the check fails as UNAVAILABLE.
    let r = conn.unary(HEALTH, &check, &[]).await.unwrap();
    assert_eq!(r.grpc_status, Some(14), "{r:?}");
    // Local: answered by the proxy, NOT_SERVING once readiness sees it.
    for _ in 0..50 {
        let r = lconn.unary(HEALTH, &check, &[]).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
        status = pb::health_status(&r.message());
        if status == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(2), "NOT_SERVING while the upstream is down");
}

/// Readiness follows the certificate being served: after a rotation, the
/// expiry of the certificate the process started with does not turn
/// readiness false (it re-checked the start-up certificate forever before).
#[tokio::test]
async fn readiness_follows_the_rotated_certificate_past_the_old_ones_expiry() {
    let temporal = TemporalServer::start_with(TemporalOpts::default()).await;
    let pki = TestPki::new();
    let live_cert = pki.dir.path().join("live.pem");
    let live_key = pki.dir.path().join("live-key.pem");
    let valid_for = Duration::from_secs(6);
    let (short, short_key) =
        pki.server_cert_expiring_in("short-lived", &["localhost", "127.0.0.1"], valid_for);
    let expires = std::time::Instant::now() + valid_for;
    std::fs::copy(&short, &live_cert).unwrap();
    std::fs::copy(&short_key, &live_key).unwrap();
    let toml = config(&pki, &temporal.url(), "")
        .replace(
            &format!("cert = {:?}", pki.server_cert.display().to_string()),
            &format!("cert = {:?}", live_cert.display().to_string()),
        )
        .replace(
            &format!("key = {:?}", pki.server_key.display().to_string()),
            &format!("key = {:?}", live_key.display().to_string()),
        )
        .replace(
            "[admin]\naddress = \"127.0.0.1:0\"\n",
            "[admin]\naddress = \"127.0.0.1:0\"\nupstream_check_interval = \"200ms\"\n",
        );
    // SIGHUP: the binary as a child process.
    let proxy = ProxyProcess::spawn(&toml).await;
    let mut ready = false;
    for _ in 0..100 {
        if proxy.admin_get("/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "never ready with the short-lived certificate");

    // Rotate to a long-lived certificate, then let the first one expire.
    let (long, long_key) = pki.server_cert_for("long-lived", &["localhost", "127.0.0.1"]);
    std::fs::copy(&long_key, &live_key).unwrap();
    std::fs::copy(&long, &live_cert).unwrap();
    proxy.signal("HUP");
    proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reloaded certificates"))
        })
        .await
        .expect("the rotation is applied");
    tokio::time::sleep_until((expires + Duration::from_secs(2)).into()).await;
    // Several probe rounds after the expiry of the start-up certificate.
    for _ in 0..5 {
        let (status, body) = proxy.admin_get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
