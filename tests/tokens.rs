//! Workload identity by bearer tokens, through the proxy in front of the
//! real Temporal dev server: a test issuer made at run time (RSA and EC
//! keys, a JWKS file, and an https issuer with OpenID discovery on
//! loopback), rules that match tokens alone or with a certificate, every
//! kind of bad token refused UNAUTHENTICATED with its reason, key rotations
//! picked up without a restart, the real `temporal` CLI with `--api-key`,
//! and workers of the official Python (`api_key=`) and TypeScript (`apiKey`)
//! SDKs that replace their token while they run
//! (tests/python/api_key.py, tests/typescript/api_key.js).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::cli;
use support::grpc::{code, pb, ClientTls, GrpcConn, GrpcReply};
use support::issuer::{b64, claims, jwks, now, IssuerServer, Key};
use support::pki::{ClientCert, ClientSpec, TestPki};
use support::proxy::{config, sample, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";
const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const SA_NSA: &str = "system:serviceaccount:nsa:worker";
const SA_NSB: &str = "system:serviceaccount:nsb:worker";

/// Rules: tokens of the cluster's service accounts in namespace nsa may
/// read and write nsa; the worker certificate of nsb together with nsb's
/// service account token may read nsb.
const POLICY: &str = r#"
[authz]
[[authz.rule]]
name = "nsa-service-accounts"
match = { token = { issuer = "cluster", sub = "system:serviceaccount:nsa:*", claims = { "kubernetes.io/namespace" = "nsa" } } }
namespaces = ["nsa"]
roles = ["reader", "writer"]

[[authz.rule]]
name = "nsb-worker-and-token"
match = { cn = "worker-b", token = { issuer = "cluster", sub = "system:serviceaccount:nsb:worker" } }
namespaces = ["nsb"]
roles = ["reader"]
"#;

struct Setup {
    _temporal: TemporalServer,
    pki: TestPki,
    proxy: ProxyProcess,
    dir: tempfile::TempDir,
    /// The cluster issuer's keys (its JWKS file has both).
    rsa: Key,
    ec: Key,
    /// A key of the other issuer.
    other: Key,
    worker_b: ClientCert,
}

impl Setup {
    async fn start() -> Setup {
        let temporal = TemporalServer::start(&["nsa", "nsb"]).await;
        let pki = TestPki::new();
        let worker_b = pki.client_cert("worker-b", ClientSpec::cn("worker-b"));
        let dir = tempfile::tempdir().unwrap();
        let (rsa, ec, other) = (Key::rsa("r1"), Key::ec("e1"), Key::rsa("o1"));
        std::fs::write(dir.path().join("cluster.json"), jwks(&[&rsa, &ec])).unwrap();
        std::fs::write(dir.path().join("other.json"), jwks(&[&other])).unwrap();
        let extra = format!(
            r#"
[audit]
sink = {audit:?}

[[tokens.issuer]]
name = "cluster"
issuer = "{ISS}"
audiences = ["temporal"]
jwks = {cluster:?}
max_lifetime = "1h"
clock_skew = "5s"

[[tokens.issuer]]
name = "other"
issuer = "https://other.example"
audiences = ["temporal"]
jwks = {other:?}
{POLICY}"#,
            audit = path(&dir.path().join("audit.log")),
            cluster = path(&dir.path().join("cluster.json")),
            other = path(&dir.path().join("other.json")),
        );
        let text = optional_certificates(&config(&pki, &temporal.url(), &extra));
        let proxy = ProxyProcess::start(&text).await;
        Setup {
            _temporal: temporal,
            pki,
            proxy,
            dir,
            rsa,
            ec,
            other,
            worker_b,
        }
    }

    /// A connection without a client certificate.
    async fn anonymous(&self) -> GrpcConn {
        GrpcConn::connect(
            self.proxy.addr,
            Some(&ClientTls::new(&self.pki.ca, "localhost")),
        )
        .await
        .unwrap()
    }

    async fn with_cert(&self, who: &ClientCert) -> GrpcConn {
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

    /// A good token of the cluster issuer for `sub`, signed with RSA.
    fn token(&self, sub: &str) -> String {
        let mut c = claims(ISS, sub, "temporal");
        c["kubernetes.io"] = json!({"namespace": sub.split(':').nth(2).unwrap_or("")});
        self.rsa.token(&c)
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `tls.client_certificate = "optional"` in a config from `config()`.
fn optional_certificates(text: &str) -> String {
    text.replacen(
        "\n[upstream]",
        "client_certificate = \"optional\"\n\n[upstream]",
        1,
    )
}

async fn describe(conn: &GrpcConn, ns: &str, headers: &[(&str, &str)]) -> GrpcReply {
    conn.unary(
        &format!("{WS}/DescribeNamespace"),
        &pb::describe_namespace(ns),
        headers,
    )
    .await
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_code(reply: &GrpcReply, code: i32, needle: &str) {
    let message = reply.grpc_message.clone().unwrap_or_default();
    assert_eq!(reply.grpc_status, Some(code), "{message}");
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[tokio::test]
async fn token_rules_allow_and_deny_calls_to_the_real_frontend() {
    let s = Setup::start().await;
    let anonymous = s.anonymous().await;
    let token_a = s.token(SA_NSA);

    // A service account token alone: its namespace, nothing else.
    let ok = describe(&anonymous, "nsa", &[("authorization", &bearer(&token_a))]).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(pb::namespace_name(&ok.message()).as_deref(), Some("nsa"));
    // The EC key of the same issuer verifies too.
    let mut c = claims(ISS, SA_NSA, "temporal");
    c["kubernetes.io"] = json!({"namespace": "nsa"});
    let ec_token = s.ec.token(&c);
    let ok = describe(&anonymous, "nsa", &[("authorization", &bearer(&ec_token))]).await;
    assert!(ok.is_ok(), "{ok:?}");
    let denied = describe(&anonymous, "nsb", &[("authorization", &bearer(&token_a))]).await;
    assert_code(
        &denied,
        code::PERMISSION_DENIED,
        "permission denied: token sub \"system:serviceaccount:nsa:worker\" of issuer \"cluster\" may not call DescribeNamespace on namespace \"nsb\"",
    );
    // The claim must match too: the same sub with another namespace claim.
    let mut wrong_claim = claims(ISS, SA_NSA, "temporal");
    wrong_claim["kubernetes.io"] = json!({"namespace": "nsb"});
    let reply = describe(
        &anonymous,
        "nsa",
        &[("authorization", &bearer(&s.rsa.token(&wrong_claim)))],
    )
    .await;
    assert_code(
        &reply,
        code::PERMISSION_DENIED,
        "no authorization rule matches this token",
    );
    // What SDKs call on connect is open to every verified token.
    let info = anonymous
        .unary(
            &format!("{WS}/GetSystemInfo"),
            &[],
            &[("authorization", &bearer(&token_a))],
        )
        .await
        .unwrap();
    assert!(info.is_ok(), "{info:?}");

    // No certificate and no token (or a token in another header).
    for headers in [vec![], vec![("x-api-key", token_a.as_str())]] {
        let reply = describe(&anonymous, "nsa", &headers).await;
        assert_code(
            &reply,
            code::UNAUTHENTICATED,
            "no client certificate and no bearer token",
        );
    }

    // A rule with a certificate field and a token needs both.
    let worker_b = s.with_cert(&s.worker_b).await;
    let token_b = s.token(SA_NSB);
    let ok = describe(&worker_b, "nsb", &[("authorization", &bearer(&token_b))]).await;
    assert!(ok.is_ok(), "{ok:?}");
    let reply = describe(&worker_b, "nsb", &[]).await;
    assert_code(
        &reply,
        code::PERMISSION_DENIED,
        "worker-b may not call DescribeNamespace on namespace \"nsb\": no authorization rule matches this certificate",
    );
    let reply = describe(&anonymous, "nsb", &[("authorization", &bearer(&token_b))]).await;
    assert_code(
        &reply,
        code::PERMISSION_DENIED,
        "token sub \"system:serviceaccount:nsb:worker\"",
    );

    // The handshakes, by the kind of client: one connection without a
    // certificate, one with.
    let (status, metrics) = s.proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for (client, n) in [("token_only", 1), ("certificate", 1)] {
        let series = format!("temporal_mtls_proxy_handshakes_total{{client=\"{client}\"}} {n}");
        assert!(
            metrics.lines().any(|l| l == series),
            "no {series:?} in\n{metrics}"
        );
    }

    // The audit lines name the token's issuer and subject, never the token.
    let audit = s.dir.path().join("audit.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 9 || Instant::now() > deadline {
            assert!(!text.contains(&token_a[..40]), "a token in the audit log");
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let both = lines
        .iter()
        .find(|l| l["namespace"] == "nsb" && l["decision"] == "allow")
        .unwrap_or_else(|| panic!("no allowed nsb call in {lines:#?}"));
    assert_eq!(both["token"]["issuer"], "cluster");
    assert_eq!(both["token"]["sub"], SA_NSB);
    assert_eq!(both["rule"], "nsb-worker-and-token");
    assert!(both["identity"]["subject"]
        .as_str()
        .unwrap()
        .contains("worker-b"));
    let refused = lines
        .iter()
        .find(|l| l["reason"] == "no_credentials")
        .unwrap_or_else(|| panic!("no refused call in {lines:#?}"));
    assert_eq!(refused["grpc_status"], 16);
    assert!(refused["identity"].is_null() && refused["token"].is_null());
}

/// A token with `header` and `claims`, signed by `key` (whatever the
/// header's alg says).
fn signed(key: &Key, header: serde_json::Value, claims: &serde_json::Value) -> String {
    key.sign(&header, claims)
}

/// HS256 over `header.claims` with `secret`.
fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated_with_its_reason() {
    let s = Setup::start().await;
    let conn = s.anonymous().await;
    let good = || {
        let mut c = claims(ISS, SA_NSA, "temporal");
        c["kubernetes.io"] = json!({"namespace": "nsa"});
        c
    };
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good();
        f(&mut c);
        c
    };
    let t = now();
    let rs = |c: &serde_json::Value| s.rsa.token(c);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "alg none",
            vec![format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good().to_string().as_bytes())
            )],
            "algorithm \"none\" not allowed",
        ),
        (
            "HS256 with the RSA public key as the secret",
            vec![hs256(&s.rsa.rsa_public_der(), &good())],
            "algorithm \"HS256\" not allowed",
        ),
        (
            "an EC key with an RS256 header",
            vec![signed(&s.ec, json!({"alg": "RS256", "kid": "e1"}), &good())],
            "key \"e1\" of issuer \"cluster\" is an EC P-256 key, which cannot verify RS256",
        ),
        (
            "a kid of another issuer",
            vec![s.other.token(&good())],
            "unknown key id \"o1\" for issuer \"cluster\"",
        ),
        (
            "expired",
            vec![rs(&with(&|c| {
                c["iat"] = json!(t - 1200);
                c["nbf"] = json!(t - 1200);
                c["exp"] = json!(t - 600);
            }))],
            "token expired at ",
        ),
        (
            "nbf in the future",
            vec![rs(&with(&|c| {
                c["nbf"] = json!(t + 600);
                c["exp"] = json!(t + 1200);
            }))],
            "token not valid before ",
        ),
        (
            "lifetime over max_lifetime",
            vec![rs(&with(&|c| c["exp"] = json!(t + 7200)))],
            "exceeds max_lifetime 1h",
        ),
        (
            "wrong aud",
            vec![rs(&with(&|c| c["aud"] = json!("vault")))],
            "audience \"vault\" not accepted",
        ),
        (
            "wrong iss",
            vec![rs(&with(&|c| c["iss"] = json!("https://evil.example")))],
            "issuer \"https://evil.example\" not configured",
        ),
        (
            "no exp",
            vec![rs(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }))],
            "token has no \"exp\" claim",
        ),
        (
            "a crit header",
            vec![signed(
                &s.rsa,
                json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]}),
                &good(),
            )],
            "crit",
        ),
        (
            "a JWE (5 parts)",
            vec!["aaaa.bbbb.cccc.dddd.eeee".into()],
            "malformed token",
        ),
        ("bad base64", vec!["ey!!.e30.abc".into()], "malformed token"),
        (
            "an over-long token",
            vec!["a".repeat(17 * 1024)],
            "token over 16 KiB",
        ),
        (
            "two authorization headers",
            vec![rs(&good()), rs(&good())],
            "two authorization headers",
        ),
    ];
    for (what, tokens, reason) in &cases {
        let values: Vec<String> = tokens.iter().map(|t| bearer(t)).collect();
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        let reply = describe(&conn, "nsa", &headers).await;
        let message = reply.grpc_message.clone().unwrap_or_default();
        assert_eq!(
            reply.grpc_status,
            Some(code::UNAUTHENTICATED),
            "{what}: {message}"
        );
        assert!(
            message.starts_with("invalid bearer token: ") && message.contains(reason),
            "{what}: {reason:?} not in {message:?}"
        );
    }
    // A good token still goes through on the same connection.
    let ok = describe(&conn, "nsa", &[("authorization", &bearer(&rs(&good())))]).await;
    assert!(ok.is_ok(), "{ok:?}");
    // Refusals are counted by reason, without anything of the token.
    let (status, metrics) = s.proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("temporal_mtls_proxy_token_refusals_total{reason=\"expired\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("token"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!metrics.contains(&rs(&good())[..30]));
}

