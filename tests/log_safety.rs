//! No peer controls the log: floods of what a client can send (garbage
//! handshakes, unsolicited PING ACKs, denied calls) give a handful of lines
//! and counters, not a line per frame or connection; and logging never
//! blocks serving: with the proxy's stdout a pipe nobody reads, legitimate
//! calls keep succeeding while the proxy has far more to log than the pipe
//! holds.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::grpc::{path, pb, ClientTls, GrpcConn};
use support::pki::TestPki;
use support::proxy::{self, config, ProxyProcess};
use support::temporal::TemporalServer;
use support::tools::{free_port, wait_for_port};

/// Connections that send a fake ClientHello and close.
async fn garbage_handshakes(addr: std::net::SocketAddr, count: usize) {
    let mut tasks = Vec::new();
    for _ in 0..count {
        tasks.push(tokio::spawn(async move {
            if let Ok(mut tcp) = TcpStream::connect(addr).await {
                // Not a TLS record at all.
                let _ = tcp
                    .write_all(b"\x00\x01garbage-garbage-garbage-garbage-garbage!!")
                    .await;
                let _ = tcp.shutdown().await;
            }
        }));
        if tasks.len() >= 50 {
            for t in tasks.drain(..) {
                let _ = t.await;
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn sample(metrics: &str, series: &str) -> f64 {
    proxy::sample(metrics, series).unwrap_or(0.0)
}

#[tokio::test]
async fn floods_of_peer_input_give_a_handful_of_lines_and_counters() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let started = Instant::now();

    // 1,500 garbage handshakes.
    garbage_handshakes(proxy.addr, 1500).await;

    // 20,000 unsolicited PING ACKs on one connection (h2 warns on each).
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let mut stream = support::grpc::raw_tls(proxy.addr, &tls).await.unwrap();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for i in 0..20_000u64 {
        bytes.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0]);
        bytes.extend_from_slice(&i.to_be_bytes());
    }
    stream.write_all(&bytes).await.unwrap();
    stream.flush().await.unwrap();

    // The connection still serves a real call afterwards.
    let conn = proxy.grpc(&pki, &pki.client).await;
    let reply = conn
        .unary(path::GET_SYSTEM_INFO, &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = started.elapsed().as_secs_f64().ceil();

    let logs = proxy.logs();
    let refused = logs
        .iter()
        .filter(|v| v["message"] == "TLS handshake refused" && v["level"] != "DEBUG")
        .count();
    let pings = logs
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("PING ack that we never sent"))
        })
        .count();
    // Ten lines a second per site at most, plus the summaries.
    assert!(
        (refused as f64) <= 10.0 * (elapsed + 1.0),
        "{refused} refusal lines in {elapsed} s"
    );
    assert_eq!(pings, 0, "h2's per-frame warning reached the log");
    let loud: Vec<_> = logs.iter().filter(|v| v["level"] != "DEBUG").collect();
    assert!(
        loud.len() < 200,
        "{} log lines for the floods: {:#?}",
        loud.len(),
        &loud[..20.min(loud.len())]
    );
    // The flood is summarised, even though it stopped.
    let summary = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("similar log lines suppressed"))
                && v["site"] == "handshake_refused"
        })
        .await
        .expect("a summary line");
    assert!(summary["suppressed"].as_u64().unwrap() > 0, "{summary}");
    let (_, metrics) = proxy.admin_get("/metrics").await;
    let suppressed = sample(
        &metrics,
        "temporal_mtls_proxy_log_lines_suppressed_total{site=\"handshake_refused\"}",
    );
    assert!(suppressed >= 1000.0, "{suppressed}\n{metrics}");
    let failures = sample(
        &metrics,
        "temporal_mtls_proxy_handshake_failures_total{reason=\"not_tls\"}",
    );
    assert_eq!(failures, 1500.0, "every refusal is still counted");
}

/// The proxy's stdout is a pipe nobody reads (a stalled container log
/// pipe). Before logging stopped blocking, the serving threads froze in
/// `write(2)` once the pipe was full.
#[tokio::test]
async fn a_stalled_log_pipe_never_blocks_serving() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let port = free_port();
    let admin = free_port();
    let toml = config(&pki, &temporal.url(), "")
        .replace(
            "[listen]\naddress = \"127.0.0.1:0\"",
            &format!("[listen]\naddress = \"127.0.0.1:{port}\""),
        )
        .replace(
            "[admin]\naddress = \"127.0.0.1:0\"",
            &format!("[admin]\naddress = \"127.0.0.1:{admin}\""),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = tokio::process::Command::new(support::proxy::binary())
        .arg("--config")
        .arg(&path)
        // Every call and connection logs at debug: far more than the pipe
        // (64 KiB) holds.
        .args(["--log-format", "json", "--log-level", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Held, never read.
    let _stdout = child.stdout.take().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr, Duration::from_secs(20)).await;

    // Garbage handshakes, and bare connects that close at once (a debug
    // line each, as TCP health checks get): more lines than the writer's
    // queue holds, so some must be dropped rather than waited for.
    let flood = tokio::spawn(async move {
        garbage_handshakes(addr, 1000).await;
        for _ in 0..25_000 {
            drop(TcpStream::connect(addr).await);
        }
    });
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let started = Instant::now();
    for i in 0..300 {
        // A new connection now and then: handshakes log too.
        let conn = GrpcConn::connect(addr, Some(&tls)).await.unwrap();
        for _ in 0..10 {
            let reply = conn
                .unary_timeout(
                    path::GET_SYSTEM_INFO,
                    &pb::get_system_info(),
                    &[],
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|e| panic!("call {i} failed with the log pipe stalled: {e}"));
            assert!(reply.is_ok(), "{reply:?}");
        }
    }
    flood.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "calls crawled: {:?}",
        started.elapsed()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the proxy must keep running"
    );
    // The lines it could not write are counted.
    let mut tcp = TcpStream::connect(("127.0.0.1", admin)).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut text)
        .await
        .unwrap();
    let dropped = sample(&text, "temporal_mtls_proxy_log_lines_dropped_total");
    assert!(dropped > 0.0, "{text}");
}
