//! The official TypeScript SDK (`@temporalio/client`, `worker`, `workflow`,
//! `activity`; versions locked by tests/typescript/package-lock.json) as a
//! real client and worker: `tests/typescript/sdk.js`, run with Node. The
//! packages are installed by `scripts/tools.sh` into `.tools/node`
//! (`TMP_NODE_MODULES`). Each run prints one JSON line on stdout; see the
//! script's header for its modes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cli::CliTls;
use super::tools;

/// What an sdk.js run printed (see [`tools::Captured`]).
pub type NodeOutput = tools::Captured;

pub fn sdk_script() -> PathBuf {
    tools::repo_root().join("tests/typescript/sdk.js")
}

/// The `node_modules` folder with the SDK: `TMP_NODE_MODULES` if set, else
/// `.tools/node/node_modules`. Panics (never skips) when the SDK is not in it.
pub fn node_modules() -> PathBuf {
    let dir = match std::env::var_os("TMP_NODE_MODULES") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools::repo_root().join(".tools/node/node_modules"),
    };
    let marker = dir.join("@temporalio/worker/package.json");
    if !marker.is_file() {
        panic!(
            "the TypeScript SDK is not installed: {} not found (set TMP_NODE_MODULES or run \
             `scripts/test.sh`, which installs tests/typescript/package-lock.json into .tools/node)",
            marker.display()
        );
    }
    dir
}

/// The `node` binary: `TMP_NODE` if set, else the first `node` on PATH.
/// Panics when there is none.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TMP_NODE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TMP_NODE={} is not a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("node"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "Node.js (`node`, >= 20.3) not found on PATH; the TypeScript SDK tests need it \
                 (scripts/test.sh installs it with apt-get when it can)"
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `--ca/--cert/--key/--server-name` for sdk.js (the same flags as worker.py).
pub fn tls_args(tls: &CliTls) -> Vec<String> {
    super::python::tls_args(tls)
}

/// Runs `node sdk.js --mode MODE --address ADDR --namespace NS [TLS] <extra>`;
/// killed after `timeout` (`timed_out` set). The environment is emptied
/// (PATH, a temp HOME and working directory, NODE_PATH to the SDK).
pub async fn run_sdk(
    mode: &str,
    addr: &str,
    namespace: &str,
    tls: Option<&CliTls>,
    extra: &[&str],
    timeout: Duration,
) -> NodeOutput {
    let modules = node_modules();
    let modules = modules.display().to_string();
    let mut args = vec![
        sdk_script().display().to_string(),
        "--mode".into(),
        mode.into(),
        "--address".into(),
        addr.into(),
        "--namespace".into(),
        namespace.into(),
        // The script gives up a little before we kill it, with a message.
        "--overall-timeout".into(),
        timeout
            .saturating_sub(Duration::from_secs(5))
            .as_secs()
            .max(1)
            .to_string(),
    ];
    if let Some(t) = tls {
        args.extend(tls_args(t));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    tools::run_captured(
        &node_bin(),
        &args,
        &[
            ("NODE_PATH", &modules),
            ("TMP_NODE_MODULES", &modules),
            ("NODE_NO_WARNINGS", "1"),
        ],
        timeout,
    )
    .await
}
