//! HTTP/2 as the proxy relays it, on the `h2` crate: the server side of a
//! client connection (one task drives the connection and all its streams,
//! [`serve`]), the bodies read from either side ([`RecvBody`]), data sent
//! within the peer's flow-control window ([`window`]), and the keepalive
//! pings both sides send ([`keepalive`]). Nothing here knows gRPC or
//! Temporal: the calls are decided by the tower stack handed to [`serve`].

mod body;
pub mod keepalive;
pub mod serve;
mod stream;
pub mod window;

pub use body::RecvBody;
pub use serve::{Serve, ServeError};
