//! Structured logs with tracing: `text` for people, `json` (one object per
//! line) for log pipelines. `RUST_LOG` overrides the level when set.
//!
//! Two rules keep logging from ever hurting serving:
//!
//! - **Never blocking.** Lines go to stdout through a bounded queue drained
//!   by a thread of its own ([`tracing_appender::non_blocking`], lossy): when
//!   the reader of stdout stalls (a backed-up container log pipe, a paused
//!   collector), lines beyond the queue are dropped and counted
//!   (`log_lines_dropped_total`), and no serving thread ever waits in
//!   `write(2)`.
//! - **No log rate a peer controls.** Lines a client can cause (refused
//!   handshakes, denied calls, ping floods, size refusals) go through a
//!   per-site rate limit ([`limit`]): past it they are counted
//!   (`log_lines_suppressed_total{site}`) and summarised in one line per
//!   second. Dependencies (h2, hyper, rustls) log only errors unless the
//!   filter names them: some of their warnings fire once per peer frame.

pub mod limit;

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines the writer queue holds while stdout is slow; beyond, lines are
/// dropped and counted.
const QUEUE_LINES: usize = 16 * 1024;

/// Dependencies whose logs are capped at `error` unless the filter names
/// them: h2 warns on every unsolicited PING ACK, rustls on every TLS warning
/// alert, hyper on header misuse — each once per frame a peer chooses to send.
const QUIET_DEPENDENCIES: [&str; 5] = ["h2", "hyper", "hyper_util", "rustls", "tokio_rustls"];

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped because stdout could not keep up (since start).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines) as u64
}

/// Keeps the writer thread alive; dropping it writes out what is queued
/// (waiting at most a second for a stalled stdout).
#[must_use = "logs are lost when the guard is dropped early"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber. `level` is a level (`info`) or an
/// `EnvFilter` directive list (`temporal_mtls_proxy=debug,info`); a word that
/// is neither a level nor a `target=level` directive is refused, so a typo
/// cannot silently hide every line (`RUST_LOG` is checked the same way).
pub fn init(format: LogFormat, level: &str) -> Result<LogGuard, String> {
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    init_to(format, level, std::io::stdout(), ansi)
}

/// Checks the filter [`init`] would install (`RUST_LOG` when set, else
/// `level`) without installing anything, with the same error [`init`] gives:
/// the binary calls it first, before any other work, so a mistyped level is
/// refused in every mode (`--check-config` and `dev` included).
pub fn check(level: &str) -> Result<(), String> {
    effective_filter(level, std::env::var("RUST_LOG").ok()).map(drop)
}

/// The filter from `rust_log` when set and not blank, else from `level`; an
/// error names where the bad filter came from.
fn effective_filter(level: &str, rust_log: Option<String>) -> Result<EnvFilter, String> {
    let (source, directives) = match rust_log {
        Some(env) if !env.trim().is_empty() => ("RUST_LOG", env),
        _ => ("--log-level", level.to_owned()),
    };
    filter(&directives).map_err(|e| format!("{source} {directives:?}: {e}"))
}

/// [`init`], writing to `out` instead of stdout (for a process that embeds
/// the proxy, or tests that read its lines).
pub fn init_to(
    format: LogFormat,
    level: &str,
    out: impl std::io::Write + Send + 'static,
    ansi: bool,
) -> Result<LogGuard, String> {
    let filter = effective_filter(level, std::env::var("RUST_LOG").ok())?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("log-writer")
        .finish(out);
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(LogGuard(guard))
}

/// The filter for `directives`, with [`QUIET_DEPENDENCIES`] capped at
/// `error` where the directives do not mention them.
fn filter(directives: &str) -> Result<EnvFilter, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let mut parts: Vec<String> = Vec::new();
    for part in directives
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if !part.contains('[') && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{level:?} is not a log level (one of {}), nor target=level",
                LEVELS.join(", ")
            ));
        }
        parts.push(part.to_owned());
    }
    if parts.is_empty() {
        return Err("empty filter".to_owned());
    }
    for dep in QUIET_DEPENDENCIES {
        let named = parts.iter().any(|p| {
            p.split(['=', '[', ':'])
                .next()
                .is_some_and(|target| target == dep)
        });
        if !named {
            parts.push(format!("{dep}=error"));
        }
    }
    EnvFilter::try_new(parts.join(",")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_level_is_refused_with_the_levels_named() {
        let err = filter("debgu").unwrap_err();
        assert!(err.contains("\"debgu\" is not a log level"), "{err}");
        assert!(filter("temporal_mtls_proxy=debgu,info").is_err());
        assert!(filter("").is_err());
    }

    #[test]
    fn the_error_names_where_the_bad_filter_came_from() {
        let err = effective_filter("debgu", None).unwrap_err();
        assert!(err.starts_with("--log-level \"debgu\": "), "{err}");
        assert!(
            err.contains("trace, debug, info, warn, error, off"),
            "{err}"
        );
        let err = effective_filter("info", Some("debgu".into())).unwrap_err();
        assert!(err.starts_with("RUST_LOG \"debgu\": "), "{err}");
        // A blank RUST_LOG leaves the flag in force, good or bad.
        assert!(effective_filter("info", Some("  ".into())).is_ok());
        assert!(effective_filter("debgu", Some(String::new())).is_err());
        // RUST_LOG, when set, replaces the flag.
        assert!(effective_filter("debgu", Some("debug".into())).is_ok());
    }

    #[test]
    fn levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "WARN",
            "temporal_mtls_proxy=debug,info",
            "h2=trace",
            "off",
        ] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn dependencies_are_capped_unless_named() {
        let f = filter("debug").unwrap().to_string();
        assert!(f.contains("h2=error"), "{f}");
        assert!(f.contains("rustls=error"), "{f}");
        let f = filter("h2=debug,info").unwrap().to_string();
        assert!(f.contains("h2=debug") && !f.contains("h2=error"), "{f}");
    }
}
