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

pub mod audit;
pub mod authz;
pub mod config;
pub mod dev;
pub mod error;
pub mod grpc;
pub mod layers;
pub mod logging;
pub mod reload;
pub mod server;
pub mod temporal;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;

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

/// Serves on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let server_tls = tls::server::server_config(&config.tls.material)?;
    let pool = upstream::pool(&config.upstream, &config.keepalive)?;
    let audit = match &config.audit {
        Some(a) => Some(audit::sink::AuditSink::spawn(a.target.clone(), a.buffer)?),
        None => None,
    };
    let audit_finished = audit.as_ref().map(audit::sink::AuditSink::finished);
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
    let shared = Arc::new(server::Shared::new(
        &config,
        server_tls,
        pool,
        server::CallPolicy {
            policy: config.authz.clone().map(Arc::new),
            identity: config.identity.clone(),
            audit,
        },
    ));
    let local = listener.local_addr().map_err(|source| RunError::Bind {
        address: config.listen.address,
        source,
    })?;
    tracing::info!(
        address = %local,
        upstream = %config.upstream.address,
        "listening (mTLS, HTTP/2)"
    );
    // Certificates and policy rotate while serving (SIGHUP, file changes).
    let reloader = reload::Reloader::new(config, shared.clone()).map(|r| tokio::spawn(r.run()));
    server::serve(listener, shared, shutdown).await;
    if let Some(task) = reloader {
        task.abort();
    }
    // The last audit lines are written before the process exits (bounded:
    // a connection cut at the drain timeout may still hold a sink handle).
    if let Some(finished) = audit_finished {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), finished.wait()).await;
    }
    Ok(())
}
