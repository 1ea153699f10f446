//! The real `temporal` CLI (Go, grpc-go) as a client.
//!
//! Connection flags (checked with `temporal workflow list --help` /
//! `temporal options`, CLI 1.9.1): `--address`, `--tls-ca-path`,
//! `--tls-cert-path`, `--tls-key-path`, `--tls-server-name`. They are put
//! after the caller's args (cobra takes global flags anywhere after the
//! subcommand). The child gets an empty environment (PATH only), a temp
//! HOME, `--disable-config-file --disable-config-env`, so no
//! TEMPORAL_ADDRESS/TEMPORAL_TLS_*/TEMPORAL_PROFILE or
//! ~/.config/temporalio/temporal.toml of the user leaks in.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::tools;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct CliTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl CliTls {
    pub fn mtls(
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        server_name: &str,
    ) -> CliTls {
        CliTls {
            ca: ca.into(),
            cert: Some(cert.into()),
            key: Some(key.into()),
            server_name: Some(server_name.to_owned()),
        }
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command was killed after its timeout.
    pub timed_out: bool,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics (with both streams) unless the command succeeded.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success(), "{what} failed: {self}");
        self
    }

    /// stdout parsed as one JSON document (`-o json`). An empty stdout is
    /// `Value::Null`.
    pub fn json(&self) -> Value {
        let s = self.stdout.trim();
        if s.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(s).unwrap_or_else(|e| panic!("CLI stdout is not JSON ({e}): {self}"))
    }

    /// stdout of `-o json` as an array (a list command); empty -> empty.
    pub fn json_list(&self) -> Vec<Value> {
        match self.json() {
            Value::Null => Vec::new(),
            Value::Array(a) => a,
            other => vec![other],
        }
    }
}

impl std::fmt::Display for CliOutput {
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

/// The connection flags for `addr` and `tls`.
pub fn connection_args(addr: &str, tls: Option<&CliTls>) -> Vec<String> {
    let mut a = vec!["--address".to_string(), addr.to_string()];
    if let Some(t) = tls {
        a.push("--tls-ca-path".into());
        a.push(t.ca.display().to_string());
        if let Some(c) = &t.cert {
            a.push("--tls-cert-path".into());
            a.push(c.display().to_string());
        }
        if let Some(k) = &t.key {
            a.push("--tls-key-path".into());
            a.push(k.display().to_string());
        }
        if let Some(n) = &t.server_name {
            a.push("--tls-server-name".into());
            a.push(n.clone());
        }
    }
    a
}

/// Runs `temporal <args> <connection flags>` with the default 30 s timeout.
pub async fn temporal_cli(addr: &str, tls: Option<&CliTls>, args: &[&str]) -> CliOutput {
    temporal_cli_timeout(addr, tls, args, DEFAULT_TIMEOUT).await
}

/// Same, with a timeout after which the CLI is killed (`timed_out` is set).
pub async fn temporal_cli_timeout(
    addr: &str,
    tls: Option<&CliTls>,
    args: &[&str],
    timeout: Duration,
) -> CliOutput {
    let home = tempfile::Builder::new()
        .prefix("temporal-cli-home-")
        .tempdir()
        .expect("tempdir for CLI HOME");
    let mut cmd = Command::new(tools::temporal_bin());
    cmd.args(args)
        .args(connection_args(addr, tls))
        .args([
            "--disable-config-file",
            "--disable-config-env",
            "--color",
            "never",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn the temporal CLI");
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
        Ok(s) => (s.expect("wait for the CLI"), false),
        Err(_) => {
            let _ = child.kill().await;
            (child.wait().await.expect("wait for the killed CLI"), true)
        }
    };
    let stdout = String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&read_err.await.unwrap_or_default()).into_owned();
    CliOutput {
        status,
        stdout,
        stderr,
        timed_out,
    }
}

/// `temporal operator namespace describe -n NS -o json`.
pub async fn describe_namespace(addr: &str, tls: Option<&CliTls>, ns: &str) -> CliOutput {
    temporal_cli(
        addr,
        tls,
        &["operator", "namespace", "describe", "-n", ns, "-o", "json"],
    )
    .await
}

/// `temporal operator namespace list -o json`.
pub async fn list_namespaces(addr: &str, tls: Option<&CliTls>) -> CliOutput {
    temporal_cli(addr, tls, &["operator", "namespace", "list", "-o", "json"]).await
}

/// The names in the output of [`list_namespaces`].
pub fn namespace_names(out: &CliOutput) -> Vec<String> {
    out.json_list()
        .iter()
        .filter_map(|n| n["namespaceInfo"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// `temporal workflow start --type T --task-queue Q --workflow-id ID -n NS -o json`.
pub async fn start_workflow(
    addr: &str,
    tls: Option<&CliTls>,
    ns: &str,
    workflow_type: &str,
    task_queue: &str,
    workflow_id: &str,
) -> CliOutput {
    temporal_cli(
        addr,
        tls,
        &[
            "workflow",
            "start",
            "--type",
            workflow_type,
            "--task-queue",
            task_queue,
            "--workflow-id",
            workflow_id,
            "-n",
            ns,
            "-o",
            "json",
        ],
    )
    .await
}

/// `temporal workflow list -n NS -o json`.
pub async fn list_workflows(addr: &str, tls: Option<&CliTls>, ns: &str) -> CliOutput {
    temporal_cli(addr, tls, &["workflow", "list", "-n", ns, "-o", "json"]).await
}

/// The workflow IDs in the output of [`list_workflows`].
pub fn workflow_ids(out: &CliOutput) -> Vec<String> {
    out.json_list()
        .iter()
        .filter_map(|w| w["execution"]["workflowId"].as_str().map(str::to_owned))
        .collect()
}

/// `temporal operator cluster health -o json` (`{"status": "SERVING"}`).
pub async fn cluster_health(addr: &str, tls: Option<&CliTls>) -> CliOutput {
    temporal_cli(addr, tls, &["operator", "cluster", "health", "-o", "json"]).await
}
