//! Validation of `[authz]`, `[identity]` and `[audit]`: rules compiled into
//! an [`authz::Policy`](crate::authz::Policy), each problem naming its rule.

use std::path::Path;
use std::sync::Arc;

use http::HeaderName;

use super::problems::{resolve, Problems};
use super::raw::{RawAudit, RawAuthz, RawIdentity, RawMatch, RawRule, RawTokenMatch};
use super::AuditTarget as SinkTarget;
use super::{AuditConfig, IdentityHeaderConfig};
use crate::authz::pattern::{FieldKind, Pattern};
use crate::authz::{Field, Mode, Policy, Role, Rule, TokenMatch};

pub const DEFAULT_IDENTITY_HEADER: &str = "x-forwarded-client-cert";
pub const DEFAULT_AUDIT_BUFFER: usize = 16_384;

/// `issuers`: the names of the `[[tokens.issuer]]` tables, which
/// `match.token.issuer` must be one of.
pub(super) fn validate_authz(
    p: &mut Problems,
    raw: Option<RawAuthz>,
    issuers: &[Arc<str>],
) -> Option<Policy> {
    let raw = raw?;
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("audit") => Mode::Audit,
        Some(other) => {
            p.add(
                "authz.mode",
                format!("{other:?} is not a mode; use \"enforce\" or \"audit\""),
            );
            Mode::Enforce
        }
    };
    let mut rules = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let raw_rules = raw.rule.unwrap_or_default();
    if raw_rules.is_empty() {
        p.add(
            "authz.rule",
            "no rules: every call except GetSystemInfo and health checks would be denied; add [[authz.rule]] tables or remove [authz]",
        );
    }
    for (i, raw_rule) in raw_rules.into_iter().enumerate() {
        let key = match &raw_rule.name {
            Some(name) => format!("authz.rule[{i}] ({name:?})"),
            None => format!("authz.rule[{i}]"),
        };
        if let Some(name) = &raw_rule.name {
            if names.contains(name) {
                p.add(&key, "another rule has the same name");
            }
            names.push(name.clone());
        }
        if let Some(rule) = validate_rule(p, &key, raw_rule, issuers) {
            rules.push(Arc::new(rule));
        }
    }
    Some(Policy { mode, rules })
}

fn validate_rule(p: &mut Problems, key: &str, raw: RawRule, issuers: &[Arc<str>]) -> Option<Rule> {
    let before = p.len();
    let name = match raw.name {
        Some(n) if !n.trim().is_empty() => Some(n),
        _ => {
            p.add(
                &format!("{key}.name"),
                "is required (it names the rule in decisions and audit lines)",
            );
            None
        }
    };
    let (matchers, token) = validate_match(p, key, raw.matcher, issuers);
    let namespaces: Vec<Pattern> = match raw.namespaces {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|ns| match Pattern::parse(ns, FieldKind::Namespace) {
                Ok(pat) => Some(pat),
                Err(e) => {
                    p.add(&format!("{key}.namespaces"), format!("{ns:?}: {e}"));
                    None
                }
            })
            .collect(),
        _ => {
            p.add(
                &format!("{key}.namespaces"),
                "is required: namespace names, globs like \"team-*\", or \"*\" for every namespace and cluster-wide calls",
            );
            Vec::new()
        }
    };
    let mut roles = Vec::new();
    for role in raw.roles.unwrap_or_default() {
        match Role::parse(&role) {
            Some(r) => roles.push(r),
            None => p.add(
                &format!("{key}.roles"),
                format!("unknown role {role:?}; roles are reader, writer, worker, admin"),
            ),
        }
    }
    let methods = raw.methods.unwrap_or_default();
    for m in &methods {
        let well_formed = m.starts_with('/')
            && m[1..]
                .split_once('/')
                .is_some_and(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains('/'));
        if !well_formed {
            p.add(
                &format!("{key}.methods"),
                format!("{m:?} is not a method path; write it as \"/temporal.api.workflowservice.v1.WorkflowService/NewMethod\""),
            );
        }
    }
    if roles.is_empty() && methods.is_empty() && p.len() == before {
        p.add(
            &format!("{key}.roles"),
            "the rule grants nothing: give it roles (or methods)",
        );
    }
    if p.len() != before {
        return None;
    }
    Some(Rule {
        name: Arc::from(name?),
        matchers,
        token,
        namespaces,
        roles,
        methods,
    })
}

