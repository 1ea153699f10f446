//! Fault injection: the upstream killed mid-call (the real server under a
//! long poll, a fault upstream in the middle of a streamed response), an
//! upstream that accepts and never answers, upstreams sending GOAWAY
//! storms, resetting every stream or sending malformed HTTP/2, an audit
//! sink on a full disk, a SIGHUP storm under load, and certificate files
//! replaced half-written. Each test asserts what the client sees (a gRPC
//! status, never a hang past its deadline) and that the same proxy process
//! serves normal calls again afterwards, without a restart.
//!
//! The real Temporal server is used where it can produce the fault; the
//! fault upstream (`support::fault_upstream`) where it cannot.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::fault_upstream::{self, FaultUpstream, Malformed, Mode};
use support::grpc::{code, path, pb, ClientTls, GrpcConn, GrpcReply};
use support::pki::{cert_der, TestPki};
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

/// What one faulty call may take at most before it counts as a hang: its
/// own deadline (`grpc-timeout`) plus a margin.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
const CALL_BOUND: Duration = Duration::from_secs(10);

/// Calls made against each misbehaving upstream.
const FAULT_CALLS: usize = 50;

/// GetSystemInfo with a 5 s `grpc-timeout`, given up by the client after
/// [`CALL_BOUND`]: `Err` is a hang (or a broken client connection).
async fn system_info(conn: &GrpcConn) -> Result<GrpcReply, String> {
    conn.unary_timeout(
        path::GET_SYSTEM_INFO,
        &pb::get_system_info(),
        &[("grpc-timeout", &format!("{}S", CALL_DEADLINE.as_secs()))],
        CALL_BOUND,
    )
    .await
}

/// Retries GetSystemInfo until it is OK (bounded: 30 s, 300 calls).
async fn until_ok(conn: &GrpcConn) -> GrpcReply {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    for _ in 0..300 {
        match system_info(conn).await {
            Ok(reply) if reply.is_ok() => return reply,
            other => last = Some(other),
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no OK call within 30 s; last: {last:?}");
}

/// A gRPC reply with a proper non-OK status, as the proxy gives for a
/// failure: HTTP 200, a grpc-status (trailers or trailers-only).
fn assert_failed_with_status(reply: &Result<GrpcReply, String>, what: &str) -> (i32, String) {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => panic!("{what}: no gRPC reply (a hang or a bare reset): {e}"),
    };
    assert_eq!(reply.http_status, 200, "{what}: {reply:?}");
    let status = reply
        .grpc_status
        .unwrap_or_else(|| panic!("{what}: no grpc-status: {reply:?}"));
    assert!(
        (1..=16).contains(&status),
        "{what}: not a failure status: {reply:?}"
    );
    (status, reply.grpc_message.clone().unwrap_or_default())
}

/// A metric sample's value from a Prometheus exposition (`name` with its
/// labels, exactly as exported); 0 when absent.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series == name).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

fn messages_starting(proxy: &ProxyProcess, prefix: &str) -> Vec<serde_json::Value> {
    proxy
        .logs()
        .into_iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

// --- 1. The upstream killed mid-call -------------------------------------

/// A long poll in flight when the real frontend is killed (SIGKILL) gets a
/// status at once, long before its deadline; after the server is back on
/// the same port the same client connection, through the same proxy
/// process, gets through again.
#[tokio::test]
async fn a_long_poll_gets_a_status_when_the_server_is_killed_and_calls_recover() {
    let mut temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&conn).await.unwrap().is_ok());

    let deadline = Duration::from_secs(30);
    let mut killed_at = None;
    let (poll, ()) = tokio::join!(
        async {
            conn.unary_timeout(
                path::POLL_WORKFLOW_TASK_QUEUE,
                &pb::poll_workflow_task_queue("default", "faults-queue", "faults-worker"),
                &[("grpc-timeout", &format!("{}S", deadline.as_secs()))],
                Duration::from_secs(15),
            )
            .await
        },
        async {
            // Setup, not a timing assertion: let the poll reach the server.
            tokio::time::sleep(Duration::from_secs(1)).await;
            temporal.stop().await;
            killed_at = Some(Instant::now());
        }
    );
    let (status, message) = assert_failed_with_status(&poll, "a long poll when the server dies");
    eprintln!("long poll, server killed: status {status} {message:?}");
    assert_eq!(status, code::UNAVAILABLE, "{poll:?}");
    let poll = poll.unwrap();
    // Answered within the client's own 15 s bound, half the 30 s deadline.
    assert!(poll.elapsed < deadline / 2, "{poll:?}");
    assert!(killed_at.is_some());

    temporal.restart().await;
    let reply = until_ok(&conn).await;
    assert!(pb::server_version(&reply.message()).is_some());
    let (status, _) = proxy.admin_get("/healthz").await;
    assert_eq!(status, 200);
}

