//! Smoke tests of the benchmark tools: `temporal-loadgen` against
//! `temporal-fake-frontend` over h2c, and `benches/compare.sh` end to end
//! with them and the proxy. They check that the tools work and count right;
//! they assert no timings beyond "latency was measured".

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The fake frontend, killed when dropped.
struct Frontend {
    child: Child,
    addr: String,
}

impl Frontend {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_temporal-fake-frontend"))
            .args(["--listen", "127.0.0.1:0", "--threads", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start temporal-fake-frontend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Frontend { child, addr }
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs temporal-loadgen with `args` plus `--json` and parses its one JSON object.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_temporal-loadgen"))
        .args(args)
        .args(["--json", "--threads", "1"])
        .output()
        .expect("run temporal-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "temporal-loadgen failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON {e}: {stdout}"))
}

fn assert_no_errors(report: &Value) {
    assert_eq!(
        report["errors"]["grpc_status"],
        serde_json::json!({}),
        "{report}"
    );
    assert_eq!(
        report["errors"]["transport"],
        serde_json::json!({}),
        "{report}"
    );
}

#[test]
fn closed_loop_counts_calls_exactly() {
    let frontend = Frontend::start();
    let report = bench(&[
        "--target",
        &frontend.addr,
        "--calls",
        "200",
        "--connections",
        "2",
        "--concurrency",
        "4",
    ]);
    assert_eq!(report["calls"], 200, "{report}");
    assert_eq!(report["ok"], 200, "{report}");
    assert_no_errors(&report);
    assert!(
        report["latency_us"]["p50"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["bytes_received"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["bytes_sent"], 200 * 5, "empty messages: {report}");
    assert!(report["cpu"]["user_s"].is_number(), "{report}");
}

#[test]
fn sized_calls_carry_their_payload() {
    let frontend = Frontend::start();
    for method in ["start-workflow", "echo"] {
        let report = bench(&[
            "--target",
            &frontend.addr,
            "--method",
            method,
            "--payload-bytes",
            "100000",
            "--calls",
            "20",
            "--unique-workflow-ids",
        ]);
        assert_eq!(report["ok"], 20, "{report}");
        assert_no_errors(&report);
        assert!(
            report["request_bytes"].as_u64().unwrap() > 100_000,
            "{report}"
        );
        if method == "echo" {
            assert_eq!(report["bytes_received"], report["bytes_sent"], "{report}");
        }
    }
}

#[test]
fn open_loop_keeps_its_schedule() {
    let frontend = Frontend::start();
    let report = bench(&[
        "--target",
        &frontend.addr,
        "--rate",
        "200",
        "--duration",
        "1s",
    ]);
    assert_no_errors(&report);
    assert_eq!(report["open_loop"]["scheduled"], 200, "{report}");
    let calls = report["calls"].as_u64().unwrap();
    assert!((160..=240).contains(&calls), "{calls} calls: {report}");
    assert!(
        report["latency_us"]["p50"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn hold_mode_keeps_polls_open() {
    let frontend = Frontend::start();
    let report = bench(&[
        "--target",
        &frontend.addr,
        "--mode",
        "hold",
        "--hold-calls",
        "50",
        "--connections",
        "2",
        "--hold-for",
        "1s",
    ]);
    assert_no_errors(&report);
    assert_eq!(report["hold"]["peak_open"], 50, "{report}");
    assert_eq!(report["hold"]["open_at_end"], 50, "{report}");
}

#[test]
fn idle_mode_keeps_connections_open() {
    let frontend = Frontend::start();
    let report = bench(&[
        "--target",
        &frontend.addr,
        "--mode",
        "idle",
        "--connections",
        "20",
        "--hold-for",
        "1s",
    ]);
    assert_no_errors(&report);
    assert_eq!(report["mode"], "idle", "{report}");
    assert_eq!(report["ok"], 20, "one call per connection: {report}");
    assert_eq!(report["idle"]["opened"], 20, "{report}");
    assert_eq!(report["idle"]["open_at_end"], 20, "{report}");
    assert!(report["idle"]["open_s"].is_number(), "{report}");
    assert!(
        report["elapsed_s"].as_f64().unwrap() >= 1.0,
        "held for --hold-for: {report}"
    );
}

/// The workspace root (this package is `tools/` in it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ is inside the workspace")
        .to_owned()
}

/// The proxy binary, next to this package's binaries in the shared target
/// folder (`target/debug` for tests). Another package's binary is not built
/// for this package's tests by cargo: a workspace test run (`cargo nextest
/// run --workspace`, as `scripts/test.sh` does) builds it anyway for the
/// proxy's own integration tests. When it is missing (`-p
/// temporal-mtls-proxy-tools` alone on a fresh tree), it is built here with
/// the same cargo and profile. (With `-p` alone after a change under src/,
/// the binary found may be older than the change: this test checks the
/// harness, the proxy's own tests check the proxy.)
fn proxy_binary(bin_dir: &Path) -> PathBuf {
    let proxy = bin_dir.join(format!(
        "temporal-mtls-proxy{}",
        std::env::consts::EXE_SUFFIX
    ));
    if proxy.is_file() {
        return proxy;
    }
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--profile", profile])
        .args([
            "--package",
            "temporal-mtls-proxy",
            "--bin",
            "temporal-mtls-proxy",
        ])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the proxy failed: {status}"
    );
    assert!(
        proxy.is_file(),
        "cargo built the proxy, but not at {} (another target folder?)",
        proxy.display()
    );
    proxy
}

/// The side-by-side script runs end to end (here with the debug binaries,
/// the floors and this proxy only, one short run: the numbers mean nothing,
/// the harness is what is checked) and reports every row without errors.
#[test]
fn compare_script_runs_and_reports() {
    let root = workspace_root();
    let bin = Path::new(env!("CARGO_BIN_EXE_temporal-loadgen"))
        .parent()
        .expect("binary directory")
        .to_owned();
    assert!(
        bin.join(format!(
            "temporal-fake-frontend{}",
            std::env::consts::EXE_SUFFIX
        ))
        .is_file(),
        "the fake frontend is built next to the load generator"
    );
    proxy_binary(&bin);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(root.join("benches/compare.sh"))
        .args(["--quick", "--no-build", "throughput"])
        .env("BIN", &bin)
        .env("TARGETS", "h2c direct-tls tmp tmp-token")
        .env("THREADS", "1")
        .env("OUT", out_dir.path())
        .output()
        .expect("run benches/compare.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare.sh failed:\n{stderr}");
    let results =
        std::fs::read_to_string(out_dir.path().join("results.md")).expect("results.md written");
    for row in [
        "| direct h2c (floor) |",
        "| direct mTLS to fake |",
        "| temporal-mtls-proxy |",
        "| temporal-mtls-proxy, bearer token on every call |",
    ] {
        let line = results
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row in:\n{results}"));
        // The last column is the error count.
        assert!(line.trim_end().ends_with("| 0 |"), "errors in {line}");
    }
}
