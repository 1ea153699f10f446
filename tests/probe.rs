//! `temporal-mtls-proxy probe`, the binary, against real paths: the real
//! Temporal dev server through the real proxy (every check passes, with the
//! SDKs' 30 s keepalive and a 75 s long poll), a namespace the proxy's policy
//! refuses, a small request limit, pings faster than the proxy allows, the
//! frontend directly over h2c, a server the CA does not vouch for, and real
//! nginx in front of the proxy with its default 60 s `grpc_read_timeout`,
//! which cuts the long poll; and a bearer token instead of a client
//! certificate. Assertions are on `--json` and the exit code.
//!
//! The two long tests (75 s polls) run side by side under nextest; the
//! others take seconds.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use support::pki::TestPki;
use support::proxy::{binary, config, ProxyProcess};
use support::temporal::{TemporalOpts, TemporalServer};
use support::tools::{self, run_captured, Captured};

/// Runs `probe ARGS --json`; returns what it printed and the report.
async fn probe(args: &[String], timeout: Duration) -> (Captured, Value) {
    let mut all = vec!["probe".to_owned()];
    all.extend_from_slice(args);
    all.push("--json".into());
    let out = run_captured(&binary(), &all, &[], timeout).await;
    assert!(!out.timed_out, "the probe did not finish: {out}");
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("the probe's stdout is not JSON ({e}): {out}"));
    (out, report)
}

/// The client side of mTLS to a server with the test PKI's certificate.
fn mtls(pki: &TestPki, address: &str) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        address.to_owned(),
        "--cert".into(),
        path(&pki.client.cert),
        "--key".into(),
        path(&pki.client.key),
        "--ca".into(),
        path(&pki.ca),
        "--server-name".into(),
        "localhost".into(),
    ]
}

fn args(base: Vec<String>, more: &[&str]) -> Vec<String> {
    let mut all = base;
    all.extend(more.iter().map(|s| s.to_string()));
    all
}

/// The check `name` (of `namespace`, for the access checks).
fn check<'a>(report: &'a Value, name: &str, namespace: Option<&str>) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name && namespace.is_none_or(|ns| c["namespace"] == ns))
        .unwrap_or_else(|| panic!("no check {name} {namespace:?} in {report:#}"))
}

fn outcome(report: &Value, name: &str) -> String {
    check(report, name, None)["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn through_the_proxy_every_check_passes_with_sdk_keepalive_and_a_75_s_poll() {
    // The frontend holds an unserved poll until its deadline (see
    // TemporalOpts::long_polls_to_deadline), so the poll lasts the 75 s.
    let temporal =
        TemporalServer::start_with(TemporalOpts::default().long_polls_to_deadline()).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    // The defaults: 200 calls, sizes up to 64 MiB, a PING every 30 s over
    // 65 s idle, and `--long-poll` (75 s).
    let (out, report) = probe(
        &args(mtls(&pki, &proxy.addr.to_string()), &["--long-poll"]),
        Duration::from_secs(150),
    )
    .await;
    assert!(out.status.success(), "{out}");
    assert_eq!(report["ok"], true);
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["outcome"], "pass", "{c:#}");
    }

    let tls = &check(&report, "tls", None)["details"];
    assert_eq!(tls["alpn"], "h2");
    assert!(
        tls["version"].as_str().unwrap().starts_with("TLS 1."),
        "{tls}"
    );
    assert!(
        tls["chain"][0]["issuer"]
            .as_str()
            .unwrap()
            .contains("Test Root CA"),
        "{tls}"
    );
    let days = tls["chain"][0]["days_left"].as_i64().unwrap();
    assert!((28..=30).contains(&days), "{tls}");

    let access = check(&report, "access", Some("default"));
    assert!(access["details"]["server_version"].is_string(), "{access}");

    let latency = &check(&report, "latency", None)["details"];
    assert_eq!(latency["calls"], 200);
    assert_eq!(latency["failed"], 0);
    for (lower, higher) in [
        ("p50_ms", "p90_ms"),
        ("p90_ms", "p99_ms"),
        ("p99_ms", "max_ms"),
    ] {
        assert!(
            latency[lower].as_f64() <= latency[higher].as_f64(),
            "{latency}"
        );
    }

    // The proxy's limit is the frontend's, 4 MiB, refused in grpc-go's
    // words, which name the limit: found exactly.
    let size = &check(&report, "message_size", None)["details"];
    assert_eq!(size["largest_accepted"], 4 << 20, "{size}");
    assert_eq!(size["smallest_refused"], (4 << 20) + 1, "{size}");
    assert_eq!(size["refusal"]["status"], "RESOURCE_EXHAUSTED", "{size}");
    assert!(size["probes"].as_u64().unwrap() <= 12, "{size}");

    // The SDKs' keepalive, for real against the proxy's enforcement (10 s).
    let keepalive = &check(&report, "keepalive", None)["details"];
    assert!(
        keepalive["pings_sent"].as_u64().unwrap() >= 2,
        "{keepalive}"
    );
    assert_eq!(
        keepalive["pings_sent"], keepalive["pings_answered"],
        "{keepalive}"
    );
    assert!(keepalive["goaway"].is_null(), "{keepalive}");
    assert_eq!(keepalive["call_after_idle"]["status"], "OK", "{keepalive}");

    let poll = &check(&report, "long_poll", None)["details"];
    assert_eq!(poll["answer"]["status"], "OK", "{poll}");
    assert!(poll["held_seconds"].as_f64().unwrap() >= 74.0, "{poll}");

    // The whole probe took about the longest check, not the sum.
    let took = report["seconds"].as_f64().unwrap();
    assert!(took < 95.0, "the probe took {took} s");
}