#[tokio::test]
async fn key_rotations_in_the_jwks_file_and_at_the_https_issuer_need_no_restart() {
    let temporal = TemporalServer::start(&["nsa"]).await;
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.json");
    let (k1, k2) = (Key::rsa("k1"), Key::ec("k2"));
    std::fs::write(&file, jwks(&[&k1])).unwrap();
    let (r1, r2) = (Key::ec("r1"), Key::rsa("r2"));
    let server = IssuerServer::start(&pki, jwks(&[&r1])).await;
    let extra = format!(
        r#"
[[tokens.issuer]]
name = "cluster"
issuer = "{ISS}"
audiences = ["temporal"]
jwks = {file:?}

[[tokens.issuer]]
name = "remote"
issuer = "{url}"
audiences = ["temporal"]
discovery = true
jwks_ca = {ca:?}
refresh = "1h"
"#,
        file = path(&file),
        url = server.url,
        ca = path(&pki.ca),
    );
    let proxy = ProxyProcess::start(&optional_certificates(&config(
        &pki,
        &temporal.url(),
        &extra,
    )))
    .await;
    let conn = GrpcConn::connect(proxy.addr, Some(&ClientTls::new(&pki.ca, "localhost")))
        .await
        .unwrap();
    let call = |token: String| {
        let conn = &conn;
        async move { describe(conn, "nsa", &[("authorization", &bearer(&token))]).await }
    };
    let until_ok = |token: String, what: &'static str| {
        let call = &call;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let reply = call(token.clone()).await;
                if reply.is_ok() {
                    return;
                }
                assert!(Instant::now() < deadline, "{what}: {reply:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // The file: a new kid is refused until the file has it, then accepted.
    until_ok(k1.token(&claims(ISS, SA_NSA, "temporal")), "k1").await;
    let new = k2.token(&claims(ISS, SA_NSA, "temporal"));
    assert_code(
        &call(new.clone()).await,
        code::UNAUTHENTICATED,
        "unknown key id \"k2\"",
    );
    std::fs::write(&file, jwks(&[&k1, &k2])).unwrap();
    until_ok(new, "k2 after the file changed").await;

    // The https issuer (discovery, then its JWKS): its first key set, then
    // a rotated one, fetched early for the first token with the new kid.
    until_ok(r1.token(&claims(&server.url, "ci", "temporal")), "r1").await;
    let fetches = server.fetches();
    server.set_jwks(jwks(&[&r2]));
    let reply = call(r2.token(&claims(&server.url, "ci", "temporal"))).await;
    assert!(reply.is_ok(), "the first token of the new key: {reply:?}");
    assert_eq!(server.fetches(), fetches + 1, "one early fetch");
    // The retired key is refused once the new set is in force.
    let old = call(r1.token(&claims(&server.url, "ci", "temporal"))).await;
    assert_code(&old, code::UNAUTHENTICATED, "unknown key id \"r1\"");

    // A JWKS file that stops parsing: the reload is refused (the config
    // check reads the file) and counted, the last good set stays in force;
    // the issuers' metrics show the keys in force and the https fetches.
    std::fs::write(&file, "{ not json").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, metrics) = proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let refused = sample(
            &metrics,
            "temporal_mtls_proxy_reloads_total{result=\"failure\"}",
        );
        if refused.is_some_and(|n| n >= 1.0) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "no refused reload:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let series = |name: &str, issuer: &str| {
        sample(
            &metrics,
            &format!("temporal_mtls_proxy_{name}{{issuer=\"{issuer}\"}}"),
        )
    };
    assert_eq!(series("token_keys", "cluster"), Some(2.0), "{metrics}");
    assert_eq!(series("token_keys", "remote"), Some(1.0), "{metrics}");
    assert!(
        series("token_key_fetches_total", "remote").is_some_and(|n| n >= 2.0),
        "discovery, first set and the early fetch: {metrics}"
    );
    assert_eq!(
        series("token_key_fetch_failures_total", "remote"),
        Some(0.0),
        "{metrics}"
    );
    let kept = call(k2.token(&claims(ISS, SA_NSA, "temporal"))).await;
    assert!(kept.is_ok(), "the last good key set stays: {kept:?}");
}

