//! `listen.proxy_protocol = true` behind a real L4 load balancer: HAProxy
//! (the Debian package) in `mode tcp` with `send-proxy-v2`, in front of the
//! proxy, in front of the real Temporal dev server. The client's own
//! address (as HAProxy saw it) is the peer of audit lines and connection
//! logs, HAProxy's is `via`; connections without a valid header are
//! refused before TLS and counted as `proxy_header`; HAProxy's health
//! checks (a LOCAL header, then a reset) count as `closed`, as TCP probes
//! do without the setting. Without the setting, HAProxy's header fails the
//! handshake with a reason that names it.
//!
//! HAProxy runs in the foreground (`haproxy -db`) as a child of the test,
//! on a free loopback port, with its config in a temp dir, killed when the
//! test ends. It connects to the proxy from 127.0.0.2, so that its address
//! and the client's (127.0.0.1) cannot be confused. Under `CI=true` a
//! missing `haproxy` fails the tests that need it; elsewhere they are
//! skipped with a printed reason (`scripts/tools.sh` installs it).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::cli::{cluster_health, CliTls};
use support::grpc::{self, code, path, pb, ClientTls, GrpcConn};
use support::pki::{TestPki, GOOD_CLIENT_SPIFFE};
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;
use support::tools;

/// Where HAProxy's connections to the proxy come from.
const HAPROXY_SOURCE: &str = "127.0.0.2";
/// The refusal of a PROXY protocol v1 header.
const V1_REASON: &str = "PROXY protocol v1 is not supported; configure send-proxy-v2 (version 2, the binary header) on the load balancer";

/// The `haproxy` binary: on PATH or in /usr/sbin (not on a user's PATH on
/// Debian). `None` (skip, with the reason printed) when missing outside CI.
fn haproxy_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "haproxy not found on PATH or in /usr/sbin (Debian package `haproxy`; \
                   scripts/tools.sh installs it)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}: this test needs it under CI");
        }
        eprintln!("skipped: {why}");
    }
    found
}

/// HAProxy in TCP mode forwarding to `backend` with `send-proxy-v2`.
struct Haproxy {
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port and waits until it listens.
    /// `checks`: health checks of the backend every 100 ms (which, with
    /// `send-proxy-v2`, send a LOCAL header).
    async fn start(bin: &std::path::Path, backend: SocketAddr, checks: bool) -> Haproxy {
        let mut last_error = String::new();
        // A free port can be taken before HAProxy binds it: try another.
        for _ in 0..3 {
            match Self::try_start(bin, backend, checks).await {
                Ok(h) => return h,
                Err(e) => last_error = e,
            }
        }
        panic!("HAProxy did not start: {last_error}");
    }

