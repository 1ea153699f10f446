//! The proxy under test, two ways:
//!
//! - [`ProxyProcess::start`]: **in this process**. The config is parsed with
//!   `Config::from_toml`, the listener bound here (port 0), and
//!   `temporal_mtls_proxy::run_until` runs on a thread of its own with a
//!   runtime of its own (as the binary's main thread does), so the test's
//!   runtime does not matter; the addresses come back from `Started`. Its
//!   JSON log lines are captured by the process's one log subscriber
//!   (installed on first use). Dropping it stops it: the shutdown future
//!   resolves and `run` is given a bounded time to drain and return.
//! - [`ProxyProcess::spawn`]: **the real binary as a child process**, for
//!   what only a process has: signals (SIGTERM drains, SIGHUP reloads), exit
//!   codes, its stdout. JSON logs are read line by line from its stdout and
//!   the listen address from its "listening" line.
//!
//! Both write the config to a temp file (`config_path`), which file-change
//! reloads watch, and offer the same methods. The in-process proxy needs a
//! process of its own per test, as nextest runs them: log lines (and the
//! peer-caused log rate limits) are the process's. Under `cargo test`, which
//! runs a file's tests as threads of one process, `start` spawns the child
//! instead. A test that runs two in-process proxies at once sees both
//! proxies' lines in each one's `logs()` (a proxy sees the lines logged since
//! it started); such tests use [`ProxyProcess::spawn`] for the proxy whose
//! logs they read.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use temporal_mtls_proxy::logging::{self, LogFormat};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::grpc::{ClientTls, GrpcConn};
use super::pki::{ClientCert, TestPki};

/// The log filter both ways run with.
const LOG_LEVEL: &str = "temporal_mtls_proxy=debug,info";

/// How long a dropped in-process proxy may drain before it is cut off (its
/// connections closed, as a killed process's would be). Short: a drain
/// that waits on a client of the test itself cannot end while the test's
/// thread is in `drop`, and one that does not is done in milliseconds.
const STOP_GRACE: Duration = Duration::from_millis(250);

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_temporal-mtls-proxy"))
}

/// A config for the proxy on a free loopback port in front of `upstream`,
/// using the test PKI; `extra` is appended (more keys or tables).
pub fn config(pki: &TestPki, upstream: &str, extra: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
         [upstream]\naddress = \"{upstream}\"\n{extra}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string(),
    )
}

pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    /// Where this proxy's log lines are, from index `logs_from` on.
    logs: Arc<Mutex<Vec<Value>>>,
    logs_from: usize,
    runner: Runner,
    _dir: tempfile::TempDir,
}

enum Runner {
    InProcess(InProcess),
    Child(Child),
}

/// A proxy running on a thread of this process.
struct InProcess {
    /// The admin listener's address, from `Started`.
    admin: Option<SocketAddr>,
    /// Cancelled to stop it (the shutdown future `run_until` waits on).
    stop: CancellationToken,
    /// What `run_until` returned, once it has.
    done: mpsc::Receiver<Result<(), Stop>>,
}

/// How an in-process proxy's run ended, when not by returning `Ok`.
#[derive(Debug)]
enum Stop {
    /// It could not start (or its runtime could not).
    Failed(String),
    /// Stopped, it did not drain within [`STOP_GRACE`] and was cut off.
    CutOff,
}

impl ProxyProcess {
    /// Starts the proxy with `config_toml` in this process (see the module
    /// doc; under `cargo test` as a child) and waits until it listens.
    pub async fn start(config_toml: &str) -> ProxyProcess {
        let (config_path, dir) = write_config(config_toml);
        if !one_test_per_process() {
            return Self::start_child(config_path, dir).await;
        }
        Self::start_in_process(config_path, dir).await
    }

    /// Starts the proxy binary as a child process with `config_toml` and
    /// waits until it listens: for tests that signal it, wait for its exit
    /// or need its stdout.
    pub async fn spawn(config_toml: &str) -> ProxyProcess {
        let (config_path, dir) = write_config(config_toml);
        Self::start_child(config_path, dir).await
    }

    /// Whether this proxy runs in the test's process.
    pub fn in_process(&self) -> bool {
        matches!(self.runner, Runner::InProcess(_))
    }

