//! The authorization policy: rules that match certificate identities and
//! grant roles on namespaces, and the decision for one call. Rules are
//! matched against an identity once per connection ([`Policy::grants_for`]);
//! a call's decision then only walks the rules that matched.

use std::sync::Arc;

use super::pattern::{normalize, FieldKind, Pattern};
use crate::temporal::methods::{Access, Method, Scope};
use crate::tls::identity::PeerIdentity;

/// Enforce denies; audit logs what would be denied and forwards anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

/// Temporal's roles, per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read APIs.
    Reader,
    /// Read and write APIs.
    Writer,
    /// What a worker calls: polls, task responses, heartbeats, worker reads.
    Worker,
    /// Everything in the namespace.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may call `method`.
    fn allows(self, method: &Method) -> bool {
        match self {
            Role::Admin => true,
            Role::Writer => method.access <= Access::Write,
            Role::Reader => method.access == Access::Read,
            Role::Worker => method.worker,
        }
    }
}

/// A certificate field a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Cn,
    O,
    Ou,
    Dns,
    Uri,
    Email,
    Fingerprint,
}

impl Field {
    pub fn kind(self) -> FieldKind {
        match self {
            Field::Uri => FieldKind::Uri,
            Field::Fingerprint => FieldKind::Fingerprint,
            _ => FieldKind::Text,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Cn => "cn",
            Field::O => "o",
            Field::Ou => "ou",
            Field::Dns => "dns",
            Field::Uri => "uri",
            Field::Email => "email",
            Field::Fingerprint => "fingerprint",
        }
    }
}

/// One `[[authz.rule]]`, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    /// Every entry must match some value of the certificate.
    pub matchers: Vec<(Field, Pattern)>,
    pub namespaces: Vec<Pattern>,
    pub roles: Vec<Role>,
    /// Full method paths not in the method table (a newer Temporal API)
    /// that this rule allows.
    pub methods: Vec<String>,
}

impl Rule {
    fn matches(&self, id: &NormalizedIdentity) -> bool {
        self.matchers
            .iter()
            .all(|(field, pattern)| id.values(*field).iter().any(|v| pattern.matches(v)))
    }

    fn allows_method(&self, method: &Method) -> bool {
        self.roles.iter().any(|r| r.allows(method))
    }

    fn covers_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|p| p.matches(namespace))
    }

    fn covers_cluster(&self) -> bool {
        self.namespaces.iter().any(Pattern::is_any)
    }
}

/// The validated `[authz]` section.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub rules: Vec<Arc<Rule>>,
}

/// Certificate values, normalised once per connection for matching.
struct NormalizedIdentity {
    cn: Vec<String>,
    o: Vec<String>,
    ou: Vec<String>,
    dns: Vec<String>,
    uri: Vec<String>,
    email: Vec<String>,
    fingerprint: Vec<String>,
}

impl NormalizedIdentity {
    fn new(id: &PeerIdentity) -> NormalizedIdentity {
        let norm = |values: &[String], kind| -> Vec<String> {
            values
                .iter()
                .map(|v| normalize(v, kind).into_owned())
                .collect()
        };
        NormalizedIdentity {
            cn: norm(&id.cn, FieldKind::Text),
            o: norm(&id.o, FieldKind::Text),
            ou: norm(&id.ou, FieldKind::Text),
            dns: norm(&id.dns, FieldKind::Text),
            uri: norm(&id.uri, FieldKind::Uri),
            email: norm(&id.email, FieldKind::Text),
            fingerprint: vec![
                normalize(&id.fingerprint_sha256, FieldKind::Fingerprint).into_owned()
            ],
        }
    }

    fn values(&self, field: Field) -> &[String] {
        match field {
            Field::Cn => &self.cn,
            Field::O => &self.o,
            Field::Ou => &self.ou,
            Field::Dns => &self.dns,
            Field::Uri => &self.uri,
            Field::Email => &self.email,
            Field::Fingerprint => &self.fingerprint,
        }
    }
}

/// The rules one identity matched: its permissions are their union.
#[derive(Debug, Clone)]
pub struct Grants {
    pub mode: Mode,
    rules: Vec<Arc<Rule>>,
}

/// Why a call is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A rule granted it.
    Rule(Arc<str>),
    /// Every authenticated identity may call it (what SDKs call on connect).
    Authenticated,
}

/// Why a call is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The identity matched no rule at all.
    NoMatchingRule,
    /// Rules matched, but none grants this method on this namespace.
    NotGranted,
    /// A method this proxy's table does not know (a newer Temporal API)
    /// that no matching rule names.
    UnknownMethod,
}

impl Denied {
    pub fn label(&self) -> &'static str {
        match self {
            Denied::NoMatchingRule => "no_matching_rule",
            Denied::NotGranted => "not_granted",
            Denied::UnknownMethod => "unknown_method",
        }
    }
}

pub type Decision = Result<Allowed, Denied>;

/// Methods every authenticated identity may call: SDKs call them on
/// connect, before they know which namespace they will use.
pub fn open_to_all(path: &str) -> bool {
    path == "/grpc.health.v1.Health/Check"
        || path == "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"
}

impl Policy {
    /// The rules `identity` matches, in config order.
    pub fn grants_for(&self, identity: &PeerIdentity) -> Grants {
        let id = NormalizedIdentity::new(identity);
        Grants {
            mode: self.mode,
            rules: self
                .rules
                .iter()
                .filter(|r| r.matches(&id))
                .cloned()
                .collect(),
        }
    }
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Names of the matched rules (for logs).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// A method that is not in the table: allowed only if a matching rule
    /// names it.
    pub fn decide_unknown(&self, path: &str) -> Decision {
        if self.rules.is_empty() {
            return Err(Denied::NoMatchingRule);
        }
        self.rules
            .iter()
            .find(|r| r.methods.iter().any(|m| m == path))
            .map(|r| Allowed::Rule(r.name.clone()))
            .ok_or(Denied::UnknownMethod)
    }

    /// A known method. Cluster-scope methods need a rule on namespace `"*"`;
    /// namespace-scope ones a rule covering `namespace`.
    /// `path` is the call's `:path` (the method's own).
    pub fn decide(&self, method: &Method, path: &str, namespace: Option<&str>) -> Decision {
        if self.rules.is_empty() {
            return Err(Denied::NoMatchingRule);
        }
        let granted = |r: &&Arc<Rule>| {
            let place = match (method.scope, namespace) {
                (Scope::Namespace, Some(ns)) => r.covers_namespace(ns),
                // No namespace in a namespace-scope call: only a rule on
                // every namespace can allow it (the frontend will reject it).
                (Scope::Namespace, None) | (Scope::Cluster, _) => r.covers_cluster(),
            };
            place && (r.allows_method(method) || r.methods.iter().any(|m| m == path))
        };
        self.rules
            .iter()
            .find(granted)
            .map(|r| Allowed::Rule(r.name.clone()))
            .ok_or(Denied::NotGranted)
    }
}
