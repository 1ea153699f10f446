//! One client connection: the PROXY protocol header when configured, the
//! TLS handshake (refusals logged with their reason), then HTTP/2 served
//! with the call stack by this one task (`relay::Serve`: no task per
//! stream), until the peer leaves or a drain asks for a graceful GOAWAY.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frame_guard::{Flood, FrameGuard, GuardEvents, PingPolicy};
use super::handshakes::Ticket;
use super::proxy_header::{self, Header, ReadError};
use super::{stack, Server};
use crate::call::activity::ConnActivity;
use crate::config::KeepaliveConfig;
use crate::logging::limit;
use crate::metrics::{KeepaliveEvent, Metrics};
use crate::relay::{Serve, ServeError};
use crate::tls::handshake::{self, Accepted, HandshakeRefusal};
use crate::tls::identity::PeerIdentity;
use crate::upstream::Forward;

/// Serves the connection accepted from `socket_peer` (the socket's remote
/// address), in the place `ticket` holds for it.
pub async fn handle(
    tcp: TcpStream,
    socket_peer: SocketAddr,
    server: Arc<Server>,
    forward: Forward,
    ticket: Ticket,
    token: CancellationToken,
) {
    let (origin, accepted) = tokio::select! {
        // Boxed: the handshake's state (rustls accepting, the PROXY header)
        // is larger than a served connection's, and unboxed it would stay
        // part of this task's allocation for the connection's whole life.
        r = Box::pin(handshake(tcp, socket_peer, &server)) => r,
        // A new connection took this one's place (max_connections).
        () = ticket.evicted() => (
            Origin { peer: socket_peer, via: None },
            Err(HandshakeRefusal::Evicted),
        ),
        () = token.cancelled() => return,
    };
    let Origin { peer, via } = origin;
    let via = via.map(tracing::field::display);
    // Counted before it is logged: whoever reads the log line and then the
    // metrics finds the refusal counted.
    let refused = |refusal: HandshakeRefusal| {
        server.metrics.handshake_failed(refusal.label());
        handshake::log_refusal(peer, origin.via, &refusal);
    };
    // Not a `match` on `accepted`: moving the payload out of it would keep
    // the whole `Result` in the task's state while the connection is served.
    let Ok(accepted) = accepted.map_err(refused) else {
        return;
    };
    // Held while the connection is open.
    let Some(_place) = ticket.established() else {
        return refused(HandshakeRefusal::Evicted);
    };
    let activity = ConnActivity::new();
    let mut conn = serving(accepted, origin, &server, forward, &activity);
    let result = lifecycle(
        Pin::new(&mut conn),
        &server.keepalive,
        &activity,
        &token,
        peer,
        &server.metrics,
    )
    .await;
    match result {
        Ok(()) => tracing::debug!(peer = %peer, via, "connection closed"),
        Err(e) if e.is_timeout() => {
            server.metrics.keepalive_event(KeepaliveEvent::PingTimeout);
            if limit::PING_TIMEOUT.admit() {
                tracing::info!(peer = %peer, via, "connection closed: keepalive ping not answered in time");
            }
        }
        Err(e) => tracing::debug!(peer = %peer, via, error = %e, "connection ended with an error"),
    }
}

