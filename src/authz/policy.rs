//! The authorization policy: rules that match certificate identities and
//! bearer tokens and grant roles on namespaces, and the decision for one
//! call. Rules are matched against a connection's certificate and a call's
//! verified token ([`Policy::grants_for`], cached by the authz layer per
//! connection and token); a call's decision then only walks the rules that
//! matched.

use std::sync::Arc;

use super::pattern::{normalize, FieldKind, Pattern};
use crate::temporal::methods::{Access, Method, Scope};
use crate::tls::identity::PeerIdentity;
use crate::token::VerifiedToken;

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

/// `match.token` of a rule: which verified tokens it applies to.
#[derive(Debug, Clone)]
pub struct TokenMatch {
    /// The `name` of the `[[tokens.issuer]]` the token must be from.
    pub issuer: Arc<str>,
    /// The token's `sub` must match, when set.
    pub sub: Option<Pattern>,
    /// Claim path -> pattern: each must match one value of the claim (one
    /// element of an array claim), looked up as `VerifiedToken::claim` says.
    pub claims: Vec<(String, Pattern)>,
}

impl TokenMatch {
    fn matches(&self, token: &VerifiedToken) -> bool {
        *token.issuer == *self.issuer
            && self.sub.as_ref().is_none_or(|p| p.matches(&token.sub))
            && self
                .claims
                .iter()
                .all(|(path, p)| token.any_claim(path, |v| p.matches(v)))
    }
}

/// One `[[authz.rule]]`, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    /// Every entry must match some value of the certificate. Empty when
    /// the rule matches a token alone.
    pub matchers: Vec<(Field, Pattern)>,
    /// `match.token`: a call must carry a verified token this matches. A
    /// rule with certificate fields and a token needs both.
    pub token: Option<TokenMatch>,
    pub namespaces: Vec<Pattern>,
    pub roles: Vec<Role>,
    /// Full method paths not in the method table (a newer Temporal API)
    /// that this rule allows.
    pub methods: Vec<String>,
}

