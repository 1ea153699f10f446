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
