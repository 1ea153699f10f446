//! One tenant cannot hurt another's calls. A billing worker's long polls and
//! a steady stream of billing calls run through the proxy while a payments
//! certificate, on other connections, sends every hostile shape of the
//! isolation issue: request trailers (grpc-go closes the whole upstream
//! connection on them), headers h2 refuses, content-length lies, 40 streams
//! asking for 1 MiB responses and never reading them, 50 streams declaring
//! 4 MiB first messages and never finishing them, a PING ACK flood and
//! garbage handshakes. Every billing call must complete normally, on the
//! one shared upstream connection (one worker thread), and the proxy's log
//! must stay small.

mod support;

#[path = "support/conformance/enc.rs"]
#[allow(dead_code)]
mod enc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use support::grpc::pb::{concat, field_bytes, field_message, field_string};
use support::grpc::{code, frame, path, pb, ClientTls};
use support::pki::{ClientSpec, TestPki};
use support::proxy::{config, rss_kib, ProxyProcess};
use support::raw_h2::{error_code, field, setting, H2Conn, H2Options, Step};
use support::temporal::TemporalServer;

const POLICY: &str = r#"
[runtime]
worker_threads = 1

[limits]
first_message_timeout = "5s"

[authz]
mode = "enforce"

[[authz.rule]]
name = "payments"
match = { uri = "spiffe://example.org/ns/payments/*" }
namespaces = ["payments"]
roles = ["worker", "writer"]

[[authz.rule]]
name = "billing"
match = { uri = "spiffe://example.org/ns/billing/*" }
namespaces = ["billing"]
roles = ["worker", "writer"]
"#;

/// StartWorkflowExecution in `ns` with one payload of `input` bytes: the
/// workflow's history is then a response of that size.
fn start_with_input(ns: &str, workflow_id: &str, input: usize) -> Vec<u8> {
    let metadata = concat(&[field_string(1, "encoding"), field_bytes(2, b"binary/plain")]);
    let payload = concat(&[
        field_message(1, &metadata),
        field_bytes(2, &vec![b'x'; input]),
    ]);
    concat(&[
        field_string(1, ns),
        enc::start_workflow_rest(workflow_id, "noisy-q"),
        field_message(5, &field_message(1, &payload)),
    ])
}

/// A client that never reads its responses: its windows are never given
/// back.
fn window_starved() -> H2Options {
    H2Options {
        settings: vec![(setting::ENABLE_PUSH, 0), (setting::INITIAL_WINDOW_SIZE, 0)],
        connection_window_increment: 0,
        auto_window_update: false,
        ..H2Options::default()
    }
}

/// A client that grants 16 MiB windows per stream and 1 GiB for the
/// connection (it will stop reading its socket instead).
fn wide_open() -> H2Options {
    H2Options {
        settings: vec![
            (setting::ENABLE_PUSH, 0),
            (setting::INITIAL_WINDOW_SIZE, 16 << 20),
        ],
        connection_window_increment: 1 << 30,
        auto_window_update: false,
        ..H2Options::default()
    }
}

/// A connection that never reads (its windows are never given back) with
/// `n` streams on it, each asking for the 1 MiB history of `big-history` in
/// `payments`; returns it and the streams' ids.
async fn never_read_history_streams(
    addr: SocketAddr,
    tls: &ClientTls,
    n: usize,
) -> (H2Conn, Vec<u32>) {
    let stalled = H2Conn::tls(addr, tls, &window_starved()).await.unwrap();
    let ids = history_streams(&stalled, n).await;
    (stalled, ids)
}

/// Opens `n` streams on `stalled`, each asking for the 1 MiB history of
/// `big-history` in `payments`; returns their ids.
async fn history_streams(stalled: &H2Conn, n: usize) -> Vec<u32> {
    let history = frame(&enc::get_history("payments", "big-history"), false).to_vec();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let steps = [
            Step::headers(
                stalled.request_headers(&enc::method("GetWorkflowExecutionHistory"), &[]),
            ),
            Step::data(history.clone(), true),
        ];
        ids.push(
            stalled
                .send_steps(&steps, Duration::from_secs(5))
                .await
                .unwrap(),
        );
    }
    ids
}

