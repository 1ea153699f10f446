//! What the audit log says about one call. A record is created when the
//! call arrives, the authorization layer fills in its decision, the request
//! body counts its bytes, and the response body's end writes the line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use super::sink::AuditSink;
use crate::grpc::CallEnd;
use crate::tls::identity::PeerIdentity;

/// The authorization outcome of a call, as the audit log shows it.
#[derive(Debug, Clone)]
pub struct AuthzOutcome {
    pub namespace: Option<String>,
    /// "allow", "deny", or "audit_deny" (denied by policy, forwarded in
    /// audit mode).
    pub decision: &'static str,
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
    method: String,
    outcome: OnceLock<AuthzOutcome>,
    request_bytes: AtomicU64,
}

impl CallRecord {
    pub fn new(peer: SocketAddr, identity: Option<Arc<PeerIdentity>>, method: &str) -> CallRecord {
        CallRecord {
            at: SystemTime::now(),
            started: Instant::now(),
            peer,
            identity,
            method: method.to_owned(),
            outcome: OnceLock::new(),
            request_bytes: AtomicU64::new(0),
        }
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
            "method": self.method,
            "namespace": outcome.and_then(|o| o.namespace.as_deref()),
            "decision": outcome.map_or("none", |o| o.decision),
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

/// Writes the record's line when the call ends.
pub struct WriteOnEnd {
    pub record: Arc<CallRecord>,
    pub sink: AuditSink,
}

impl CallEnd for WriteOnEnd {
    fn ended(self: Box<Self>, grpc_status: Option<i32>, response_bytes: u64) {
        self.sink
            .write(self.record.line(grpc_status, response_bytes));
    }
}
