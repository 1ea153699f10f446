//! The listener side: the accept loop and drain (`mod.rs`), one task per
//! connection (`connection`), and the tower stack each call goes through
//! (`stack`).

mod connection;
pub mod stack;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::sink::AuditSink;
use crate::authz::Policy;
use crate::config::IdentityHeaderConfig;
use crate::tls::identity::PeerIdentity;
use crate::upstream::{Forward, Pool};

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
    pub forward: Forward,
    pub pool: Arc<Pool>,
    /// `None`: no `[authz]`, every authenticated client may call anything.
    pub policy: Option<Arc<Policy>>,
    /// Headers stripped from client requests, and the identity header set.
    pub strip_headers: Arc<[http::HeaderName]>,
    pub identity_header: Option<http::HeaderName>,
    pub audit: Option<AuditSink>,
}

/// The parts of `Shared` that are about calls rather than connections.
pub struct CallPolicy {
    pub policy: Option<Arc<Policy>>,
    pub identity: IdentityHeaderConfig,
    pub audit: Option<AuditSink>,
}

impl Shared {
    pub fn new(
        tls: Arc<ServerConfig>,
        handshake_timeout: Duration,
        drain_timeout: Duration,
        pool: Arc<Pool>,
        upstream_tls: bool,
        calls: CallPolicy,
    ) -> Shared {
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // A 4 MiB request (the frontend's limit) fits in one window, so
            // it never waits on WINDOW_UPDATE round trips.
            .initial_stream_window_size(8 * 1024 * 1024)
            .initial_connection_window_size(32 * 1024 * 1024)
            .max_frame_size(64 * 1024)
            .max_concurrent_streams(1000)
            .max_header_list_size(64 * 1024);
        Shared {
            tls: ArcSwap::new(tls),
            handshake_timeout,
            drain_timeout,
            h2,
            forward: Forward::new(pool.clone(), upstream_tls),
            pool,
            policy: calls.policy,
            strip_headers: Arc::from(calls.identity.strip),
            identity_header: calls.identity.header,
            audit: calls.audit,
        }
    }
}

/// Accepts connections until `shutdown` resolves, then drains: the listener
/// closes, every connection gets GOAWAY, and in-flight calls have up to the
/// drain timeout to finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tracker.spawn(connection::handle(tcp, peer, shared.clone(), token.clone()));
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
}