/// An issuer given by `jwks_url` (no discovery): its key set is fetched at
/// start and again every `refresh` with no call asking for it, so a key the
/// issuer adds is in force after the next refresh, and the first token
/// signed with it needs no early fetch.
#[tokio::test]
async fn a_jwks_url_is_fetched_at_start_and_again_every_refresh() {
    let temporal = TemporalServer::start(&["nsa"]).await;
    let pki = TestPki::new();
    let (r1, r2) = (Key::ec("r1"), Key::rsa("r2"));
    let server = IssuerServer::start(&pki, jwks(&[&r1])).await;
    let extra = format!(
        r#"
[[tokens.issuer]]
name = "remote"
issuer = "{url}"
audiences = ["temporal"]
jwks_url = "{url}/jwks.json"
jwks_ca = {ca:?}
refresh = "10s"
"#,
        url = server.url,
        ca = path(&pki.ca),
    );
    let proxy = ProxyProcess::start(&optional_certificates(&config(
        &pki,
        &temporal.url(),
        &extra,
    )))
    .await;
    // Fetches the proxy has completed (the issuer counts them on arrival,
    // before the proxy has installed what it got).
    let completed = || async {
        let (status, metrics) = proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let series = "temporal_mtls_proxy_token_key_fetches_total{issuer=\"remote\"}";
        sample(&metrics, series).map_or(0, |n| n as usize)
    };
    // Ready once the first key set is in force (fetched at start).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = proxy.admin_get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(completed().await >= 1);
    let conn = GrpcConn::connect(proxy.addr, Some(&ClientTls::new(&pki.ca, "localhost")))
        .await
        .unwrap();
    let call = |key: &Key| {
        let token = key.token(&claims(&server.url, "ci", "temporal"));
        let conn = &conn;
        async move { describe(conn, "nsa", &[("authorization", &bearer(&token))]).await }
    };
    let reply = call(&r1).await;
    assert!(reply.is_ok(), "{reply:?}");

    // The issuer adds a key; no call asks for it, the refresh fetches it.
    // Every fetch that can have had the old set arrived by now, so the
    // fetch after them (the proxy fetches one at a time) has the new set:
    // once the proxy has completed it, the new key is in force.
    server.set_jwks(jwks(&[&r1, &r2]));
    let old = server.fetches();
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed().await <= old {
        assert!(Instant::now() < deadline, "no refresh within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fetched = server.fetches();
    let reply = call(&r2).await;
    assert!(reply.is_ok(), "the refreshed key: {reply:?}");
    assert_eq!(server.fetches(), fetched, "no early fetch was needed");
}

/// An issuer the proxy cannot reach at start: `/readyz` says not ready and
/// names it (the frontend itself is up), and its tokens are refused, while
/// the proxy serves the clients that need no token.
#[tokio::test]
async fn readiness_waits_for_an_unreachable_issuers_first_key_set() {
    let temporal = TemporalServer::start(&["nsa"]).await;
    let pki = TestPki::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        r#"
[[tokens.issuer]]
name = "away"
issuer = "https://127.0.0.1:{port}"
audiences = ["temporal"]
jwks_url = "https://127.0.0.1:{port}/jwks.json"
jwks_ca = {ca:?}
"#,
        ca = path(&pki.ca),
    );
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), &extra)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = proxy.admin_get("/readyz").await;
        assert_eq!(status, 503, "ready without the issuer's keys: {body}");
        // Wait until the upstream check has run, so that the issuer is the
        // one reason left.
        if body.contains("ok upstream") || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("ok upstream"), "{body}");
    let issuer_line = body
        .lines()
        .find(|l| l.contains("token issuers"))
        .unwrap_or_else(|| panic!("no token issuers line in {body}"));
    assert!(
        issuer_line.starts_with("fail") && issuer_line.contains("away"),
        "{issuer_line}"
    );
    // A client certificate alone still gets its calls through.
    let conn = proxy.grpc(&pki, &pki.client).await;
    let ok = describe(&conn, "nsa", &[]).await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// The real `temporal` CLI (grpc-go) with `--api-key` and no client