/// A streamed response in progress when the upstream dies (its listener
/// and connections dropped) ends with a grpc-status after the messages
/// that did arrive, not with a bare reset; an upstream back on the same
/// port serves the next calls.
#[tokio::test]
async fn a_stream_cut_by_a_dying_upstream_ends_with_a_status_and_calls_recover() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;

    let (reply, ()) = tokio::join!(
        async {
            conn.unary_timeout(
                fault_upstream::SLOW_STREAM,
                b"",
                &[("grpc-timeout", "30S")],
                Duration::from_secs(20),
            )
            .await
        },
        async {
            // Bounded: at most 100 x 50 ms for the first messages to go out.
            for _ in 0..100 {
                if upstream.slow_messages_sent() >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(upstream.slow_messages_sent() >= 3, "the stream never began");
            upstream.kill();
        }
    );
    let (status, message) = assert_failed_with_status(&reply, "a stream whose upstream died");
    eprintln!("stream, upstream killed: status {status} {message:?}");
    assert_eq!(status, code::UNAVAILABLE, "{reply:?}");
    let reply = reply.unwrap();
    assert!(reply.framing_error.is_none(), "{reply:?}");
    assert!(
        (1..fault_upstream::SLOW_STREAM_MESSAGES).contains(&reply.messages.len()),
        "the messages sent before the upstream died arrive, and not all: {}",
        reply.messages.len()
    );

    let addr = upstream.addr;
    drop(upstream);
    let _back = FaultUpstream::start_on(addr, Mode::Healthy).await;
    until_ok(&conn).await;
}

// --- 2. An upstream that accepts and never answers -------------------------

/// An upstream that accepts TCP and then says nothing (no SETTINGS, no
/// response): a call with a 3 s deadline gets DEADLINE_EXCEEDED at its
/// deadline (plus the proxy's margin), and the admin listener keeps
/// answering. (Before, it hung for 40 s.) Meanwhile the proxy stays
/// responsive: a new client connection completes its handshake, and both
/// connections are served again once the upstream is healthy.
#[tokio::test]
async fn a_silent_upstream_gives_a_status_within_the_deadline() {
    let upstream = FaultUpstream::start(Mode::Silent).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;

    let (reply, health) = tokio::join!(
        async {
            conn.unary_timeout(
                path::GET_SYSTEM_INFO,
                &pb::get_system_info(),
                &[("grpc-timeout", "3S")],
                Duration::from_secs(10),
            )
            .await
        },
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.admin_get("/healthz").await
        }
    );
    assert_eq!(health.0, 200, "the admin listener answers during the call");
    let (status, message) = assert_failed_with_status(&reply, "a call to a silent upstream");
    eprintln!("silent upstream: status {status} {message:?}");
    assert_eq!(status, code::DEADLINE_EXCEEDED, "{reply:?}");
    let elapsed = reply.as_ref().unwrap().elapsed;
    assert!(
        elapsed < Duration::from_secs(5),
        "the status came {elapsed:?} into a 3 s call"
    );
    assert!(upstream.accepted() >= 1);

    // A new client connection still completes its handshake.
    let other = proxy.grpc(&pki, &pki.client).await;
    upstream.set_mode(Mode::Healthy);
    until_ok(&other).await;
    until_ok(&conn).await;
}

