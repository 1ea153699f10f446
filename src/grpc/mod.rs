//! gRPC on the wire: length-prefixed messages (`frame`), the request body
//! replayed after inspection (`replay`), per-message size limits on
//! streaming bodies (`scan`), the response body that turns
//! upstream failures into trailers (`body`), and trailers-only status
//! responses (`status`).

mod body;
pub mod frame;
mod replay;
pub mod scan;
mod status;

pub use body::{grpc_status, CallEnd, ResponseBody};
pub use replay::Replay;
pub use status::status_response;
