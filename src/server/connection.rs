//! One client connection: the TLS handshake (refusals logged with their
//! reason), then HTTP/2 served by hyper with the call stack, until the peer
//! leaves or a drain asks for a graceful GOAWAY.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{stack, ConnectionInfo, Shared};
use crate::tls::handshake;

pub async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    let config = shared.tls.load_full();
    let accepted = tokio::select! {
        r = handshake::accept(tcp, config, shared.handshake_timeout) => r,
        () = token.cancelled() => return,
    };
    let accepted = match accepted {
        Ok(a) => a,
        Err(refusal) => {
            handshake::log_refusal(peer, &refusal);
            return;
        }
    };
    let client_cert = accepted
        .stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.clone().into_owned());
    let info = Arc::new(ConnectionInfo {
        peer,
        client_cert,
        sni: accepted.sni,
    });
    tracing::debug!(peer = %peer, "connection accepted");

    let service = TowerToHyperService::new(stack::build(&shared, info));
    let conn = shared
        .h2
        .serve_connection(TokioIo::new(accepted.stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => tracing::debug!(peer = %peer, "connection closed"),
        Err(e) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
    }
}