/// A frontend that speaks HTTP/2 (SETTINGS, PING answers) but never answers
/// a call: each call gets DEADLINE_EXCEEDED at its own deadline, in
/// grpc-go's words, and the connection is kept for the calls after.
#[tokio::test]
async fn a_hung_upstream_gives_each_call_deadline_exceeded_at_its_deadline() {
    let upstream = FaultUpstream::start(Mode::Hung).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    for deadline in ["1S", "2000m"] {
        let reply = conn
            .unary_timeout(
                path::GET_SYSTEM_INFO,
                &pb::get_system_info(),
                &[("grpc-timeout", deadline)],
                Duration::from_secs(10),
            )
            .await;
        let (status, message) = assert_failed_with_status(&reply, "a call to a hung upstream");
        assert_eq!(status, code::DEADLINE_EXCEEDED, "{reply:?}");
        assert!(
            message.starts_with("context deadline exceeded ("),
            "{message:?}"
        );
        let elapsed = reply.as_ref().unwrap().elapsed;
        assert!(
            elapsed < Duration::from_secs(4),
            "{deadline}: the status came after {elapsed:?}"
        );
    }
    // Both calls reached it (the proxy's own health checks may add more).
    assert!(upstream.streams() >= 2, "{}", upstream.streams());
    upstream.set_mode(Mode::Healthy);
    until_ok(&conn).await;
}

// --- 3. Upstreams misbehaving at the HTTP/2 level --------------------------

/// Makes [`FAULT_CALLS`] calls through a proxy in front of an upstream in
/// `mode`: each gets a proper failure status within its bound, the proxy's
/// reconnects stay bounded (no hot loop, during or after the calls), and
/// once the upstream is healthy the same client connection gets through.
/// Returns how often each (status, message) was seen.
async fn every_call_fails_with_a_status_then_recovers(
    mode: Mode,
) -> BTreeMap<(i32, String), usize> {
    let upstream = FaultUpstream::start(mode).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;

    let mut seen = BTreeMap::new();
    for i in 0..FAULT_CALLS {
        let reply = system_info(&conn).await;
        let got = assert_failed_with_status(&reply, &format!("call {i} against {mode:?}"));
        *seen.entry(got).or_insert(0) += 1;
    }
    eprintln!(
        "{mode:?}: statuses {seen:?}; {} connections accepted, {} streams seen",
        upstream.accepted(),
        upstream.streams()
    );
    // One connection per call, plus the proxy's own retries of calls that
    // never reached the upstream (3), plus readiness checks: generous.
    let accepted = upstream.accepted();
    assert!(accepted >= 1);
    assert!(
        accepted <= 4 * FAULT_CALLS + 10,
        "{accepted} upstream connections for {FAULT_CALLS} calls"
    );
    // With no calls, the proxy does not keep reconnecting on its own (an
    // observation window, not a timing assertion: at most a readiness
    // check or two may connect in it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = upstream.accepted() - accepted;
    assert!(
        idle <= 3,
        "{idle} upstream connections in 2 s without calls"
    );
    let (status, _) = proxy.admin_get("/healthz").await;
    assert_eq!(status, 200, "the proxy is alive and serving its admin");

    upstream.set_mode(Mode::Healthy);
    let reply = until_ok(&conn).await;
    assert_eq!(reply.message(), pb::get_system_info(), "the echo came back");
    // And a fresh client connection too.
    let fresh = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&fresh).await.unwrap().is_ok());
    seen
}

/// Every upstream connection gets SETTINGS and then 20 GOAWAY frames.
#[tokio::test]
async fn a_goaway_storm_gives_every_call_a_status_and_the_proxy_recovers() {
    let seen = every_call_fails_with_a_status_then_recovers(Mode::GoAwayStorm).await;
    assert!(
        seen.keys().all(|(status, _)| *status == code::UNAVAILABLE),
        "{seen:?}"
    );
}

