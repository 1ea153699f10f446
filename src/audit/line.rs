//! What the audit log says about one call: who called what (the
//! certificate, and the verified bearer token's issuer name and subject;
//! never the token itself), the authorization decision, the grpc-status, bytes each way and the
//! duration, as one JSON object.

use crate::call::{CallContext, Ending};

/// The JSON line for the call of `ctx`, which ended as `ending`.
pub fn line(ctx: &CallContext, ending: &Ending) -> String {
    let outcome = ctx.authz();
    let identity = ctx.conn.identity.as_deref().map(|id| {
        serde_json::json!({
            "subject": id.subject,
            "uri": id.uri.first(),
            "fingerprint": id.fingerprint_sha256,
        })
    });
    let token = ctx.token().map(|t| {
        serde_json::json!({
            "issuer": &*t.issuer,
            "sub": t.sub,
        })
    });
    // What the proxy refused the call for, when it did and the policy did
    // not already say why.
    let reason = outcome
        .and_then(|o| o.reason)
        .or_else(|| ctx.error().map(|e| e.label()));
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(ctx.at).to_string(),
        "peer": ctx.conn.peer.to_string(),
        "identity": identity,
        "token": token,
        "method": ctx.uri.path(),
        "namespace": outcome.and_then(|o| o.namespace.as_deref()),
        "decision": outcome.map_or("none", |o| o.decision.label()),
        "rule": outcome.and_then(|o| o.rule.as_deref()),
        "reason": reason,
        "grpc_status": ending.grpc_status,
        "request_bytes": ctx.request_bytes(),
        "response_bytes": ending.response_bytes,
        "duration_ms": ctx.started.elapsed().as_secs_f64() * 1000.0,
    })
    .to_string()
}
