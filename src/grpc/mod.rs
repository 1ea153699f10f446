//! gRPC on the wire: the call's path (`path`), length-prefixed messages
//! (`frame`), the request body
//! replayed after inspection (`replay`), per-message size limits on
//! streaming bodies (`scan`), the response body that turns
//! upstream failures into trailers (`body`), and trailers-only status
//! responses (`status`).

mod body;
pub mod frame;
pub mod path;
mod replay;
pub mod scan;
mod status;

pub use body::{grpc_status, CallEnd, ResponseBody};
pub use replay::Replay;
pub use status::status_response;

/// Header names the per-call path looks up, parsed once: a lookup by `&str`
/// parses and validates the name on every call.
pub mod names {
    use http::HeaderName;

    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    pub const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
    pub const TEMPORAL_NAMESPACE: HeaderName = HeaderName::from_static("temporal-namespace");
    pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
}