/// Every stream is reset (RST_STREAM INTERNAL_ERROR) as soon as its
/// HEADERS arrive, on a connection that otherwise stays up.
#[tokio::test]
async fn reset_streams_give_every_call_a_status_and_the_proxy_recovers() {
    let seen = every_call_fails_with_a_status_then_recovers(Mode::ResetEveryStream).await;
    assert!(
        seen.keys().all(|(status, _)| *status == code::UNAVAILABLE),
        "{seen:?}"
    );
}

/// Each stream's HEADERS are answered with a malformed frame of `kind`;
/// every call gets UNAVAILABLE.
async fn malformed_frames(kind: Malformed) {
    let seen = every_call_fails_with_a_status_then_recovers(Mode::Malformed(kind)).await;
    assert!(
        seen.keys().all(|(status, _)| *status == code::UNAVAILABLE),
        "{seen:?}"
    );
}

/// A DATA frame on stream 0 (a connection error, PROTOCOL_ERROR).
#[tokio::test]
async fn data_on_stream_zero_gives_every_call_a_status_and_the_proxy_recovers() {
    malformed_frames(Malformed::DataOnStreamZero).await;
}

/// A frame header announcing 16 MiB - 1 bytes, over the proxy's 64 KiB
/// SETTINGS_MAX_FRAME_SIZE (FRAME_SIZE_ERROR).
#[tokio::test]
async fn an_oversize_frame_gives_every_call_a_status_and_the_proxy_recovers() {
    malformed_frames(Malformed::OversizeLength).await;
}

/// A SETTINGS frame whose length is not a multiple of 6 (FRAME_SIZE_ERROR).
#[tokio::test]
async fn a_bad_settings_length_gives_every_call_a_status_and_the_proxy_recovers() {
    malformed_frames(Malformed::BadSettingsLength).await;
}

/// A response HEADERS frame whose header block is garbage, not HPACK.
#[tokio::test]
async fn garbage_headers_give_every_call_a_status_and_the_proxy_recovers() {
    malformed_frames(Malformed::GarbageHeaders).await;
}

/// An HTTP/1.1 400 answer to the preface, and the connection closed.
#[tokio::test]
async fn an_http1_answer_gives_every_call_a_status_and_the_proxy_recovers() {
    malformed_frames(Malformed::Http1Answer).await;
}

/// When the proxy's own HTTP/2 client finds the upstream's frames invalid
/// and closes the connection itself (its GOAWAY, not the upstream's), the
/// status message says so, rather than blaming a GOAWAY on the upstream
/// that never sent one.
#[tokio::test]
async fn a_protocol_error_the_proxy_detects_is_not_reported_as_the_upstreams_goaway() {
    let upstream = FaultUpstream::start(Mode::Malformed(Malformed::DataOnStreamZero)).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &upstream.url(), "")).await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = system_info(&conn).await;
    let (status, message) = assert_failed_with_status(&reply, "DATA on stream 0");
    assert_eq!(status, code::UNAVAILABLE, "{reply:?}");
    assert!(
        !message.contains("upstream closed the connection"),
        "the upstream sent no GOAWAY: {message:?}"
    );
    assert!(
        message.contains("upstream broke the HTTP/2 protocol"),
        "{message:?}"
    );
}

// --- 4. The audit sink on a full filesystem ------------------------------