    async fn try_start(
        bin: &std::path::Path,
        backend: SocketAddr,
        checks: bool,
    ) -> Result<Haproxy, String> {
        let dir = tempfile::Builder::new()
            .prefix("haproxy-")
            .tempdir()
            .expect("tempdir for HAProxy");
        let port = tools::free_port();
        let check = if checks { " check inter 100ms" } else { "" };
        let cfg = format!(
            "global\n\
             \x20   log stdout format raw local0 info\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   log global\n\
             \x20   option tcplog\n\
             \x20   timeout connect 5s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             frontend clients\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend proxy\n\
             backend proxy\n\
             \x20   server proxy {backend} send-proxy-v2 source {HAPROXY_SOURCE}{check}\n"
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let mut child = tokio::process::Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = output.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        // Listening is read from /proc, not by connecting: a connection
        // would be forwarded to the proxy and counted there.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if listening(port) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "haproxy exited with {status}: {}",
                    output.lock().unwrap()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "haproxy not listening on 127.0.0.1:{port} after 10 s: {}",
                    output.lock().unwrap()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Haproxy {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            output,
            _child: child,
            _dir: dir,
        })
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (from /proc/net/tcp).
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

/// The proxy's config with `listen.proxy_protocol = true` and `tls_keys`
/// added to `[tls]`.
fn with_proxy_protocol(text: &str, tls_keys: &str) -> String {
    text.replacen("[listen]\n", "[listen]\nproxy_protocol = true\n", 1)
        .replacen("[upstream]", &format!("{tls_keys}\n[upstream]"), 1)
}

fn audit_extra(path: &std::path::Path) -> String {
    format!("[audit]\nsink = {:?}\n", path.display().to_string())
}

/// `handshake_failures_total` by reason, from the proxy's /metrics.
async fn failures(proxy: &ProxyProcess) -> BTreeMap<String, f64> {
    let (status, body) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    let prefix = "temporal_mtls_proxy_handshake_failures_total{reason=\"";
    body.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| {
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until `pred` holds for the failure counts; returns the last ones.
async fn wait_failures(
    proxy: &ProxyProcess,
    timeout: Duration,
    pred: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = failures(proxy).await;
        if pred(&counts) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every reason but `except` is zero.
fn only(counts: &BTreeMap<String, f64>, except: &[&str]) -> bool {
    counts
        .iter()
        .all(|(reason, n)| except.contains(&reason.as_str()) || *n == 0.0)
}

/// A GetSystemInfo over mTLS to `addr` on a connection whose socket the
/// test holds: the client's local address and the call's grpc-status.
async fn get_system_info(addr: SocketAddr, pki: &TestPki) -> (SocketAddr, Option<String>) {
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let stream = grpc::raw_tls(addr, &tls)
        .await
        .unwrap_or_else(|e| panic!("mTLS to {addr}: {e}"));
    let local = stream.get_ref().0.local_addr().expect("local address");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .expect("HTTP/2 handshake");
    let conn = tokio::spawn(conn);
    let request = http::Request::post(format!(
        "https://localhost:{}{}",
        addr.port(),
        path::GET_SYSTEM_INFO
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(grpc::frame(&pb::get_system_info(), false)))
    .expect("request");
    let call = async {
        let response = sender.send_request(request).await.expect("response");
        let in_headers = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.into_body().collect().await.expect("body");
        in_headers.or_else(|| {
            body.trailers()
                .and_then(|t| t.get("grpc-status"))
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        })
    };
    let status = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("GetSystemInfo within 30 s");
    conn.abort();
    (local, status)
}

/// The first audit line in `path` matching `pred`, waited for.
async fn wait_audit_line(path: &std::path::Path, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| pred(v));
        if let Some(v) = found {
            return v;
        }
        if Instant::now() > deadline {
            panic!("no matching audit line in {}:\n{text}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn address_of(v: &Value, field: &str) -> Option<SocketAddr> {
    v[field].as_str().and_then(|s| s.parse().ok())
}

#[tokio::test]
async fn calls_through_haproxy_carry_the_clients_own_address() {
    let Some(bin) = haproxy_bin() else { return };
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let audit = tempfile::NamedTempFile::new().unwrap();
    let proxy = ProxyProcess::start(&with_proxy_protocol(
        &config(&pki, &temporal.url(), &audit_extra(audit.path())),
        "",
    ))
    .await;
    let haproxy = Haproxy::start(&bin, proxy.addr, false).await;

    // A raw gRPC call: the test holds the socket, so it knows the address
    // HAProxy saw the client at.
    let (client, status) = get_system_info(haproxy.addr, &pki).await;
    assert_eq!(
        status.as_deref(),
        Some("0"),
        "GetSystemInfo through HAProxy; proxy logs: {:#?}\nhaproxy: {}",
        proxy.logs(),
        haproxy.output()
    );
    let line = wait_audit_line(audit.path(), |v| {
        v["method"] == path::GET_SYSTEM_INFO && address_of(v, "peer") == Some(client)
    })
    .await;
    assert_eq!(line["grpc_status"], 0, "{line}");

    // The connection line: the client as peer, HAProxy as via.
    let accepted = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "connection accepted" && address_of(v, "peer") == Some(client)
        })
        .await
        .unwrap_or_else(|| panic!("no connection line for {client}: {:#?}", proxy.logs()));
    let via =
        address_of(&accepted, "via").unwrap_or_else(|| panic!("no via address in {accepted}"));
    assert_eq!(via.ip().to_string(), HAPROXY_SOURCE, "{accepted}");
    assert_ne!(via.port(), client.port(), "{accepted}");
    assert_eq!(accepted["identity"], GOOD_CLIENT_SPIFFE, "{accepted}");

    // A real client, the `temporal` CLI, through HAProxy: its calls are
    // audited with its own (127.0.0.1) address, never HAProxy's.
    let cli_tls = CliTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    cluster_health(&haproxy.addr.to_string(), Some(&cli_tls))
        .await
        .assert_success("temporal operator cluster health through HAProxy");
    let cli_line = wait_audit_line(audit.path(), |v| {
        address_of(v, "peer").is_some_and(|peer| peer != client)
    })
    .await;
    let cli_peer = address_of(&cli_line, "peer").unwrap();
    assert_eq!(cli_peer.ip().to_string(), "127.0.0.1", "{cli_line}");
    assert_eq!(cli_line["grpc_status"], 0, "{cli_line}");
    // No call names HAProxy as its peer.
    let text = std::fs::read_to_string(audit.path()).unwrap();
    assert!(
        !text.contains(&format!("\"peer\":\"{HAPROXY_SOURCE}:")),
        "an audit line names HAProxy as the peer:\n{text}"
    );
    assert!(
        only(&failures(&proxy).await, &[]),
        "no handshake failed: {:?}",
        failures(&proxy).await
    );
}

#[tokio::test]
async fn haproxy_health_checks_count_as_closed_not_as_failures() {
    let Some(bin) = haproxy_bin() else { return };
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&with_proxy_protocol(
        &config(&pki, "http://127.0.0.1:9", ""),
        "",
    ))
    .await;
    let haproxy = Haproxy::start(&bin, proxy.addr, true).await;
    // Checks every 100 ms: a LOCAL header, then HAProxy resets the
    // connection (it closes its checks with RST).
    let counts = wait_failures(&proxy, Duration::from_secs(15), |c| {
        c.get("closed").copied().unwrap_or(0.0) >= 5.0
    })
    .await;
    assert!(
        counts["closed"] >= 5.0 && only(&counts, &["closed"]),
        "health checks count as closed and as nothing else: {counts:?}; logs: {:#?}",
        proxy.logs()
    );
    assert!(
        !proxy
            .logs()
            .iter()
            .any(|v| v["message"] == "TLS handshake refused" && v["level"] != "DEBUG"),
        "health checks are not warned about: {:#?}",
        proxy.logs()
    );
    assert!(
        !haproxy.output().contains("is DOWN"),
        "HAProxy sees the proxy as up: {}",
        haproxy.output()
    );
}

#[tokio::test]
async fn without_the_setting_haproxys_header_fails_the_handshake_and_says_why() {
    let Some(bin) = haproxy_bin() else { return };
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, "http://127.0.0.1:9", "")).await;
    let haproxy = Haproxy::start(&bin, proxy.addr, false).await;
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let refused = GrpcConn::connect(haproxy.addr, Some(&tls)).await;
    assert!(refused.is_err(), "the handshake must fail");
    let reason = proxy.refusal_reason("not_tls").await;
    assert_eq!(
        reason,
        "not a TLS handshake (first bytes 0d 0a 0d 0a 00 0d 0a 51: a PROXY protocol header, but listen.proxy_protocol is off)"
    );
}

/// No HAProxy needed: what reaches the proxy's port directly.
#[tokio::test]
async fn connections_without_a_valid_header_are_refused_before_tls() {
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&with_proxy_protocol(
        &config(&pki, "http://127.0.0.1:9", ""),
        "handshake_timeout = \"1s\"\n",
    ))
    .await;

    // A client connecting directly: its TLS client hello is not a header.
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let direct = GrpcConn::connect(proxy.addr, Some(&tls)).await;
    assert!(direct.is_err(), "a direct TLS client is refused");
    let reason = proxy.refusal_reason("proxy_header").await;
    assert!(
        reason.starts_with(
            "no PROXY protocol v2 header, which listen.proxy_protocol requires (first bytes 16 03 01 "
        ) && reason.ends_with(
            "(a TLS handshake: the client connected directly, or the load balancer does not send the header))"
        ),
        "{reason}"
    );

    // A PROXY protocol v1 (text) header.
    let mut v1 = TcpStream::connect(proxy.addr).await.unwrap();
    v1.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 51234 7443\r\n")
        .await
        .unwrap();
    assert_closed(&mut v1).await;
    let line = proxy
        .wait_log(Duration::from_secs(10), |v| v["reason"] == V1_REASON)
        .await
        .unwrap_or_else(|| panic!("no v1 refusal: {:#?}", proxy.logs()));
    assert_eq!(line["kind"], "proxy_header");
    assert_eq!(line["level"], "WARN", "{line}");

    // A header cut short.
    let header = v2_tcp4("203.0.113.7:51234".parse().unwrap(), proxy.addr);
    let mut cut = TcpStream::connect(proxy.addr).await.unwrap();
    cut.write_all(&header[..20]).await.unwrap();
    cut.shutdown().await.unwrap();
    assert_closed(&mut cut).await;
    proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["reason"] == "connection closed inside the PROXY protocol v2 header (20 of 28 bytes)"
        })
        .await
        .unwrap_or_else(|| panic!("no truncated refusal: {:#?}", proxy.logs()));

    // Nothing within the handshake timeout, which covers the header.
    let _silent = TcpStream::connect(proxy.addr).await.unwrap();
    let reason = proxy.refusal_reason("timeout").await;
    assert_eq!(reason, "handshake not completed within 1s");

    // A load balancer's health check: LOCAL, then close.
    let mut local = TcpStream::connect(proxy.addr).await.unwrap();
    local.write_all(&v2_local()).await.unwrap();
    local.shutdown().await.unwrap();
    assert_closed(&mut local).await;

    let counts = wait_failures(&proxy, Duration::from_secs(10), |c| {
        c.get("closed") == Some(&1.0) && c.get("proxy_header") == Some(&3.0)
    })
    .await;
    assert_eq!(counts.get("proxy_header"), Some(&3.0), "{counts:?}");
    assert_eq!(counts.get("timeout"), Some(&1.0), "{counts:?}");
    assert_eq!(counts.get("closed"), Some(&1.0), "{counts:?}");
    assert!(
        only(&counts, &["proxy_header", "timeout", "closed"]),
        "{counts:?}"
    );
}

