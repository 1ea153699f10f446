//! The alerting rules (`deploy/prometheus/alerts.yml`) and the Grafana
//! dashboard (`deploy/grafana/temporal-mtls-proxy.json`) against the real
//! thing: `promtool check rules` on the rules, then a real Prometheus (the
//! Debian package) scraping the admin endpoint of the real proxy in front of
//! a real dev server, after a few calls, a denied call and a refused
//! handshake. Every alert expression and every dashboard query is evaluated
//! through Prometheus' HTTP API, and every metric selector in them must find
//! live series: a metric (or label value) renamed in the proxy breaks this
//! test.
//!
//! Prometheus and promtool are found on PATH, or at `PROMETHEUS_BIN` and
//! `PROMTOOL_BIN`; `scripts/test.sh` installs them (Debian package
//! `prometheus`). A missing one fails the test, never skips it.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::grpc::{pb, raw_tls, ClientTls};
use support::pki::TestPki;
use support::proxy::{config, ProxyProcess};
use support::temporal::TemporalServer;

const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService";
const PREFIX: &str = "temporal_mtls_proxy_";
/// The scrape job name the rules' `up{job=...}` expects.
const JOB: &str = "temporal-mtls-proxy";

fn rules_file() -> PathBuf {
    support::tools::repo_root().join("deploy/prometheus/alerts.yml")
}

fn dashboard_file() -> PathBuf {
    support::tools::repo_root().join("deploy/grafana/temporal-mtls-proxy.json")
}

/// A program from `env_var`, else from PATH; panics (never skips) when it
/// is missing.
fn program(env_var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        assert!(
            path.is_file(),
            "{env_var}={} does not name a file",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH (set {env_var}, or install the Debian package \
                 `prometheus`, which has both prometheus and promtool: scripts/test.sh does)"
            )
        })
}

// ---------------------------------------------------------------------------
// Reading PromQL: the metric selectors of an expression
// ---------------------------------------------------------------------------

/// Every selector of a proxy metric in `expr` (`name` or `name{matchers}`),
/// plus `up{...}`. Strings outside braces are skipped.
fn selectors(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(b, i);
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let ident = &expr[start..i];
            let is_metric = ident.starts_with(PREFIX) || ident == "up";
            // `up` only as a metric, not inside a longer word or a label.
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if is_metric {
                if j < b.len() && b[j] == b'{' {
                    let end = matching_brace(b, j);
                    out.push(format!("{ident}{}", &expr[j..=end]));
                    i = end + 1;
                } else if ident != "up" {
                    out.push(ident.to_owned());
                }
            } else if j < b.len() && b[j] == b'{' {
                // Label matchers of something else: skip them whole.
                i = matching_brace(b, j) + 1;
            }
            continue;
        }
        if c == b'{' {
            // `{__name__=...}` selectors or grouping braces: skip.
            i = matching_brace(b, i) + 1;
            continue;
        }
        i += 1;
    }
    out
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn matching_brace(b: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'}' => return i,
            _ => {}
        }
        i += 1;
    }
    panic!("unclosed brace in {}", String::from_utf8_lossy(b));
}