/// With the audit sink on `/dev/full` (every write fails with ENOSPC),
/// every call still succeeds without waiting on the sink, every line that
/// could not be written is counted in `audit_lines_dropped_total`, and the
/// failure is logged with its reason.
#[tokio::test]
async fn an_audit_sink_on_a_full_disk_drops_and_counts_lines_and_calls_flow() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(
        &pki,
        &temporal.url(),
        "[audit]\nsink = \"/dev/full\"\n",
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    const CALLS: usize = 200;
    for i in 0..CALLS {
        let reply = system_info(&conn)
            .await
            .unwrap_or_else(|e| panic!("call {i} got no reply: {e}"));
        assert!(reply.is_ok(), "call {i}: {reply:?}");
    }

    let dropped_total = "temporal_mtls_proxy_audit_lines_dropped_total";
    let mut dropped = 0.0;
    for _ in 0..100 {
        let (status, body) = proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        dropped = sample(&body, dropped_total);
        if dropped >= CALLS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dropped, CALLS as f64,
        "every call's audit line is counted as dropped"
    );

    let line = proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot write the audit log"))
        })
        .await
        .unwrap_or_else(|| panic!("no audit write failure logged: {:#?}", proxy.logs()));
    eprintln!("audit failure logged as: {line}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(error.contains("No space left on device"), "{line}");
    // Logged once, not once per line.
    assert_eq!(
        messages_starting(&proxy, "cannot write the audit log").len(),
        1
    );
    // And the proxy keeps serving.
    assert!(system_info(&conn).await.unwrap().is_ok());
}

/// The audit write failure is logged naming the sink it could not write
/// (an operator with several files needs to know which disk is full).
#[tokio::test]
async fn an_audit_write_failure_log_names_the_sink() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(
        &pki,
        &upstream.url(),
        "[audit]\nsink = \"/dev/full\"\n",
    ))
    .await;
    let conn = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&conn).await.unwrap().is_ok());
    let line = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot write the audit log"))
        })
        .await
        .expect("the audit write failure is logged");
    assert!(line.to_string().contains("/dev/full"), "{line}");
}

// --- 5. A SIGHUP storm under load ----------------------------------------

/// 100 SIGHUPs, one every 50 ms, while 4 callers make calls (each opening a
/// new TLS connection every 10 calls): no call fails, the proxy stays up,
/// and the reloads are applied (counted as successes, none refused).
#[tokio::test]
async fn a_sighup_storm_during_load_fails_no_call() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = Arc::new(TestPki::new());
    // SIGHUP: the binary as a child process.
    let mut proxy = ProxyProcess::spawn(&config(&pki, &temporal.url(), "")).await;
    let proxy_addr = proxy.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for caller in 0..4 {
        let stop = stop.clone();
        let pki = pki.clone();
        callers.push(tokio::spawn(async move {
            let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
            let mut calls = 0usize;
            let mut conn = None;
            // Bounded: 2,000 calls or the end of the storm.
            for i in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if i % 10 == 0 {
                    conn = Some(
                        GrpcConn::connect(proxy_addr, Some(&tls))
                            .await
                            .unwrap_or_else(|e| panic!("caller {caller}: connect {i}: {e}")),
                    );
                }
                let reply = system_info(conn.as_ref().unwrap())
                    .await
                    .unwrap_or_else(|e| panic!("caller {caller}: call {i}: {e}"));
                assert!(reply.is_ok(), "caller {caller}: call {i}: {reply:?}");
                calls += 1;
            }
            calls
        }));
    }

    for _ in 0..100 {
        proxy.signal("HUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for caller in callers {
        let calls = tokio::time::timeout(Duration::from_secs(30), caller)
            .await
            .expect("callers end")
            .expect("no call failed");
        assert!(calls > 0);
        total += calls;
    }
    eprintln!("SIGHUP storm: {total} calls OK");

    assert!(
        proxy.wait_exit(Duration::from_millis(100)).await.is_none(),
        "the proxy exited"
    );
    // The last SIGHUPs' reloads have run once their log lines are there.
    proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reloaded certificates"))
        })
        .await
        .expect("reloads logged");
    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let succeeded = sample(
        &metrics,
        r#"temporal_mtls_proxy_reloads_total{result="success"}"#,
    );
    let failed = sample(
        &metrics,
        r#"temporal_mtls_proxy_reloads_total{result="failure"}"#,
    );
    let logged = messages_starting(&proxy, "reloaded certificates").len();
    eprintln!("SIGHUP storm: {succeeded} reloads counted, {logged} logged");
    // Signals that arrive while a reload runs coalesce into one.
    assert!((1.0..=100.0).contains(&succeeded), "{succeeded}");
    assert_eq!(failed, 0.0);
    assert!(messages_starting(&proxy, "reload refused").is_empty());

    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let conn = GrpcConn::connect(proxy_addr, Some(&tls)).await.unwrap();
    assert!(system_info(&conn).await.unwrap().is_ok());
}

