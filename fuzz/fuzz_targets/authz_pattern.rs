//! Authorization patterns (`authz::pattern`): `Pattern::parse`, `matches`
//! and `normalize`, for every field kind, on arbitrary text.
//!
//! - Never a panic, whatever the value (even one not normalised).
//! - A pattern without `*` matches exactly its normalised text: a value
//!   matches iff its normalised form equals the pattern's.
//! - `*` alone matches everything; `p*` matches iff the normalised value
//!   starts with `p`'s normalised text, `*s` iff it ends with `s`'s (for
//!   URIs: scheme and authority compared case-insensitively, the rest
//!   byte for byte, wherever the pattern's text falls in the value).
//! - Normalising is idempotent; a fingerprint pattern is refused unless
//!   its normalised text is hex of the right length.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{normalize, FieldKind, Pattern};

#[derive(Debug, Arbitrary)]
struct Input {
    kind: u8,
    pattern: String,
    value: String,
}

/// Length of a URI's scheme and authority (the case-insensitive part).
fn head_len(uri: &str) -> usize {
    let b = uri.as_bytes();
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return 0;
    };
    let scheme = &b[..colon];
    let valid = !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c));
    if !valid {
        return 0;
    }
    let rest = &b[colon + 1..];
    if !rest.starts_with(b"//") {
        return colon + 1;
    }
    let authority = rest[2..]
        .iter()
        .position(|c| b"/?#".contains(c))
        .unwrap_or(rest.len() - 2);
    colon + 3 + authority
}

/// Whether `value` (normalised) holds `literal` at `at`, as the kind
/// compares: URIs case-insensitively inside their head.
fn holds_at(kind: FieldKind, value: &str, at: usize, literal: &str) -> bool {
    let v = value.as_bytes();
    let Some(part) = v.get(at..at + literal.len()) else {
        return false;
    };
    match kind {
        FieldKind::Uri => {
            let head = head_len(value);
            part.iter()
                .zip(literal.as_bytes())
                .enumerate()
                .all(|(i, (a, b))| {
                    if at + i < head {
                        a.eq_ignore_ascii_case(b)
                    } else {
                        a == b
                    }
                })
        }
        _ => part == literal.as_bytes(),
    }
}

fuzz_target!(|input: Input| {
    let kind = [
        FieldKind::Text,
        FieldKind::Uri,
        FieldKind::Fingerprint,
        FieldKind::Namespace,
    ][usize::from(input.kind % 4)];
    let value = normalize(&input.value, kind).into_owned();
    assert_eq!(
        normalize(&value, kind),
        value.as_str(),
        "normalising is not idempotent"
    );
    let Ok(pattern) = Pattern::parse(&input.pattern, kind) else {
        return;
    };
    assert_eq!(pattern.as_str(), input.pattern);
    // Not normalised: must not panic.
    let _ = pattern.matches(&input.value);
    let got = pattern.matches(&value);
    let text = &input.pattern;
    let stars = text.matches('*').count();
    let want = if text == "*" {
        assert!(pattern.is_any());
        true
    } else if stars == 0 {
        let own = normalize(text, kind).into_owned();
        if kind != FieldKind::Uri {
            assert!(
                pattern.matches(&own),
                "{text:?} does not match its own normalised text"
            );
            value == own
        } else {
            assert!(
                pattern.matches(&own),
                "{text:?} does not match its own normalised text"
            );
            value.len() == text.len() && holds_at(kind, &value, 0, text)
        }
    } else if let Some(prefix) = text.strip_suffix('*') {
        let lit = if kind == FieldKind::Uri {
            prefix.to_owned()
        } else {
            normalize(prefix, kind).into_owned()
        };
        holds_at(kind, &value, 0, &lit)
    } else if let Some(suffix) = text.strip_prefix('*') {
        let lit = if kind == FieldKind::Uri {
            suffix.to_owned()
        } else {
            normalize(suffix, kind).into_owned()
        };
        value.len() >= lit.len() && holds_at(kind, &value, value.len() - lit.len(), &lit)
    } else {
        panic!("{text:?} parsed with a `*` inside");
    };
    assert_eq!(got, want, "pattern {text:?} ({kind:?}) on {value:?}");
    if kind == FieldKind::Fingerprint && text != "*" {
        let lit = normalize(text.trim_matches('*'), kind);
        assert!(lit.bytes().all(|b| b.is_ascii_hexdigit()) && !lit.is_empty() && lit.len() <= 64);
        if stars == 0 {
            assert_eq!(lit.len(), 64);
        }
    }
});