    async fn start_in_process(config_path: PathBuf, dir: tempfile::TempDir) -> ProxyProcess {
        let text = std::fs::read_to_string(&config_path).expect("read config");
        let mut config = temporal_mtls_proxy::Config::from_toml(
            &text,
            dir.path(),
            &config_path.display().to_string(),
        )
        .unwrap_or_else(|e| panic!("the proxy's config is refused: {e}"));
        // As `Config::load` does: reloads re-read (and watch) the file.
        config.source = Some(config_path.clone());
        let logs = captured_logs();
        let logs_from = logs.lock().unwrap().len();
        let listener = std::net::TcpListener::bind(config.listen.address)
            .unwrap_or_else(|e| panic!("bind {}: {e}", config.listen.address));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");

        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done) = mpsc::channel();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("proxy-under-test".into())
            .spawn(move || {
                let result = run_in_process(config, listener, stopped, started_tx);
                let _ = done_tx.send(result);
            })
            .expect("start the proxy's thread");

        let started = match tokio::time::timeout(Duration::from_secs(20), started_rx).await {
            Ok(Ok(started)) => started,
            Ok(Err(_)) => {
                let why = done
                    .recv_timeout(Duration::from_secs(5))
                    .map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
                panic!(
                    "proxy did not start: {why}; logs: {:#?}",
                    logs.lock().unwrap()[logs_from..].to_vec()
                );
            }
            Err(_) => panic!(
                "proxy did not start within 20 s; logs: {:#?}",
                logs.lock().unwrap()[logs_from..].to_vec()
            ),
        };
        let proxy = ProxyProcess {
            addr: started.address,
            config_path,
            logs,
            logs_from,
            runner: Runner::InProcess(InProcess {
                admin: started.admin,
                stop,
                done,
            }),
            _dir: dir,
        };
        // As with the child: once started, its "listening" line is in
        // `logs()` (lines reach the buffer through the log writer's thread).
        let address = started.address.to_string();
        proxy
            .wait_log(Duration::from_secs(10), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening"))
                    && v["address"] == address.as_str()
            })
            .await
            .unwrap_or_else(|| panic!("no listening line; logs: {:#?}", proxy.logs()));
        proxy
    }

    async fn start_child(config_path: PathBuf, dir: tempfile::TempDir) -> ProxyProcess {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .args(["--log-format", "json", "--log-level", LOG_LEVEL])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn temporal-mtls-proxy");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => sink.lock().unwrap().push(v),
                    Err(_) => eprintln!("proxy (non-JSON): {line}"),
                }
            }
        });
        let mut proxy = ProxyProcess {
            addr: "0.0.0.0:0".parse().unwrap(),
            config_path,
            logs,
            logs_from: 0,
            runner: Runner::Child(child),
            _dir: dir,
        };
        let listening = proxy
            .wait_log(Duration::from_secs(20), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening"))
            })
            .await
            .unwrap_or_else(|| panic!("proxy did not start; logs: {:?}", proxy.logs()));
        proxy.addr = listening["address"]
            .as_str()
            .expect("address field")
            .parse()
            .expect("listen address");
        proxy
    }

    /// This proxy's log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap()[self.logs_from..].to_vec()
    }

    /// Upstream connections the proxy has opened so far (from its logs).
    pub fn upstream_connections_opened(&self) -> usize {
        self.logs.lock().unwrap()[self.logs_from..]
            .iter()
            .filter(|v| v["message"] == "upstream connection opened")
            .count()
    }

    /// Waits for a log line matching `pred`.
    pub async fn wait_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs.lock().unwrap()[self.logs_from..]
                .iter()
                .find(|v| pred(v))
            {
                return Some(v.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the handshake refusal of `kind` to be logged, and returns
    /// its reason.
    pub async fn refusal_reason(&self, kind: &str) -> String {
        let line = self
            .wait_log(Duration::from_secs(10), |v| {
                v["message"] == "TLS handshake refused" && v["kind"] == kind
            })
            .await
            .unwrap_or_else(|| {
                panic!("no refusal of kind {kind} logged; logs: {:#?}", self.logs())
            });
        line["reason"].as_str().unwrap_or_default().to_owned()
    }

    fn child(&self, what: &str) -> &Child {
        match &self.runner {
            Runner::Child(child) => child,
            Runner::InProcess(_) => panic!(
                "{what} needs the proxy as a child process: start it with ProxyProcess::spawn"
            ),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child("pid()").id().expect("running") as i32
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child("wait_exit()");
        let Runner::Child(child) = &mut self.runner else {
            unreachable!()
        };
        tokio::time::timeout(timeout, child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait"))
    }

    /// A raw gRPC connection to the proxy over mTLS as `who`.
    pub async fn grpc(&self, pki: &TestPki, who: &ClientCert) -> GrpcConn {
        let tls = ClientTls::mtls(&pki.ca, &who.cert, &who.key, "localhost");
        GrpcConn::connect(self.addr, Some(&tls))
            .await
            .unwrap_or_else(|e| panic!("connect to the proxy as {}: {e}", who.cn))
    }

    /// The server certificate the proxy serves now (DER), read from a new
    /// mTLS handshake as the PKI's good client.
    pub async fn served_certificate(&self, pki: &TestPki) -> Vec<u8> {
        let tls = ClientTls::mtls(&pki.ca, &pki.client.cert, &pki.client.key, "localhost");
        let stream = super::grpc::raw_tls(self.addr, &tls)
            .await
            .expect("handshake");
        stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificate")[0]
            .to_vec()
    }

    /// The admin listener's address (from `Started`, or the child's log
    /// line).
    pub async fn admin_addr(&self) -> SocketAddr {
        if let Runner::InProcess(p) = &self.runner {
            return p.admin.expect("the admin listener is on");
        }
        let line = self
            .wait_log(Duration::from_secs(10), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("admin listening"))
            })
            .await
            .expect("admin listener started");
        line["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("admin address")
    }

    /// `GET path` on the admin listener: status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.admin_addr().await)
            .await
            .expect("connect to admin");
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("read");
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
        (status, body)
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
        // Bounded: after STOP_GRACE the proxy's thread cuts what is left.
        match self.done.recv_timeout(STOP_GRACE + Duration::from_secs(3)) {
            Ok(Ok(()) | Err(Stop::CutOff)) => {}
            Ok(Err(Stop::Failed(e))) => eprintln!("in-process proxy: {e}"),
            Err(_) => eprintln!("in-process proxy: still running after stop; left behind"),
        }
    }
}

fn write_config(config_toml: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("proxy.toml");
    std::fs::write(&config_path, config_toml).expect("write config");
    (config_path, dir)
}

/// nextest runs every test in a process of its own; `cargo test` runs a
/// file's tests as threads of one.
fn one_test_per_process() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test")
}

