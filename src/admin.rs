//! The admin listener: `/metrics`, `/healthz` and `/readyz` over plain
//! HTTP/1.1 on an address of its own (default `127.0.0.1:9090`), away from
//! the mTLS port.
//!
//! - `GET /metrics`: the exposition from [`Metrics`], in OpenMetrics when the
//!   scraper asks for it (Prometheus does) and in the Prometheus text format
//!   otherwise (`curl`).
//! - `GET /healthz`: liveness. 200 `ok` while the process is serving, which
//!   includes draining: a liveness probe failing during a drain would get the
//!   container killed with calls in flight.
//! - `GET /readyz`: readiness. 200 when serving, not draining, the
//!   certificates are valid and the upstream answered its last check; 503
//!   otherwise. Both carry one line per check, so `curl` says what is wrong.
//!
//! Anything else is 404; other methods on these paths are 405 (`HEAD` is
//! answered like `GET`, without the body).
//!
//! What the endpoints report is [`Health`] (`crate::health`).
//!
//! The listener is built to be harmless when exposed (in Kubernetes it must
//! be reachable by the kubelet and by Prometheus, so it often binds the pod
//! address): one short request per connection (no keep-alive), headers
//! within [`HEADER_READ_TIMEOUT`] and [`MAX_BUFFER`] bytes, each connection
//! closed after [`CONNECTION_TIMEOUT`] whatever it is doing, and at most
//! [`MAX_CONNECTIONS`] at once.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, VARY};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::health::Health;
use crate::metrics::{Format, Metrics};

/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection is closed after this time, finished or not. A scrape
/// encodes a few hundred lines; this only bounds clients that stop reading.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; more are closed as soon as they are accepted.
/// Probes and scrapers need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// hyper's read buffer per connection, which bounds the request head (the
/// smallest hyper accepts is 8 KiB).
pub const MAX_BUFFER: usize = 16 * 1024;

/// Pause after a failed `accept` (out of file descriptors, for instance), so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Serves the admin endpoints on `listener` until `shutdown` resolves, then
/// closes the listener and any admin connection still open.
///
/// Resolve `shutdown` after the proxy has drained, not when the drain
/// starts: during the drain `/readyz` should keep answering "draining" and
/// `/healthz` "ok".
pub async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "admin listening (HTTP: /metrics, /healthz, /readyz)");
    }
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    if error.is_panic() {
                        tracing::error!(%error, "admin connection task panicked");
                    }
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if connections.len() >= MAX_CONNECTIONS {
                    tracing::debug!(%peer, "admin connection closed: too many open");
                    drop(stream);
                    continue;
                }
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    Arc::clone(&metrics),
                    Arc::clone(&health),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "admin listener: accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
    tracing::debug!("admin listener stopped");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(
            request.method(),
            request.uri().path(),
            request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()),
            &metrics,
            &health,
        );
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "admin connection failed"),
        Err(_) => tracing::debug!(%peer, "admin connection closed: took too long"),
    }
}

