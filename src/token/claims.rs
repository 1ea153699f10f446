//! A verified token: who issued it (the configured issuer's name), its
//! subject, and its claims, with the lookup rules match on.
//!
//! A claim is named by a path: `"repository"`, `"kubernetes.io/namespace"`,
//! `"kubernetes.io.serviceaccount.name"`. Segments are separated by `.` or
//! `/`; since claim names themselves often contain both (`kubernetes.io`,
//! `https://example.org/roles`), a name that exists whole wins, and
//! otherwise the longest leading part that names an object is descended
//! into. An array on the way is descended element by element. At the end,
//! a string is its value, a number or boolean its JSON text, and an array
//! each of its string, number or boolean elements; objects and null match
//! nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The `name` of the `[[tokens.issuer]]` it belongs to.
    pub issuer: Arc<str>,
    pub sub: String,
    pub claims: Map<String, Value>,
    pub exp: SystemTime,
}

impl VerifiedToken {
    /// The values of the claim at `path` (see the module doc).
    pub fn claim(&self, path: &str) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.any_claim_value(path, &mut |v| {
            out.push(v);
            false
        });
        out
    }

    /// Whether `f` holds for one of the values of the claim at `path`,
    /// without collecting them (the per-call rule match).
    pub fn any_claim(&self, path: &str, mut f: impl FnMut(&str) -> bool) -> bool {
        self.any_claim_value(path, &mut |v| f(&v))
    }

    fn any_claim_value<'a>(&'a self, path: &str, f: &mut dyn FnMut(Cow<'a, str>) -> bool) -> bool {
        let mut leaves = Vec::new();
        resolve(&self.claims, path, &mut leaves);
        for leaf in leaves {
            let stop = match leaf {
                Value::Array(items) => items.iter().any(|item| scalar(item).is_some_and(&mut *f)),
                other => scalar(other).is_some_and(&mut *f),
            };
            if stop {
                return true;
            }
        }
        false
    }
}

fn scalar(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn resolve<'a>(map: &'a Map<String, Value>, path: &str, out: &mut Vec<&'a Value>) {
    if let Some(value) = map.get(path) {
        out.push(value);
        return;
    }
    let cuts = path
        .char_indices()
        .filter(|(_, c)| *c == '.' || *c == '/')
        .map(|(i, _)| i);
    // Longest leading part first.
    let mut cuts: Vec<usize> = cuts.collect();
    cuts.reverse();
    for at in cuts {
        let (head, rest) = (&path[..at], &path[at + 1..]);
        if head.is_empty() || rest.is_empty() {
            continue;
        }
        match map.get(head) {
            Some(Value::Object(inner)) => {
                resolve(inner, rest, out);
                return;
            }
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        resolve(inner, rest, out);
                    }
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: Value) -> VerifiedToken {
        let Value::Object(claims) = claims else {
            panic!("an object")
        };
        VerifiedToken {
            issuer: Arc::from("cluster"),
            sub: "s".into(),
            claims,
            exp: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn paths_arrays_and_scalars() {
        let t = token(serde_json::json!({
            "sub": "system:serviceaccount:payments:worker",
            "kubernetes.io": {
                "namespace": "payments",
                "serviceaccount": {"name": "worker", "uid": "u-1"}
            },
            "groups": ["a", "b", 3, true, {"x": 1}, null],
            "https://example.org/roles": ["admin"],
            "n": 42,
            "f": 1.5,
            "b": false,
            "obj": {"k": "v"},
            "list": [{"team": "x"}, {"team": "y"}, "z"],
            "nothing": null
        }));
        let claim =
            |p: &str| -> Vec<String> { t.claim(p).into_iter().map(Cow::into_owned).collect() };
        assert_eq!(claim("sub"), ["system:serviceaccount:payments:worker"]);
        assert_eq!(claim("kubernetes.io/namespace"), ["payments"]);
        assert_eq!(claim("kubernetes.io.namespace"), ["payments"]);
        assert_eq!(claim("kubernetes.io/serviceaccount/name"), ["worker"]);
        assert_eq!(claim("kubernetes.io.serviceaccount.uid"), ["u-1"]);
        assert_eq!(claim("groups"), ["a", "b", "3", "true"]);
        assert_eq!(claim("https://example.org/roles"), ["admin"]);
        assert_eq!(claim("n"), ["42"]);
        assert_eq!(claim("f"), ["1.5"]);
        assert_eq!(claim("b"), ["false"]);
        assert_eq!(claim("list.team"), ["x", "y"]);
        assert!(claim("obj").is_empty());
        assert!(claim("nothing").is_empty());
        assert!(claim("missing").is_empty());
        assert!(claim("kubernetes.io/missing").is_empty());
        assert!(claim("sub.x").is_empty());
        assert!(claim("").is_empty());
        assert!(claim(".").is_empty());
        assert!(t.any_claim("groups", |v| v == "b"));
        assert!(!t.any_claim("groups", |v| v == "c"));
    }

    #[test]
    fn a_whole_name_wins_over_a_path() {
        let t = token(serde_json::json!({
            "a.b": "whole",
            "a": {"b": "nested"}
        }));
        assert_eq!(t.claim("a.b"), ["whole"]);
        assert_eq!(t.claim("a/b"), ["nested"]);
    }
}
