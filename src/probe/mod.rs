//! `temporal-mtls-proxy probe`: checks a deployment from a client's side,
//! as an SDK worker would meet it, and reports each check as pass, warn,
//! fail or skip with a one-line reason (text, or JSON for scripts).
//!
//! The checks, each in its own file:
//!
//! - `tls`: the handshake of the first connection and the server's chain;
//! - `calls`: per namespace, GetSystemInfo and DescribeNamespace;
//! - `latency`: round trips of GetSystemInfo on that connection;
//! - `size`: the largest request message the path accepts (a bounded
//!   search with a padded GetSystemInfo, which does no work);
//! - `keepalive`: an idle connection with a PING every 30 s;
//! - `long_poll` (asked for): a poll on a task queue nobody serves.
//!
//! The first four run one after another on one connection; keepalive and
//! long poll sit idle most of the time, so they run on connections of their
//! own at the same time, and the whole probe takes about the longer of them.
//! Connections are made by `conn` (the tap in `tap` watches their frames);
//! requests are encoded by `pb`; `report` writes the result.

mod calls;
mod conn;
mod keepalive;
mod latency;
mod long_poll;
mod pb;
mod report;
mod size;
mod tap;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use conn::{Answer, Conn, ConnectError, Target};

/// The config problems exit code of the binary: the probe's own files
/// (certificate, key, CA) could not be used, or the address is not one.
const EX_CONFIG: u8 = 64;

/// Exit code when a check failed.
const EX_FAILED: u8 = 1;

pub const GET_SYSTEM_INFO: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
pub const DESCRIBE_NAMESPACE: &str =
    "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";
pub const POLL_WORKFLOW_TASK_QUEUE: &str =
    "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue";

/// The checks `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Skippable {
    Access,
    Latency,
    MessageSize,
    Keepalive,
}

/// Check a deployment from a client's side: TLS, access per namespace,
/// latency, the largest request accepted, keepalive, and (asked for) a long
/// poll. Exit 0 when no check failed (warnings allowed), 1 when one did, 64
/// when the certificate, key or CA cannot be used.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit status: 0 when no check failed (warnings allowed), 1 when one \
did, 64 when the certificate, key or CA cannot be used or the address is not host:port."
)]
pub struct ProbeArgs {
    /// What to probe: host:port of the proxy, or of what clients connect to
    /// in front of it.
    #[arg(value_name = "HOST:PORT")]
    address: String,
    /// Client certificate (PEM, leaf first; its intermediates may follow).
    /// May be left out with --token-file, for a proxy whose
    /// `tls.client_certificate` is "optional".
    #[arg(long, value_name = "FILE", requires = "key", required_unless_present_any = ["plaintext", "token_file"])]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert", required_unless_present_any = ["plaintext", "token_file"])]
    key: Option<PathBuf>,
    /// A bearer token (a JWT of a `[[tokens.issuer]]`) sent on every call
    /// as `authorization: Bearer`, read from this file (surrounding
    /// whitespace removed; a file, so the token is not in `ps` output).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA bundle the server's certificate is verified against (PEM).
    #[arg(long, value_name = "FILE", required_unless_present = "plaintext")]
    ca: Option<PathBuf>,
    /// Name the server's certificate must carry (SNI); the host of the
    /// address by default.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Plaintext HTTP/2 (h2c), for a path that is not TLS to the client,
    /// such as a frontend directly or a plaintext load balancer.
    #[arg(long, conflicts_with_all = ["cert", "key", "ca", "server_name"])]
    plaintext: bool,
    /// A namespace to check access to (repeatable); `default` if none.
    #[arg(long = "namespace", short = 'n', value_name = "NAME")]
    namespaces: Vec<String>,
    /// GetSystemInfo round trips for the latency percentiles.
    #[arg(long, default_value_t = 200, value_name = "N")]
    calls: u32,
    /// Time the latency calls may take in all; the percentiles are of the
    /// calls made by then.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    latency_limit: Duration,
    /// The largest request message the size search tries (from 1 KiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    max_size: usize,
    /// PING interval of the keepalive and long-poll connections (SDKs: 30 s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    ping_interval: Duration,
    /// How long the keepalive connection stays idle (no calls).
    #[arg(long, default_value = "65s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    idle: Duration,
    /// Also hold a long poll (PollWorkflowTaskQueue on a task queue nobody
    /// serves) this long, 75 s when no value is given (`--long-poll=90s`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "75s",
          value_parser = humantime::parse_duration, value_name = "DURATION")]
    long_poll: Option<Duration>,
    /// Task queue of the long poll (one nobody serves); a new name each run
    /// by default.
    #[arg(long, value_name = "NAME")]
    task_queue: Option<String>,
    /// Checks to leave out (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHECK")]
    skip: Vec<Skippable>,
    /// Time each connect step and each call may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// "64MiB", "512KiB", "4096" (bytes).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64MiB)"))?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?} is not a size (e.g. 64MiB)")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A check's verdict. Ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Skip,
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Skip => "SKIP",
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        }
    }
}

