//! Who may call what: rules over certificate identities granting Temporal
//! roles per namespace (`policy`), and the patterns they match with
//! (`pattern`). The tower layer that applies them is `crate::layers::authz`.

pub mod pattern;
pub mod policy;

pub use policy::{open_to_all, Allowed, Decision, Denied, Field, Grants, Mode, Policy, Role, Rule};