/// The proxy's thread: a runtime like the binary's (current-thread; the
/// proxy starts its worker threads itself), `run_until` until `stop`, then
/// at most [`STOP_GRACE`] to drain.
fn run_in_process(
    config: temporal_mtls_proxy::Config,
    listener: std::net::TcpListener,
    stop: CancellationToken,
    started: tokio::sync::oneshot::Sender<temporal_mtls_proxy::Started>,
) -> Result<(), Stop> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Stop::Failed(format!("cannot start the proxy's runtime: {e}")))?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Stop::Failed(format!("cannot register the listener: {e}")))?;
        let shutdown = {
            let stop = stop.clone();
            async move { stop.cancelled().await }
        };
        let run = temporal_mtls_proxy::run_until(config, listener, shutdown, |s| {
            let _ = started.send(s);
        });
        tokio::select! {
            result = run => result.map_err(|e| Stop::Failed(format!("cannot start: {e}"))),
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => Err(Stop::CutOff),
        }
    });
    // Whatever is still running (connections being drained) is dropped.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The log lines of every in-process proxy, parsed; the subscriber that
/// fills it is installed on first use and lives as long as the process.
fn captured_logs() -> Arc<Mutex<Vec<Value>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<Value>>>> = OnceLock::new();
    LINES
        .get_or_init(|| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let writer = JsonLines {
                partial: Vec::new(),
                lines: lines.clone(),
            };
            let guard = logging::init_to(LogFormat::Json, LOG_LEVEL, writer, false)
                .unwrap_or_else(|e| panic!("install the proxy's log subscriber: {e}"));
            // The writer's thread runs until the process ends.
            std::mem::forget(guard);
            lines
        })
        .clone()
}

/// Parses what the log writer writes, line by line, into `lines`.
struct JsonLines {
    partial: Vec<u8>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Write for JsonLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => self.lines.lock().unwrap().push(v),
                Err(_) => eprintln!("proxy (non-JSON): {line}"),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The value of exactly `series` (a metric name with its labels) in a
/// Prometheus text exposition; `None` when it is not there.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The VmRSS of process `pid` (the proxy as a child process: `pid()`), in
/// KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
