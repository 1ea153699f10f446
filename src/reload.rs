//! Hot reload of what rotates while the proxy runs: the server certificate
//! and key, the client CA bundle, the CRLs, and the authorization policy.
//! Triggered by SIGHUP and by a change in any of those files (polled, which
//! also sees Kubernetes' atomic Secret updates through symlinks). The new
//! set is loaded and validated as a whole, exactly as at start; if anything
//! is wrong (unparseable, key not matching, expired) it is refused and the
//! running set keeps serving. New handshakes use the new material through an
//! `ArcSwap`; open connections and calls in flight are not touched. Settings
//! that cannot change live (listen address, upstream, limits) are reported
//! as needing a restart.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::server::Shared;
use crate::tls::server::server_config;

/// How often the watched files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied { needs_restart: Vec<&'static str> },
    Refused(String),
}

pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    /// The config the process started with: what cannot change live is
    /// compared against it.
    started: Config,
    /// The files of the config now in force (a reload may name new ones).
    watched: Vec<PathBuf>,
    digest: u64,
}

impl Reloader {
    pub fn new(started: Config, shared: Arc<Shared>) -> Option<Reloader> {
        let path = started.source.clone()?;
        let watched = started.watched_files();
        let digest = digest(&watched);
        Some(Reloader {
            path,
            shared,
            started,
            watched,
            digest,
        })
    }

    /// Runs until the process ends: reloads on SIGHUP and on file changes.
    pub async fn run(mut self) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup_recv = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = hup_recv => {
                    self.reload("SIGHUP");
                }
                _ = tick.tick() => {
                    if digest(&self.watched) != self.digest {
                        self.reload("files changed");
                    }
                }
            }
        }
    }

    /// Loads, validates and applies the config file now.
    pub fn reload(&mut self, trigger: &str) -> Outcome {
        let outcome = self.try_reload();
        // Whatever happened, wait for the next change before trying again.
        self.digest = digest(&self.watched);
        match &outcome {
            Outcome::Applied { needs_restart } => {
                self.shared.metrics.reload_succeeded();
                tracing::info!(
                    trigger,
                    "reloaded certificates, CA bundle, CRLs and authorization policy"
                );
                if !needs_restart.is_empty() {
                    tracing::warn!(
                        settings = needs_restart.join(", "),
                        "changed settings need a restart to take effect; the running values stay"
                    );
                }
            }
            Outcome::Refused(reason) => {
                self.shared.metrics.reload_failed();
                tracing::error!(trigger, reason = %reason, "reload refused: the running certificates and policy keep serving");
            }
        }
        outcome
    }

    fn try_reload(&mut self) -> Outcome {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let tls = match server_config(&new.tls.material) {
            Ok(t) => t,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        self.shared.tls.store(tls);
        self.shared.policy.store(new.authz.clone().map(Arc::new));
        crate::health::certificates(&new, &self.shared.metrics, &self.shared.health);
        self.watched = new.watched_files();
        Outcome::Applied {
            needs_restart: needs_restart(&self.started, &new),
        }
    }
}

/// Settings read only at start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen.address != new.listen.address {
        changed.push("listen.address");
    }
    if old.upstream.address != new.upstream.address
        || old.upstream.connect_timeout != new.upstream.connect_timeout
        || old.upstream.max_concurrent_streams != new.upstream.max_concurrent_streams
        || old
            .upstream
            .tls
            .as_ref()
            .map(|t| t.server_name.to_str().into_owned())
            != new
                .upstream
                .tls
                .as_ref()
                .map(|t| t.server_name.to_str().into_owned())
    {
        changed.push("[upstream]");
    }
    if format!("{:?}", old.limits) != format!("{:?}", new.limits) {
        changed.push("[limits]");
    }
    if format!("{:?}", old.http2) != format!("{:?}", new.http2) {
        changed.push("[http2]");
    }
    if format!("{:?}", old.keepalive) != format!("{:?}", new.keepalive) {
        changed.push("[keepalive]");
    }
    if format!("{:?}", old.identity) != format!("{:?}", new.identity) {
        changed.push("[identity]");
    }
    if format!("{:?}", old.audit) != format!("{:?}", new.audit) {
        changed.push("[audit]");
    }
    if old.worker_threads != new.worker_threads {
        changed.push("runtime.worker_threads");
    }
    if old.shutdown.drain_timeout != new.shutdown.drain_timeout {
        changed.push("shutdown.drain_timeout");
    }
    changed
}

/// A digest of the files' contents (missing files count as empty).
fn digest(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        std::fs::read(f).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}
