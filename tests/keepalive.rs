//! Keepalive toward clients: the proxy pings a quiet connection and closes
//! it when the ping goes unanswered (a dead link), within ping_interval +
//! ping_timeout. Intervals scaled down from the defaults (1 min, 10 s).

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::grpc::{raw_tls, ClientTls};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_PING: u8 = 0x6;

#[tokio::test]
async fn unanswered_ping_closes_the_connection() {
    let pki = TestPki::new();
    let text = format!(
        "{}\n[keepalive]\nping_interval = \"1s\"\nping_timeout = \"1s\"\n",
        config(&pki, "http://127.0.0.1:9", "")
    );
    let proxy = ProxyProcess::start(&text).await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let mut stream = raw_tls(proxy.addr, &tls).await.unwrap();
    // A client that says hello (preface + empty SETTINGS) and then goes
    // silent, answering nothing, like a peer behind a dead link.
    stream.write_all(PREFACE).await.unwrap();
    stream
        .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let started = Instant::now();

    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before any ping could time out: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );

    // Among what the proxy sent: a PING (not an ACK).
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len = (usize::from(buf[at]) << 16)
            | (usize::from(buf[at + 1]) << 8)
            | usize::from(buf[at + 2]);
        frames.push((buf[at + 3], buf[at + 4]));
        at += 9 + len;
    }
    assert!(
        frames
            .iter()
            .any(|&(kind, flags)| kind == FRAME_PING && flags & 1 == 0),
        "no PING among {frames:?}"
    );
}

/// An h2 client over mTLS to the proxy, its connection driven in the
/// background; returns the request handle, the ping handle and the
/// connection's outcome.
async fn h2_client(
    proxy: &ProxyProcess,
    pki: &TestPki,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::PingPong,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let stream = raw_tls(proxy.addr, &tls).await.unwrap();
    let (send, mut conn) = h2::client::handshake(stream).await.unwrap();
    let ping = conn.ping_pong().expect("ping_pong");
    let driver = tokio::spawn(conn);
    (send, ping, driver)
}

#[tokio::test]
async fn ping_flood_gets_goaway_too_many_pings() {
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, "http://127.0.0.1:9", "")).await;
    let (_send, mut ping, driver) = h2_client(&proxy, &pki).await;
    let mut answered = 0;
    for _ in 0..10 {
        match ping.ping(h2::Ping::opaque()).await {
            Ok(_pong) => answered += 1,
            Err(_) => break,
        }
    }
    // The first ping and two strikes are answered; the next one trips.
    assert!(answered <= 3, "{answered} pings answered");
    let outcome = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the connection ended")
        .unwrap();
    let err = outcome.expect_err("closed by GOAWAY");
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?}");
    assert!(err.is_go_away() && err.is_remote(), "{err:?}");
    assert!(format!("{err:?}").contains("too_many_pings"), "{err:?}");
    proxy
        .wait_log(Duration::from_secs(5), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("too_many_pings"))
        })
        .await
        .expect("logged with the peer");
}

/// SDKs ping every 30 s; scaled: a 1 s minimum and a ping every 1.2 s, for
/// a run of pings, with and without a call in flight. Never refused.
#[tokio::test]
async fn well_behaved_pinger_keeps_its_connection() {
    let temporal = support::temporal::TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&format!(
        "{}\n[keepalive]\nmin_client_ping_interval = \"1s\"\n",
        config(&pki, &temporal.url(), "")
    ))
    .await;
    let (mut send, mut ping, driver) = h2_client(&proxy, &pki).await;
    // A poll in flight for the first few pings.
    let poll = {
        let body = support::grpc::frame(
            &support::grpc::pb::poll_workflow_task_queue("default", "ping-test", "ping-test"),
            false,
        );
        let req = http::Request::post(format!(
            "https://localhost:{}/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue",
            proxy.addr.port()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "4S")
        .body(())
        .unwrap();
        let (resp, mut stream) = send.send_request(req, false).unwrap();
        stream.send_data(body, true).unwrap();
        resp
    };
    for i in 0..7 {
        ping.ping(h2::Ping::opaque())
            .await
            .unwrap_or_else(|e| panic!("ping {i} refused: {e}"));
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let resp = poll.await.expect("the poll completed");
    assert_eq!(resp.status(), 200);
    assert!(!driver.is_finished(), "the connection was closed");
    assert!(!proxy.logs().iter().any(|v| v["message"]
        .as_str()
        .is_some_and(|m| m.contains("too_many_pings"))));
}
