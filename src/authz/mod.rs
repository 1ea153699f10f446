//! Who may call what: rules over certificate identities and bearer tokens
//! granting Temporal roles per namespace (`policy`), and the patterns they match with
//! (`pattern`). The tower layer that applies them is `crate::layers::authz`.

pub mod pattern;
pub mod policy;

pub use policy::{
    open_to_all, Allowed, Decision, Denied, Field, Grants, Mode, Policy, Role, Rule, TokenMatch,
};

/// The outcome of one authorization decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthzDecision {
    /// A rule allowed the call.
    Allow,
    /// The call was denied (enforce mode).
    Deny,
    /// The call would have been denied, but audit mode forwarded it.
    AuditDeny,
    /// The request could not be decided on (malformed, header mismatch).
    Invalid,
}

impl AuthzDecision {
    pub fn label(self) -> &'static str {
        match self {
            AuthzDecision::Allow => "allow",
            AuthzDecision::Deny => "deny",
            AuthzDecision::AuditDeny => "audit_deny",
            AuthzDecision::Invalid => "invalid",
        }
    }
}
