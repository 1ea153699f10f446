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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub fn label(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temporal::methods::lookup;

    const WS: &str = "/temporal.api.workflowservice.v1.WorkflowService/";

    fn rule(
        name: &str,
        matchers: &[(Field, &str)],
        namespaces: &[&str],
        roles: &[Role],
    ) -> Arc<Rule> {
        Arc::new(Rule {
            name: Arc::from(name),
            matchers: matchers
                .iter()
                .map(|(f, p)| (*f, Pattern::parse(p, f.kind()).unwrap()))
                .collect(),
            namespaces: namespaces
                .iter()
                .map(|n| Pattern::parse(n, FieldKind::Namespace).unwrap())
                .collect(),
            roles: roles.to_vec(),
            methods: vec![],
        })
    }

    fn identity(cn: &str, ou: &[&str], uri: &[&str]) -> PeerIdentity {
        PeerIdentity {
            subject: format!("CN={cn}"),
            cn: vec![cn.into()],
            o: vec!["Example".into()],
            ou: ou.iter().map(|s| s.to_string()).collect(),
            dns: vec![],
            uri: uri.iter().map(|s| s.to_string()).collect(),
            email: vec![],
            ip: vec![],
            spiffe_id: None,
            serial: "01".into(),
            fingerprint_sha256: "AB".repeat(32),
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    fn decide(grants: &Grants, method: &str, ns: Option<&str>) -> Decision {
        let path = format!("{WS}{method}");
        grants.decide(lookup(&path).unwrap(), &path, ns)
    }

    fn policy(rules: Vec<Arc<Rule>>) -> Policy {
        Policy {
            mode: Mode::Enforce,
            rules,
        }
    }

    #[test]
    fn every_named_field_must_match_some_value() {
        let p = policy(vec![rule(
            "r",
            &[
                (Field::Ou, "payments"),
                (Field::Uri, "spiffe://example.org/ns/payments/*"),
            ],
            &["payments"],
            &[Role::Reader],
        )]);
        // Both fields match (OU among several values, case-insensitively).
        let both = identity(
            "w",
            &["ops", "PAYMENTS"],
            &["spiffe://example.org/ns/payments/sa/w"],
        );
        assert!(!p.grants_for(&both).is_empty());
        // One field alone is not enough.
        assert!(p.grants_for(&identity("w", &["payments"], &[])).is_empty());
        // URI paths are case-sensitive.
        let wrong_case = identity(
            "w",
            &["payments"],
            &["spiffe://example.org/NS/payments/sa/w"],
        );
        assert!(p.grants_for(&wrong_case).is_empty());
        // Fingerprints match in any case.
        let fp = policy(vec![rule(
            "fp",
            &[(Field::Fingerprint, &"ab".repeat(32))],
            &["*"],
            &[Role::Admin],
        )]);
        assert!(!fp.grants_for(&identity("x", &[], &[])).is_empty());
    }

    #[test]
    fn roles_mean_what_they_mean_in_temporal() {
        let p = policy(vec![
            rule(
                "readers",
                &[(Field::Cn, "reader")],
                &["ns"],
                &[Role::Reader],
            ),
            rule(
                "writers",
                &[(Field::Cn, "writer")],
                &["ns"],
                &[Role::Writer],
            ),
            rule(
                "workers",
                &[(Field::Cn, "worker")],
                &["ns"],
                &[Role::Worker],
            ),
            rule("admins", &[(Field::Cn, "admin")], &["ns"], &[Role::Admin]),
        ]);
        let g = |cn| p.grants_for(&identity(cn, &[], &[]));
        let ns = Some("ns");
        // Reads.
        for who in ["reader", "writer", "admin"] {
            assert!(decide(&g(who), "DescribeNamespace", ns).is_ok(), "{who}");
            assert!(
                decide(&g(who), "ListWorkflowExecutions", ns).is_ok(),
                "{who}"
            );
        }
        assert!(decide(&g("worker"), "ListWorkflowExecutions", ns).is_err());
        // Writes.
        assert!(decide(&g("reader"), "StartWorkflowExecution", ns).is_err());
        assert!(decide(&g("writer"), "StartWorkflowExecution", ns).is_ok());
        assert!(decide(&g("writer"), "TerminateWorkflowExecution", ns).is_ok());
        // Worker calls.
        for m in [
            "PollWorkflowTaskQueue",
            "RespondWorkflowTaskCompleted",
            "RecordActivityTaskHeartbeat",
            "GetWorkflowExecutionHistory",
        ] {
            assert!(decide(&g("worker"), m, ns).is_ok(), "worker {m}");
        }
        assert!(decide(&g("worker"), "StartWorkflowExecution", ns).is_err());
        // Admin-class calls in the namespace.
        assert!(decide(&g("writer"), "UpdateNamespace", ns).is_err());
        assert!(decide(&g("admin"), "UpdateNamespace", ns).is_ok());
        // Nothing outside the namespace.
        assert_eq!(
            decide(&g("admin"), "DescribeNamespace", Some("other")),
            Err(Denied::NotGranted)
        );
    }

    #[test]
    fn permissions_are_the_union_of_matching_rules() {
        let p = policy(vec![
            rule("a-read", &[(Field::Ou, "team")], &["a"], &[Role::Reader]),
            rule("b-write", &[(Field::Cn, "svc")], &["b-*"], &[Role::Writer]),
        ]);
        let g = p.grants_for(&identity("svc", &["team"], &[]));
        assert_eq!(
            decide(&g, "DescribeNamespace", Some("a")),
            Ok(Allowed::Rule(Arc::from("a-read")))
        );
        assert_eq!(
            decide(&g, "StartWorkflowExecution", Some("b-1")),
            Ok(Allowed::Rule(Arc::from("b-write")))
        );
        assert!(decide(&g, "StartWorkflowExecution", Some("a")).is_err());
    }

    #[test]
    fn cluster_scope_needs_a_rule_on_every_namespace() {
        let p = policy(vec![
            rule(
                "ns-admin",
                &[(Field::Cn, "nsadmin")],
                &["prod-*"],
                &[Role::Admin],
            ),
            rule(
                "global-reader",
                &[(Field::Cn, "auditor")],
                &["*"],
                &[Role::Reader],
            ),
            rule(
                "global-admin",
                &[(Field::Cn, "root")],
                &["*"],
                &[Role::Admin],
            ),
        ]);
        let g = |cn| p.grants_for(&identity(cn, &[], &[]));
        assert!(decide(&g("nsadmin"), "ListNamespaces", None).is_err());
        assert!(decide(&g("auditor"), "ListNamespaces", None).is_ok());
        assert!(decide(&g("auditor"), "GetClusterInfo", None).is_ok());
        let op = "/temporal.api.operatorservice.v1.OperatorService/AddOrUpdateRemoteCluster";
        let m = lookup(op).unwrap();
        assert!(g("auditor").decide(m, op, None).is_err());
        assert!(g("root").decide(m, op, None).is_ok());
        // A namespace-scope call without a namespace (DeleteNamespace by
        // id) is cluster-wide, as in Temporal's own authorizer.
        let del = "/temporal.api.operatorservice.v1.OperatorService/DeleteNamespace";
        let m = lookup(del).unwrap();
        assert!(g("nsadmin").decide(m, del, None).is_err());
        assert!(g("nsadmin").decide(m, del, Some("prod-1")).is_ok());
        assert!(g("root").decide(m, del, None).is_ok());
    }

    #[test]
    fn no_rule_and_unknown_methods_are_denied() {
        let p = policy(vec![rule(
            "r",
            &[(Field::Cn, "known")],
            &["*"],
            &[Role::Admin],
        )]);
        let nobody = p.grants_for(&identity("stranger", &[], &[]));
        assert_eq!(
            decide(&nobody, "DescribeNamespace", Some("x")),
            Err(Denied::NoMatchingRule)
        );
        let known = p.grants_for(&identity("known", &[], &[]));
        assert_eq!(
            known.decide_unknown(&format!("{WS}Future")),
            Err(Denied::UnknownMethod)
        );
        let mut named = (*p.rules[0]).clone();
        named.methods = vec![format!("{WS}Future")];
        let p = policy(vec![Arc::new(named)]);
        let g = p.grants_for(&identity("known", &[], &[]));
        assert!(g.decide_unknown(&format!("{WS}Future")).is_ok());
        assert!(open_to_all(&format!("{WS}GetSystemInfo")));
        assert!(open_to_all("/grpc.health.v1.Health/Check"));
    }
}
