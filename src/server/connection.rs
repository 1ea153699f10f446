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
use crate::tls::identity::PeerIdentity;

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
    // The certificate was verified by the handshake; parsing it cannot fail
    // for a certificate webpki accepted, but if it does, refuse rather than
    // serve an identity we cannot read.
    let leaf = accepted
        .stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    let identity = match leaf.map(|der| PeerIdentity::from_der(der)) {
        Some(Ok(id)) => Some(Arc::new(id)),
        Some(Err(e)) => {
            tracing::warn!(peer = %peer, error = %e, "connection refused: client certificate unreadable");
            return;
        }
        None => None,
    };
    let info = Arc::new(ConnectionInfo {
        peer,
        identity,
        sni: accepted.sni,
    });
    tracing::debug!(
        peer = %peer,
        identity = info.identity.as_deref().map(PeerIdentity::display_name).unwrap_or(""),
        "connection accepted"
    );

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
