//! gRPC on the wire: the response body that turns upstream failures into
//! trailers (`body`), and trailers-only status responses (`status`).

mod body;
mod status;

pub use body::ResponseBody;
pub use status::status_response;