impl Rule {
    fn matches(&self, id: Option<&NormalizedIdentity>, token: Option<&VerifiedToken>) -> bool {
        let certificate = match id {
            Some(id) => self
                .matchers
                .iter()
                .all(|(field, pattern)| id.values(*field).iter().any(|v| pattern.matches(v))),
            // Without a certificate, only rules without certificate fields.
            None => self.matchers.is_empty(),
        };
        let token = match (&self.token, token) {
            (None, _) => true,
            (Some(m), Some(t)) => m.matches(t),
            (Some(_), None) => false,
        };
        certificate && token
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
    /// The rules a connection's certificate (`None`: it has none) and a
    /// call's verified token match, in config order.
    pub fn grants_for(
        &self,
        identity: Option<&PeerIdentity>,
        token: Option<&VerifiedToken>,
    ) -> Grants {
        let id = identity.map(NormalizedIdentity::new);
        Grants {
            mode: self.mode,
            rules: self
                .rules
                .iter()
                .filter(|r| r.matches(id.as_ref(), token))
                .cloned()
                .collect(),
        }
    }

    /// Whether any rule looks at tokens (else a call's token cannot change
    /// what its connection's certificate is granted).
    pub fn matches_tokens(&self) -> bool {
        self.rules.iter().any(|r| r.token.is_some())
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
            token: None,
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

    /// The grants of a certificate alone.
    trait ByCert {
        fn by_cert(&self, id: &PeerIdentity) -> Grants;
    }

    impl ByCert for Policy {
        fn by_cert(&self, id: &PeerIdentity) -> Grants {
            self.grants_for(Some(id), None)
        }
    }

    fn token(issuer: &str, claims: serde_json::Value) -> VerifiedToken {
        let serde_json::Value::Object(claims) = claims else {
            panic!("an object")
        };
        VerifiedToken {
            issuer: Arc::from(issuer),
            sub: claims["sub"].as_str().unwrap_or_default().to_owned(),
            claims,
            exp: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    fn token_rule(name: &str, cert: &[(Field, &str)], m: TokenMatch) -> Arc<Rule> {
        let mut r = (*rule(name, cert, &["ns"], &[Role::Reader])).clone();
        r.token = Some(m);
        Arc::new(r)
    }

    fn claim(p: &str) -> Pattern {
        Pattern::parse(p, FieldKind::Claim).unwrap()
    }

    #[test]
    fn token_rules_match_issuer_sub_and_claims() {
        let k8s = TokenMatch {
            issuer: Arc::from("cluster"),
            sub: Some(claim("system:serviceaccount:payments:*")),
            claims: vec![
                ("kubernetes.io/namespace".into(), claim("payments")),
                ("groups".into(), claim("team-*")),
            ],
        };
        let p = policy(vec![
            token_rule("sa", &[], k8s.clone()),
            token_rule("both", &[(Field::Cn, "worker")], k8s),
        ]);
        let good = token(
            "cluster",
            serde_json::json!({
                "sub": "system:serviceaccount:payments:worker",
                "kubernetes.io": {"namespace": "payments"},
                "groups": ["other", "team-a"],
            }),
        );
        let names = |g: &Grants| {
            g.rules
                .iter()
                .map(|r| r.name.to_string())
                .collect::<Vec<_>>()
        };
        // A token alone (no certificate) matches the token-only rule.
        assert_eq!(names(&p.grants_for(None, Some(&good))), ["sa"]);
        // Certificate and token: both rules.
        let worker = identity("worker", &[], &[]);
        assert_eq!(
            names(&p.grants_for(Some(&worker), Some(&good))),
            ["sa", "both"]
        );
        // The certificate alone matches neither: both need the token.
        assert!(p.by_cert(&worker).is_empty());
        // Another issuer's token with the same claims.
        let other = VerifiedToken {
            issuer: Arc::from("github"),
            ..good.clone()
        };
        assert!(p.grants_for(Some(&worker), Some(&other)).is_empty());
        // Claims are case-sensitive; an array matches by one element.
        let upper = token(
            "cluster",
            serde_json::json!({
                "sub": "system:serviceaccount:Payments:worker",
                "kubernetes.io": {"namespace": "payments"},
                "groups": ["team-a"],
            }),
        );
        assert!(p.grants_for(None, Some(&upper)).is_empty());
        let no_group = token(
            "cluster",
            serde_json::json!({
                "sub": "system:serviceaccount:payments:worker",
                "kubernetes.io": {"namespace": "payments"},
                "groups": ["ops"],
            }),
        );
        assert!(p.grants_for(None, Some(&no_group)).is_empty());
        assert!(p.matches_tokens());
        // Certificate rules never match a connection without a certificate.
        let cert_only = policy(vec![rule("c", &[(Field::Cn, "*")], &["*"], &[Role::Admin])]);
        assert!(cert_only.grants_for(None, Some(&good)).is_empty());
        assert!(!cert_only.matches_tokens());
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
        assert!(!p.by_cert(&both).is_empty());
        // One field alone is not enough.
        assert!(p.by_cert(&identity("w", &["payments"], &[])).is_empty());
        // URI paths are case-sensitive.
        let wrong_case = identity(
            "w",
            &["payments"],
            &["spiffe://example.org/NS/payments/sa/w"],
        );
        assert!(p.by_cert(&wrong_case).is_empty());
        // Fingerprints match in any case.
        let fp = policy(vec![rule(
            "fp",
            &[(Field::Fingerprint, &"ab".repeat(32))],
            &["*"],
            &[Role::Admin],
        )]);
        assert!(!fp.by_cert(&identity("x", &[], &[])).is_empty());
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
        let g = |cn| p.by_cert(&identity(cn, &[], &[]));
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
        let g = p.by_cert(&identity("svc", &["team"], &[]));
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
        let g = |cn| p.by_cert(&identity(cn, &[], &[]));
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
        let nobody = p.by_cert(&identity("stranger", &[], &[]));
        assert_eq!(
            decide(&nobody, "DescribeNamespace", Some("x")),
            Err(Denied::NoMatchingRule)
        );
        let known = p.by_cert(&identity("known", &[], &[]));
        assert_eq!(
            known.decide_unknown(&format!("{WS}Future")),
            Err(Denied::UnknownMethod)
        );
        let mut named = (*p.rules[0]).clone();
        named.methods = vec![format!("{WS}Future")];
        let p = policy(vec![Arc::new(named)]);
        let g = p.by_cert(&identity("known", &[], &[]));
        assert!(g.decide_unknown(&format!("{WS}Future")).is_ok());
        assert!(open_to_all(&format!("{WS}GetSystemInfo")));
        assert!(open_to_all("/grpc.health.v1.Health/Check"));
    }
}
