//! The official Python SDK (temporalio) as a real client and worker:
//! `tests/python/worker.py`, run with the venv's interpreter. Each run prints
//! one JSON line on stdout; see the script's docstring for its modes.

use std::path::PathBuf;
use std::time::Duration;

use super::cli::CliTls;
use super::tools;

/// What a worker.py run printed (see [`tools::Captured`]).
pub type PyOutput = tools::Captured;

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
    let mut all = vec![worker_script().display().to_string()];
    all.extend(script_args.iter().map(|a| a.to_string()));
    tools::run_captured(
        &tools::python_bin(),
        &all,
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
        timeout,
    )
    .await
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