/// The whole routing table: a request's method, path and `Accept` header in,
/// the response out.
fn respond(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = match path {
        "/metrics" => {
            let format = Format::from_accept(accept);
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode_as(format))));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            headers.insert(VARY, HeaderValue::from_static("accept"));
            response
        }
        "/healthz" if health.serving() => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
        _ => {
            // Readiness and its report are read separately; a flag that
            // changes in between shows in the next probe.
            let status = if health.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, health.readiness_report())
        }
    };
    // Probes and scrapes must see the present, never a cached answer.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    struct Admin {
        address: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Admin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Metrics::new(100);
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_admin(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            async move {
                let _ = stopped.await;
            },
        ));
        Admin {
            address,
            metrics,
            health,
            stop: Some(stop),
            task,
        }
    }

    fn make_ready(health: &Health) {
        health.set_serving(true);
        health.set_certificates_valid();
        health.set_upstream_ok();
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A minimal HTTP/1.1 client: one request, then everything the server
    /// sends until it closes the connection.
    async fn request(address: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Reply {
            status: status.parse().unwrap(),
            headers,
            body: body.to_owned(),
        }
    }

    async fn get(address: SocketAddr, path: &str) -> Reply {
        request(address, "GET", path, "").await
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_negotiated_format() {
        let admin = start().await;
        admin.metrics.reload_failed();

        let scrape = request(
            admin.address,
            "GET",
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
        )
        .await;
        assert_eq!(scrape.status, 200);
        assert_eq!(
            scrape.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(scrape.body.ends_with("# EOF\n"), "{}", scrape.body);
        assert!(scrape
            .body
            .contains("temporal_mtls_proxy_reloads_total{result=\"failure\"} 1\n"));

        let plain = get(admin.address, "/metrics").await;
        assert_eq!(plain.status, 200);
        assert_eq!(
            plain.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(plain.header("vary"), Some("accept"));
        assert!(!plain.body.contains("# EOF"));
        assert!(plain
            .body
            .contains("temporal_mtls_proxy_reloads_total{result=\"failure\"} 1\n"));
    }

    #[tokio::test]
    async fn healthz_follows_serving() {
        let admin = start().await;
        let reply = get(admin.address, "/healthz").await;
        assert_eq!((reply.status, reply.body.as_str()), (503, "not serving\n"));

        admin.health.set_serving(true);
        // Draining and a failing upstream do not make the process unhealthy.
        admin.health.set_draining(true);
        admin.health.set_upstream_failed("connection refused");
        let reply = get(admin.address, "/healthz").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
        assert_eq!(reply.header("content-type"), Some(TEXT_PLAIN));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }

    #[tokio::test]
    async fn readyz_flips_with_health() {
        let admin = start().await;
        let reply = get(admin.address, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.body,
            "fail serving: the proxy is not accepting connections\n\
             fail certificates: not loaded yet\n\
             fail upstream: not checked yet\n\
             ok not draining\n"
        );

        make_ready(&admin.health);
        let reply = get(admin.address, "/readyz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            "ok serving\nok certificates\nok upstream\nok not draining\n"
        );

        admin
            .health
            .set_upstream_failed("GetSystemInfo: connection refused\n(os error 111)");
        let reply = get(admin.address, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply
                .body
                .contains("fail upstream: GetSystemInfo: connection refused (os error 111)\n"),
            "{}",
            reply.body
        );

        admin.health.set_upstream_ok();
        assert_eq!(get(admin.address, "/readyz").await.status, 200);

        admin
            .health
            .set_certificates_invalid("server certificate expired");
        let reply = get(admin.address, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert!(reply
            .body
            .contains("fail certificates: server certificate expired\n"));
        admin.health.set_certificates_valid();

        admin.health.set_draining(true);
        let reply = get(admin.address, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply
                .body
                .ends_with("fail draining: shutting down, finishing calls in flight\n"),
            "{}",
            reply.body
        );
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        let admin = start().await;
        make_ready(&admin.health);

        for path in ["/", "/metrics/", "/debug/pprof", "/readyz/x"] {
            assert_eq!(get(admin.address, path).await.status, 404, "{path}");
        }
        // The query string does not change the route.
        assert_eq!(get(admin.address, "/healthz?verbose=1").await.status, 200);

        let reply = request(admin.address, "POST", "/metrics", "Content-Length: 2\r\n").await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(
            request(admin.address, "DELETE", "/readyz", "").await.status,
            405
        );

        let reply = request(admin.address, "HEAD", "/readyz", "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "");
    }

    #[tokio::test]
    async fn each_connection_serves_one_request() {
        let admin = start().await;
        make_ready(&admin.health);
        // Two requests pipelined on one connection: keep-alive is off, so
        // the answer to the first ends the connection.
        let mut stream = TcpStream::connect(admin.address).await.unwrap();
        stream
            .write_all(
                b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\n",
            )
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "{raw}");
        assert!(
            raw.to_ascii_lowercase().contains("connection: close"),
            "{raw}"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_the_listener() {
        let mut admin = start().await;
        make_ready(&admin.health);
        // A client that connected and never sent anything does not hold up
        // the shutdown.
        let mut idle = TcpStream::connect(admin.address).await.unwrap();
        assert_eq!(get(admin.address, "/healthz").await.status, 200);

        admin.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut admin.task)
            .await
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(admin.address).await.is_err());
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap_or(0), 0);
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed() {
        let admin = start().await;
        make_ready(&admin.health);
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(admin.address).await.unwrap());
        }
        // Accepted after the others (the backlog is first in, first out),
        // and closed without an answer.
        let mut extra = TcpStream::connect(admin.address).await.unwrap();
        extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = extra.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

        // Once the idle clients go, the places free up.
        drop(idle);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut stream = TcpStream::connect(admin.address).await.unwrap();
                let _ = stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                    .await;
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer).await;
                if answer.starts_with("HTTP/1.1 200") {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let admin = start().await;
        let mut slow = TcpStream::connect(admin.address).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        // With the clock paused, tokio jumps to the next timer as soon as
        // nothing else can run: the server's header timeout, which closes
        // the connection without an answer, well before the connection
        // timeout.
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 2, slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection was still open");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        let waited = started.elapsed();
        assert!(
            waited >= HEADER_READ_TIMEOUT && waited < CONNECTION_TIMEOUT,
            "{waited:?}"
        );
    }

    #[test]
    fn readiness_needs_every_check() {
        let health = Health::new();
        assert!(!health.ready());
        make_ready(&health);
        assert!(health.ready());
        assert_eq!(health.upstream_error(), None);
        assert_eq!(health.certificates_problem(), None);
        health.set_draining(true);
        assert!(!health.ready());
        health.set_draining(false);
        health.set_serving(false);
        assert!(!health.ready());
        health.set_serving(true);
        health.set_upstream_failed("timeout");
        assert!(!health.ready());
        assert_eq!(health.upstream_error().as_deref(), Some("timeout"));
        health.set_upstream_ok();
        health.set_certificates_invalid("expired");
        assert!(!health.ready());
        assert_eq!(health.certificates_problem().as_deref(), Some("expired"));
    }
}