/// The accepted connection, logged and counted, ready to be served: its
/// call stack and frame guard around the TLS stream. Not part of `handle`'s
/// body so that nothing of the handshake's result stays in the connection
/// task's state once it is served (`accepted` is moved apart here).
fn serving(
    accepted: Accepted,
    origin: Origin,
    server: &Server,
    forward: Forward,
    activity: &Arc<ConnActivity>,
) -> impl Future<Output = Result<(), ServeError>> + GracefulShutdown + Unpin {
    let Origin { peer, via } = origin;
    let via = via.map(tracing::field::display);
    let info = accepted.info;
    // Which kind of client: with a verified certificate, or (with
    // `tls.client_certificate = "optional"`) without one, whose calls each
    // need a bearer token.
    let client = if info.identity.is_some() {
        "certificate"
    } else {
        "no certificate (bearer token on each call)"
    };
    tracing::debug!(
        peer = %peer,
        via,
        client,
        identity = info.identity.as_deref().map(PeerIdentity::display_name).unwrap_or(""),
        sni = info.sni.as_deref().unwrap_or(""),
        "connection accepted"
    );
    server.metrics.client_connected(if info.identity.is_some() {
        "certificate"
    } else {
        "token_only"
    });

    let service = stack::build(&server.stack, forward, info, activity.clone());
    // Client frames are checked on the decrypted byte stream, below the h2
    // codec, which answers every PING and SETTINGS and has no such
    // enforcement of its own, and waits for the preface forever (its
    // graceful shutdown too): the preface gets the handshake timeout again.
    let k = &server.keepalive;
    let guarded = FrameGuard::new(
        accepted.stream,
        PingPolicy {
            min_interval: k.min_client_ping_interval,
            permit_without_stream: k.permit_without_stream,
            max_strikes: 2,
        },
        Arc::new(GuardLog {
            peer,
            metrics: server.metrics.clone(),
            preface_timeout: server.handshake_timeout,
        }),
    )
    .with_preface_timeout(server.handshake_timeout);
    Serve::new(&server.h2, guarded, service)
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// The client: the source address of its PROXY protocol header behind a
    /// load balancer, else the socket's. What logs, audit lines and the
    /// calls' `ConnectionInfo` name as the peer.
    peer: SocketAddr,
    /// The load balancer (the socket's address) when `peer` came from a
    /// PROXY header.
    via: Option<SocketAddr>,
}

/// The PROXY protocol header (when `listen.proxy_protocol` is on), then the
/// TLS handshake, both within one `tls.handshake_timeout`. The header's
/// bytes are read exactly, so rustls sees the stream from the first byte
/// after them.
async fn handshake(
    mut tcp: TcpStream,
    socket_peer: SocketAddr,
    server: &Server,
) -> (Origin, Result<Accepted, HandshakeRefusal>) {
    let timeout = server.handshake_timeout;
    let started = Instant::now();
    let mut origin = Origin {
        peer: socket_peer,
        via: None,
    };
    if server.proxy_protocol {
        let refusal = match tokio::time::timeout(timeout, proxy_header::read(&mut tcp)).await {
            // A health check of the load balancer's own.
            Ok(Ok(Header::Local)) => None,
            Ok(Ok(Header::Proxy { source })) => {
                origin = Origin {
                    peer: source,
                    via: Some(socket_peer),
                };
                None
            }
            // Connected and closed without a byte: a TCP probe, as without
            // the setting.
            Ok(Err(ReadError::Closed)) => Some(HandshakeRefusal::Closed),
            Ok(Err(ReadError::Invalid(e))) => Some(HandshakeRefusal::ProxyHeader(e.to_string())),
            Ok(Err(ReadError::Io(e))) => Some(HandshakeRefusal::Io(e.to_string())),
            Err(_) => Some(HandshakeRefusal::Timeout(timeout)),
        };
        if let Some(refusal) = refusal {
            return (origin, Err(refusal));
        }
    }
    let left = timeout.saturating_sub(started.elapsed());
    let accepted = match handshake::accept(tcp, origin.peer, server.live.tls(), left).await {
        // Named by the setting, not by what was left of it.
        Err(HandshakeRefusal::Timeout(_)) => Err(HandshakeRefusal::Timeout(timeout)),
        other => other,
    };
    (origin, accepted)
}

/// Serves the connection until it ends, closing it gracefully (GOAWAY, then
/// calls in flight finish) when the server drains, when it has been idle for
/// `max_connection_idle`, or when it reaches `max_connection_age` (with
/// ±10% jitter so that clients do not all reconnect at once); after an age
/// GOAWAY, calls get `max_connection_age_grace` before the connection is
/// closed.
async fn lifecycle<C>(
    mut conn: Pin<&mut C>,
    keepalive: &KeepaliveConfig,
    activity: &ConnActivity,
    token: &CancellationToken,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Result<(), ServeError>
where
    C: Future<Output = Result<(), ServeError>> + GracefulShutdown,
{
    let age = jittered(keepalive.max_connection_age, peer);
    let age_timer = tokio::time::sleep(age);
    tokio::pin!(age_timer);
    let grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace);
    let mut closing = false;
    let mut aged = false;
    loop {
        let idle_check = activity
            .idle_deadline(keepalive.max_connection_idle)
            .unwrap_or_else(|| Instant::now() + keepalive.max_connection_idle);
        tokio::select! {
            r = conn.as_mut() => return r,
            () = token.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().shutdown_gracefully();
            }
            () = &mut age_timer, if !closing => {
                tracing::debug!(peer = %peer, age = ?age, "max_connection_age reached: GOAWAY");
                metrics.keepalive_event(KeepaliveEvent::AgeClosed);
                closing = true;
                aged = true;
                conn.as_mut().shutdown_gracefully();
                grace.as_mut().reset(Instant::now() + keepalive.max_connection_age_grace);
            }
            () = &mut grace, if aged => {
                tracing::info!(peer = %peer, open_calls = activity.open_calls(), "max_connection_age_grace over: closing the connection");
                return Ok(());
            }
            () = tokio::time::sleep_until(idle_check), if !closing => {
                if activity.idle_deadline(keepalive.max_connection_idle).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(peer = %peer, "max_connection_idle reached: GOAWAY");
                    metrics.keepalive_event(KeepaliveEvent::IdleClosed);
                    closing = true;
                    conn.as_mut().shutdown_gracefully();
                }
            }
        }
    }
}

