//! Opens one HTTP/2 connection to the upstream frontend: TCP (no Nagle),
//! TLS when the upstream is `https://`, then the `h2` client handshake,
//! done when the server's first bytes (its SETTINGS) arrive: h2's own
//! handshake returns once its preface is written, so a peer that accepts
//! and never speaks HTTP/2 would otherwise take calls it never answers.
//! All of it within `upstream.connect_timeout`. The connection's driver
//! (which also sends the keepalive pings) is returned to the pool, which
//! spawns it: the one task per upstream connection; calls are sent on it
//! from their own tasks, with no task or channel of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{self, SendRequest};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::UpstreamError;
use crate::config::{KeepaliveConfig, UpstreamConfig, UpstreamScheme};
use crate::relay::keepalive::Keepalive;
use crate::tls::ALPN_H2;

/// The receive window of a whole upstream connection: HTTP/2's maximum, so
/// that only stream windows ever limit what the frontend sends.
const UPSTREAM_CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// What a new connection hands back: the sender for requests, the peer's
/// current SETTINGS_MAX_CONCURRENT_STREAMS (kept up to date by the driver),
/// and the driver future that must be spawned.
pub struct Connected {
    pub sender: SendRequest<Bytes>,
    pub peer_max_streams: Arc<AtomicUsize>,
    pub driver: Pin<Box<dyn Future<Output = ()> + Send>>,
}

#[derive(Clone)]
pub struct Connector {
    address: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    builder: client::Builder,
    /// Keepalive pings: every `interval`, answered within `timeout`.
    ping_interval: Duration,
    ping_timeout: Duration,
}

impl Connector {
    pub fn new(
        config: &UpstreamConfig,
        keepalive: &KeepaliveConfig,
    ) -> Result<Connector, UpstreamError> {
        let tls = match (&config.scheme, &config.tls) {
            (UpstreamScheme::Https, Some(tls)) => {
                let client = crate::tls::client::client_config(&tls.material)
                    .map_err(|e| UpstreamError::TlsConfig(e.to_string()))?;
                Some((TlsConnector::from(client), tls.server_name.clone()))
            }
            _ => None,
        };
        let mut builder = client::Builder::new();
        builder
            // The upstream connection is shared by every client of this
            // worker. A stream's window bounds what one response whose
            // client stops reading can hold in the proxy; the connection
            // window is far above the sum of all streams' windows, so such
            // streams never exhaust it and hold up the other clients' calls.
            .initial_window_size(config.initial_stream_window_size)
            .initial_connection_window_size(UPSTREAM_CONNECTION_WINDOW)
            .max_frame_size(64 * 1024)
            .enable_push(false);
        Ok(Connector {
            address: config.address.clone(),
            host: config.host.clone(),
            port: config.port,
            tls,
            connect_timeout: config.connect_timeout,
            builder,
            // Detect a dead upstream link; the frontend accepts pings every
            // 10 s or slower (validated), with or without open streams.
            ping_interval: keepalive.upstream_ping_interval,
            ping_timeout: keepalive.upstream_ping_timeout,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn connect(&self) -> Result<Connected, UpstreamError> {
        let deadline = Instant::now() + self.connect_timeout;
        let timed_out = |_| UpstreamError::ConnectTimeout {
            address: self.address.clone(),
            after: self.connect_timeout,
        };
        let tcp = timeout_at(deadline, self.tcp())
            .await
            .map_err(timed_out)??;
        match &self.tls {
            None => self.handshake(tcp, deadline).await,
            Some((connector, name)) => {
                let tls = timeout_at(deadline, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(timed_out)?
                    .map_err(|source| UpstreamError::Tls {
                        address: self.address.clone(),
                        source,
                    })?;
                if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                    return Err(UpstreamError::NoAlpn {
                        address: self.address.clone(),
                    });
                }
                self.handshake(tls, deadline).await
            }
        }
    }

    async fn tcp(&self) -> Result<TcpStream, UpstreamError> {
        let connect_err = |source| UpstreamError::Connect {
            address: self.address.clone(),
            source,
        };
        // An IP literal needs no resolver; a name is resolved on every new
        // connection so that DNS changes are followed.
        let stream = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, self.port)).await,
            Err(_) => TcpStream::connect((self.host.as_str(), self.port)).await,
        }
        .map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        Ok(stream)
    }

    async fn handshake<T>(&self, io: T, deadline: Instant) -> Result<Connected, UpstreamError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let heard = Arc::new(Notify::new());
        let io = Heard {
            io,
            heard: Some(heard.clone()),
        };
        let handshake_failed = |source| UpstreamError::Handshake {
            address: self.address.clone(),
            source,
        };
        let (sender, conn) = self
            .builder
            .handshake::<_, Bytes>(io)
            .await
            .map_err(handshake_failed)?;
        let mut conn = Box::pin(conn);
        // Until the server's first bytes are read (by polling the
        // connection), or the connection ends first.
        let first_bytes = async {
            tokio::select! {
                () = heard.notified() => None,
                result = conn.as_mut() => Some(result),
            }
        };
        match timeout_at(deadline, first_bytes).await {
            Ok(None) => {}
            Ok(Some(Err(source))) => return Err(handshake_failed(source)),
            // Closed cleanly before a byte of HTTP/2.
            Ok(Some(Ok(()))) => {
                return Err(UpstreamError::Connect {
                    address: self.address.clone(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                })
            }
            Err(_) => {
                return Err(UpstreamError::NoSettings {
                    address: self.address.clone(),
                    after: self.connect_timeout,
                })
            }
        }
        let peer_max_streams = Arc::new(AtomicUsize::new(usize::MAX));
        let max = peer_max_streams.clone();
        let address = self.address.clone();
        let mut keepalive = conn
            .ping_pong()
            .map(|pings| Keepalive::new(pings, self.ping_interval, self.ping_timeout));
        let driver = async move {
            let result = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                max.store(conn.max_concurrent_send_streams(), Ordering::Relaxed);
                if polled.is_pending() {
                    if let Some(keepalive) = keepalive.as_mut() {
                        if keepalive.poll_expired(cx).is_ready() {
                            return Poll::Ready(Err(Ended::PingTimeout(keepalive.timeout())));
                        }
                    }
                }
                polled.map_err(Ended::H2)
            })
            .await;
            match result {
                Ok(()) => tracing::debug!(upstream = %address, "upstream connection closed"),
                Err(e) => {
                    tracing::info!(upstream = %address, error = %e, "upstream connection failed")
                }
            }
        };
        Ok(Connected {
            sender,
            peer_max_streams,
            driver: Box::pin(driver),
        })
    }
}

/// Why an upstream connection's driver ended with an error.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    H2(h2::Error),
    #[error("keepalive ping not answered within {}", humantime::format_duration(*.0))]
    PingTimeout(Duration),
}

/// The upstream connection's stream, telling (once) when its first bytes
/// were read.
struct Heard<T> {
    io: T,
    /// Taken once told.
    heard: Option<Arc<Notify>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Heard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if self.heard.is_some() && buf.filled().len() > before {
            if let Some(heard) = self.heard.take() {
                // Kept as a permit if nobody waits yet.
                heard.notify_one();
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Heard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
