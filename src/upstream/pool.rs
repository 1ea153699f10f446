//! The set of HTTP/2 connections to the upstream. A call takes a stream slot
//! on the first open connection with room (fewest connections, like a gRPC
//! channel), found through a lock-free snapshot; only when every connection
//! is full, closed or draining does a call take the slow path and open one
//! more, one connect at a time, with callers that waited sharing a failure
//! instead of each retrying it.
//!
//! At most `upstream.max_connections` connections (per worker thread): past
//! it, a call takes the least-loaded open connection beyond the per
//! connection stream count (the frontend's own stream limit still holds;
//! h2 queues a stream past it). Connections without calls for
//! `upstream.max_connection_idle` are closed, all but one, so a burst of
//! held calls does not leave its connections open for ever.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use h2::client::SendRequest;

use super::connector::Connector;
use super::UpstreamError;
use crate::metrics::Metrics;

/// How many streams and connections, and how long idle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Streams per connection before another is opened.
    pub max_streams: usize,
    pub max_connections: usize,
    /// Without calls this long, a connection is closed (all but one).
    pub max_idle: Duration,
}

pub struct Pool {
    connector: Connector,
    metrics: Arc<Metrics>,
    max_streams: usize,
    limits: Limits,
    /// What connections' idle times count from.
    epoch: Instant,
    /// The idle reaper runs (started with the first connection).
    reaping: AtomicBool,
    conns: ArcSwap<Vec<Arc<PooledConn>>>,
    /// Counts finished connect attempts; see `connect_slow`.
    attempts: AtomicU64,
    connecting: tokio::sync::Mutex<Option<(u64, Arc<UpstreamError>)>>,
    next_id: AtomicU64,
}

pub struct PooledConn {
    id: u64,
    sender: SendRequest<Bytes>,
    /// Set when the connection can take no new call: its driver ended, or
    /// a call found it closed or going away (GOAWAY received).
    closed: AtomicBool,
    in_flight: AtomicUsize,
    peer_max_streams: Arc<AtomicUsize>,
    epoch: Instant,
    /// Milliseconds from `epoch` to when its last call ended.
    idle_since: AtomicU64,
}

impl PooledConn {
    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    fn has_room(&self, max_streams: usize) -> bool {
        let limit = max_streams.min(self.peer_max_streams.load(Ordering::Relaxed));
        self.is_open() && self.in_flight.load(Ordering::Relaxed) < limit
    }
}

/// A stream slot on one connection, held for the whole call (until the
/// response body ends), so that long polls count against the connection.
pub struct StreamLease {
    conn: Arc<PooledConn>,
}

impl StreamLease {
    /// A handle to send on: one per call (h2 allows one stream not yet
    /// opened per handle).
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.conn.sender.clone()
    }

    /// The connection takes no new calls (a call found it closed or going
    /// away); the pool forgets it once its driver ends.
    pub fn close(&self) {
        self.conn.closed.store(true, Ordering::Relaxed);
    }

    pub fn connection_id(&self) -> u64 {
        self.conn.id
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            // The last call: idle from now (read by the reaper only).
            let ms = self.conn.epoch.elapsed().as_millis() as u64;
            self.conn.idle_since.store(ms, Ordering::Relaxed);
        }
    }
}

impl Pool {
    pub fn new(connector: Connector, limits: Limits, metrics: Arc<Metrics>) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            metrics,
            max_streams: limits.max_streams,
            limits,
            epoch: Instant::now(),
            reaping: AtomicBool::new(false),
            conns: ArcSwap::from_pointee(Vec::new()),
            attempts: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn address(&self) -> &str {
        self.connector.address()
    }

    /// A stream slot on a connection with room, opening a connection if
    /// none has any. The connect path is boxed: inline, its TLS handshake
    /// state would make every call's future kilobytes larger (and copied).
    pub async fn lease(self: &Arc<Self>) -> Result<StreamLease, Arc<UpstreamError>> {
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        Box::pin(self.connect_slow()).await
    }

    fn try_lease(&self) -> Option<StreamLease> {
        let conns = self.conns.load();
        for conn in conns.iter() {
            if conn.has_room(self.max_streams) {
                // Slight overshoot under a race is harmless: h2 queues the
                // extra stream until the peer has room.
                conn.in_flight.fetch_add(1, Ordering::Relaxed);
                return Some(StreamLease { conn: conn.clone() });
            }
        }
        None
    }

