//! The one place where the layers a call passes through are put in order.
//! Read top to bottom: the first layer sees the request first and the
//! response last. Layers are built per connection, with what that
//! connection's calls share (peer, identity, the rules it matched).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_service::Service;

use super::activity::ConnActivity;
use super::{ConnectionInfo, Shared};
use crate::grpc::frame::ReadBudget;
use crate::grpc::ResponseBody;
use crate::layers::activity::ActivityLayer;
use crate::layers::audit::AuditLayer;
use crate::layers::authz::{AuthzLayer, ConnAuthz, ReadLimits};
use crate::layers::identity_header::IdentityHeaderLayer;
use crate::layers::local_health::LocalHealthLayer;
use crate::layers::message_size::MessageSizeLayer;
use crate::layers::path::PathLayer;
use crate::layers::rescue::RescueLayer;
use crate::upstream::Forward;

/// Builds the stack for one connection.
pub fn build(
    shared: &Shared,
    forward: Forward,
    info: Arc<ConnectionInfo>,
    activity: Arc<ConnActivity>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let identity = info.identity.as_deref();
    let authz = info.identity.as_ref().map(|id| {
        Arc::new(ConnAuthz::new(
            shared.policy.clone(),
            id.clone(),
            ReadLimits {
                max_message: shared.limits.max_request_message as usize,
                budget: ReadBudget::new(shared.limits.connection_buffer, shared.max_frame_size),
                timeout: shared.limits.first_message_timeout,
            },
            shared.namespaces.clone(),
            forward.clone(),
        ))
    });
    ServiceBuilder::new()
        // Counts open calls for the connection's idle timeout; outermost so
        // that every call counts until its response is done.
        .layer(ActivityLayer::new(activity))
        // Sees every call, including those the proxy answers
        // itself, and writes its audit line when the response ends.
        .layer(AuditLayer::new(
            shared.audit.clone(),
            shared.metrics.clone(),
            info.clone(),
        ))
        // Any error from below (denials, bad requests, upstream failures)
        // becomes a gRPC status here, never a reset.
        .layer(RescueLayer)
        // A path the frontend would not route is refused as it refuses it,
        // before any layer reads the body or looks the method up.
        .layer(PathLayer)
        // Health checks answered from the proxy's readiness, if configured
        // (`[health] local`); by default they are forwarded like any call.
        .layer(LocalHealthLayer::new(
            shared.health_local.then(|| shared.health.clone()),
        ))
        // Client-asserted identity headers go; the verified identity is set.
        // Before authorization, so nothing below sees a forged header.
        .layer(IdentityHeaderLayer::new(
            shared.strip_headers.clone(),
            shared.identity_header.as_ref(),
            identity,
        ))
        // Who may call what, on which namespace (reads the first message).
        .layer(AuthzLayer::new(authz))
        // Request messages over the size limit are never forwarded; last,
        // so it checks exactly the bytes that go upstream.
        .layer(MessageSizeLayer::new(shared.limits.max_request_message))
        // Innermost: the call goes to the Temporal frontend.
        .service(forward)
}
