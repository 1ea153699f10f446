//! What rotates while the proxy runs, owned in one place: the server
//! certificate and key, the client CA bundle and CRLs (together the TLS
//! config of new handshakes), the authorization policy, and the
//! certificates readiness and the expiry metrics judge. [`Live`] holds the
//! TLS config and the policy as one lock-free snapshot that every handshake
//! and call reads (so a handshake and a call never see parts of two
//! reloads); [`apply`] replaces all of it at once, at start and on every
//! reload.
//!
//! A reload is triggered by SIGHUP and by a change in any of the config's
//! files (polled, which also sees Kubernetes' atomic Secret updates through
//! symlinks). The new set is loaded and validated as a whole, exactly as at
//! start; if anything is wrong (unparseable, key not matching, expired) it
//! is refused and the running set keeps serving. Open connections and calls
//! in flight are not touched (open connections pick up a new policy on their
//! next call). Settings that cannot change live (listen address and PROXY
//! protocol, upstream, limits, token issuers, `tls.client_certificate`) are
//! reported as needing a restart. Token issuers' JWKS files are read again
//! on every reload (`Tokens::reload`): a new key set is in force for the
//! next call, and one that cannot be read leaves the keys in force.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use crate::authz::Policy;
use crate::config::Config;
use crate::health::{certificate_expiries, Health};
use crate::metrics::Metrics;
use crate::tls::server::{server_config, ServerTlsError};
use crate::token::Tokens;

/// How often the watched files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The reloadable state every handshake and call reads.
pub struct Live(ArcSwap<Loaded>);

impl Live {
    /// The TLS config for a new handshake.
    pub fn tls(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.0.load().tls)
    }

    /// The policy for a call.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.0.load().policy.clone()
    }
}

/// What [`apply`] is given and [`Live`] holds: a validated config's
/// reloadable parts, and the rustls config built from them.
pub struct Loaded {
    tls: Arc<ServerConfig>,
    /// `None`: no `[authz]`, every authenticated client may call anything.
    policy: Option<Arc<Policy>>,
}

impl Loaded {
    /// Builds the TLS config of `config` (the only step that can still fail
    /// once a config is valid).
    pub fn from_config(config: &Config) -> Result<Loaded, ServerTlsError> {
        Ok(Loaded {
            tls: server_config(&config.tls.material)?,
            policy: config.authz.clone().map(Arc::new),
        })
    }
}