/// certificate: its token is the call's identity.
#[tokio::test]
async fn the_temporal_cli_authenticates_with_api_key() {
    let s = Setup::start().await;
    let tls = cli::CliTls {
        ca: s.pki.ca.clone(),
        cert: None,
        key: None,
        server_name: Some("localhost".into()),
    };
    let addr = s.proxy.addr.to_string();
    let token = s.token(SA_NSA);
    let run = |ns: &'static str, key: String| {
        let (addr, tls) = (addr.clone(), tls.clone());
        async move {
            cli::temporal_cli(
                &addr,
                Some(&tls),
                &[
                    "operator",
                    "namespace",
                    "describe",
                    "-n",
                    ns,
                    "-o",
                    "json",
                    "--api-key",
                    &key,
                ],
            )
            .await
        }
    };
    let ok = run("nsa", token.clone()).await;
    ok.assert_success("describe nsa with a service account token");
    assert!(ok.stdout.contains("\"nsa\""), "{}", ok.stdout);
    let denied = run("nsb", token).await;
    assert!(!denied.success(), "{}", denied.stdout);
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );
    let mut expired = claims(ISS, SA_NSA, "temporal");
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 1200);
    expired["nbf"] = json!(now() - 1200);
    let bad = run("nsa", s.rsa.token(&expired)).await;
    assert!(!bad.success(), "{}", bad.stdout);
    // The CLI says UNAUTHENTICATED in its own words; the proxy's log has
    // the reason (the status message is the same text).
    assert!(bad.stderr.contains("unauthenticated"), "{}", bad.stderr);
    let line = s
        .proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["reason"] == "expired" && v["message"] == "call refused: bearer token"
        })
        .await
        .unwrap_or_else(|| panic!("no refusal logged in {:#?}", s.proxy.logs()));
    assert!(
        line["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid bearer token: token expired at"),
        "{line}"
    );
}

