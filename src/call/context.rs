//! The per-call context: who called what, when, what the proxy decided and
//! how the call ended. Made once per call by `layers::call`, shared as an
//! `Arc` by the request ([`Call`]) and its response body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use http::Request;

use crate::authz::AuthzDecision;
use crate::error::ErrorKind;
use crate::temporal::methods::{lookup, Method};
use crate::tls::handshake::ConnectionInfo;
use crate::token::VerifiedToken;

/// A request and its context, as every layer below `layers::call` takes it.
pub struct Call<B> {
    pub ctx: Arc<CallContext>,
    pub request: Request<B>,
}

impl<B> Call<B> {
    /// The same call with its body changed.
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Call<C> {
        Call {
            ctx: self.ctx,
            request: self.request.map(f),
        }
    }
}

/// The authorization outcome of a call.
#[derive(Debug, Clone)]
pub struct AuthzOutcome {
    pub namespace: Option<String>,
    /// Allowed, denied, denied by policy but forwarded (audit mode), or
    /// not decidable (a request the proxy could not read).
    pub decision: AuthzDecision,
    /// The rule that allowed the call ("authenticated" for calls open to
    /// every identity).
    pub rule: Option<Arc<str>>,
    /// Why it was denied or not decidable.
    pub reason: Option<&'static str>,
}

pub struct CallContext {
    pub conn: Arc<ConnectionInfo>,
    pub at: SystemTime,
    pub started: Instant,
    /// The request's path (and query), as received.
    pub uri: http::Uri,
    /// The method table's entry for the path, looked up once here.
    pub method: Option<&'static Method>,
    /// The call's verified bearer token (set by `layers::token`).
    token: OnceLock<Arc<VerifiedToken>>,
    authz: OnceLock<AuthzOutcome>,
    error: OnceLock<ErrorKind>,
    request_bytes: AtomicU64,
}

impl CallContext {
    pub fn new(conn: Arc<ConnectionInfo>, uri: &http::Uri) -> CallContext {
        CallContext {
            conn,
            at: SystemTime::now(),
            started: Instant::now(),
            method: lookup(uri.path()),
            uri: uri.clone(),
            token: OnceLock::new(),
            authz: OnceLock::new(),
            error: OnceLock::new(),
            request_bytes: AtomicU64::new(0),
        }
    }

    /// Set by the token layer, once, when the call's token verified.
    pub fn set_token(&self, token: Arc<VerifiedToken>) {
        let _ = self.token.set(token);
    }

    /// The call's verified bearer token, if it carries one.
    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        self.token.get()
    }

    /// Set by the authorization layer, once.
    pub fn set_authz(&self, outcome: AuthzOutcome) {
        let _ = self.authz.set(outcome);
    }

    pub fn authz(&self) -> Option<&AuthzOutcome> {
        self.authz.get()
    }

    /// What the proxy answered or ended the call for (the first error that
    /// decided it).
    pub fn set_error(&self, kind: ErrorKind) {
        let _ = self.error.set(kind);
    }

    pub fn error(&self) -> Option<ErrorKind> {
        self.error.get().copied()
    }

    pub fn add_request_bytes(&self, n: u64) {
        self.request_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn request_bytes(&self) -> u64 {
        self.request_bytes.load(Ordering::Relaxed)
    }
}

/// How a call ended, as its response body saw it.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// The final grpc-status; `None` when the client went away first.
    pub grpc_status: Option<i32>,
    pub response_bytes: u64,
}

/// Told once when a call ends (metrics, audit).
pub trait CallObserver: Send + Sync {
    fn call_ended(&self, ctx: &CallContext, ending: &Ending);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::connection;

    fn context(path: &str) -> CallContext {
        CallContext::new(connection(None), &path.parse().unwrap())
    }

    fn outcome(decision: AuthzDecision) -> AuthzOutcome {
        AuthzOutcome {
            namespace: None,
            decision,
            rule: None,
            reason: None,
        }
    }

    #[test]
    fn the_first_outcome_and_the_first_error_stand() {
        let ctx = context("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo");
        assert!(ctx.authz().is_none());
        assert_eq!(ctx.error(), None);
        ctx.set_authz(outcome(AuthzDecision::Deny));
        ctx.set_authz(outcome(AuthzDecision::Allow));
        assert_eq!(ctx.authz().unwrap().decision, AuthzDecision::Deny);
        ctx.set_error(ErrorKind::MessageTooLarge);
        ctx.set_error(ErrorKind::UpstreamNoStatus);
        assert_eq!(ctx.error(), Some(ErrorKind::MessageTooLarge));
    }

    #[test]
    fn the_method_is_looked_up_once_and_bytes_add_up() {
        let ctx = context("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo");
        assert_eq!(ctx.method.map(|m| m.name), Some("GetSystemInfo"));
        assert!(context("/pkg.Unknown/Method").method.is_none());
        ctx.add_request_bytes(5);
        ctx.add_request_bytes(7);
        assert_eq!(ctx.request_bytes(), 12);
    }
}