/// What each kind of check reports beyond its reason.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Details {
    Tls(tls::TlsDetails),
    Access(calls::AccessDetails),
    Latency(latency::LatencyDetails),
    Size(size::SizeDetails),
    Keepalive(keepalive::KeepaliveDetails),
    LongPoll(long_poll::LongPollDetails),
}

/// One check's result.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub outcome: Outcome,
    /// One line.
    pub reason: String,
    /// How long the check took.
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    /// More lines for the text report (the JSON has `details`).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Check {
    pub fn new(name: &'static str, outcome: Outcome, reason: impl Into<String>) -> Check {
        Check {
            name,
            namespace: None,
            outcome,
            reason: reason.into(),
            seconds: 0.0,
            details: None,
            notes: Vec::new(),
        }
    }

    fn skip(name: &'static str, reason: impl Into<String>) -> Check {
        Check::new(name, Outcome::Skip, reason)
    }

    pub fn namespace(mut self, namespace: &str) -> Check {
        self.namespace = Some(namespace.to_owned());
        self
    }

    pub fn details(mut self, details: Details) -> Check {
        self.details = Some(details);
        self
    }

    pub fn notes(mut self, notes: Vec<String>) -> Check {
        self.notes = notes;
        self
    }

    fn timed(mut self, started: Instant) -> Check {
        self.seconds = seconds(started.elapsed());
        self
    }
}

/// A call as the JSON report shows it.
#[derive(Debug, Serialize)]
pub struct CallReport {
    /// `OK`, a gRPC status name, `HTTP 504`, `RESET ...`, `TIMEOUT`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub summary: String,
    pub seconds: f64,
}

impl From<&Answer> for CallReport {
    fn from(a: &Answer) -> CallReport {
        CallReport {
            status: a.status_name(),
            code: a.grpc_status,
            message: a.grpc_message.clone().filter(|m| !m.is_empty()),
            http_status: a.http_status,
            server: a.server.clone(),
            summary: a.summary(),
            seconds: seconds(a.elapsed),
        }
    }
}

/// Counts of outcomes.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// The whole probe.
#[derive(Debug, Serialize)]
pub struct Report {
    pub address: String,
    /// `None` for plaintext.
    pub server_name: Option<String>,
    pub plaintext: bool,
    /// No check failed.
    pub ok: bool,
    pub summary: Summary,
    pub seconds: f64,
    pub checks: Vec<Check>,
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The main connection of the probe, opened again when a check broke it
/// (a size probe can make a path close the connection).
pub struct Link<'a> {
    target: &'a Target,
    conn: Conn,
}

impl<'a> Link<'a> {
    /// The open connection: the current one, or a new one.
    pub async fn conn(&mut self) -> Result<&Conn, ConnectError> {
        if self.conn.is_closed() {
            self.conn = conn::connect(self.target, None).await?;
        }
        Ok(&self.conn)
    }

    /// A call on the open connection; a failed reconnect is its failure.
    pub async fn unary(
        &mut self,
        path: &str,
        message: &bytes::Bytes,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Answer {
        match self.conn().await {
            Ok(conn) => conn.unary(path, message, headers, timeout).await,
            Err(e) => Answer {
                failure: Some(format!("cannot reconnect: {e}")),
                ..Answer::default()
            },
        }
    }
}

/// What the probe runs with, from the command line.
struct Plan {
    target: Target,
    server_name: Option<String>,
    namespaces: Vec<String>,
    task_queue: String,
}

fn plan(args: &ProbeArgs) -> Result<Plan, String> {
    let tls = if args.plaintext {
        None
    } else {
        let Some(ca) = &args.ca else {
            return Err("--ca is required (or --plaintext)".into());
        };
        let client_key = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let chain =
                    crate::tls::material::load_cert_chain(cert).map_err(|e| e.to_string())?;
                let key_der =
                    crate::tls::material::load_private_key(key).map_err(|e| e.to_string())?;
                Some(
                    crate::tls::material::certified_key(chain, key_der, cert, key)
                        .map_err(|e| e.to_string())?,
                )
            }
            (None, None) if args.token_file.is_some() => None,
            _ => {
                return Err(
                    "--cert and --key are required (or --token-file, or --plaintext)".into(),
                )
            }
        };
        let roots = crate::tls::material::load_ca_bundle(ca).map_err(|e| e.to_string())?;
        let config = crate::tls::client::client_config(&crate::tls::client::ClientTlsMaterial {
            roots: Arc::new(roots),
            client_key,
        })
        .map_err(|e| format!("cannot make the TLS client config: {e}"))?;
        let name = match &args.server_name {
            Some(n) => n.clone(),
            None => conn::split_address(&args.address)
                .map(|(host, _)| host)
                .unwrap_or_default(),
        };
        Some((config, name))
    };
    let server_name = tls.as_ref().map(|(_, n)| n.clone());
    let mut target = Target::new(&args.address, tls, args.timeout)?;
    if let Some(file) = &args.token_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        target
            .set_token(text.trim())
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let namespaces = if args.namespaces.is_empty() {
        vec!["default".to_owned()]
    } else {
        args.namespaces.clone()
    };
    let task_queue = args.task_queue.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("temporal-mtls-proxy-probe-{}-{nanos:x}", std::process::id())
    });
    Ok(Plan {
        target,
        server_name,
        namespaces,
        task_queue,
    })
}