/// Everything a reload replaces, and whom it tells.
pub struct Reloadable {
    pub live: Arc<Live>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

impl Reloadable {
    /// The state of a config loaded at start.
    pub fn start(
        config: &Config,
        loaded: Loaded,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Reloadable {
        let state = Reloadable {
            live: Arc::new(Live(ArcSwap::from_pointee(loaded))),
            health,
            metrics,
        };
        state.judge_certificates(config);
        state
    }

    /// Puts `loaded` (from `config`) in force: new handshakes use its TLS
    /// config, new calls its policy, and readiness and the expiry metrics
    /// judge its certificates.
    pub fn apply(&self, config: &Config, loaded: Loaded) {
        self.live.0.store(Arc::new(loaded));
        self.judge_certificates(config);
    }

    /// Readiness and the expiry metrics follow the certificates of
    /// `config`, the one in force; those expiring soon are logged.
    fn judge_certificates(&self, config: &Config) {
        let (server, cas) = certificate_expiries(
            &config.tls.material.certified_key.cert,
            &config.tls.client_ca,
        );
        self.metrics.set_certificates(&server, &cas);
        self.health.set_live_certificates(server, cas);
        for soon in config.expiring_certificates(std::time::SystemTime::now()) {
            let not_after = humantime::format_rfc3339_seconds(soon.not_after);
            tracing::warn!(
                key = soon.key,
                path = %soon.path.display(),
                subject = %soon.subject,
                not_after = %not_after,
                expired = soon.left.is_none(),
                "{soon}"
            );
        }
    }
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied { needs_restart: Vec<&'static str> },
    Refused(String),
}

pub struct Reloader {
    path: PathBuf,
    state: Reloadable,
    /// The config the process started with: what cannot change live is
    /// compared against it.
    started: Config,
    /// The files of the config now in force (a reload may name new ones).
    watched: Vec<PathBuf>,
    digest: u64,
    /// The token verifier built at start (its JWKS files are reloaded).
    tokens: Option<Arc<Tokens>>,
}

impl Reloader {
    /// `None` when the config came from no file (nothing to reload).
    pub fn new(
        started: Config,
        state: Reloadable,
        tokens: Option<Arc<Tokens>>,
    ) -> Option<Reloader> {
        let path = started.source.clone()?;
        let watched = started.watched_files();
        let digest = digest(&watched);
        Some(Reloader {
            path,
            state,
            started,
            watched,
            digest,
            tokens,
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
        let metrics = &self.state.metrics;
        match &outcome {
            Outcome::Applied { needs_restart } => {
                metrics.reload_succeeded();
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
                metrics.reload_failed();
                tracing::error!(trigger, reason = %reason, "reload refused: the running certificates and policy keep serving");
            }
        }
        outcome
    }

    fn try_reload(&mut self) -> Outcome {
        let mut new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        // Whether clients may connect without a certificate stays as it
        // started: the token layers of the running stack were built for it.
        new.tls.material.client_certificate_optional =
            self.started.tls.material.client_certificate_optional;
        let loaded = match Loaded::from_config(&new) {
            Ok(l) => l,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        self.state.apply(&new, loaded);
        if let Some(tokens) = &self.tokens {
            for file in tokens.reload() {
                match &file.outcome {
                    Ok(true) => tracing::info!(issuer = %file.issuer, "token issuer keys reloaded"),
                    Ok(false) => {}
                    Err(reason) => {
                        tracing::error!(issuer = %file.issuer, reason = %reason, "token issuer keys not reloaded: the keys in force stay")
                    }
                }
            }
        }
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
    // Not live: turning it on or off goes with reconfiguring the load
    // balancer in front, and connections accepted meanwhile would be read
    // under either setting.
    if old.listen.proxy_protocol != new.listen.proxy_protocol {
        changed.push("listen.proxy_protocol");
    }
    if old.upstream.address != new.upstream.address
        || old.upstream.connect_timeout != new.upstream.connect_timeout
        || old.upstream.max_concurrent_streams != new.upstream.max_concurrent_streams
        || old.upstream.initial_stream_window_size != new.upstream.initial_stream_window_size
        || old.upstream.max_connections != new.upstream.max_connections
        || old.upstream.max_connection_idle != new.upstream.max_connection_idle
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
    if old.tls.client_certificate != new.tls.client_certificate {
        changed.push("tls.client_certificate");
    }
    if token_issuers(old) != token_issuers(new) {
        changed.push("[tokens]");
    }
    changed
}

/// `[tokens]` as far as it is read at start: everything but the keys of
/// JWKS files (reloaded live).
fn token_issuers(config: &Config) -> Option<String> {
    use crate::token::KeySource;
    config.tokens.as_ref().map(|t| {
        let issuers: Vec<String> = t
            .issuers
            .iter()
            .map(|i| {
                let source = match &i.source {
                    KeySource::File { path, .. } => format!("file {}", path.display()),
                    KeySource::Url(url) => format!("url {url}"),
                    KeySource::Discovery => "discovery".to_owned(),
                };
                format!(
                    "{} {} {:?} {source} {:?} {:?} {:?} {:?} {:?} {:?}",
                    i.name,
                    i.issuer,
                    i.audiences,
                    i.jwks_ca.as_ref().map(|(p, _)| p),
                    i.algorithms,
                    i.clock_skew,
                    i.max_lifetime,
                    i.refresh,
                    t.forward,
                )
            })
            .collect();
        issuers.join("; ")
    })
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
