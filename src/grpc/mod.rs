//! gRPC on the wire, with no knowledge of the rest of the proxy: the call's
//! path (`path`), length-prefixed messages and bounded decompression
//! (`frame`), the bytes a client connection may make the proxy hold
//! (`budget`), per-message size limits on streaming bodies (`scan`), a
//! request body replayed after inspection (`replay`), the call's
//! `grpc-timeout` (`timeout`), and the header names
//! and status fields the per-call path reads.

mod budget;
pub mod frame;
pub mod path;
mod replay;
pub mod scan;
pub mod timeout;

pub use budget::{ConnBudget, Holding};
pub use replay::Replay;

/// Header names the per-call path looks up, parsed once: a lookup by `&str`
/// parses and validates the name on every call.
pub mod names {
    use http::HeaderName;

    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    pub const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
    pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    pub const TEMPORAL_NAMESPACE: HeaderName = HeaderName::from_static("temporal-namespace");
    pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
}

/// The name of a gRPC status code, as grpc-go and the SDKs spell it;
/// `None` for a number outside 0..=16.
pub fn code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

/// The numeric `grpc-status` in `headers`, if any.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get(names::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
