//! The README's first command, as a new user runs it: `scripts/quickstart.sh`
//! starts a Temporal dev server, the proxy in `dev` mode with a fresh PKI,
//! and goes through it with the CLI over mTLS. (Ports are moved off the
//! defaults so the test cannot collide with a user's own dev server.)
//!
//! Also: the command it prints works when pasted into a fresh shell (the
//! CLI is not on PATH there), and a taken listen port or a listener on the
//! upstream port that is not a Temporal frontend stop it at once with a
//! message naming the `QUICKSTART_*` variable to set.
//!
//! The script runs in a process group of its own, killed whole when a test
//! ends, so no dev server or proxy outlives a failed test.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

/// The quick start running as a child in its own process group.
struct QuickStart {
    child: tokio::process::Child,
    pgid: i32,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl QuickStart {
    fn spawn(args: &[&str], env: &[(&str, String)]) -> QuickStart {
        let mut cmd =
            tokio::process::Command::new(support::tools::repo_root().join("scripts/quickstart.sh"));
        cmd.args(args)
            .env("QUICKSTART_PROXY_BIN", support::proxy::binary())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn scripts/quickstart.sh");
        let pgid = child.id().expect("pid") as i32;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        for (stream, sink) in [
            (
                Box::new(child.stdout.take().unwrap())
                    as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                stdout.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ] {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        QuickStart {
            child,
            pgid,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits for the script to exit; panics (with its output) after
    /// `timeout`.
    async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                // Let the readers take the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                status.expect("wait for the quick start")
            }
            Err(_) => panic!(
                "the quick start did not finish within {timeout:?}\n{}",
                self.output()
            ),
        }
    }

    /// Waits for a stdout line matching `pred`; returns its index.
    async fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.stdout.lock().unwrap().iter().position(|l| pred(l)) {
                return i;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("the quick start exited ({status}) early\n{}", self.output());
            }
            if Instant::now() > deadline {
                panic!("no such line within {timeout:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A fresh loopback address for the proxy and a free upstream port.
fn ports() -> (String, u16) {
    (
        format!("127.0.0.1:{}", support::tools::free_port()),
        support::tools::free_port(),
    )
}

fn env(listen: &str, upstream_port: u16, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("QUICKSTART_LISTEN", listen.to_owned()),
        ("QUICKSTART_UPSTREAM_PORT", upstream_port.to_string()),
        ("QUICKSTART_DIR", dir.display().to_string()),
    ]
}

#[tokio::test]
async fn quickstart_script_runs_the_main_job() {
    let pki_dir = tempfile::tempdir().unwrap();
    let (listen, upstream_port) = ports();
    let mut qs = QuickStart::spawn(&["--demo"], &env(&listen, upstream_port, pki_dir.path()));
    let status = qs.wait(Duration::from_secs(240)).await;
    let stdout = qs.stdout();
    assert!(status.success(), "{}", qs.output());
    // The exact CLI command is printed, and it was used successfully.
    assert!(
        stdout.contains(&format!(
            "temporal operator namespace list --address {listen} --tls-ca-path"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"default\""), "{stdout}");
    assert!(stdout.contains("WorkflowId"), "{stdout}");
    assert!(stdout.contains("quick start OK"), "{stdout}");
    for file in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "proxy.toml",
    ] {
        assert!(pki_dir.path().join(file).is_file(), "{file} missing");
    }
}

/// The command the quick start prints, pasted as printed into a new shell
/// (a plain PATH without `.tools/`, another working directory), lists the
/// namespaces through the running proxy; so does the short `temporal ...`
/// form after the printed PATH line. Ctrl-C's signal (here SIGTERM) then
/// stops the proxy and the dev server.
#[tokio::test]
async fn printed_command_works_when_pasted() {
    let pki_dir = tempfile::tempdir().unwrap();
    let (listen, upstream_port) = ports();
    let mut qs = QuickStart::spawn(&[], &env(&listen, upstream_port, pki_dir.path()));
    let serving = qs
        .wait_line(Duration::from_secs(240), |l| {
            l.contains("the proxy is serving on")
        })
        .await;
    let _ = qs
        .wait_line(Duration::from_secs(10), |l| l.starts_with("export PATH="))
        .await;
    let lines: Vec<String> = qs.stdout.lock().unwrap().clone();
    let command = lines[serving + 1..]
        .iter()
        .find(|l| !l.trim().is_empty())
        .expect("a command after the serving line")
        .clone();
    assert!(
        command.contains(" operator namespace list --address ")
            && !command.starts_with("temporal "),
        "the printed command names the CLI by its path: {command}"
    );
    let path_line = lines
        .iter()
        .find(|l| l.starts_with("export PATH="))
        .unwrap()
        .clone();

    let shell = tempfile::tempdir().unwrap();
    let paste = |script: String| {
        let dir = shell.path().to_owned();
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(30),
                tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&script)
                    .env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("HOME", &dir)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("the pasted command finished within 30 s")
            .expect("run sh");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                out.status.success() && stdout.contains("default"),
                "`{script}` failed ({}):\n{stdout}\n{stderr}",
                out.status
            );
        }
    };
    paste(command.clone()).await;
    // Every other command line printed (the proxy's own banner has one).
    let mut others: Vec<String> = lines
        .iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.contains(" operator namespace list --address ") && !l.starts_with("==>"))
        .filter(|l| *l != command.trim())
        .collect();
    others.dedup();
    for other in others {
        paste(other).await;
    }
    let cli = command.split_whitespace().next().unwrap().to_owned();
    let short = command.replacen(&cli, "temporal", 1);
    paste(format!("{path_line}\n{short}")).await;

