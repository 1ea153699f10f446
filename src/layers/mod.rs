//! One tower layer per file. The order they run in is decided in one place:
//! `crate::server::stack`.

pub mod activity;
pub mod audit;
pub mod authz;
pub mod call;
pub mod call_metrics;
pub mod identity_header;
pub mod local_health;
pub mod message_size;
pub mod observe;
pub mod path;
pub mod rescue;
pub mod upstream;

/// Calls for the layers' unit tests, with a context for a made-up
/// connection.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use crate::call::{Call, CallContext};
    use crate::tls::handshake::ConnectionInfo;

    pub(crate) fn call<B>(request: http::Request<B>) -> Call<B> {
        let conn = Arc::new(ConnectionInfo {
            peer: "127.0.0.1:50000".parse().unwrap_or_else(|_| unreachable!()),
            identity: None,
            sni: None,
        });
        Call {
            ctx: Arc::new(CallContext::new(conn, request.uri())),
            request,
        }
    }
}