#[tokio::test]
async fn nginx_with_its_default_read_timeout_cuts_the_long_poll() {
    let Some(nginx) = nginx_binary() else {
        return;
    };
    let temporal =
        TemporalServer::start_with(TemporalOpts::default().long_polls_to_deadline()).await;
    let pki = TestPki::new();
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let front = Nginx::start(&nginx, &pki, proxy.addr.port()).await;
    let (out, report) = probe(
        &args(
            mtls(&pki, &front.address()),
            &["--long-poll", "--skip", "keepalive,latency"],
        ),
        Duration::from_secs(150),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(report["ok"], false);
    // Through nginx, the calls themselves work...
    assert_eq!(outcome(&report, "tls"), "pass", "{report:#}");
    assert_eq!(check(&report, "access", Some("default"))["outcome"], "pass");
    // ... nginx's default client_max_body_size (1 MiB) refuses big requests
    // with an HTTP 413, which SDKs cannot read as "message too large" ...
    let size = check(&report, "message_size", None);
    assert_eq!(size["outcome"], "warn", "{size:#}");
    assert_eq!(size["details"]["refusal"]["status"], "HTTP 413", "{size:#}");
    let accepted = size["details"]["largest_accepted"].as_u64().unwrap();
    assert!(
        (1_000_000..1 << 20).contains(&accepted),
        "nginx accepted {accepted} bytes: {size:#}"
    );
    // ... and the long poll is cut at 60 s, and said so.
    let poll = check(&report, "long_poll", None);
    assert_eq!(poll["outcome"], "fail", "{poll:#}");
    let reason = poll["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("long poll cut after 6") && reason.contains("by the path (HTTP 504"),
        "{reason}"
    );
    assert!(
        reason.contains("below Temporal's 70 s long polls"),
        "{reason}"
    );
    let held = poll["details"]["held_seconds"].as_f64().unwrap();
    assert!((59.0..66.0).contains(&held), "held {held} s: {poll:#}");
    assert_eq!(poll["details"]["answer"]["http_status"], 504, "{poll:#}");
    assert!(
        poll["details"]["answer"]["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("nginx")),
        "{poll:#}"
    );
    drop(front);
}

#[tokio::test]
async fn a_namespace_the_policy_does_not_grant_is_permission_denied() {
    let temporal = TemporalServer::start(&["billing"]).await;
    let pki = TestPki::new();
    let policy = "[authz]\n\n[[authz.rule]]\nname = \"default-readers\"\n\
                  match = { cn = \"good-client\" }\nnamespaces = [\"default\"]\nroles = [\"reader\"]\n";
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), policy)).await;
    let (out, report) = probe(
        &args(
            mtls(&pki, &proxy.addr.to_string()),
            &[
                "-n",
                "default",
                "-n",
                "billing",
                "--skip",
                "latency,message-size,keepalive",
            ],
        ),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(check(&report, "access", Some("default"))["outcome"], "pass");
    let billing = check(&report, "access", Some("billing"));
    assert_eq!(billing["outcome"], "fail", "{billing:#}");
    let describe = &billing["details"]["describe_namespace"];
    assert_eq!(describe["status"], "PERMISSION_DENIED", "{billing:#}");
    assert_eq!(describe["code"], 7);
    let message = describe["message"].as_str().unwrap();
    assert!(
        message.contains("DescribeNamespace") && message.contains("\"billing\""),
        "{message}"
    );
    // GetSystemInfo is open to every authenticated client.
    assert_eq!(billing["details"]["get_system_info"]["status"], "OK");
    assert!(
        billing["reason"]
            .as_str()
            .unwrap()
            .starts_with("DescribeNamespace refused: PERMISSION_DENIED: "),
        "{billing:#}"
    );
    assert_eq!(report["summary"]["fail"], 1, "{report:#}");
}

/// With `--token-file` and no certificate, against a proxy whose client
/// certificates are optional: the token is what the proxy authorizes, and a
/// token it does not accept is reported with the proxy's UNAUTHENTICATED
/// and its reason.
#[tokio::test]
async fn a_bearer_token_instead_of_a_certificate_is_what_gets_checked() {
    use support::issuer::{claims, jwks, Key};
    const ISS: &str = "https://issuer.probe.test";
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = Key::ec("p1");
    let keys = dir.path().join("jwks.json");
    std::fs::write(&keys, jwks(&[&key])).unwrap();
    let extra = format!(
        "[[tokens.issuer]]\nname = \"probe\"\nissuer = \"{ISS}\"\naudiences = [\"temporal\"]\njwks = {:?}\n\n\
         [authz]\n\n[[authz.rule]]\nname = \"probe-token\"\n\
         match = {{ token = {{ issuer = \"probe\", sub = \"ci:probe\" }} }}\n\
         namespaces = [\"default\"]\nroles = [\"reader\"]\n",
        keys.display().to_string()
    );
    let text = config(&pki, &temporal.url(), &extra).replacen(
        "\n[upstream]",
        "client_certificate = \"optional\"\n\n[upstream]",
        1,
    );
    let proxy = ProxyProcess::start(&text).await;
    let token_file = dir.path().join("token");
    let base = |token_file: &Path| {
        vec![
            proxy.addr.to_string(),
            "--ca".into(),
            pki.ca.display().to_string(),
            "--server-name".into(),
            "localhost".into(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--skip".into(),
            "latency,message-size,keepalive".into(),
        ]
    };

    std::fs::write(
        &token_file,
        format!("{}\n", key.token(&claims(ISS, "ci:probe", "temporal"))),
    )
    .unwrap();
    let (out, report) = probe(&base(&token_file), Duration::from_secs(60)).await;
    assert_eq!(out.status.code(), Some(0), "{out}");
    assert_eq!(
        check(&report, "access", Some("default"))["outcome"],
        "pass",
        "{report:#}"
    );

    // A token for another audience: refused by the proxy, in its words.
    std::fs::write(
        &token_file,
        key.token(&claims(ISS, "ci:probe", "elsewhere")),
    )
    .unwrap();
    let (out, report) = probe(&base(&token_file), Duration::from_secs(60)).await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    let access = check(&report, "access", Some("default"));
    let info = &access["details"]["get_system_info"];
    assert_eq!(info["status"], "UNAUTHENTICATED", "{access:#}");
    assert!(
        info["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid bearer token: "),
        "{access:#}"
    );

    // Neither a certificate nor a token: a command-line error.
    let mut neither = base(&token_file);
    neither.truncate(5);
    let out = run_captured(
        &binary(),
        &[&["probe".to_owned()][..], &neither].concat(),
        &[],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out}");
}

#[tokio::test]
async fn a_small_request_limit_is_found_within_the_search_resolution() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    let limit = 100 * 1024;
    let proxy = ProxyProcess::start(&config(
        &pki,
        &temporal.url(),
        "[limits]\nmax_request_message = \"100KiB\"\n",
    ))
    .await;
    let (out, report) = probe(
        &args(
            mtls(&pki, &proxy.addr.to_string()),
            &["--skip", "latency,keepalive"],
        ),
        Duration::from_secs(60),
    )
    .await;
    // A limit under the frontend's 4 MiB is a warning, not a failure.
    assert!(out.status.success(), "{out}");
    let size = check(&report, "message_size", None);
    assert_eq!(size["outcome"], "warn", "{size:#}");
    let d = &size["details"];
    let accepted = d["largest_accepted"].as_u64().unwrap();
    let refused = d["smallest_refused"].as_u64().unwrap();
    assert!(accepted <= limit && limit < refused, "{size:#}");
    assert_eq!(d["resolution"].as_u64().unwrap(), refused - accepted);
    let tried = d["tried"].as_array().unwrap();
    assert_eq!(
        tried.len() as u64,
        d["probes"].as_u64().unwrap(),
        "{size:#}"
    );
    assert!(tried.len() <= 12, "{size:#}");
    assert!(refused - accepted <= limit / 100, "{size:#}");
    assert_eq!(d["refusal"]["status"], "RESOURCE_EXHAUSTED", "{size:#}");
    assert!(
        size["reason"]
            .as_str()
            .unwrap()
            .contains("below the frontend's 4 MiB"),
        "{size:#}"
    );
    // The connection the refusals went over still works afterwards (the
    // proxy refuses at the prefix and keeps the connection).
    assert_eq!(outcome(&report, "tls"), "pass");
}

#[tokio::test]
async fn pings_more_often_than_the_proxy_allows_are_not_tolerated() {
    let temporal = TemporalServer::start(&[]).await;
    let pki = TestPki::new();
    // The proxy's default enforcement: pings at least 10 s apart, two
    // strikes. A PING every second is refused on the fourth.
    let proxy = ProxyProcess::start(&config(&pki, &temporal.url(), "")).await;
    let (out, report) = probe(
        &args(
            mtls(&pki, &proxy.addr.to_string()),
            &[
                "--ping-interval",
                "1s",
                "--idle",
                "8s",
                "--skip",
                "latency,message-size",
            ],
        ),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    let keepalive = check(&report, "keepalive", None);
    assert_eq!(keepalive["outcome"], "fail", "{keepalive:#}");
    let goaway = &keepalive["details"]["goaway"];
    assert_eq!(goaway["error"], "ENHANCE_YOUR_CALM", "{keepalive:#}");
    assert_eq!(goaway["debug_data"], "too_many_pings", "{keepalive:#}");
    assert!(
        keepalive["reason"]
            .as_str()
            .unwrap()
            .starts_with("a PING every 1s is not tolerated: GOAWAY ENHANCE_YOUR_CALM"),
        "{keepalive:#}"
    );
    // Only keepalive failed: the other connection was not pinging.
    assert_eq!(report["summary"]["fail"], 1, "{report:#}");
}

#[tokio::test]
async fn plaintext_straight_to_the_frontend_finds_its_own_4_mib_limit() {
    let temporal = TemporalServer::start(&[]).await;
    let (out, report) = probe(
        &[
            temporal.address(),
            "--plaintext".into(),
            "--skip".into(),
            "latency,keepalive".into(),
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{out}");
    assert_eq!(outcome(&report, "h2c"), "pass");
    assert_eq!(check(&report, "access", Some("default"))["outcome"], "pass");
    let size = check(&report, "message_size", None);
    assert_eq!(size["outcome"], "pass", "{size:#}");
    assert_eq!(size["details"]["largest_accepted"], 4 << 20, "{size:#}");
    let message = size["details"]["refusal"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("grpc: received message larger than max (4194305 vs. 4194304)"),
        "the frontend's own words: {message}"
    );
}

#[tokio::test]
async fn a_server_the_ca_does_not_vouch_for_fails_and_bad_files_exit_64() {
    let pki = TestPki::new();
    // Nothing behind it is needed: the handshake is what fails.
    let proxy = ProxyProcess::start(&config(&pki, "http://127.0.0.1:9", "")).await;
    let mut base = mtls(&pki, &proxy.addr.to_string());
    let ca = base.iter().position(|a| a == "--ca").unwrap() + 1;
    base[ca] = pki.other_ca_cert.display().to_string();
    let (out, report) = probe(&base, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    let tls = check(&report, "tls", None);
    assert_eq!(tls["outcome"], "fail");
    assert!(
        tls["reason"]
            .as_str()
            .unwrap()
            .starts_with("TLS handshake failed: invalid peer certificate"),
        "{tls:#}"
    );
    for c in report["checks"].as_array().unwrap().iter().skip(1) {
        assert_eq!(c["outcome"], "skip", "{c:#}");
    }

    base[ca] = "/nonexistent/ca.pem".into();
    let mut all = vec!["probe".to_owned()];
    all.extend(base);
    let out = run_captured(&binary(), &all, &[], Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(64), "{out}");
    assert!(out.stderr.contains("/nonexistent/ca.pem"), "{out}");
}

// --- nginx -----------------------------------------------------------------

/// The nginx binary: `NGINX_BIN`, else on PATH or in /usr/sbin (Debian's
/// package puts it there, often not on a user's PATH). Missing: under
/// `CI=true` a failure, else `None` (the test says why it skips).
fn nginx_binary() -> Option<PathBuf> {
    let from_env = std::env::var_os("NGINX_BIN").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"));
    if let Some(found) = from_env.into_iter().chain(on_path).find(|p| p.is_file()) {
        return Some(found);
    }
    let why = "nginx not found (set NGINX_BIN, or install the Debian package nginx: \
               scripts/test.sh does)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; under CI=true this test does not skip");
    }
    eprintln!("skipping: {why}");
    None
}

/// Real nginx as a non-daemon child on a free loopback port, with its own
/// prefix, config, logs, pid and temp folders: TLS with client
/// certificates toward the probe, `grpc_pass grpcs://` to the proxy with its
/// own client certificate, and every timeout at nginx's default (60 s
/// `grpc_read_timeout`: the misconfiguration under test). Killed on drop.
struct Nginx {
    port: u16,
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &Path, pki: &TestPki, proxy_port: u16) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("nginx-")
            .tempdir()
            .expect("tempdir for nginx");
        let port = tools::free_port();
        let d = dir.path().display();
        let p = |path: &Path| path.display().to_string();
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl http2;\n\
                 ssl_certificate {server_cert};\n\
                 ssl_certificate_key {server_key};\n\
                 ssl_client_certificate {ca};\n\
                 ssl_verify_client on;\n\
                 location / {{\n\
                   grpc_pass grpcs://127.0.0.1:{proxy_port};\n\
                   grpc_ssl_certificate {client_cert};\n\
                   grpc_ssl_certificate_key {client_key};\n\
                   grpc_ssl_trusted_certificate {ca};\n\
                   grpc_ssl_verify on;\n\
                   grpc_ssl_name localhost;\n\
                   grpc_ssl_server_name on;\n\
                 }}\n\
               }}\n\
             }}\n",
            server_cert = p(&pki.server_cert),
            server_key = p(&pki.server_key),
            ca = p(&pki.ca),
            client_cert = p(&pki.client.cert),
            client_key = p(&pki.client.key),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let out = std::fs::File::create(dir.path().join("stdout.log")).expect("nginx stdout");
        let mut child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nginx exited at start with {status}:\n{}",
                    Self::logs_of(dir.path())
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen on {port} within 10 s:\n{}",
                Self::logs_of(dir.path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx {
            port,
            _child: child,
            dir,
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn logs_of(dir: &Path) -> String {
        ["stdout.log", "error.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f} ---\n{}",
                    std::fs::read_to_string(dir.join(f)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("nginx logs:\n{}", Self::logs_of(self.dir.path()));
        }
    }
}