    async fn connect_slow(self: &Arc<Self>) -> Result<StreamLease, Arc<UpstreamError>> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_failure = self.connecting.lock().await;
        // Someone else may have connected while we waited for the lock.
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        // Or failed: share that failure rather than queueing another attempt
        // behind it, so an outage answers every waiting call at once.
        if let Some((attempt, err)) = last_failure.as_ref() {
            if *attempt > seen {
                return Err(err.clone());
            }
        }
        // At the cap: share the least-loaded open connection.
        if let Some(lease) = self.lease_at_cap() {
            return Ok(lease);
        }
        let result = self.connector.connect().await;
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(connected) => {
                *last_failure = None;
                let conn = Arc::new(PooledConn {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    sender: connected.sender,
                    closed: AtomicBool::new(false),
                    in_flight: AtomicUsize::new(1),
                    peer_max_streams: connected.peer_max_streams,
                    epoch: self.epoch,
                    idle_since: AtomicU64::new(0),
                });
                if !self.reaping.swap(true, Ordering::Relaxed) {
                    tokio::spawn(reap_idle(Arc::downgrade(self), self.limits.max_idle));
                }
                tracing::debug!(upstream = %self.address(), conn = conn.id, "upstream connection opened");
                self.conns.rcu(|current| {
                    let mut next: Vec<_> =
                        current.iter().filter(|c| c.is_open()).cloned().collect();
                    next.push(conn.clone());
                    next
                });
                let pool: Weak<Pool> = Arc::downgrade(self);
                let id = conn.id;
                let driver = connected.driver;
                let open = self.metrics.upstream_connected();
                let ended = Arc::downgrade(&conn);
                tokio::spawn(async move {
                    driver.await;
                    if let Some(conn) = ended.upgrade() {
                        conn.closed.store(true, Ordering::Relaxed);
                    }
                    drop(open);
                    if let Some(pool) = pool.upgrade() {
                        pool.remove(id);
                    }
                });
                Ok(StreamLease { conn })
            }
            Err(e) => {
                self.metrics.upstream_connect_failed(e.failure_kind());
                if crate::logging::limit::UPSTREAM_CONNECT_FAILED.admit() {
                    tracing::warn!(upstream = %self.address(), error = %e, "upstream connect failed");
                }
                let e = Arc::new(e);
                *last_failure = Some((attempt, e.clone()));
                Err(e)
            }
        }
    }

    /// With `max_connections` open: a stream on the one with the fewest.
    fn lease_at_cap(&self) -> Option<StreamLease> {
        let conns = self.conns.load();
        let open = conns.iter().filter(|c| c.is_open());
        if open.clone().count() < self.limits.max_connections {
            return None;
        }
        let conn = open.min_by_key(|c| c.in_flight.load(Ordering::Relaxed))?;
        if crate::logging::limit::UPSTREAM_CONNECTION_CAP.admit() {
            tracing::info!(upstream = %self.address(), max_connections = self.limits.max_connections, "upstream.max_connections reached: calls share the open connections beyond upstream.max_concurrent_streams");
        }
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(StreamLease { conn: conn.clone() })
    }

    /// Closes the connections idle for `max_idle` (by dropping the pool's
    /// hold on them: a call that took one just before keeps it until it
    /// ends), all but one.
    fn close_idle(&self, max_idle: Duration) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = max_idle.as_millis() as u64;
        let conns = self.conns.load();
        let idle: Vec<u64> = conns
            .iter()
            .filter(|c| {
                c.is_open()
                    && c.in_flight.load(Ordering::Relaxed) == 0
                    && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= limit
            })
            .map(|c| c.id)
            .collect();
        let open = conns.iter().filter(|c| c.is_open()).count();
        // Keep one open connection (the newest idle one if all are idle).
        let close = if idle.len() >= open {
            &idle[..idle.len().saturating_sub(1)]
        } else {
            &idle[..]
        };
        if close.is_empty() {
            return;
        }
        tracing::debug!(upstream = %self.address(), closed = close.len(), "idle upstream connections closed (upstream.max_connection_idle)");
        self.conns.rcu(|current| {
            current
                .iter()
                .filter(|c| !close.contains(&c.id))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    fn remove(&self, id: u64) {
        self.conns.rcu(|current| {
            current
                .iter()
                .filter(|c| c.id != id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }
}

/// Closes idle connections every quarter of `max_idle` (at most once a
/// second) while the pool exists.
async fn reap_idle(pool: Weak<Pool>, max_idle: Duration) {
    let period = (max_idle / 4).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.close_idle(max_idle);
    }
}