/// Logs and counts (in the metrics) connections the frame guard closed:
/// for pinging too often, flooding SETTINGS or resets, or no preface.
struct GuardLog {
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    preface_timeout: Duration,
}

impl GuardEvents for GuardLog {
    fn flood(&self, kind: Flood) {
        let peer = self.peer;
        match kind {
            Flood::Pings => {
                self.metrics.keepalive_event(KeepaliveEvent::TooManyPings);
                if limit::TOO_MANY_PINGS.admit() {
                    tracing::warn!(peer = %peer, "client pinged too often: GOAWAY ENHANCE_YOUR_CALM too_many_pings");
                }
            }
            Flood::Settings => {
                self.metrics
                    .keepalive_event(KeepaliveEvent::TooManySettings);
                if limit::TOO_MANY_SETTINGS.admit() {
                    tracing::warn!(peer = %peer, "client sent SETTINGS too often: GOAWAY ENHANCE_YOUR_CALM too_many_settings");
                }
            }
            Flood::Resets => {
                self.metrics.keepalive_event(KeepaliveEvent::TooManyResets);
                if limit::TOO_MANY_RESETS.admit() {
                    tracing::warn!(peer = %peer, "client reset streams too often: GOAWAY ENHANCE_YOUR_CALM too_many_resets");
                }
            }
            Flood::WindowUpdates => {
                self.metrics
                    .keepalive_event(KeepaliveEvent::TooManyWindowUpdates);
                if limit::TOO_MANY_WINDOW_UPDATES.admit() {
                    tracing::warn!(peer = %peer, "client sent more WINDOW_UPDATE frames than the DATA it was sent explains: GOAWAY ENHANCE_YOUR_CALM too_many_window_updates");
                }
            }
            Flood::Priorities => {
                self.metrics
                    .keepalive_event(KeepaliveEvent::TooManyPriorityFrames);
                if limit::TOO_MANY_PRIORITY_FRAMES.admit() {
                    tracing::warn!(peer = %peer, "client sent more PRIORITY frames than its streams explain: GOAWAY ENHANCE_YOUR_CALM too_many_priority_frames");
                }
            }
        }
    }

    fn preface_timeout(&self) {
        self.metrics.keepalive_event(KeepaliveEvent::PrefaceTimeout);
        if limit::PREFACE_TIMEOUT.admit() {
            tracing::info!(
                peer = %self.peer,
                timeout = ?self.preface_timeout,
                "connection closed: no HTTP/2 preface within tls.handshake_timeout of the TLS handshake"
            );
        }
    }
}

/// The connection's graceful shutdown, behind a trait so that `lifecycle`
/// is not tied to the connection's full type.
pub trait GracefulShutdown {
    fn shutdown_gracefully(self: Pin<&mut Self>);
}

impl<T, S, B> GracefulShutdown for Serve<T, S, B>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: tower_service::Service<http::Request<crate::relay::RecvBody>, Response = http::Response<B>>
        + Unpin,
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown();
    }
}

/// `d` ±10%, varied per connection.
fn jittered(d: Duration, peer: SocketAddr) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) ^ (u64::from(peer.port()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // A factor in [0.9, 1.1].
    let factor = 0.9 + (x % 2001) as f64 / 10_000.0;
    d.mul_f64(factor)
}