fn metric_name(selector: &str) -> &str {
    selector.split('{').next().unwrap()
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Prometheus {
    child: tokio::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` every
    /// second as job [`JOB`] and evaluating `rules` every second.
    async fn start(target: SocketAddr, rules: &Path) -> Prometheus {
        let bin = program("PROMETHEUS_BIN", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules = rules.display().to_string(),
            ),
        )
        .unwrap();
        let mut dir = dir;
        let mut last_error = String::new();
        for attempt in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", support::tools::free_port())
                .parse()
                .unwrap();
            let log_path = dir.path().join(format!("prometheus-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = tokio::process::Command::new(&bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut prom = Prometheus { child, addr, dir };
            match prom.wait_ready(Duration::from_secs(30)).await {
                Ok(()) => return prom,
                Err(e) => {
                    last_error = format!(
                        "{e}\n--- prometheus log ---\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    let _ = prom.child.kill().await;
                    dir = prom.dir;
                    if !last_error.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("Prometheus did not start: {last_error}");
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("prometheus exited with {status}"));
            }
            if let Ok((200, _)) = self.get("/-/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready on {} after {timeout:?}", self.addr));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET path` (HTTP/1.0, so the body is not chunked): status and body.
    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = async {
            let mut tcp = tokio::net::TcpStream::connect(self.addr).await?;
            tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").as_bytes())
                .await?;
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .map_err(|_| format!("GET {path}: no answer within 10 s"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    async fn api(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await.unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: HTTP {status}, not JSON ({e}): {body}"))
    }

    /// An instant query: the API's whole answer (`status`, `data`, `error`).
    async fn query(&self, expr: &str) -> Value {
        self.api(&format!("/api/v1/query?query={}", urlencode(expr)))
            .await
    }

    /// Polls `check` every 200 ms until it returns `Some`; panics after
    /// `timeout` with `what`.
    async fn wait_for<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => {
                    panic!("{what}: not within {timeout:?}; last: {last}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The dashboard's queries
// ---------------------------------------------------------------------------

/// Every `expr` of every panel (rows' nested panels too), with the panel
/// title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                out.push((title.clone(), expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables, as a dashboard with "All" selected sends them.
fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${job}", ".*")
        .replace("$job", ".*")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// `label_values(selector, label)` queries of the dashboard's variables:
/// the selectors.
fn variable_selectors(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?").to_owned();
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: {query} is not label_values(...)"));
        let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s).trim();
        out.push((name, substitute_grafana_variables(selector)));
    }
    out
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn promtool_accepts_the_rules() {
    let out = std::process::Command::new(program("PROMTOOL_BIN", "promtool"))
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules: {text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[tokio::test]
async fn alerts_and_dashboard_read_live_series_of_a_running_proxy() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_file()).unwrap())
            .expect("the dashboard is JSON");

    // The proxy in front of a real dev server, with a policy (for the
    // decision series), an audit file, and a server certificate that
    // expires in 5 days (so the expiry alert must go pending).
    let temporal = TemporalServer::start(&["other"]).await;
    let pki = TestPki::new();
    let (server_cert, server_key) = pki.server_cert_expiring_in(
        "short-lived-server",
        &["localhost", "127.0.0.1"],
        Duration::from_secs(5 * 86_400),
    );
    let audit = pki.dir.path().join("audit.log");
    let policy = "[authz]\n[[authz.rule]]\nname = \"readers\"\nmatch = { cn = \"good-client\" }\n\
                  namespaces = [\"default\"]\nroles = [\"reader\"]\n";
    let toml = config(&pki, &temporal.url(), "")
        .replace(
            &format!("cert = {:?}", pki.server_cert.display().to_string()),
            &format!("cert = {:?}", server_cert.display().to_string()),
        )
        .replace(
            &format!("key = {:?}", pki.server_key.display().to_string()),
            &format!("key = {:?}", server_key.display().to_string()),
        );
    let toml = format!(
        "{toml}\n{policy}\n[audit]\nsink = {:?}\n",
        audit.display().to_string()
    );
    let proxy = ProxyProcess::start(&toml).await;

    // Calls: allowed, denied; a handshake refused (no client certificate);
    // a TCP connection closed before any handshake (a health check).
    let conn = proxy.grpc(&pki, &pki.client).await;
    for _ in 0..3 {
        let r = conn
            .unary(&format!("{WS}/GetSystemInfo"), &pb::get_system_info(), &[])
            .await
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    let ok = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("default"),
            &[],
        )
        .await
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
    let denied = conn
        .unary(
            &format!("{WS}/DescribeNamespace"),
            &pb::describe_namespace("other"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(denied.grpc_status, Some(7), "{denied:?}");
    let no_cert = ClientTls::new(&pki.ca, "localhost");
    if let Ok(mut s) = raw_tls(proxy.addr, &no_cert).await {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 64];
        let _ = s.read(&mut b).await;
    }
    drop(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    proxy
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "TLS handshake refused"
        })
        .await
        .expect("refused handshake logged");

    // Prometheus scraping the admin endpoint, with the rules loaded.
    let admin = proxy.admin_addr().await;
    let prom = Prometheus::start(admin, &rules_file()).await;
    let t = Duration::from_secs(30);
    prom.wait_for(t, "the proxy's scrape target is up", || async {
        let v = prom.api("/api/v1/targets").await;
        let target = &v["data"]["activeTargets"][0];
        if target["health"] == "up" {
            Ok(())
        } else {
            Err(target.to_string())
        }
    })
    .await;
    // Enough scrapes for rate() over 1m windows (two samples at least).
    prom.wait_for(t, "three scrapes", || async {
        let v = prom
            .query(&format!("count_over_time(up{{job=\"{JOB}\"}}[1m])"))
            .await;
        let n: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        if n >= 3.0 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    // The live metric names.
    let names = prom
        .query(&format!(
            "count by (__name__) ({{__name__=~\"{PREFIX}.*\"}})"
        ))
        .await;
    let live: BTreeSet<String> = names["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
        .collect();
    assert!(
        live.contains(&format!("{PREFIX}calls_total")) && live.len() > 10,
        "the proxy's series reached Prometheus: {live:?}"
    );

    // Every rule was loaded and evaluated without error.
    let rules: Vec<Value> = prom
        .wait_for(t, "every rule evaluated", || async {
            let v = prom.api("/api/v1/rules").await;
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
                Ok(rules)
            } else {
                Err(v.to_string())
            }
        })
        .await;
    for rule in &rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {} failed to evaluate: {}",
            rule["name"], rule["lastError"]
        );
    }
    let alert_names: BTreeSet<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    for wanted in [
        "TemporalMtlsProxyCertificateExpiresSoon",
        "TemporalMtlsProxyHandshakeFailures",
        "TemporalMtlsProxyDenialSpike",
        "TemporalMtlsProxyUpstreamConnectFailures",
        "TemporalMtlsProxyUpstreamUnavailable",
        "TemporalMtlsProxyAuditLinesDropped",
        "TemporalMtlsProxyLogLinesDropped",
        "TemporalMtlsProxyTooManyPings",
    ] {
        assert!(
            alert_names.contains(wanted),
            "alerts.yml has no {wanted}: {alert_names:?}"
        );
    }
    let handshake = rules
        .iter()
        .find(|r| r["name"] == "TemporalMtlsProxyHandshakeFailures")
        .unwrap();
    assert!(
        handshake["query"]
            .as_str()
            .unwrap()
            .contains("reason!=\"closed\""),
        "the handshake alert must leave out TCP health checks (reason=\"closed\"): {}",
        handshake["query"]
    );

    // Every expression: alert rules as Prometheus parsed them, dashboard
    // panels with Grafana's variables filled in, the variables' selectors.
    let mut exprs: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            (
                format!("alert {}", r["name"].as_str().unwrap_or("?")),
                r["query"].as_str().expect("rule query").to_owned(),
            )
        })
        .collect();
    let panels = dashboard_queries(&dashboard);
    assert!(panels.len() > 10, "the dashboard has panels: {panels:?}");
    exprs.extend(
        panels
            .into_iter()
            .map(|(title, e)| (format!("panel {title:?}"), substitute_grafana_variables(&e))),
    );
    exprs.extend(
        variable_selectors(&dashboard)
            .into_iter()
            .map(|(name, s)| (format!("variable ${name}"), s)),
    );
    let mut referenced = BTreeSet::new();
    let mut problems = Vec::new();
    for (what, expr) in &exprs {
        let answer = prom.query(expr).await;
        if answer["status"] != "success" {
            problems.push(format!(
                "{what}: `{expr}` does not evaluate: {}",
                answer["error"]
            ));
            continue;
        }
        let found = selectors(expr);
        if found.is_empty() {
            problems.push(format!("{what}: `{expr}` reads no proxy metric"));
        }
        for selector in found {
            let name = metric_name(&selector).to_owned();
            if name.starts_with(PREFIX) && !live.contains(&name) {
                problems.push(format!(
                    "{what}: `{name}` is not a metric the proxy exports"
                ));
                continue;
            }
            let count = prom.query(&format!("count({selector})")).await;
            if count["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                problems.push(format!(
                    "{what}: `{selector}` selects no live series (a label or value that does not exist?)"
                ));
            }
            referenced.insert(name);
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(the proxy's live metrics: {live:?})",
        problems.join("\n")
    );
    let unused: Vec<_> = live
        .iter()
        .filter(|n| {
            !referenced.iter().any(|r| {
                r == *n
                    || n.strip_suffix("_bucket")
                        .or(n.strip_suffix("_sum"))
                        .or(n.strip_suffix("_count"))
                        .is_some_and(|base| r.starts_with(base))
            })
        })
        .collect();
    eprintln!(
        "{} expressions checked; metrics read by none of them: {unused:?}",
        exprs.len()
    );

    // The expiry alert sees the 5-day server certificate (it is pending for
    // its `for:` duration before it fires).
    prom.wait_for(t, "the certificate expiry alert is pending", || async {
        let v = prom.api("/api/v1/alerts").await;
        let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        match alerts.iter().find(|a| {
            a["labels"]["alertname"] == "TemporalMtlsProxyCertificateExpiresSoon"
                && a["labels"]["kind"] == "server"
        }) {
            Some(a) => Ok(a.clone()),
            None => Err(v.to_string()),
        }
    })
    .await;
    // And nothing else is alerting on a healthy proxy: a rule that fires on
    // a quiet, healthy proxy would page someone for nothing.
    let v = prom.api("/api/v1/alerts").await;
    let firing: Vec<String> = v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .filter(|n| n != "TemporalMtlsProxyCertificateExpiresSoon")
        .collect();
    assert!(
        firing.is_empty(),
        "alerts active on a healthy proxy: {firing:?}"
    );
    drop(prom);
}

#[test]
fn selectors_are_read_out_of_expressions() {
    assert_eq!(
        selectors(
            "sum by (instance) (rate(temporal_mtls_proxy_calls_total{grpc_status=\"a}b\", x!=\"\"}[5m])) \
             / on (instance) temporal_mtls_proxy_connections_open and up{job=\"j\"} \
             unless label_replace(vector(1), \"temporal_mtls_proxy_no\", \"\", \"\", \"\")"
        ),
        [
            "temporal_mtls_proxy_calls_total{grpc_status=\"a}b\", x!=\"\"}",
            "temporal_mtls_proxy_connections_open",
            "up{job=\"j\"}",
        ]
    );
}