#[tokio::test]
async fn one_tenants_hostile_traffic_never_fails_anothers_calls() {
    let temporal = TemporalServer::start(&["payments", "billing"]).await;
    let pki = TestPki::new();
    let cert = |name: &str, ns: &str| {
        pki.client_cert(
            name,
            ClientSpec {
                uris: vec![format!("spiffe://example.org/ns/{ns}/sa/{name}")],
                ..ClientSpec::cn(name)
            },
        )
    };
    let hostile = cert("hostile", "payments");
    let victim = cert("victim", "billing");
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), POLICY)).await;
    let hostile_tls = ClientTls::mtls(&pki.ca, &hostile.cert, &hostile.key, "localhost");

    // The hostile tenant's own workflow, whose history is 1 MiB.
    let setup = proxy.grpc(&pki, &hostile).await;
    let reply = setup
        .unary(
            &enc::method("StartWorkflowExecution"),
            &start_with_input("payments", "big-history", 1 << 20),
            &[],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");

    // The victim: long polls and a steady stream of calls.
    let victim_conn = Arc::new(proxy.grpc(&pki, &victim).await);
    let polls: Vec<_> = (0..4)
        .map(|i| {
            let conn = victim_conn.clone();
            tokio::spawn(async move {
                conn.poll_workflow_task_queue(
                    "billing",
                    &format!("billing-q{i}"),
                    Duration::from_secs(15),
                )
                .await
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let steady = {
        let (conn, stop, ok, failed) = (
            victim_conn.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let reply = conn
                    .unary_timeout(
                        path::DESCRIBE_NAMESPACE,
                        &pb::describe_namespace("billing"),
                        &[],
                        Duration::from_secs(10),
                    )
                    .await;
                slowest = slowest.max(started.elapsed());
                match reply {
                    Ok(r) if r.is_ok() => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("victim call failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            slowest
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The hostile tenant, all at once.
    let gsi = || frame(&pb::get_system_info(), false).to_vec();
    let h = H2Conn::tls(proxy.addr, &hostile_tls, &H2Options::default())
        .await
        .unwrap();
    let mut sent = Vec::new();
    for _ in 0..30 {
        // Request trailers after the message.
        let steps = [
            Step::headers(h.request_headers(path::GET_SYSTEM_INFO, &[])),
            Step::data(gsi(), false),
            Step::trailers(vec![field("x-trailer", "1")]),
        ];
        sent.push(h.send_steps(&steps, Duration::from_secs(5)).await.unwrap());
    }
    for extra in [
        field("X-Upper-Case", "1"),
        field("x-ctl", "a\u{1}b"),
        field("connection", "keep-alive"),
        field("content-length", "3"),
    ] {
        for _ in 0..10 {
            let mut headers = h.request_headers(path::GET_SYSTEM_INFO, &[]);
            headers.push(extra.clone());
            let steps = [Step::headers(headers), Step::data(gsi(), true)];
            let _ = h.send_steps(&steps, Duration::from_secs(5)).await;
        }
    }
    // 40 streams asking for the 1 MiB history on a connection that never
    // reads (its windows are never given back).
    let (stalled, _) = never_read_history_streams(proxy.addr, &hostile_tls, 40).await;
    // 50 streams declaring a 4 MiB first message and sending 64 KiB of it.
    let unfinished = H2Conn::tls(proxy.addr, &hostile_tls, &H2Options::default())
        .await
        .unwrap();
    for _ in 0..50 {
        let mut start = vec![0u8];
        start.extend_from_slice(&(4u32 << 20).to_be_bytes());
        start.extend_from_slice(&field_string(1, "payments"));
        start.resize(64 * 1024, b'x');
        let steps = [
            Step::headers(unfinished.request_headers(&enc::method("StartWorkflowExecution"), &[])),
            Step::data(start, false),
        ];
        let _ = unfinished.send_steps(&steps, Duration::from_secs(5)).await;
    }
    // Unsolicited PING ACKs and garbage handshakes.
    for i in 0..20_000u64 {
        let _ = h.ping_ack(i.to_be_bytes());
    }
    for _ in 0..300 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(proxy.addr).await {
            let _ = tcp.write_all(b"\x00\x01garbage, not a ClientHello").await;
        }
    }

    // Every victim call completed normally.
    for poll in polls {
        let reply = poll.await.unwrap().expect("long poll");
        assert!(reply.is_ok(), "a billing long poll failed: {reply:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let slowest = steady.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} billing calls failed ({ok} succeeded)");
    assert!(ok > 100, "only {ok} billing calls in 15 s");
    // Bounded, with room for a loaded 2-core machine: a call stalled behind
    // the hostile streams took seconds and timed out before the fix.
    assert!(
        slowest < Duration::from_secs(3),
        "slowest billing call: {slowest:?}"
    );

    // The hostile tenant's calls with trailers were answered normally too.
    for id in sent {
        let outcome = h.wait_stream(id, Duration::from_secs(10)).await;
        assert_eq!(outcome.grpc_status(), Some(code::OK), "{outcome:?}");
    }

    // One upstream connection carried it all, and it was never lost.
    assert_eq!(proxy.upstream_connections_opened(), 1);
    let loud = proxy
        .logs()
        .iter()
        .filter(|v| v["level"] != "DEBUG")
        .count();
    assert!(loud < 200, "{loud} log lines");
    drop((h, stalled, unfinished));
}

/// The memory the proxy holds for clients that never read their responses
/// is bounded by its upstream stream window (64 KiB by default): about
/// 538 KiB per stalled stream before the fix, HAProxy about 60 KiB.
#[tokio::test]
async fn never_read_responses_pin_memory_bounded_by_the_stream_window() {
    const STREAMS: usize = 100;
    let growth = pinned_by_stalled_streams(POLICY, &window_starved(), false, STREAMS).await;
    assert!(
        growth < STREAMS as u64 * 256,
        "{growth} KiB for {STREAMS} stalled streams ({} KiB each)",
        growth / STREAMS as u64
    );
}

/// A client can stall without touching its windows: it grants wide ones and
/// stops reading its socket. Each response then goes to the client
/// connection as far as those windows allow (h2 buffers up to 400 KiB per
/// stream, 40 MB for these 100 before the fix), and what bounds the unsent
/// bytes the proxy holds is the connection's budget
/// (`limits.connection_buffer`, 3 MiB here), plus for each stream the chunk
/// waiting for it and the upstream stream window behind it.
#[tokio::test]
async fn a_client_that_stops_reading_its_socket_pins_no_more_than_its_connection_budget() {
    const STREAMS: usize = 100;
    let policy = POLICY.replacen(
        "[limits]\n",
        "[limits]\nmax_request_message = \"2MiB\"\nconnection_buffer = \"3MiB\"\n",
        1,
    );
    let growth = pinned_by_stalled_streams(&policy, &wide_open(), true, STREAMS).await;
    assert!(
        growth < 3 * 1024 + STREAMS as u64 * 160,
        "{growth} KiB for {STREAMS} unread streams ({} KiB each)",
        growth / STREAMS as u64
    );
}

/// Starts the proxy (the binary in a child process, `spawn`, so that its
/// VmRSS is its own) with `policy`, warms it up with the 1 MiB workflow,
/// opens `streams` streams asking for its history on one connection made
/// with `opts` (that stops reading its socket if `stop_reading`), and
/// returns how much the proxy's VmRSS grew, in KiB, once it stopped
/// growing. Checks that the streams were still open when measured and that
/// the proxy serves normal calls once they are reset.
async fn pinned_by_stalled_streams(
    policy: &str,
    opts: &H2Options,
    stop_reading: bool,
    streams: usize,
) -> u64 {
    let temporal = TemporalServer::start(&["payments", "billing"]).await;
    let pki = TestPki::new();
    let hostile = pki.client_cert(
        "hostile",
        ClientSpec {
            uris: vec!["spiffe://example.org/ns/payments/sa/hostile".to_string()],
            ..ClientSpec::cn("hostile")
        },
    );
    let proxy = ProxyProcess::spawn(&config(&pki, &temporal.url(), policy)).await;
    let pid = proxy.pid();
    let hostile_tls = ClientTls::mtls(&pki.ca, &hostile.cert, &hostile.key, "localhost");

    // Warm-up: the 1 MiB workflow and a few normal calls.
    let conn = proxy.grpc(&pki, &hostile).await;
    let reply = conn
        .unary(
            &enc::method("StartWorkflowExecution"),
            &start_with_input("payments", "big-history", 1 << 20),
            &[],
        )
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    let describe = || async {
        conn.unary_timeout(
            path::DESCRIBE_NAMESPACE,
            &pb::describe_namespace("payments"),
            &[],
            Duration::from_secs(10),
        )
        .await
    };
    for _ in 0..5 {
        let reply = describe().await;
        assert!(matches!(&reply, Ok(r) if r.is_ok()), "{reply:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    let stalled = H2Conn::tls(proxy.addr, &hostile_tls, opts).await.unwrap();
    if stop_reading {
        stalled.stop_reading();
    }
    let ids = history_streams(&stalled, streams).await;
    // Until the upstream has sent what the windows and the budget allow:
    // RSS has not grown for a second (bounded, 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut peak, mut since) = (rss_kib(pid), Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_kib(pid);
        if now > peak {
            (peak, since) = (now, Instant::now());
        }
    }
    let after = peak.max(rss_kib(pid));
    let growth = after.saturating_sub(before);
    eprintln!(
        "VmRSS {before} -> {after} KiB with {streams} stalled streams: {} KiB per stream",
        growth / streams as u64
    );
    // The streams were still open, their responses held back: the
    // measurement is of stalled streams.
    for &id in &ids {
        let ev = stalled.stream(id).unwrap_or_default();
        assert!(!ev.finished(), "stream {id} ended: {ev:?}");
    }

    // Closed, and the proxy still serves normal calls.
    for &id in &ids {
        stalled.rst_stream(id, error_code::CANCEL).unwrap();
    }
    drop(stalled);
    let reply = describe().await;
    assert!(matches!(&reply, Ok(r) if r.is_ok()), "after: {reply:?}");
    // A client that reads takes more than its connection's budget on one
    // connection: the budget holds only what is not written yet.
    for _ in 0..5 {
        let history = conn
            .unary_timeout(
                &enc::method("GetWorkflowExecutionHistory"),
                &enc::get_history("payments", "big-history"),
                &[],
                Duration::from_secs(20),
            )
            .await;
        assert!(
            matches!(&history, Ok(r) if r.is_ok() && r.messages[0].len() > 1 << 20),
            "the history after: {history:?}"
        );
    }
    let fresh = proxy.grpc(&pki, &hostile).await;
    let reply = fresh
        .unary_timeout(
            path::DESCRIBE_NAMESPACE,
            &pb::describe_namespace("payments"),
            &[],
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(&reply, Ok(r) if r.is_ok()),
        "a fresh connection after: {reply:?}"
    );
    growth
}
