//! Opens one HTTP/2 connection to the upstream frontend: TCP (no Nagle),
//! TLS when the upstream is `https://`, then the hyper HTTP/2 handshake. The
//! connection's driver task is returned to the pool, which spawns it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{RequestBody, UpstreamError};
use crate::config::{KeepaliveConfig, UpstreamConfig, UpstreamScheme};
use crate::tls::ALPN_H2;

/// The receive window of a whole upstream connection: HTTP/2's maximum, so
/// that only stream windows ever limit what the frontend sends.
const UPSTREAM_CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// What a new connection hands back: the sender for requests, the peer's
/// current SETTINGS_MAX_CONCURRENT_STREAMS (kept up to date by the driver),
/// and the driver future that must be spawned.
pub struct Connected {
    pub sender: http2::SendRequest<RequestBody>,
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
    builder: http2::Builder<TokioExecutor>,
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
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // The upstream connection is shared by every client of this
            // worker. A stream's window bounds what one response whose
            // client stops reading can hold in the proxy; the connection
            // window is far above the sum of all streams' windows, so such
            // streams never exhaust it and hold up the other clients' calls.
            .initial_stream_window_size(config.initial_stream_window_size)
            .initial_connection_window_size(UPSTREAM_CONNECTION_WINDOW)
            .max_frame_size(64 * 1024)
            // Detect a dead upstream link; the frontend accepts pings every
            // 10 s or slower (validated), with or without open streams.
            .keep_alive_interval(keepalive.upstream_ping_interval)
            .keep_alive_timeout(keepalive.upstream_ping_timeout)
            .keep_alive_while_idle(true);
        Ok(Connector {
            address: config.address.clone(),
            host: config.host.clone(),
            port: config.port,
            tls,
            connect_timeout: config.connect_timeout,
            builder,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn connect(&self) -> Result<Connected, UpstreamError> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                address: self.address.clone(),
                after: self.connect_timeout,
            })?
    }

    async fn connect_inner(&self) -> Result<Connected, UpstreamError> {
        let tcp = self.tcp().await?;
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls {
                        address: self.address.clone(),
                        source,
                    })?;
                if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                    return Err(UpstreamError::NoAlpn {
                        address: self.address.clone(),
                    });
                }
                self.handshake(tls).await
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

    async fn handshake<T>(&self, io: T) -> Result<Connected, UpstreamError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = self
            .builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| UpstreamError::Handshake {
                address: self.address.clone(),
                source,
            })?;
        let peer_max_streams = Arc::new(AtomicUsize::new(usize::MAX));
        let max = peer_max_streams.clone();
        let address = self.address.clone();
        let mut conn = Box::pin(conn);
        let driver = async move {
            let result = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                max.store(
                    conn.as_ref().get_ref().current_max_send_streams(),
                    Ordering::Relaxed,
                );
                polled
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
