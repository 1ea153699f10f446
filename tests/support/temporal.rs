//! The real Temporal dev server (`temporal server start-dev`, in memory,
//! h2c) as a child process on a loopback port.
//!
//! Only the frontend port is fixed (by us); the HTTP API, metrics and the
//! internal services' ports are picked by the server (`--http-port 0
//! --metrics-port 0`, UI off with `--headless`), so several servers run side
//! by side. Measured on the 2-core box: ready in ~0.2-0.5 s, ~150 MB RSS and
//! a few % of one core each when idle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::grpc::{self, GrpcConn};
use super::tools;

/// How long `start`/`restart` wait for the frontend and the namespaces.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Dynamic config that lets a long poll last until the client's deadline:
/// matching holds an empty poll for `min(longPollExpirationInterval with
/// up to ~20% jitter taken off, client deadline) - 1 s`. With 300 s here, a
/// PollWorkflowTaskQueue with `grpc-timeout: 80S` returns OK and empty after
/// 79.0 s, every time. (The default, 1 min, returns after 52-57 s.)
pub const LONG_POLL_TO_DEADLINE: (&str, &str) = ("matching.longPollExpirationInterval", "\"300s\"");

#[derive(Clone, Debug, Default)]
pub struct TemporalOpts {
    /// Frontend port; a free one when `None`.
    pub port: Option<u16>,
    /// Namespaces to create besides `default`.
    pub namespaces: Vec<String>,
    /// `--dynamic-config-value KEY=VALUE`; VALUE is JSON, so strings carry
    /// their quotes: `("matching.longPollExpirationInterval", "\"80s\"")`.
    pub dynamic_config: Vec<(String, String)>,
}

impl TemporalOpts {
    pub fn namespaces(namespaces: &[&str]) -> TemporalOpts {
        TemporalOpts {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            ..TemporalOpts::default()
        }
    }

    pub fn dynamic(mut self, key: &str, json_value: &str) -> TemporalOpts {
        self.dynamic_config
            .push((key.to_owned(), json_value.to_owned()));
        self
    }

    /// Adds [`LONG_POLL_TO_DEADLINE`].
    pub fn long_polls_to_deadline(self) -> TemporalOpts {
        self.dynamic(LONG_POLL_TO_DEADLINE.0, LONG_POLL_TO_DEADLINE.1)
    }
}

pub struct TemporalServer {
    pub port: u16,
    pub addr: SocketAddr,
    child: Option<Child>,
    log_path: PathBuf,
    opts: TemporalOpts,
    starts: u32,
    // Holds the log file and the server's HOME; removed on drop.
    dir: tempfile::TempDir,
}

impl TemporalServer {
    /// A dev server on a free port with `namespaces` (plus `default`).
    pub async fn start(namespaces: &[&str]) -> TemporalServer {
        Self::start_with(TemporalOpts::namespaces(namespaces)).await
    }

    pub async fn start_with(opts: TemporalOpts) -> TemporalServer {
        let dir = tempfile::Builder::new()
            .prefix("temporal-dev-")
            .tempdir()
            .expect("tempdir for the dev server");
        std::fs::create_dir_all(dir.path().join("home")).expect("server home");
        let port = opts.port.unwrap_or_else(tools::free_port);
        let mut server = TemporalServer {
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            log_path: dir.path().join("server.log"),
            opts,
            starts: 0,
            dir,
        };
        // A free port can be taken by someone else before the server binds
        // it: with a port of our choosing, try another one.
        let mut attempts = if server.opts.port.is_some() { 1 } else { 3 };
        loop {
            attempts -= 1;
            match server.launch_and_wait().await {
                Ok(()) => return server,
                Err(e) if attempts > 0 && server.port_in_use_failure() => {
                    eprintln!(
                        "dev server on port {}: {e}; retrying on another port",
                        server.port
                    );
                    server.port = tools::free_port();
                    server.addr = SocketAddr::from(([127, 0, 0, 1], server.port));
                }
                Err(e) => server.fail(&e).await,
            }
        }
    }

    /// `host:port` of the frontend, for clients.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`, the form of the proxy's `upstream.address` (h2c).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The last 60 lines of the server's stdout+stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        lines[from..].join("\n")
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Its state is in
    /// memory, so it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server, then starts a new one on the same port with the
    /// same options (fresh state: namespaces re-created, workflows gone).
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        // The old listener is closed once the process is reaped; wait until
        // the port is bindable again to give a clear error if it is not.
        while std::net::TcpListener::bind(self.addr).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "port {} still in use 10 s after stopping the dev server",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = self.launch_and_wait().await {
            self.fail(&e).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The RSS of the server process in kB (Linux), for resource checks.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn port_in_use_failure(&self) -> bool {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.contains("address already in use")
    }

    async fn fail(&mut self, why: &str) -> ! {
        self.stop().await;
        panic!(
            "Temporal dev server on {} failed: {why}\n--- server log ({}) ---\n{}",
            self.addr,
            self.log_path.display(),
            self.log_tail()
        );
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(tools::temporal_bin());
        cmd.args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .args(["--http-port", "0", "--metrics-port", "0"])
            .args([
                "--log-level",
                "warn",
                "--log-format",
                "text",
                "--color",
                "never",
            ]);
        for ns in &self.opts.namespaces {
            cmd.args(["--namespace", ns]);
        }
        for (k, v) in &self.opts.dynamic_config {
            cmd.arg("--dynamic-config-value").arg(format!("{k}={v}"));
        }
        // No user config, env or HOME leaks in; the CLI writes a version
        // check file under HOME, keep it in our temp dir.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn launch_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open log: {e}"))?;
        use std::io::Write;
        let mut header = log.try_clone().map_err(|e| e.to_string())?;
        let _ = writeln!(
            header,
            "=== start #{} on port {} (namespaces {:?}, dynamic config {:?}) ===",
            self.starts, self.port, self.opts.namespaces, self.opts.dynamic_config
        );
        let mut cmd = self.command();
        cmd.stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", tools::temporal_bin().display()))?;
        self.child = Some(child);
        self.wait_ready(READY_TIMEOUT).await
    }

    /// Ready = GetSystemInfo answers OK and every namespace (and `default`)
    /// is described OK, over a fresh h2c connection.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut namespaces = vec!["default".to_string()];
        namespaces.extend(self.opts.namespaces.iter().cloned());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("exited early with {status}"));
                }
            }
            let last = match probe(self.addr, &namespaces).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?}; last check: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn probe(addr: SocketAddr, namespaces: &[String]) -> Result<(), String> {
    let conn = GrpcConn::connect(addr, None).await?;
    let t = Duration::from_secs(5);
    let r = conn
        .unary_timeout(
            grpc::path::GET_SYSTEM_INFO,
            &grpc::pb::get_system_info(),
            &[],
            t,
        )
        .await?;
    if !r.is_ok() {
        return Err(format!(
            "GetSystemInfo: {:?} {:?}",
            r.grpc_status, r.grpc_message
        ));
    }
    for ns in namespaces {
        let r = conn
            .unary_timeout(
                grpc::path::DESCRIBE_NAMESPACE,
                &grpc::pb::describe_namespace(ns),
                &[],
                t,
            )
            .await?;
        if !r.is_ok() {
            return Err(format!(
                "DescribeNamespace({ns}): {:?} {:?}",
                r.grpc_status, r.grpc_message
            ));
        }
    }
    Ok(())
}

impl Drop for TemporalServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // kill_on_drop would do it too; be explicit and synchronous.
            let _ = child.start_kill();
        }
    }
}