fn validate_match(
    p: &mut Problems,
    key: &str,
    raw: Option<RawMatch>,
    issuers: &[Arc<str>],
) -> (Vec<(Field, Pattern)>, Option<TokenMatch>) {
    let Some(m) = raw else {
        p.add(
            &format!("{key}.match"),
            "is required: which certificates (or tokens) the rule applies to, e.g. match = { ou = \"payments\" }",
        );
        return (Vec::new(), None);
    };
    let before = p.len();
    let mut matchers = Vec::new();
    for (field, value) in [
        (Field::Cn, m.cn),
        (Field::O, m.o),
        (Field::Ou, m.ou),
        (Field::Dns, m.dns),
        (Field::Uri, m.uri),
        (Field::Email, m.email),
        (Field::Fingerprint, m.fingerprint),
    ] {
        let Some(value) = value else { continue };
        match Pattern::parse(&value, field.kind()) {
            Ok(pat) => matchers.push((field, pat)),
            Err(e) => p.add(
                &format!("{key}.match.{}", field.name()),
                format!("{value:?}: {e}"),
            ),
        }
    }
    let token = m
        .token
        .and_then(|t| validate_token_match(p, &format!("{key}.match.token"), t, issuers));
    if matchers.is_empty() && token.is_none() && p.len() == before {
        p.add(
            &format!("{key}.match"),
            "is empty: name at least one of cn, o, ou, dns, uri, email, fingerprint, token (an empty match would apply to every certificate)",
        );
    }
    (matchers, token)
}

/// `match.token = { issuer = "...", sub = "...", claims = { ... } }`.
fn validate_token_match(
    p: &mut Problems,
    key: &str,
    raw: RawTokenMatch,
    issuers: &[Arc<str>],
) -> Option<TokenMatch> {
    let before = p.len();
    let issuer = match raw.issuer {
        None => {
            p.add(
                &format!("{key}.issuer"),
                "is required: the name of the [[tokens.issuer]] whose tokens the rule applies to",
            );
            None
        }
        Some(name) => match issuers.iter().find(|n| ***n == *name) {
            Some(found) => Some(found.clone()),
            None if issuers.is_empty() => {
                p.add(
                    &format!("{key}.issuer"),
                    format!("{name:?} is not a token issuer: there is no [[tokens.issuer]]"),
                );
                None
            }
            None => {
                let known: Vec<String> = issuers.iter().map(|n| format!("{n:?}")).collect();
                p.add(
                    &format!("{key}.issuer"),
                    format!(
                        "{name:?} is not the name of a [[tokens.issuer]] (they are {})",
                        known.join(", ")
                    ),
                );
                None
            }
        },
    };
    let sub = raw
        .sub
        .and_then(|text| match Pattern::parse(&text, FieldKind::Claim) {
            Ok(pat) => Some(pat),
            Err(e) => {
                p.add(&format!("{key}.sub"), format!("{text:?}: {e}"));
                None
            }
        });
    let mut claims = Vec::new();
    for (path, text) in raw.claims.unwrap_or_default() {
        if path.is_empty() {
            p.add(&format!("{key}.claims"), "a claim name must not be empty");
            continue;
        }
        match Pattern::parse(&text, FieldKind::Claim) {
            Ok(pat) => claims.push((path, pat)),
            Err(e) => p.add(&format!("{key}.claims.{path:?}"), format!("{text:?}: {e}")),
        }
    }
    if p.len() != before {
        return None;
    }
    Some(TokenMatch {
        issuer: issuer?,
        sub,
        claims,
    })
}

pub(super) fn validate_identity(
    p: &mut Problems,
    raw: Option<RawIdentity>,
) -> IdentityHeaderConfig {
    let raw = raw.unwrap_or_default();
    let header = match raw.header.as_deref() {
        None => Some(HeaderName::from_static(DEFAULT_IDENTITY_HEADER)),
        Some("") => None,
        Some(name) => match HeaderName::try_from(name.to_ascii_lowercase()) {
            Ok(h) => Some(h),
            Err(_) => {
                p.add(
                    "identity.header",
                    format!("{name:?} is not a valid header name"),
                );
                None
            }
        },
    };
    let mut strip = Vec::new();
    for name in raw
        .strip
        .unwrap_or_else(|| vec![DEFAULT_IDENTITY_HEADER.to_owned()])
    {
        match HeaderName::try_from(name.to_ascii_lowercase()) {
            Ok(h) => strip.push(h),
            Err(_) => p.add(
                "identity.strip",
                format!("{name:?} is not a valid header name"),
            ),
        }
    }
    // The header the proxy sets is always stripped from what clients send.
    if let Some(h) = &header {
        if !strip.contains(h) {
            strip.push(h.clone());
        }
    }
    IdentityHeaderConfig { header, strip }
}

pub(super) fn validate_audit(
    p: &mut Problems,
    raw: Option<RawAudit>,
    base: &Path,
) -> Option<AuditConfig> {
    let raw = raw?;
    let target = match raw.sink.as_deref() {
        None | Some("stdout") | Some("-") => SinkTarget::Stdout,
        Some("") => {
            p.add("audit.sink", "is empty; use \"stdout\" or a file path");
            SinkTarget::Stdout
        }
        Some(path) => {
            let path = resolve(base, path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    p.add(
                        "audit.sink",
                        format!("directory {} does not exist", dir.display()),
                    );
                }
            }
            SinkTarget::File(path)
        }
    };
    let buffer = match raw.buffer {
        None => DEFAULT_AUDIT_BUFFER,
        Some(0) => {
            p.add("audit.buffer", "must be at least 1");
            DEFAULT_AUDIT_BUFFER
        }
        Some(n) => n,
    };
    Some(AuditConfig { target, buffer })
}
