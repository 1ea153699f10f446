//! Call metrics: every call is counted when its response ends (method,
//! namespace, grpc-status, duration, bytes each way, the authorization
//! decision, size refusals), including calls the proxy answers itself.
//! Size refusals are also logged: an operator without an audit sink must
//! see that a call failed on a limit, not on anything the frontend did.

use std::sync::Arc;

use tower_layer::Layer;

use super::observe::Observed;
use crate::call::{CallContext, CallObserver, Ending};
use crate::error::ErrorKind;
use crate::logging::limit;
use crate::metrics::{FinishedCall, MessageDirection, Metrics};
use crate::tls::identity::PeerIdentity;

#[derive(Clone)]
pub struct CallMetricsLayer {
    observer: Arc<dyn CallObserver>,
}

impl CallMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> CallMetricsLayer {
        CallMetricsLayer {
            observer: Arc::new(CallMetrics { metrics }),
        }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed::new(inner, Some(self.observer.clone()))
    }
}

struct CallMetrics {
    metrics: Arc<Metrics>,
}

impl CallObserver for CallMetrics {
    fn call_ended(&self, ctx: &CallContext, ending: &Ending) {
        let outcome = ctx.authz();
        self.metrics.record_call(&FinishedCall {
            method: ctx.method.map(|m| m.name),
            namespace: outcome.and_then(|o| o.namespace.as_deref()),
            // A call whose client went away before the end is CANCELLED.
            grpc_status: ending.grpc_status.unwrap_or(1),
            duration: ctx.started.elapsed(),
            request_bytes: ctx.request_bytes(),
            response_bytes: ending.response_bytes,
        });
        if let Some(o) = outcome {
            self.metrics.authz_decision(o.rule.as_ref(), o.decision);
        }
        let direction = match ctx.error() {
            Some(ErrorKind::MessageTooLarge) => MessageDirection::Request,
            Some(ErrorKind::ResponseTooLarge) => MessageDirection::Response,
            _ => return,
        };
        self.metrics.message_size_refused(direction);
        if limit::MESSAGE_TOO_LARGE.admit() {
            tracing::warn!(
                peer = %ctx.conn.peer,
                identity = ctx.conn.identity.as_deref().map_or("", PeerIdentity::display_name),
                method = ctx.uri.path(),
                direction = direction.label(),
                "gRPC message over the size limit refused (RESOURCE_EXHAUSTED)"
            );
        }
    }
}
