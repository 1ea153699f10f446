//! The one place where the layers a call passes through are put in order.
//! Read top to bottom: the first layer sees the request first and the
//! response last.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_service::Service;

use super::{ConnectionInfo, Shared};
use crate::grpc::ResponseBody;
use crate::layers::connection_info::ConnectionInfoLayer;
use crate::layers::rescue::RescueLayer;

/// Builds the stack for one connection.
pub fn build(
    shared: &Shared,
    info: Arc<ConnectionInfo>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    ServiceBuilder::new()
        // Outermost, so that an error from any layer below, or from the
        // upstream, reaches the client as a gRPC status (never a reset).
        .layer(RescueLayer)
        // Who is calling: peer address and verified certificate, for every
        // policy layer below.
        .layer(ConnectionInfoLayer::new(info))
        // Innermost: the call goes to the Temporal frontend.
        .service(shared.forward.clone())
}