// --- 6. Certificate files replaced half-written --------------------------

/// Waits (bounded: 15 s) for a log line starting with `prefix`, after the
/// first `after` such lines, that satisfies `pred`, and returns it.
async fn nth_line_after(
    proxy: &ProxyProcess,
    prefix: &str,
    after: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = messages_starting(proxy, prefix);
        if let Some(line) = lines.iter().skip(after).find(|v| pred(v)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no new {prefix:?} line as wanted: {:#?}",
            messages_starting(proxy, "reload")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a "reload refused" line after the first `after` whose reason
/// contains every one of `wanted`, and returns it.
async fn refusal(proxy: &ProxyProcess, after: usize, wanted: &[&str]) -> serde_json::Value {
    nth_line_after(proxy, "reload refused", after, |v| {
        let reason = v["reason"].as_str().unwrap_or_default();
        wanted.iter().all(|w| reason.contains(w))
    })
    .await
}

/// A rotation seen half-way, twice: first the certificate file cut off in
/// the middle of its PEM (a writer that has not finished), then the new
/// certificate complete but its key still the old one. Each state is
/// refused, logged with the file and the reason, and the old certificate
/// keeps serving; once the key is written too, the reload applies and the
/// new certificate serves. (tests/reload.rs covers a certificate file that
/// is garbage and an expired pair; this is the rotation caught part-way.)
#[tokio::test]
async fn a_rotation_caught_half_written_keeps_the_old_certificate_until_complete() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    // SIGHUP: the binary as a child process (file changes reload it too).
    let proxy = ProxyProcess::spawn(&config(&pki, &temporal.url(), "")).await;
    let original = proxy.served_certificate(&pki).await;
    assert_eq!(original, cert_der(&pki.server_cert));
    let cert_path = pki.server_cert.display().to_string();
    let key_path = pki.server_key.display().to_string();
    let (new_cert, new_key) = pki.server_cert_for("rotated", &["localhost", "127.0.0.1"]);
    let new_pem = std::fs::read(&new_cert).unwrap();

    // 1. Half the new certificate's PEM.
    let before = messages_starting(&proxy, "reload refused").len();
    std::fs::write(&pki.server_cert, &new_pem[..new_pem.len() / 2]).unwrap();
    proxy.signal("HUP");
    let line = refusal(&proxy, before, &["tls.cert", &cert_path]).await;
    eprintln!("half-written certificate: {}", line["reason"]);
    assert_eq!(proxy.served_certificate(&pki).await, original);
    let conn = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&conn).await.unwrap().is_ok());

    // 2. The whole new certificate, the key still the old one.
    let before = messages_starting(&proxy, "reload refused").len();
    std::fs::write(&pki.server_cert, &new_pem).unwrap();
    proxy.signal("HUP");
    let line = refusal(&proxy, before, &["does not match", &cert_path, &key_path]).await;
    eprintln!("new certificate, old key: {}", line["reason"]);
    assert_eq!(proxy.served_certificate(&pki).await, original);
    let conn = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&conn).await.unwrap().is_ok());

    // 3. The new key: the rotation completes.
    let before = messages_starting(&proxy, "reloaded certificates").len();
    std::fs::copy(&new_key, &pki.server_key).unwrap();
    proxy.signal("HUP");
    nth_line_after(&proxy, "reloaded certificates", before, |_| true).await;
    assert_eq!(proxy.served_certificate(&pki).await, cert_der(&new_cert));
    let conn = proxy.grpc(&pki, &pki.client).await;
    assert!(system_info(&conn).await.unwrap().is_ok());
}