/// The `probe` subcommand: runs the checks, prints the report, and returns
/// the exit code (0: no check failed, 1: one did, 64: unusable arguments).
pub fn run_probe(args: &ProbeArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(probe(args, &plan));
    let printed = if args.json {
        report::json(&report)
    } else {
        report::text(&report)
    };
    println!("{printed}");
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EX_FAILED)
    }
}

async fn probe(args: &ProbeArgs, plan: &Plan) -> Report {
    let started = Instant::now();
    let first_name = if plan.target.is_tls() { "tls" } else { "h2c" };
    let skipped = |s: Skippable| args.skip.contains(&s);
    let mut checks = Vec::new();
    let connected = conn::connect(&plan.target, None).await;
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            checks.push(tls::failed(first_name, &e).timed(started));
            let why = "skipped: no connection";
            for ns in &plan.namespaces {
                checks.push(Check::skip("access", why).namespace(ns));
            }
            for name in ["latency", "message_size", "keepalive", "long_poll"] {
                checks.push(Check::skip(name, why));
            }
            return finish(args, plan, checks, started);
        }
    };
    checks.push(
        match &conn.tls {
            Some(session) => tls::check(session),
            None => Check::new(
                "h2c",
                Outcome::Pass,
                "plaintext HTTP/2 (--plaintext): no TLS to check",
            ),
        }
        .timed(started),
    );
    let mut link = Link {
        target: &plan.target,
        conn,
    };
    // One after another on the main connection, while the slow checks sit
    // on theirs.
    let main = async {
        let mut done = Vec::new();
        for ns in &plan.namespaces {
            let t = Instant::now();
            done.push(if skipped(Skippable::Access) {
                Check::skip("access", "skipped (--skip access)").namespace(ns)
            } else {
                calls::check(&mut link, ns, args.timeout).await.timed(t)
            });
        }
        let t = Instant::now();
        done.push(if skipped(Skippable::Latency) {
            Check::skip("latency", "skipped (--skip latency)")
        } else if args.calls == 0 {
            Check::skip("latency", "skipped (--calls 0)")
        } else {
            latency::check(&mut link, args.calls, args.latency_limit, args.timeout)
                .await
                .timed(t)
        });
        let t = Instant::now();
        done.push(if skipped(Skippable::MessageSize) {
            Check::skip("message_size", "skipped (--skip message-size)")
        } else {
            size::check(&mut link, args.max_size, args.timeout)
                .await
                .timed(t)
        });
        done
    };
    let keepalive = async {
        let t = Instant::now();
        if skipped(Skippable::Keepalive) {
            Check::skip("keepalive", "skipped (--skip keepalive)")
        } else {
            keepalive::check(&plan.target, args.ping_interval, args.idle, args.timeout)
                .await
                .timed(t)
        }
    };
    let long_poll = async {
        let t = Instant::now();
        match args.long_poll {
            None => Check::skip("long_poll", "not asked for (--long-poll)"),
            Some(duration) => long_poll::check(
                &plan.target,
                &plan.namespaces[0],
                &plan.task_queue,
                duration,
                args.ping_interval,
            )
            .await
            .timed(t),
        }
    };
    let (main, keepalive, long_poll) = tokio::join!(main, keepalive, long_poll);
    checks.extend(main);
    checks.push(keepalive);
    checks.push(long_poll);
    finish(args, plan, checks, started)
}

fn finish(args: &ProbeArgs, plan: &Plan, checks: Vec<Check>, started: Instant) -> Report {
    let mut summary = Summary::default();
    for c in &checks {
        match c.outcome {
            Outcome::Pass => summary.pass += 1,
            Outcome::Warn => summary.warn += 1,
            Outcome::Fail => summary.fail += 1,
            Outcome::Skip => summary.skip += 1,
        }
    }
    Report {
        address: args.address.clone(),
        server_name: plan.server_name.clone(),
        plaintext: args.plaintext,
        ok: summary.fail == 0,
        summary,
        seconds: seconds(started.elapsed()),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_long_poll_takes_75_s_unless_told_and_skips_split_on_commas() {
        let args = Cli::try_parse_from(["p", "h:1", "--plaintext", "--long-poll"])
            .unwrap()
            .probe;
        assert_eq!(args.long_poll, Some(Duration::from_secs(75)));
        let args = Cli::try_parse_from(["p", "--long-poll=90s", "h:1", "--plaintext"])
            .unwrap()
            .probe;
        assert_eq!(args.long_poll, Some(Duration::from_secs(90)));
        let args =
            Cli::try_parse_from(["p", "h:1", "--plaintext", "--skip", "latency,message-size"])
                .unwrap()
                .probe;
        assert_eq!(args.skip, [Skippable::Latency, Skippable::MessageSize]);
        assert_eq!(args.long_poll, None);
        assert!(
            Cli::try_parse_from(["p", "h:1"]).is_err(),
            "TLS files are required"
        );
    }
}
