//! The log flags through the real binary: a mistyped `--log-level` (or
//! `RUST_LOG`) is refused with exit 64 before anything else is done, in every
//! mode (`--check-config`, a normal start, `dev`); and log lines carry ANSI
//! colour codes only on a terminal, never with `NO_COLOR` set.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::pki::TestPki;

/// What the proxy says about a bad level, and the levels it names.
const LEVELS: &str = "trace, debug, info, warn, error, off";
const ANSI: &str = "\x1b[";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// The binary with RUST_LOG and NO_COLOR cleared (the test's own
/// environment must not decide the outcome).
fn proxy() -> Command {
    let mut cmd = Command::new(support::proxy::binary());
    cmd.env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// Runs `cmd` to its end, killing it after `timeout` (then `status` is
/// `None`): a process that should have refused to start but serves instead
/// fails the test rather than hanging it.
fn run(mut cmd: Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn temporal-mtls-proxy");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn write_config(dir: &Path, config: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A valid config on free loopback ports (nothing needs to answer upstream).
fn valid_config(dir: &Path, pki: &TestPki) -> PathBuf {
    write_config(dir, &support::proxy::config(pki, "http://127.0.0.1:1", ""))
}

fn assert_refused(run: &Run, source: &str) {
    assert_eq!(
        run.code(),
        Some(64),
        "a mistyped level must exit 64 (status {:?}); stdout: {}; stderr: {}",
        run.status,
        run.stdout,
        run.stderr
    );
    let err = &run.stderr;
    assert!(err.contains(source), "names {source}: {err}");
    assert!(err.contains("\"debgu\" is not a log level"), "{err}");
    assert!(err.contains(LEVELS), "names the levels: {err}");
}

#[test]
fn check_config_refuses_a_mistyped_log_level() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(dir.path(), &pki);
    let mut cmd = proxy();
    cmd.arg("--check-config")
        .arg("--config")
        .arg(&config)
        .args(["--log-level", "debgu"]);
    let out = run(cmd, TIMEOUT);
    assert_refused(&out, "--log-level");
    assert!(!out.stdout.contains("config OK"), "{}", out.stdout);
}

#[test]
fn check_config_refuses_a_mistyped_rust_log() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(dir.path(), &pki);
    let mut cmd = proxy();
    cmd.env("RUST_LOG", "debgu")
        .arg("--check-config")
        .arg("--config")
        .arg(&config);
    let out = run(cmd, TIMEOUT);
    assert_refused(&out, "RUST_LOG");
    assert!(!out.stdout.contains("config OK"), "{}", out.stdout);
}

#[test]
fn a_normal_start_refuses_a_mistyped_log_level_before_listening() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(dir.path(), &pki);
    let mut cmd = proxy();
    cmd.arg("--config")
        .arg(&config)
        .args(["--log-format", "text", "--log-level", "debgu"]);
    let out = run(cmd, TIMEOUT);
    assert_refused(&out, "--log-level");
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
}

#[test]
fn dev_refuses_a_mistyped_log_level_before_writing_its_pki() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("dev-pki");
    let mut cmd = proxy();
    cmd.arg("dev")
        .arg("--dir")
        .arg(&pki_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--upstream", "http://127.0.0.1:1"])
        .args(["--log-level", "debgu"]);
    let out = run(cmd, TIMEOUT);
    assert_refused(&out, "--log-level");
    assert!(
        !pki_dir.exists(),
        "the dev PKI was written before the level was checked"
    );
}

/// Starts the proxy with text logs on a pipe, returns its stdout up to and
/// including the "listening" line, then kills it.
fn startup_lines(no_color: bool) -> String {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(dir.path(), &pki);
    let mut cmd = proxy();
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let mut child = cmd
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "text", "--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn temporal-mtls-proxy");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = String::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("listening") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no listening line; stdout: {seen:?}");
    assert!(seen.contains("INFO"), "not a text log line: {seen:?}");
    seen
}

#[test]
fn text_logs_to_a_pipe_have_no_ansi_codes() {
    let out = startup_lines(false);
    assert!(!out.contains(ANSI), "ANSI codes on a pipe: {out:?}");
}

#[test]
fn text_logs_with_no_color_have_no_ansi_codes() {
    let out = startup_lines(true);
    assert!(!out.contains(ANSI), "ANSI codes with NO_COLOR=1: {out:?}");
}

/// `script` (util-linux) runs a command on a pseudo-terminal. Missing, the
/// terminal test is skipped, except under CI=true where it fails.
fn script_available() -> bool {
    let found = Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`script` (util-linux) is needed for the terminal colour test under CI"
        );
        eprintln!("skipped: `script` (util-linux) is not installed");
    }
    found
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The proxy on a pseudo-terminal, failing to bind a port the test holds:
/// it logs one certain line ("cannot start") and exits by itself.
fn on_a_terminal(no_color: bool) -> Run {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let config = support::proxy::config(&pki, "http://127.0.0.1:1", "")
        .replace("127.0.0.1:0\"\n\n[admin]", &format!("{taken}\"\n\n[admin]"));
    assert!(config.contains(&taken.to_string()), "{config}");
    let config = write_config(dir.path(), &config);
    let command = [
        support::proxy::binary().display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
        "--log-format".to_owned(),
        "text".to_owned(),
    ]
    .iter()
    .map(|a| shell_quote(a))
    .collect::<Vec<_>>()
    .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = run(cmd, TIMEOUT);
    drop(held);
    assert!(
        out.stdout.contains("cannot start"),
        "no startup failure line (status {:?}); stdout: {:?}; stderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    if !script_available() {
        return;
    }
    let coloured = on_a_terminal(false);
    assert!(
        coloured.stdout.contains(ANSI),
        "no colour on a terminal (so the checks above prove nothing): {:?}",
        coloured.stdout
    );
    let plain = on_a_terminal(true);
    assert!(
        !plain.stdout.contains(ANSI),
        "ANSI codes on a terminal with NO_COLOR=1: {:?}",
        plain.stdout
    );
}
