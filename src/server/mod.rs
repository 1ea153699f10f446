//! The listener side: the accept loop and drain (`mod.rs`), one task per
//! connection (`connection`), and the tower stack each call goes through
//! (`stack`).

pub mod activity;
mod connection;
pub mod h2_guard;
pub mod stack;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ServerConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Health;
use crate::audit::sink::AuditSink;
use crate::authz::Policy;
use crate::config::{Config, IdentityHeaderConfig, KeepaliveConfig, LimitsConfig};
use crate::metrics::{Metrics, RefusalReason};
use crate::tls::identity::PeerIdentity;
use crate::upstream::namespaces::NamespaceIds;

/// What the proxy knows about a client connection, shared by its calls.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The verified client certificate's identity, read once.
    pub identity: Option<Arc<PeerIdentity>>,
    /// The server name the client asked for (SNI), if any.
    pub sni: Option<String>,
}

/// State shared by every connection.
pub struct Shared {
    /// Swapped whole on reload; each handshake takes the current one.
    pub tls: ArcSwap<ServerConfig>,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
    pub h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// `None`: no `[authz]`, every authenticated client may call anything.
    /// Swapped whole on reload.
    pub policy: Arc<ArcSwapOption<Policy>>,
    /// Headers stripped from client requests, and the identity header set.
    pub strip_headers: Arc<[http::HeaderName]>,
    pub identity_header: Option<http::HeaderName>,
    pub audit: Option<AuditSink>,
    pub limits: LimitsConfig,
    pub keepalive: KeepaliveConfig,
    /// One permit per open client connection (`limits.max_connections`).
    pub connections: Arc<Semaphore>,
    /// Connections refused because the limit was reached.
    pub refused_connections: AtomicU64,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Answer health checks locally (`[health] local`).
    pub health_local: bool,
    /// Task tokens' namespace ids, resolved from the frontend.
    pub namespaces: Arc<NamespaceIds>,
    /// The largest frame clients may send (`http2.max_frame_size`).
    pub max_frame_size: u32,
}

/// The parts of `Shared` that are about calls rather than connections.
pub struct CallPolicy {
    pub policy: Option<Arc<Policy>>,
    pub identity: IdentityHeaderConfig,
    pub audit: Option<AuditSink>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Shared {
    pub fn new(config: &Config, tls: Arc<ServerConfig>, calls: CallPolicy) -> Shared {
        let h = &config.http2;
        let k = &config.keepalive;
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // Responses are relayed as the frontend sent them (grpc-go sends
            // no Date); hyper would format and encode one on every call.
            .auto_date_header(false)
            // Windows sized so that a full-size request (4 MiB by default)
            // never waits on WINDOW_UPDATE round trips.
            .initial_stream_window_size(h.initial_stream_window_size)
            .initial_connection_window_size(h.initial_connection_window_size)
            .max_frame_size(h.max_frame_size)
            .max_concurrent_streams(h.max_concurrent_streams)
            .max_header_list_size(h.max_header_list_size)
            // Rapid reset (CVE-2023-44487) and error-reset floods: the
            // connection is closed past these counts.
            .max_pending_accept_reset_streams(h.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(h.max_local_error_reset_streams)
            // Dead-link detection: a PING every interval without traffic, the
            // connection closed when it is not answered in time.
            .keep_alive_interval(k.ping_interval)
            .keep_alive_timeout(k.ping_timeout);
        Shared {
            tls: ArcSwap::new(tls),
            handshake_timeout: config.tls.handshake_timeout,
            drain_timeout: config.shutdown.drain_timeout,
            h2,
            policy: Arc::new(ArcSwapOption::new(calls.policy)),
            strip_headers: Arc::from(calls.identity.strip),
            identity_header: calls.identity.header,
            audit: calls.audit,
            limits: config.limits.clone(),
            keepalive: config.keepalive.clone(),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            refused_connections: AtomicU64::new(0),
            metrics: calls.metrics,
            health: calls.health,
            health_local: config.health_local,
            namespaces: NamespaceIds::new(),
            max_frame_size: h.max_frame_size,
        }
    }
}

/// Accepts connections until `shutdown` resolves, then drains: the listener
/// closes, every connection gets GOAWAY, and in-flight calls have up to the
/// drain timeout to finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut workers: workers::Workers,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                        // At the limit: refuse at once (close), count, log.
                        let refused = shared.refused_connections.fetch_add(1, Ordering::Relaxed) + 1;
                        shared.metrics.connection_refused(RefusalReason::MaxConnections);
                        if crate::logging::limit::CONNECTION_LIMIT.admit() {
                            tracing::warn!(peer = %peer, limit = shared.limits.max_connections, refused_total = refused, "connection refused: limits.max_connections reached");
                        }
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let open = shared.metrics.connection_accepted();
                    let shared = shared.clone();
                    let token = token.clone();
                    workers.spawn(&tracker, tcp, peer, move |tcp, forward| async move {
                        connection::handle(tcp, peer, shared, forward, token).await;
                        drop(open);
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; connections already open keep working.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let open = tracker.len();
    tracing::info!(connections = open, drain_timeout = %humantime::format_duration(shared.drain_timeout), "draining: listener closed, sending GOAWAY");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(shared.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "drain timeout reached; closing the remaining connections"
        );
    } else {
        tracing::info!("drained");
    }
    workers.stop();
}
