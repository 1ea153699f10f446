//! What the audit log says about one call. A record is created when the
//! call arrives, the authorization layer fills in its decision, the request
//! body counts its bytes, and the response body's end writes the line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use super::sink::AuditSink;
use crate::grpc::CallEnd;
use crate::metrics::{self, AuthzDecision, MessageDirection, Metrics};
use crate::temporal::methods::Method;
use crate::tls::identity::PeerIdentity;

/// The authorization outcome of a call, as the audit log shows it.
#[derive(Debug, Clone)]
pub struct AuthzOutcome {
    pub namespace: Option<String>,
    /// Allowed, denied, denied by policy but forwarded (audit mode), or
    /// not decidable (a request the proxy could not read).
    pub decision: AuthzDecision,
    /// The rule that allowed the call ("authenticated" for calls open to
    /// every identity).
    pub rule: Option<Arc<str>>,
    /// Why it was denied.
    pub reason: Option<&'static str>,
}

pub struct CallRecord {
    at: SystemTime,
    started: Instant,
    peer: SocketAddr,
    identity: Option<Arc<PeerIdentity>>,
    uri: http::Uri,
    /// The method table's entry for the call, looked up once here.
    method: Option<&'static Method>,
    outcome: OnceLock<AuthzOutcome>,
    request_bytes: AtomicU64,
    /// What the proxy refused the call for, if it did (error label).
    refusal: OnceLock<&'static str>,
}

impl CallRecord {
    pub fn new(
        peer: SocketAddr,
        identity: Option<Arc<PeerIdentity>>,
        uri: &http::Uri,
    ) -> CallRecord {
        CallRecord {
            at: SystemTime::now(),
            started: Instant::now(),
            peer,
            identity,
            method: crate::temporal::methods::lookup(uri.path()),
            uri: uri.clone(),
            outcome: OnceLock::new(),
            request_bytes: AtomicU64::new(0),
            refusal: OnceLock::new(),
        }
    }

    /// The method table's entry for the call (`None`: not a known method).
    pub fn method(&self) -> Option<&'static Method> {
        self.method
    }

    pub fn set_refusal(&self, label: &'static str) {
        let _ = self.refusal.set(label);
    }

    pub fn set_outcome(&self, outcome: AuthzOutcome) {
        let _ = self.outcome.set(outcome);
    }

    pub fn add_request_bytes(&self, n: u64) {
        self.request_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The JSON line for this call.
    pub fn line(&self, grpc_status: Option<i32>, response_bytes: u64) -> String {
        let outcome = self.outcome.get();
        let identity = self.identity.as_deref().map(|id| {
            serde_json::json!({
                "subject": id.subject,
                "uri": id.uri.first(),
                "fingerprint": id.fingerprint_sha256,
            })
        });
        serde_json::json!({
            "time": humantime::format_rfc3339_millis(self.at).to_string(),
            "peer": self.peer.to_string(),
            "identity": identity,
            "method": self.uri.path(),
            "namespace": outcome.and_then(|o| o.namespace.as_deref()),
            "decision": outcome.map_or("none", |o| o.decision.label()),
            "rule": outcome.and_then(|o| o.rule.as_deref()),
            "reason": outcome.and_then(|o| o.reason),
            "grpc_status": grpc_status,
            "request_bytes": self.request_bytes.load(Ordering::Relaxed),
            "response_bytes": response_bytes,
            "duration_ms": self.started.elapsed().as_secs_f64() * 1000.0,
        })
        .to_string()
    }
}

/// When the call ends: counts it in the metrics and writes its audit line.
pub struct OnCallEnd {
    pub record: Arc<CallRecord>,
    pub sink: Option<AuditSink>,
    pub metrics: Arc<Metrics>,
}

impl CallEnd for OnCallEnd {
    fn ended(
        self: Box<Self>,
        grpc_status: Option<i32>,
        response_bytes: u64,
        error: Option<&'static str>,
    ) {
        let r = &self.record;
        if let Some(label) = error {
            r.set_refusal(label);
        }
        let outcome = r.outcome.get();
        // A call whose client went away before the end is counted CANCELLED.
        let status = grpc_status.unwrap_or(1);
        self.metrics.record_call(&metrics::CallRecord {
            method: r.method.map(|m| m.name),
            namespace: outcome.and_then(|o| o.namespace.as_deref()),
            grpc_status: status,
            duration: r.started.elapsed(),
            request_bytes: r.request_bytes.load(Ordering::Relaxed),
            response_bytes,
        });
        if let Some(o) = outcome {
            self.metrics.authz_decision(o.rule.as_ref(), o.decision);
        }
        let direction = match r.refusal.get().copied() {
            Some("message_too_large") => Some(MessageDirection::Request),
            Some("response_too_large") => Some(MessageDirection::Response),
            _ => None,
        };
        if let Some(direction) = direction {
            self.metrics.message_size_refused(direction);
            // An operator without an audit sink must see these too: the
            // call failed for a limit, not for anything the frontend did.
            if crate::logging::limit::MESSAGE_TOO_LARGE.admit() {
                tracing::warn!(
                    peer = %r.peer,
                    identity = r.identity.as_deref().map_or("", PeerIdentity::display_name),
                    method = r.uri.path(),
                    direction = direction.label(),
                    "gRPC message over the size limit refused (RESOURCE_EXHAUSTED)"
                );
            }
        }
        if let Some(sink) = &self.sink {
            sink.write(r.line(grpc_status, response_bytes));
        }
    }
}
