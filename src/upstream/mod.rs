//! The HTTP/2 client side toward the Temporal frontend: connections
//! (`connector`), their pool (`pool`), and the innermost tower service that
//! forwards a call (`forward`).

mod connector;
mod forward;
pub mod namespaces;
mod pool;
mod pump;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use forward::{Forward, UpstreamBody};
pub use pool::{Pool, StreamLease};

use crate::config::{KeepaliveConfig, UpstreamConfig};
use crate::metrics::{Metrics, UpstreamFailure};

/// Request bodies as sent upstream. Boxed so that request-side layers can
/// wrap the client's body (framing checks, first-message inspection) without
/// changing the pool's type.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call sent to the upstream failed before its response began.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No upstream connection could be had.
    #[error(transparent)]
    Unavailable(Arc<UpstreamError>),
    /// The call was sent (or its connection was lost while sending) and
    /// failed before a response arrived.
    #[error("upstream call failed: {0}")]
    Failed(#[source] StreamError),
}

/// Why a call's stream failed once sent: the upstream's side (a reset, a
/// GOAWAY, the connection lost) or the client's request stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Upstream(h2::Error),
    /// The client's request body failed while it was forwarded (the client
    /// reset its stream or went away); the upstream stream is reset.
    #[error("client request stream failed: {0}")]
    Request(#[source] BoxError),
}

/// Why the upstream could not take a call.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {address} unreachable: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {address} unreachable: no connection within {}", humantime::format_duration(*after))]
    ConnectTimeout { address: String, after: Duration },
    #[error("upstream {address} unreachable: TLS handshake failed: {source}")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {address} did not negotiate HTTP/2 (ALPN h2)")]
    NoAlpn { address: String },
    #[error("upstream {address} unreachable: HTTP/2 handshake failed: {source}")]
    Handshake {
        address: String,
        #[source]
        source: h2::Error,
    },
    /// Connected, but no byte of HTTP/2 (the server's SETTINGS) came back.
    #[error("upstream {address} unreachable: connected, but it sent no HTTP/2 SETTINGS within {} (is it an HTTP/2 gRPC server?)", humantime::format_duration(*after))]
    NoSettings { address: String, after: Duration },
    #[error("upstream TLS settings rejected: {0}")]
    TlsConfig(String),
}

impl UpstreamError {
    /// The metrics label of a failed connect.
    pub fn failure_kind(&self) -> UpstreamFailure {
        match self {
            UpstreamError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                UpstreamFailure::Refused
            }
            UpstreamError::ConnectTimeout { .. } => UpstreamFailure::Timeout,
            UpstreamError::Tls { .. }
            | UpstreamError::NoAlpn { .. }
            | UpstreamError::TlsConfig(_) => UpstreamFailure::Tls,
            UpstreamError::Handshake { .. } | UpstreamError::NoSettings { .. } => {
                UpstreamFailure::Handshake
            }
            UpstreamError::Connect { .. } => UpstreamFailure::Other,
        }
    }
}

/// Builds the pool for a validated upstream config.
pub fn pool(
    config: &UpstreamConfig,
    keepalive: &KeepaliveConfig,
    metrics: Arc<Metrics>,
) -> Result<Arc<Pool>, UpstreamError> {
    let connector = connector::Connector::new(config, keepalive)?;
    Ok(Pool::new(
        connector,
        pool::Limits {
            max_streams: config.max_concurrent_streams as usize,
            max_connections: config.max_connections as usize,
            max_idle: config.max_connection_idle,
        },
        metrics,
    ))
}
