//! The audit log: one JSON line per call (when `[audit]` is on), written
//! when the call's response ends, including calls the proxy answers itself
//! (`audit::line` says what is in it).

use std::sync::Arc;

use tower_layer::Layer;

use super::observe::Observed;
use crate::audit::line::line;
use crate::audit::sink::AuditSink;
use crate::call::{CallContext, CallObserver, Ending};

#[derive(Clone)]
pub struct AuditLayer {
    /// `None`: audit lines are off.
    observer: Option<Arc<dyn CallObserver>>,
}

impl AuditLayer {
    pub fn new(sink: Option<AuditSink>) -> AuditLayer {
        AuditLayer {
            observer: sink.map(|sink| Arc::new(Audit { sink }) as Arc<dyn CallObserver>),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed::new(inner, self.observer.clone())
    }
}

struct Audit {
    sink: AuditSink,
}

impl CallObserver for Audit {
    fn call_ended(&self, ctx: &CallContext, ending: &Ending) {
        self.sink.write(line(ctx, ending));
    }
}