/// A load balancer of the test's own (a TCP relay that writes `header`
/// first) in front of the proxy: for what HAProxy on loopback cannot send,
/// an IPv6 client address with TLVs behind it.
#[tokio::test]
async fn a_tcp6_header_with_tlvs_names_the_ipv6_client() {
    let pki = TestPki::new();
    let audit = tempfile::NamedTempFile::new().unwrap();
    let proxy = ProxyProcess::start(&with_proxy_protocol(
        &config(&pki, "http://127.0.0.1:9", &audit_extra(audit.path())),
        "",
    ))
    .await;
    let client: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
    let relay = relay_with_header(proxy.addr, v2_tcp6_with_tlvs(client)).await;

    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    let conn = GrpcConn::connect(relay, Some(&tls))
        .await
        .unwrap_or_else(|e| panic!("through the relay: {e}; logs: {:#?}", proxy.logs()));
    // The upstream is down: UNAVAILABLE, audited all the same.
    let reply = conn
        .unary(path::GET_SYSTEM_INFO, &pb::get_system_info(), &[])
        .await
        .unwrap();
    assert_eq!(reply.grpc_status, Some(code::UNAVAILABLE));
    let line = wait_audit_line(audit.path(), |v| v["method"] == path::GET_SYSTEM_INFO).await;
    assert_eq!(line["peer"], client.to_string(), "{line}");
    let accepted = proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "connection accepted"
        })
        .await
        .expect("connection line");
    assert_eq!(accepted["peer"], client.to_string(), "{accepted}");
    assert_eq!(
        address_of(&accepted, "via").map(|a| a.ip().to_string()),
        Some("127.0.0.1".to_owned()),
        "{accepted}"
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_setting_says_it_needs_a_restart() {
    let pki = TestPki::new();
    let text = with_proxy_protocol(&config(&pki, "http://127.0.0.1:9", ""), "");
    let proxy = ProxyProcess::start(&text).await;
    let off = text.replace("proxy_protocol = true", "proxy_protocol = false");
    // The reloader takes its first look at the file a moment after the
    // proxy reports it listens; a change written before that is its
    // starting point. So the change is written again (with a comment that
    // differs) until it is seen, at most three times.
    let mut warned = None;
    for attempt in 0..3 {
        std::fs::write(
            &proxy.config_path,
            format!(
                "{off}
# attempt {attempt}
"
            ),
        )
        .unwrap();
        warned = proxy
            .wait_log(Duration::from_secs(6), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("changed settings need a restart"))
                    && v["settings"]
                        .as_str()
                        .is_some_and(|s| s.contains("listen.proxy_protocol"))
            })
            .await;
        if warned.is_some() {
            break;
        }
    }
    assert!(
        warned.is_some(),
        "no restart-needed warning: {:#?}",
        proxy.logs()
    );
    // The running value stays: a direct client is still refused.
    let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
    assert!(GrpcConn::connect(proxy.addr, Some(&tls)).await.is_err());
    proxy.refusal_reason("proxy_header").await;
}

