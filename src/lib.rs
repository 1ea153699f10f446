//! temporal-mtls-proxy: an mTLS-terminating gRPC reverse proxy for the
//! Temporal frontend.
//!
//! The data path, in the order a call meets it:
//!
//! 1. `server` accepts TCP connections and runs one task per connection.
//! 2. `tls::handshake` terminates TLS (rustls): a client certificate is
//!    required and verified against the configured CA bundle and CRLs, ALPN
//!    must be `h2`; refusals are logged with a reason in plain words.
//! 3. hyper serves HTTP/2 on the connection; each call passes through the
//!    tower stack assembled in `server::stack` (one layer per file in
//!    `layers`): audit, error rescue, identity headers, and authorization,
//!    which reads the Temporal namespace from the request's protobuf
//!    (`grpc::frame`, `temporal::wire`) and decides by the method table
//!    (`temporal::methods`) and the policy (`authz`).
//! 4. `upstream::Forward` sends the call to the frontend on a pooled HTTP/2
//!    connection (`upstream::pool`) and streams the response back through
//!    `grpc::ResponseBody`, which guarantees every call ends with a gRPC
//!    status.
//!
//! Errors become gRPC statuses in one place: `error::status_of`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod audit;
mod authz;
mod call;
mod config;
pub mod dev;
mod error;
mod grpc;
mod health;
mod layers;
pub mod logging;
mod metrics;
mod probe;
mod relay;
mod reload;
mod server;
mod temporal;
mod tls;
mod token;
mod upstream;

/// What the benches (`benches/`) and fuzz targets measure and exercise,
/// reachable from outside the crate for them alone: not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::authz::pattern::{normalize, FieldKind, Pattern};
    pub use crate::authz::{Field, Mode, Policy, Role, Rule};
    pub use crate::grpc::frame::{decompress, parse_prefix, read_first_message, FrameError};
    pub use crate::grpc::scan::{LimitError, LimitedBody, MessageScanner, Scan};
    pub use crate::server::frame_guard::hpack::{HeaderCheck, Verdict};
    pub use crate::server::frame_guard::{FrameGuard, PingPolicy};
    pub use crate::temporal::methods::{lookup, Method, METHODS};
    pub use crate::temporal::nested::{nested_namespaces, task_token_field, token_namespace_id};
    pub use crate::temporal::wire::{last_string_field, WireError};
    pub use crate::tls::identity::PeerIdentity;
    pub use crate::tls::material::{load_ca_bundle, load_cert_chain, load_crls};
    pub use crate::token::{
        bearer_token, bearer_value, token_digest, Algorithm, FileReload, IssuerConfig,
        IssuerStatus, KeySet, KeySource, TokenError, Tokens, TokensConfig, VerifiedToken,
    };
}

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
/// The `probe` subcommand (its arguments and its run), for the binary.
pub use probe::{run_probe, ProbeArgs};

/// Why the proxy could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ServerTls(#[from] tls::server::ServerTlsError),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Audit(#[from] audit::sink::SinkError),
    #[error("cannot start a worker thread: {0}")]
    Workers(#[source] std::io::Error),
    #[error("cannot bind the admin listener {address}: {source}")]
    AdminBind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the configured listen address.
pub async fn bind(config: &Config) -> Result<TcpListener, RunError> {
    TcpListener::bind(config.listen.address)
        .await
        .map_err(|source| RunError::Bind {
            address: config.listen.address,
            source,
        })
}

/// The addresses a running proxy serves on, once it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The mTLS listener.
    pub address: std::net::SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), if on.
    pub admin: Option<std::net::SocketAddr>,
}

/// Serves on `listener` until `shutdown` resolves, then drains: readiness
/// turns false, the listener closes after `shutdown.unready_delay`, every
/// connection gets GOAWAY, and calls in flight get the drain timeout.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_until(config, listener, shutdown, |_| {}).await
}

