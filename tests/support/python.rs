//! The official Python SDK (temporalio) as a real client and worker:
//! `tests/python/worker.py`, run with the venv's interpreter. Each run prints
//! one JSON line on stdout; see the script's docstring for its modes.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::cli::CliTls;
use super::tools;

#[derive(Debug)]
pub struct PyOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The script was killed after the timeout.
    pub timed_out: bool,
}

impl PyOutput {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The last non-empty stdout line parsed as JSON; panics (with both
    /// streams) if there is none.
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("worker.py printed no JSON: {self}"));
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("worker.py printed no valid JSON ({e}): {self}"))
    }

    /// Panics (with both streams) unless the script exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success(), "{what} failed: {self}");
        self
    }
}

impl std::fmt::Display for PyOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

pub fn worker_script() -> PathBuf {
    tools::repo_root().join("tests/python/worker.py")
}

/// `--ca/--cert/--key/--server-name` for worker.py.
pub fn tls_args(tls: &CliTls) -> Vec<String> {
    let mut a = vec!["--ca".to_string(), tls.ca.display().to_string()];
    if let Some(c) = &tls.cert {
        a.push("--cert".into());
        a.push(c.display().to_string());
    }
    if let Some(k) = &tls.key {
        a.push("--key".into());
        a.push(k.display().to_string());
    }
    if let Some(n) = &tls.server_name {
        a.push("--server-name".into());
        a.push(n.clone());
    }
    a
}

/// Runs `python worker.py <script_args>`; killed after `timeout`
/// (`timed_out` set). The environment is emptied (PATH, a temp HOME, no
/// bytecode files), so nothing of the user's leaks in.
pub async fn run_python(script_args: &[&str], timeout: Duration) -> PyOutput {
    let home = tempfile::Builder::new()
        .prefix("temporal-py-home-")
        .tempdir()
        .expect("tempdir for HOME");
    let mut cmd = Command::new(tools::python_bin());
    cmd.arg(worker_script())
        .args(script_args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn python");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let read_out = tokio::spawn(async move {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s).await;
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s).await;
        s
    });
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => (s.expect("wait for python"), false),
        Err(_) => {
            let _ = child.kill().await;
            (child.wait().await.expect("wait for killed python"), true)
        }
    };
    let stdout = String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&read_err.await.unwrap_or_default()).into_owned();
    PyOutput {
        status,
        stdout,
        stderr,
        timed_out,
    }
}

/// Convenience: `--mode run` against `addr`/`namespace` (TLS if given),
/// `workflows` workflows, on a fresh task queue.
pub async fn run_workflows(
    addr: &str,
    namespace: &str,
    tls: Option<&CliTls>,
    workflows: u32,
    timeout: Duration,
) -> PyOutput {
    let n = workflows.to_string();
    let mut args: Vec<String> = vec![
        "--mode".into(),
        "run".into(),
        "--address".into(),
        addr.into(),
        "--namespace".into(),
        namespace.into(),
        "--workflows".into(),
        n,
    ];
    if let Some(t) = tls {
        args.extend(tls_args(t));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_python(&refs, timeout).await
}