// --- Headers written by hand -------------------------------------------------

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[ver_cmd, family]);
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_local() -> Vec<u8> {
    v2(0x20, 0x00, &[])
}

fn v2_tcp4(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 addresses");
    };
    let mut block = s.ip().octets().to_vec();
    block.extend_from_slice(&d.ip().octets());
    block.extend_from_slice(&s.port().to_be_bytes());
    block.extend_from_slice(&d.port().to_be_bytes());
    v2(0x21, 0x11, &block)
}

fn v2_tcp6_with_tlvs(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V6(s) = source else {
        panic!("an IPv6 address")
    };
    let mut block = s.ip().octets().to_vec();
    block.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(&s.port().to_be_bytes());
    block.extend_from_slice(&7443u16.to_be_bytes());
    // PP2_TYPE_AUTHORITY, then an AWS-style VPC endpoint id (type 0xEA).
    block.extend_from_slice(&[0x02, 0, 9]);
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0xea, 0, 23, 0x01]);
    block.extend_from_slice(b"vpce-0123456789abcdef");
    v2(0x21, 0x21, &block)
}

/// A relay on a free loopback port: each connection to it is forwarded to
/// `to`, with `header` written first. Runs until the test ends.
async fn relay_with_header(to: SocketAddr, header: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let header = header.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                if outbound.write_all(&header).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(
                    Duration::from_secs(60),
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound),
                )
                .await;
            });
        }
    });
    addr
}

/// The proxy closes `tcp` without a word (within 5 s).
async fn assert_closed(tcp: &mut TcpStream) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed without an answer: {read:?} {buf:?}"
    );
}