/// How long the audit writer may go without writing anything at shutdown
/// before the process exits without the rest.
const AUDIT_STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// [`run`], telling `started` the addresses it serves on (a listener bound
/// to port 0, an admin address of port 0) as soon as it serves.
pub async fn run_until(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(Started),
) -> Result<(), RunError> {
    let loaded = reload::Loaded::from_config(&config)?;
    let metrics = metrics::Metrics::new(config.admin.max_namespace_labels);
    let health = health::Health::new();
    metrics.set_ready_source({
        let health = health.clone();
        move || health.ready()
    });
    let audit = match &config.audit {
        Some(a) => Some(audit::sink::AuditSink::spawn(a.target.clone(), a.buffer)?),
        None => None,
    };
    let audit_finished = audit.as_ref().map(audit::sink::AuditSink::finished);
    if let Some(sink) = &audit {
        metrics.set_audit_dropped_source(sink.dropped_source());
    }
    match &config.authz {
        Some(policy) => tracing::info!(
            mode = ?policy.mode,
            rules = policy.rules.len(),
            "authorization on"
        ),
        None => tracing::warn!(
            "no [authz] section: every client with a valid certificate may call every method on every namespace"
        ),
    }
    // What reloads replace: TLS, policy, and the certificates readiness
    // judges, put in force together.
    let reloadable = reload::Reloadable::start(&config, loaded, health.clone(), metrics.clone());
    let admin_listener = match config.admin.address {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| RunError::AdminBind { address, source })?,
        ),
        None => None,
    };
    // Bearer token issuers: file keys now, fetched ones by `refresh` (kept
    // fresh on this runtime until shutdown).
    let tokens = config
        .tokens
        .as_ref()
        .map(|t| Arc::new(token::Tokens::from_config(t)));
    let token_refresh = tokens.as_ref().map(|t| tokio::spawn(t.refresh()));
    if let Some(t) = &tokens {
        let issuers: Vec<&str> = t.issuer_names().map(|n| &**n).collect();
        tracing::info!(issuers = ?issuers, forward = t.forward(), "bearer tokens on");
        health.set_tokens(t.clone());
        metrics.set_token_keys_source({
            let tokens = t.clone();
            move || tokens.status()
        });
    }
    let stack = server::stack::StackConfig {
        live: reloadable.live.clone(),
        strip_headers: Arc::from(config.identity.strip.clone()),
        identity_header: config.identity.header.clone(),
        audit,
        metrics: metrics.clone(),
        local_health: config.health_local.then(|| health.clone()),
        limits: config.limits.clone(),
        namespaces: upstream::namespaces::NamespaceIds::new(),
        max_frame_size: config.http2.max_frame_size,
        tokens: tokens.clone(),
    };
    let server = Arc::new(server::Server::new(&config, stack));
    // Connections are served on worker threads, each with its own pool.
    let count = config
        .worker_threads
        .unwrap_or_else(server::workers::default_count);
    let forwards = (0..count)
        .map(|_| {
            upstream::pool(&config.upstream, &config.keepalive, metrics.clone())
                .map(|pool| upstream::Forward::new(pool, config.upstream.tls.is_some()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workers = server::workers::Workers::start(forwards).map_err(RunError::Workers)?;
    let local = listener.local_addr().map_err(|source| RunError::Bind {
        address: config.listen.address,
        source,
    })?;
    tracing::info!(
        address = %local,
        upstream = %config.upstream.address,
        workers = workers.count(),
        "listening (mTLS, HTTP/2)"
    );
    started(Started {
        address: local,
        admin: admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
    });
    let admin_stop = tokio_util::sync::CancellationToken::new();
    if let Some(l) = admin_listener {
        let stop = admin_stop.clone();
        tokio::spawn(admin::serve_admin(
            l,
            metrics.clone(),
            health.clone(),
            async move {
                stop.cancelled().await;
            },
        ));
    }
    // Readiness checks the upstream through the first worker's pool, on
    // that worker, as calls go.
    let probe = {
        let health = health.clone();
        let (interval, timeout) = (
            config.admin.upstream_check_interval,
            config.admin.upstream_check_timeout,
        );
        workers
            .spawn_first(move |forward| health::probe_upstream(health, forward, interval, timeout))
    };
    // Floods of peer-caused lines are summarised even after they stop.
    let log_report = tokio::spawn(logging::limit::report());
    health.set_serving(true);
    // Certificates and policy rotate while serving (SIGHUP, file changes).
    let unready_delay = config.shutdown.unready_delay;
    let reloader = reload::Reloader::new(config, reloadable, tokens).map(|r| tokio::spawn(r.run()));
    let draining = health.clone();
    let shutdown = async move {
        shutdown.await;
        // Readiness first, so load balancers stop sending new connections,
        // then the listener closes.
        draining.set_draining(true);
        tokio::time::sleep(unready_delay).await;
    };
    server::serve(listener, server, workers, shutdown).await;
    probe.abort();
    log_report.abort();
    if let Some(task) = reloader {
        task.abort();
    }
    if let Some(task) = token_refresh {
        task.abort();
    }
    health.set_serving(false);
    admin_stop.cancel();
    metrics.clear_audit_dropped_source();
    // The last audit lines are written before the process exits, however
    // slow the sink: the wait ends only when the writer has written nothing
    // for AUDIT_STALL (a sink that stopped taking lines, or a handle held by
    // a connection cut at the drain timeout with nothing queued).
    if let Some(finished) = audit_finished {
        let unwritten = finished.wait_while_writing(AUDIT_STALL).await;
        if unwritten > 0 {
            tracing::error!(
                unwritten,
                stalled_for = ?AUDIT_STALL,
                "exiting with audit lines not written: the audit sink stopped taking lines"
            );
        }
    }
    Ok(())
}
