//! The one place where the layers a call passes through are put in order.
//! Read top to bottom: the first layer sees the request first and the
//! response last. Layers are built per connection, with what that
//! connection's calls share (peer, identity, the rules it matched).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderName, Request, Response};
use tower::ServiceBuilder;
use tower_service::Service;

use crate::audit::sink::AuditSink;
use crate::call::activity::ConnActivity;
use crate::call::ResponseBody;
use crate::config::LimitsConfig;
use crate::grpc::ConnBudget;
use crate::health::Health;
use crate::layers::activity::ActivityLayer;
use crate::layers::audit::AuditLayer;
use crate::layers::authz::{AuthzLayer, ConnAuthz, ReadLimits};
use crate::layers::call::CallLayer;
use crate::layers::call_metrics::CallMetricsLayer;
use crate::layers::deadline::DeadlineLayer;
use crate::layers::identity_header::IdentityHeaderLayer;
use crate::layers::local_health::LocalHealthLayer;
use crate::layers::message_size::MessageSizeLayer;
use crate::layers::path::PathLayer;
use crate::layers::rescue::RescueLayer;
use crate::layers::token::TokenLayer;
use crate::layers::upstream::Upstream;
use crate::metrics::Metrics;
use crate::relay::RecvBody;
use crate::reload::Live;
use crate::tls::handshake::ConnectionInfo;
use crate::token::Tokens;
use crate::upstream::namespaces::NamespaceIds;
use crate::upstream::Forward;

/// What every connection's stack is built from.
pub struct StackConfig {
    /// The policy in force (reloadable).
    pub live: Arc<Live>,
    /// Client headers removed from every call, and the identity header set.
    pub strip_headers: Arc<[HeaderName]>,
    pub identity_header: Option<HeaderName>,
    pub audit: Option<AuditSink>,
    pub metrics: Arc<Metrics>,
    /// `Some`: answer health checks locally from it (`[health] local`).
    pub local_health: Option<Arc<Health>>,
    pub limits: LimitsConfig,
    /// Task tokens' namespace ids, resolved from the frontend.
    pub namespaces: Arc<NamespaceIds>,
    /// The largest frame clients may send (`http2.max_frame_size`).
    pub max_frame_size: u32,
    /// The bearer token verifier (`[tokens]`); `None` without the section.
    pub tokens: Option<Arc<Tokens>>,
}

/// Builds the stack for one connection.
pub fn build(
    config: &StackConfig,
    forward: Forward,
    info: Arc<ConnectionInfo>,
    activity: Arc<ConnActivity>,
) -> impl Service<
    Request<RecvBody>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Send + Unpin + 'static,
> + Clone
       + Unpin
       + Send
       + 'static {
    let identity = info.identity.as_deref();
    // What the proxy holds for this connection, both ways: first messages
    // read for authorization and responses not yet written to the client.
    let budget = ConnBudget::new(config.limits.connection_buffer, config.max_frame_size);
    let authz = Some(Arc::new(ConnAuthz::new(
        config.live.clone(),
        info.identity.clone(),
        ReadLimits {
            max_message: config.limits.max_request_message as usize,
            budget: budget.clone(),
            timeout: config.limits.first_message_timeout,
        },
        config.namespaces.clone(),
        forward.clone(),
    )));
    ServiceBuilder::new()
        // Makes each request a call with its context (the connection, the
        // method, the clock); outermost, so every layer below has it.
        .layer(CallLayer::new(info.clone()))
        // Counts open calls for the connection's idle timeout, until the
        // response is done.
        .layer(ActivityLayer::new(activity))
        // Counts every call when it ends, including those the proxy
        // answers itself (so above the rescue layer).
        .layer(CallMetricsLayer::new(config.metrics.clone()))
        // One audit line per call, likewise.
        .layer(AuditLayer::new(config.audit.clone()))
        // Any error from below (denials, bad requests, upstream failures)
        // becomes a gRPC status here, never a reset.
        .layer(RescueLayer)
        // A call with a grpc-timeout and no answer by then (plus a margin
        // that leaves a working frontend's own answer to it) is answered
        // DEADLINE_EXCEEDED: an upstream that never answers holds no call
        // past its deadline.
        .layer(DeadlineLayer)
        // A path the frontend would not route is refused as it refuses it,
        // before any layer reads the body or looks the method up.
        .layer(PathLayer)
        // The call's bearer token is verified, or the call refused
        // UNAUTHENTICATED (so is a call without a token on a connection
        // without a certificate): before anything is answered or decided
        // for the caller. Above the identity header and authorization,
        // which read the verified token from the call's context.
        .layer(TokenLayer::new(
            config.tokens.clone(),
            identity.is_some(),
            config.metrics.clone(),
        ))
        // Health checks answered from the proxy's readiness, if configured
        // (`[health] local`); by default they are forwarded like any call.
        .layer(LocalHealthLayer::new(config.local_health.clone()))
        // Client-asserted identity headers go; the verified identity is set.
        // Before authorization, so nothing below sees a forged header.
        .layer(IdentityHeaderLayer::new(
            config.strip_headers.clone(),
            config.identity_header.as_ref(),
            identity,
        ))
        // Who may call what, on which namespace (reads the first message).
        .layer(AuthzLayer::new(authz))
        // Request messages over the size limit are never forwarded; last,
        // so it checks exactly the bytes that go upstream.
        .layer(MessageSizeLayer::new(config.limits.max_request_message))
        // Innermost: the call goes to the Temporal frontend; the one
        // boundary where the upstream's errors and body become the client's
        // (its chunks held against the connection's budget until written).
        .service(Upstream::new(
            forward,
            config.limits.max_response_message,
            Some(budget),
        ))
}
