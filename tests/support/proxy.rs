//! The real proxy binary as a child process: a config written to a temp
//! file, JSON logs read line by line from its stdout, the listen address
//! taken from its "listening" line, signals for drain tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::grpc::{ClientTls, GrpcConn};
use super::pki::{ClientCert, TestPki};

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_temporal-mtls-proxy"))
}

/// A config for the proxy on a free loopback port in front of `upstream`,
/// using the test PKI; `extra` is appended (more keys or tables).
pub fn config(pki: &TestPki, upstream: &str, extra: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
         [upstream]\naddress = \"{upstream}\"\n{extra}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string(),
    )
}

pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    logs: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the proxy with `config_toml` and waits until it listens.
    pub async fn start(config_toml: &str) -> ProxyProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("proxy.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        Self::start_with_file(config_path, dir).await
    }

    async fn start_with_file(config_path: PathBuf, dir: tempfile::TempDir) -> ProxyProcess {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .args([
                "--log-format",
                "json",
                "--log-level",
                "temporal_mtls_proxy=debug,info",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn temporal-mtls-proxy");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => sink.lock().unwrap().push(v),
                    Err(_) => eprintln!("proxy (non-JSON): {line}"),
                }
            }
        });
        let mut proxy = ProxyProcess {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            config_path,
            logs,
            _dir: dir,
        };
        let listening = proxy
            .wait_log(Duration::from_secs(20), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening"))
            })
            .await
            .unwrap_or_else(|| panic!("proxy did not start; logs: {:?}", proxy.logs()));
        proxy.addr = listening["address"]
            .as_str()
            .expect("address field")
            .parse()
            .expect("listen address");
        proxy
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Upstream connections the proxy has opened so far (from its logs).
    pub fn upstream_connections_opened(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"] == "upstream connection opened")
            .count()
    }

    /// Waits for a log line matching `pred`.
    pub async fn wait_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the handshake refusal logged for a connection from
    /// `local_port` (the client's side of it), and returns its reason.
    pub async fn refusal_reason(&self, kind: &str) -> String {
        let line = self
            .wait_log(Duration::from_secs(10), |v| {
                v["message"] == "TLS handshake refused" && v["kind"] == kind
            })
            .await
            .unwrap_or_else(|| {
                panic!("no refusal of kind {kind} logged; logs: {:#?}", self.logs())
            });
        line["reason"].as_str().unwrap_or_default().to_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait"))
    }

    /// A raw gRPC connection to the proxy over mTLS as `who`.
    pub async fn grpc(&self, pki: &TestPki, who: &ClientCert) -> GrpcConn {
        let tls = ClientTls::mtls(&pki.ca, &who.cert, &who.key, "localhost");
        GrpcConn::connect(self.addr, Some(&tls))
            .await
            .unwrap_or_else(|e| panic!("connect to the proxy as {}: {e}", who.cn))
    }

    /// The admin listener's address, from its log line.
    pub async fn admin_addr(&self) -> SocketAddr {
        let line = self
            .wait_log(Duration::from_secs(10), |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("admin listening"))
            })
            .await
            .expect("admin listener started");
        line["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("admin address")
    }

    /// `GET path` on the admin listener: status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.admin_addr().await)
            .await
            .expect("connect to admin");
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}
