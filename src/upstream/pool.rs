//! The set of HTTP/2 connections to the upstream. A call takes a stream slot
//! on the first open connection with room (fewest connections, like a gRPC
//! channel), found through a lock-free snapshot; only when every connection
//! is full, closed or draining does a call take the slow path and open one
//! more, one connect at a time, with callers that waited sharing a failure
//! instead of each retrying it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use hyper::client::conn::http2::SendRequest;

use super::connector::Connector;
use super::{RequestBody, UpstreamError};
use crate::metrics::Metrics;

pub struct Pool {
    connector: Connector,
    metrics: Arc<Metrics>,
    max_streams: usize,
    conns: ArcSwap<Vec<Arc<PooledConn>>>,
    /// Counts finished connect attempts; see `connect_slow`.
    attempts: AtomicU64,
    connecting: tokio::sync::Mutex<Option<(u64, Arc<UpstreamError>)>>,
    next_id: AtomicU64,
}

pub struct PooledConn {
    id: u64,
    sender: SendRequest<RequestBody>,
    in_flight: AtomicUsize,
    peer_max_streams: Arc<AtomicUsize>,
}

impl PooledConn {
    fn has_room(&self, max_streams: usize) -> bool {
        let limit = max_streams.min(self.peer_max_streams.load(Ordering::Relaxed));
        !self.sender.is_closed() && self.in_flight.load(Ordering::Relaxed) < limit
    }
}

/// A stream slot on one connection, held for the whole call (until the
/// response body ends), so that long polls count against the connection.
pub struct StreamLease {
    conn: Arc<PooledConn>,
}

impl StreamLease {
    pub fn sender(&self) -> SendRequest<RequestBody> {
        self.conn.sender.clone()
    }

    pub fn connection_id(&self) -> u64 {
        self.conn.id
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub fn new(connector: Connector, max_streams: u32, metrics: Arc<Metrics>) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            metrics,
            max_streams: max_streams as usize,
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
        let result = self.connector.connect().await;
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(connected) => {
                *last_failure = None;
                let conn = Arc::new(PooledConn {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    sender: connected.sender,
                    in_flight: AtomicUsize::new(1),
                    peer_max_streams: connected.peer_max_streams,
                });
                tracing::debug!(upstream = %self.address(), conn = conn.id, "upstream connection opened");
                self.conns.rcu(|current| {
                    let mut next: Vec<_> = current
                        .iter()
                        .filter(|c| !c.sender.is_closed())
                        .cloned()
                        .collect();
                    next.push(conn.clone());
                    next
                });
                let pool: Weak<Pool> = Arc::downgrade(self);
                let id = conn.id;
                let driver = connected.driver;
                let open = self.metrics.upstream_connected();
                tokio::spawn(async move {
                    driver.await;
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
