//! The listener side: the accept loop and drain (`mod.rs`), one task per
//! connection, serving all its streams (`connection`, with `relay::serve`), the PROXY protocol header read before TLS
//! behind a load balancer (`proxy_header`), what is enforced on a client's
//! HTTP/2 frames below the h2 codec (`frame_guard`), the places connections still
//! in their handshake give up to new ones (`handshakes`), the tower stack
//! each call goes through (`stack`), and the worker threads connections run
//! on (`workers`).

mod connection;
pub mod frame_guard;
mod handshakes;
mod proxy_header;
pub mod stack;
pub mod workers;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, KeepaliveConfig};
use crate::metrics::{ConnectionRefusal, Metrics};
use crate::relay;
use crate::reload::Live;
use stack::StackConfig;

/// What the server's connections need; built once, shared by all.
pub struct Server {
    /// The TLS config of new handshakes (and the policy, for the stack).
    live: Arc<Live>,
    /// It covers the PROXY protocol header too, when there is one.
    handshake_timeout: Duration,
    /// `listen.proxy_protocol`: read a PROXY protocol v2 header first.
    proxy_protocol: bool,
    drain_timeout: Duration,
    h2: relay::serve::Settings,
    keepalive: KeepaliveConfig,
    max_connections: usize,
    /// One permit per open client connection (`limits.max_connections`).
    connections: Arc<Semaphore>,
    /// The permits of connections still in their handshake, oldest first.
    handshakes: Arc<handshakes::Handshakes>,
    /// Connections refused because the limit was reached.
    refused_connections: AtomicU64,
    metrics: Arc<Metrics>,
    stack: StackConfig,
}

impl Server {
    pub fn new(config: &Config, stack: StackConfig) -> Server {
        let h = &config.http2;
        let k = &config.keepalive;
        let mut builder = h2::server::Builder::new();
        builder
            // Windows sized so that a full-size request (4 MiB by default)
            // never waits on WINDOW_UPDATE round trips.
            .initial_window_size(h.initial_stream_window_size)
            .initial_connection_window_size(h.initial_connection_window_size)
            .max_frame_size(h.max_frame_size)
            .max_concurrent_streams(h.max_concurrent_streams)
            .max_header_list_size(h.max_header_list_size)
            // Rapid reset (CVE-2023-44487) and error-reset floods: the
            // connection is closed past these counts.
            .max_pending_accept_reset_streams(h.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some(h.max_local_error_reset_streams));
        let h2 = relay::serve::Settings {
            builder,
            // Dead-link detection: a PING every interval, the connection
            // closed when it is not answered in time.
            ping_interval: k.ping_interval,
            ping_timeout: k.ping_timeout,
        };
        Server {
            live: stack.live.clone(),
            handshake_timeout: config.tls.handshake_timeout,
            proxy_protocol: config.listen.proxy_protocol,
            drain_timeout: config.shutdown.drain_timeout,
            h2,
            keepalive: config.keepalive.clone(),
            max_connections: config.limits.max_connections,
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            handshakes: Arc::default(),
            refused_connections: AtomicU64::new(0),
            metrics: stack.metrics.clone(),
            stack,
        }
    }
}

/// Accepts connections until `shutdown` resolves, then drains: the listener
/// closes, every connection gets GOAWAY, and in-flight calls have up to the
/// drain timeout to finish.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    mut workers: workers::Workers,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    tokio::pin!(shutdown);
    if server.proxy_protocol {
        tracing::info!("PROXY protocol v2 required: every connection must start with its header (listen.proxy_protocol)");
    }
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // At the limit, the oldest connection still in its
                    // handshake gives its place (handshakes.rs).
                    let permit = server
                        .connections
                        .clone()
                        .try_acquire_owned()
                        .ok()
                        .or_else(|| server.handshakes.evict_oldest());
                    let Some(permit) = permit else {
                        // Every connection established: refuse at once
                        // (close), count, log.
                        let refused = server.refused_connections.fetch_add(1, Ordering::Relaxed) + 1;
                        server.metrics.connection_refused(ConnectionRefusal::MaxConnections);
                        if crate::logging::limit::CONNECTION_LIMIT.admit() {
                            tracing::warn!(peer = %peer, limit = server.max_connections, refused_total = refused, "connection refused: limits.max_connections reached");
                        }
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let open = server.metrics.connection_accepted();
                    let ticket = server.handshakes.admit(permit);
                    let server = server.clone();
                    let token = token.clone();
                    workers.spawn(&tracker, tcp, peer, move |tcp, forward| async move {
                        connection::handle(tcp, peer, server, forward, ticket, token).await;
                        drop(open);
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
    tracing::info!(connections = open, drain_timeout = %humantime::format_duration(server.drain_timeout), "draining: listener closed, sending GOAWAY");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(server.drain_timeout, tracker.wait())
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
