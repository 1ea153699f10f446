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
use std::time::Duration;

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

/// What a CLI run printed (see [`tools::Captured`]).
pub type CliOutput = tools::Captured;

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
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(connection_args(addr, tls));
    all.extend(
        [
            "--disable-config-file",
            "--disable-config-env",
            "--color",
            "never",
        ]
        .map(String::from),
    );
    tools::run_captured(&tools::temporal_bin(), &all, &[], timeout).await
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