/// Tokens alone run workers on nsa: the SDK tests' proxy, in front of the
/// real dev server, with a JWKS file and no clock skew (so that a token is
/// refused from the second after its `exp`).
struct SdkSetup {
    _temporal: TemporalServer,
    pki: TestPki,
    proxy: ProxyProcess,
    _dir: tempfile::TempDir,
    key: Key,
}

impl SdkSetup {
    async fn start() -> SdkSetup {
        let temporal = TemporalServer::start(&["nsa"]).await;
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let key = Key::rsa("r1");
        let file = dir.path().join("cluster.json");
        std::fs::write(&file, jwks(&[&key])).unwrap();
        let extra = format!(
            r#"
[[tokens.issuer]]
name = "cluster"
issuer = "{ISS}"
audiences = ["temporal"]
jwks = {file:?}
clock_skew = "0s"

[authz]
[[authz.rule]]
name = "nsa-workers"
match = {{ token = {{ issuer = "cluster", sub = "system:serviceaccount:nsa:*" }} }}
namespaces = ["nsa"]
roles = ["worker", "writer", "reader"]
"#,
            file = path(&file),
        );
        let text = optional_certificates(&config(&pki, &temporal.url(), &extra));
        let proxy = ProxyProcess::start(&text).await;
        SdkSetup {
            _temporal: temporal,
            pki,
            proxy,
            _dir: dir,
            key,
        }
    }