    // SIGTERM to the script alone: its trap stops the proxy and the server.
    let pid = qs.child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    qs.wait(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&listen).is_ok()
        || std::net::TcpStream::connect(("127.0.0.1", upstream_port)).is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the proxy or the dev server still listens after the quick start stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With its listen port taken, the quick start stops before building or
/// starting anything and says which variable moves the proxy elsewhere.
#[tokio::test]
async fn taken_listen_port_is_reported() {
    let pki_dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let upstream_port = support::tools::free_port();
    let mut qs = QuickStart::spawn(&["--demo"], &env(&listen, upstream_port, pki_dir.path()));
    let status = qs.wait(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", qs.output());
    let stderr = qs.stderr();
    assert!(
        stderr.contains(&format!(
            "{listen}, where the proxy would listen, is already in use"
        )) && stderr.contains("QUICKSTART_LISTEN="),
        "{}",
        qs.output()
    );
    assert!(
        !qs.stdout().contains("starting a Temporal dev server"),
        "nothing is started: {}",
        qs.output()
    );
    drop(taken);
}

/// A plain TCP listener (not Temporal) on the upstream port: the quick start
/// does not take it for a frontend, and says which variable to set.
#[tokio::test]
async fn non_temporal_upstream_is_reported() {
    let pki_dir = tempfile::tempdir().unwrap();
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = impostor.local_addr().unwrap().port();
    // Accepts connections and holds them, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in impostor.incoming() {
            held.push(conn);
        }
    });
    let listen = format!("127.0.0.1:{}", support::tools::free_port());
    let mut qs = QuickStart::spawn(&["--demo"], &env(&listen, upstream_port, pki_dir.path()));
    let status = qs.wait(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", qs.output());
    let stderr = qs.stderr();
    assert!(
        stderr.contains(&format!(
            "something listens on 127.0.0.1:{upstream_port}, but it does not answer as a Temporal frontend"
        )) && stderr.contains("QUICKSTART_UPSTREAM_PORT="),
        "{}",
        qs.output()
    );
    assert!(
        !qs.stdout().contains("starting the proxy"),
        "the proxy is not started: {}",
        qs.output()
    );
}