    /// A token of nsa's worker service account, issued now, expiring in
    /// `lifetime` seconds (`exp`).
    fn token(&self, lifetime: u64) -> (String, u64) {
        let mut c = claims(ISS, SA_NSA, "temporal");
        let exp = now() + lifetime;
        c["exp"] = json!(exp);
        (self.key.token(&c), exp)
    }

    /// `temporal_mtls_proxy_token_refusals_total{reason="expired"}`.
    async fn expired_refusals(&self) -> u64 {
        let (status, metrics) = self.proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("temporal_mtls_proxy_token_refusals_total{reason=\"expired\"} ")
            })
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

/// The official Python SDK with `api_key=` and no client certificate: a
/// worker runs a workflow, its client's key is replaced (`client.api_key =`)
/// before the first token expires, and after it has expired the same worker
/// still polls and completes a second workflow. The proxy refused the old
/// token exactly once: the script's own check that it had expired, never a
/// call of the worker.
#[tokio::test]
async fn the_python_sdk_worker_replaces_its_api_key_while_running() {
    let started = Instant::now();
    let s = SdkSetup::start().await;
    // Long enough for the interpreter, the connection, the worker's start
    // and one workflow on a busy machine; the whole test stays under 30 s.
    let (first, exp) = s.token(10);
    let (next, _) = s.token(600);
    let script = support::tools::repo_root().join("tests/python/api_key.py");
    let args = [
        script.display().to_string(),
        "--address".into(),
        s.proxy.addr.to_string(),
        "--namespace".into(),
        "nsa".into(),
        "--ca".into(),
        path(&s.pki.ca),
        "--server-name".into(),
        "localhost".into(),
        "--api-key".into(),
        first,
        "--next-api-key".into(),
        next,
        // With no skew, refused once the clock's second is past `exp`.
        "--old-refused-at".into(),
        (exp + 1).to_string(),
        "--denied-namespace".into(),
        "nsb".into(),
    ];
    let out = support::tools::run_captured(
        &support::tools::python_bin(),
        &args,
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
        Duration::from_secs(25),
    )
    .await;
    out.assert_success("api_key.py");
    let v = out.json();
    assert_eq!(
        v["results"],
        json!(["Hello, first!", "Hello, second!"]),
        "{out}"
    );
    assert!(
        v["old_token"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("token expired at"),
        "{out}"
    );
    assert_eq!(s.expired_refusals().await, 1, "only the script's own check");
    // The same client, with its valid key, on a namespace the rule does
    // not allow: the proxy's refusal reaches the SDK as it was sent.
    assert_eq!(v["denied"]["code"], "PERMISSION_DENIED", "{out}");
    let message = v["denied"]["message"].as_str().unwrap_or_default();
    let refusal =
        "token sub \"system:serviceaccount:nsa:worker\" of issuer \"cluster\" may not call";
    assert!(
        message.contains(refusal) && message.contains("namespace \"nsb\""),
        "{out}"
    );
    eprintln!(
        "Python SDK: key replaced {} s before the first token expired; {:?} in all; refused on nsb: {}",
        v["rotated_s_before_expiry"],
        started.elapsed(),
        v["denied"]
    );
}

/// The official TypeScript SDK with `apiKey` and no client certificate, as
/// the Python test: the client's `Connection` and the worker's
/// `NativeConnection` get the new key (`setApiKey`) before the first token
/// expires, and after it has expired the same worker completes a second
/// workflow, with no call of theirs refused.
#[tokio::test]
async fn the_typescript_sdk_worker_replaces_its_api_key_while_running() {
    let started = Instant::now();
    let s = SdkSetup::start().await;
    let modules = support::typescript::node_modules().display().to_string();
    // Bundling the workflows (webpack) comes first and takes seconds.
    let (first, exp) = s.token(14);
    let (next, _) = s.token(600);
    let script = support::tools::repo_root().join("tests/typescript/api_key.js");
    let args = [
        script.display().to_string(),
        "--address".into(),
        s.proxy.addr.to_string(),
        "--namespace".into(),
        "nsa".into(),
        "--ca".into(),
        path(&s.pki.ca),
        "--server-name".into(),
        "localhost".into(),
        "--api-key".into(),
        first,
        "--next-api-key".into(),
        next,
        "--old-refused-at".into(),
        (exp + 1).to_string(),
        "--denied-namespace".into(),
        "nsb".into(),
        "--overall-timeout".into(),
        "23".into(),
    ];
    let out = support::tools::run_captured(
        &support::typescript::node_bin(),
        &args,
        &[
            ("NODE_PATH", &modules),
            ("TMP_NODE_MODULES", &modules),
            ("NODE_NO_WARNINGS", "1"),
        ],
        Duration::from_secs(25),
    )
    .await;
    out.assert_success("api_key.js");
    let v = out.json();
    assert_eq!(
        v["results"],
        json!(["Hello, first!", "Hello, second!"]),
        "{out}"
    );
    assert_eq!(v["oldToken"]["code"], 16, "{out}");
    assert!(
        v["oldToken"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("token expired at"),
        "{out}"
    );
    assert_eq!(s.expired_refusals().await, 1, "only the script's own check");
    // As the Python test: a namespace the rule does not allow.
    assert_eq!(v["denied"]["code"], 7, "{out}");
    let details = v["denied"]["details"].as_str().unwrap_or_default();
    let refusal =
        "token sub \"system:serviceaccount:nsa:worker\" of issuer \"cluster\" may not call";
    assert!(
        details.contains(refusal) && details.contains("namespace \"nsb\""),
        "{out}"
    );
    eprintln!(
        "TypeScript SDK: key replaced {} s before the first token expired; {:?} in all; refused on nsb: {}",
        v["rotatedSBeforeExpiry"],
        started.elapsed(),
        v["denied"]
    );
}
