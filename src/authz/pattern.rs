//! The match patterns of the authorization policy: how a pattern written in
//! the config (`ou = "payments"`, `uri = "spiffe://example.org/ns/*"`,
//! `namespaces = ["team-*"]`) is parsed and normalised once at load, and how
//! it is compared with a certificate value or a namespace on every call.
//!
//! A pattern is exact, or has one leading `*` (suffix match) or one trailing
//! `*` (prefix match); `"*"` alone matches any value. Case rules depend on the
//! field ([`FieldKind`]):
//!
//! - `Text` (cn, o, ou, dns, email): case-insensitive (Unicode lowercase).
//! - `Uri`: scheme and authority case-insensitive, the rest (path, query,
//!   fragment) compared byte for byte, as RFC 3986 says. No percent-decoding
//!   or dot-segment removal: SPIFFE IDs allow neither.
//! - `Fingerprint`: hex, any case, with or without `:` separators.
//! - `Namespace`: case-sensitive, as Temporal namespace names are.
//! - `Claim` (a bearer token's `sub` and claims): case-sensitive, as JWT
//!   claims are (RFC 7519: StringOrURI values compare as they are).
//!
//! Both sides are normalised with [`normalize`] before they meet: patterns
//! in [`Pattern::parse`], certificate values once per connection, so that
//! [`Pattern::matches`] is a length check and one or two byte-slice compares,
//! with no allocation and no regex. Comparing bytes of two normalised, valid
//! UTF-8 strings never splits a character: a valid UTF-8 needle starts on a
//! lead byte, so it can only match the value at a character boundary.

use std::borrow::Cow;
use std::fmt;

/// Which certificate field (or the namespace) a pattern is compared with;
/// decides the case rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// cn, o, ou, dns, email.
    Text,
    Uri,
    Fingerprint,
    Namespace,
    /// A bearer token's `sub` or other claim.
    Claim,
}

/// One pattern of the policy, normalised at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As written in the config, for messages.
    text: Box<str>,
    kind: FieldKind,
    form: Form,
    /// The literal part (without the `*`), normalised like the values of
    /// `kind`. For `Uri` it is kept as written (see `folded`).
    needle: Box<str>,
    /// `Uri` only: `needle` with ASCII letters lowercased. Which part of a
    /// URI is its scheme and authority is only known once the pattern meets
    /// a value (a suffix pattern such as `*.Example.org/ns/A` may start in
    /// either), so both spellings are kept and the value decides, byte by
    /// byte, which one applies.
    folded: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Any,
    Exact,
    Prefix,
    Suffix,
}

/// Why a pattern in the config is not valid. The variants carry the
/// pattern; the messages leave it out, because config errors already quote
/// it next to the key that holds it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,
    #[error("`*` may appear once, and only as the first or the last character (or alone)")]
    BadWildcard(String),
    #[error("not a SHA-256 fingerprint: expected 64 hex digits (`:` separators allowed), or part of one with a leading or trailing `*`")]
    BadFingerprint(String),
}

/// Hex digits in a SHA-256 fingerprint.
const FINGERPRINT_HEX_LEN: usize = 64;

impl Pattern {
    /// Parses and normalises `text` as a pattern for fields of `kind`.
    pub fn parse(text: &str, kind: FieldKind) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let bad_wildcard = || PatternError::BadWildcard(text.to_owned());
        let (form, literal) = match text.bytes().filter(|&b| b == b'*').count() {
            0 => (Form::Exact, text),
            1 if text == "*" => (Form::Any, ""),
            1 => match (text.strip_prefix('*'), text.strip_suffix('*')) {
                (Some(rest), None) => (Form::Suffix, rest),
                (None, Some(rest)) => (Form::Prefix, rest),
                _ => return Err(bad_wildcard()),
            },
            _ => return Err(bad_wildcard()),
        };
        let (needle, folded) = match kind {
            FieldKind::Uri => (literal.to_owned(), literal.to_ascii_lowercase()),
            _ => (normalize(literal, kind).into_owned(), String::new()),
        };
        if kind == FieldKind::Fingerprint && form != Form::Any {
            let hex = !needle.is_empty() && needle.bytes().all(|b| b.is_ascii_hexdigit());
            let length_ok = match form {
                Form::Exact => needle.len() == FINGERPRINT_HEX_LEN,
                _ => needle.len() <= FINGERPRINT_HEX_LEN,
            };
            if !(hex && length_ok) {
                return Err(PatternError::BadFingerprint(text.to_owned()));
            }
        }
        Ok(Pattern {
            text: text.into(),
            kind,
            form,
            needle: needle.into(),
            folded: folded.into(),
        })
    }

    /// Whether `value` matches. `value` must already be normalised with
    /// [`normalize`]`(value, kind)` for this pattern's kind (done once per
    /// connection for certificate values). Never allocates.
    pub fn matches(&self, value: &str) -> bool {
        let value = value.as_bytes();
        let needle = self.needle.as_bytes();
        let at = match self.form {
            Form::Any => return true,
            Form::Exact if value.len() == needle.len() => 0,
            Form::Prefix if value.len() >= needle.len() => 0,
            Form::Suffix if value.len() >= needle.len() => value.len() - needle.len(),
            _ => return false,
        };
        match self.kind {
            FieldKind::Uri => uri_equal_at(value, at, needle, self.folded.as_bytes()),
            _ => value.get(at..at + needle.len()) == Some(needle),
        }
    }

    /// Whether this is the `"*"` pattern, which matches any value.
    pub fn is_any(&self) -> bool {
        self.form == Form::Any
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The kind of field this pattern was parsed for.
    pub fn kind(&self) -> FieldKind {
        self.kind
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Normalises a certificate value (or a namespace) for matching: lowercase
/// for `Text`; lowercase without `:` for `Fingerprint`; scheme and authority
/// lowercased (ASCII) for `Uri`; unchanged for `Namespace` and `Claim`.
/// Borrows when the value is already normal.
pub fn normalize(value: &str, kind: FieldKind) -> Cow<'_, str> {
    match kind {
        FieldKind::Namespace | FieldKind::Claim => Cow::Borrowed(value),
        FieldKind::Text => lowercase(value),
        FieldKind::Fingerprint => {
            if value.bytes().any(|b| b == b':' || b.is_ascii_uppercase()) {
                Cow::Owned(
                    value
                        .chars()
                        .filter(|&c| c != ':')
                        .map(|c| c.to_ascii_lowercase())
                        .collect(),
                )
            } else {
                Cow::Borrowed(value)
            }
        }
        FieldKind::Uri => {
            // URIs in certificates are IA5String (ASCII; internationalised
            // hosts arrive punycoded), and RFC 3986 case-insensitivity is
            // ASCII case-insensitivity: ASCII lowercasing is exact here.
            let end = case_insensitive_len(value.as_bytes());
            let head = value.as_bytes().get(..end).unwrap_or_default();
            if !head.iter().any(u8::is_ascii_uppercase) {
                return Cow::Borrowed(value);
            }
            let mut owned = value.to_owned();
            // `end` sits on an ASCII byte (`:`, `/`, `?`, `#`) or at the end,
            // so it is a character boundary and `get_mut` succeeds.
            if let Some(head) = owned.get_mut(..end) {
                head.make_ascii_lowercase();
            }
            Cow::Owned(owned)
        }
    }
}

/// Unicode lowercase, one character at a time. `str::to_lowercase` is not
/// used because it is context-sensitive (a capital sigma becomes `ς` at the
/// end of a word and `σ` elsewhere), which would make the lowercase of a
/// prefix differ from the prefix of the lowercase.
fn lowercase(value: &str) -> Cow<'_, str> {
    if value.is_ascii() {
        return if value.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(value.to_ascii_lowercase())
        } else {
            Cow::Borrowed(value)
        };
    }
    let already = value.chars().all(|c| {
        let mut lower = c.to_lowercase();
        lower.next() == Some(c) && lower.next().is_none()
    });
    if already {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.chars().flat_map(char::to_lowercase).collect())
    }
}

/// Compares `value[at..at + exact.len()]` with the needle: the bytes of the
/// value's scheme and authority (already lowercase in a normalised value)
/// with the needle's `folded` spelling, the bytes after them with `exact`.
fn uri_equal_at(value: &[u8], at: usize, exact: &[u8], folded: &[u8]) -> bool {
    let end = at + exact.len();
    let split = case_insensitive_len(value).clamp(at, end);
    let insensitive = split - at;
    let head_equal = match (value.get(at..split), folded.get(..insensitive)) {
        (Some(v), Some(p)) => v == p,
        _ => false,
    };
    let tail_equal = match (value.get(split..end), exact.get(insensitive..)) {
        (Some(v), Some(p)) => v == p,
        _ => false,
    };
    head_equal && tail_equal
}

/// Length of the case-insensitive head of a URI: `scheme:` and, when the
/// URI has one, `//authority`. 0 when the text has no valid scheme.
fn case_insensitive_len(uri: &[u8]) -> usize {
    let Some(colon) = scheme_len(uri) else {
        return 0;
    };
    let after = colon + 1;
    if uri.get(after..after + 2) != Some(b"//".as_slice()) {
        return after;
    }
    let start = after + 2;
    let authority = uri
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')));
    authority.map_or(uri.len(), |len| start + len)
}

/// Index of the `:` ending a valid scheme (RFC 3986: a letter, then letters,
/// digits, `+`, `-` or `.`), if the text starts with one.
fn scheme_len(uri: &[u8]) -> Option<usize> {
    if !uri.first()?.is_ascii_alphabetic() {
        return None;
    }
    for (i, &b) in uri.iter().enumerate().skip(1) {
        match b {
            b':' => return Some(i),
            b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str, kind: FieldKind) -> Pattern {
        Pattern::parse(text, kind).unwrap()
    }

    /// Normalises `value` as the proxy does at connection time, then matches.
    fn hits(text: &str, kind: FieldKind, value: &str) -> bool {
        pattern(text, kind).matches(&normalize(value, kind))
    }

    #[test]
    fn empty_pattern_is_an_error() {
        for kind in [
            FieldKind::Text,
            FieldKind::Uri,
            FieldKind::Fingerprint,
            FieldKind::Namespace,
        ] {
            assert_eq!(Pattern::parse("", kind), Err(PatternError::Empty));
        }
    }

    #[test]
    fn star_anywhere_but_one_end_is_an_error() {
        for text in ["a*b", "*a*", "**", "***", "a**", "**a", "*a*b", "a*b*"] {
            assert_eq!(
                Pattern::parse(text, FieldKind::Text),
                Err(PatternError::BadWildcard(text.to_owned())),
                "{text}"
            );
            assert_eq!(
                Pattern::parse(text, FieldKind::Namespace),
                Err(PatternError::BadWildcard(text.to_owned())),
                "{text}"
            );
        }
        let message = Pattern::parse("a*b", FieldKind::Text)
            .unwrap_err()
            .to_string();
        assert!(message.contains("first or the last character"), "{message}");
    }

    #[test]
    fn star_alone_matches_anything() {
        for kind in [
            FieldKind::Text,
            FieldKind::Uri,
            FieldKind::Fingerprint,
            FieldKind::Namespace,
        ] {
            let any = pattern("*", kind);
            assert!(any.is_any());
            assert!(any.matches(""));
            assert!(any.matches("whatever"));
            assert!(any.matches("ünïcödé"));
        }
        assert!(!pattern("a*", FieldKind::Text).is_any());
        assert!(!pattern("a", FieldKind::Text).is_any());
    }

    #[test]
    fn as_str_and_display_give_the_pattern_as_written() {
        let p = pattern("SPIFFE://Example.org/ns/*", FieldKind::Uri);
        assert_eq!(p.as_str(), "SPIFFE://Example.org/ns/*");
        assert_eq!(p.to_string(), "SPIFFE://Example.org/ns/*");
        assert_eq!(p.kind(), FieldKind::Uri);
        let f = pattern("AB:CD*", FieldKind::Fingerprint);
        assert_eq!(f.as_str(), "AB:CD*");
    }

    #[test]
    fn text_exact_is_case_insensitive() {
        assert!(hits("payments", FieldKind::Text, "payments"));
        assert!(hits("Payments", FieldKind::Text, "PAYMENTS"));
        assert!(hits("PAYMENTS", FieldKind::Text, "payments"));
        assert!(!hits("payments", FieldKind::Text, "payment"));
        assert!(!hits("payments", FieldKind::Text, "payments2"));
        assert!(!hits("payments", FieldKind::Text, ""));
    }

    #[test]
    fn text_prefix_and_suffix() {
        assert!(hits("pay*", FieldKind::Text, "Payments"));
        assert!(hits("pay*", FieldKind::Text, "pay"));
        assert!(!hits("pay*", FieldKind::Text, "repay"));
        assert!(!hits("pay*", FieldKind::Text, "pa"));
        assert!(hits("*.Example.ORG", FieldKind::Text, "worker.example.org"));
        assert!(hits("*.example.org", FieldKind::Text, ".EXAMPLE.org"));
        assert!(!hits("*.example.org", FieldKind::Text, "example.org"));
        assert!(!hits(
            "*.example.org",
            FieldKind::Text,
            "worker.example.org.evil"
        ));
        assert!(hits("*@Example.org", FieldKind::Text, "Team@example.ORG"));
    }

    #[test]
    fn text_unicode_case_folding() {
        assert!(hits(
            "ÉQUIPE-PAIEMENTS",
            FieldKind::Text,
            "équipe-paiements"
        ));
        assert!(hits("Équipe*", FieldKind::Text, "ÉQUIPE-Paiements"));
        assert!(hits(
            "*-Zahlungsverkehr",
            FieldKind::Text,
            "Straße-ZAHLUNGSVERKEHR"
        ));
        // Capital sigma lowercases the same way at the end of the prefix and
        // inside the value (str::to_lowercase would give ς and σ).
        assert!(hits("ΟΔΟΣ*", FieldKind::Text, "ΟΔΟΣΑ"));
        assert!(hits("*ΣΑ", FieldKind::Text, "οδοσα"));
        // A character whose lowercase is two characters (İ -> i + U+0307).
        assert!(hits("İSTANBUL*", FieldKind::Text, "İstanbul-office"));
        assert!(hits("İstanbul", FieldKind::Text, "İSTANBUL"));
        assert!(!hits("İstanbul", FieldKind::Text, "istanbul"));
    }

    #[test]
    fn byte_compare_never_matches_inside_a_character() {
        // "é" is C3 A9 and "©" is C2 A9: equal last bytes, different characters.
        assert!(!hits("*©", FieldKind::Text, "café"));
        assert!(!hits("*©", FieldKind::Namespace, "café"));
        assert!(!hits("caf*", FieldKind::Namespace, "ca"));
        // Needle longer than the value, and multi-byte values shorter than it.
        assert!(!hits("*éé", FieldKind::Text, "é"));
        assert!(!hits("éé*", FieldKind::Text, "é"));
        assert!(!hits("éé", FieldKind::Text, "é"));
        assert!(hits("*é", FieldKind::Text, "É"));
        // Values the pattern was not normalised for still never panic.
        let p = pattern("*x", FieldKind::Uri);
        for value in ["", "é", "x", "ÿx", "a:", "a://", "a://é", "1://X"] {
            let _ = p.matches(value);
        }
    }

    #[test]
    fn normalize_borrows_when_already_normal() {
        let borrowed = |cow: Cow<'_, str>| matches!(cow, Cow::Borrowed(_));
        assert!(borrowed(normalize("good-client", FieldKind::Text)));
        assert!(borrowed(normalize("équipe", FieldKind::Text)));
        assert!(!borrowed(normalize("Good-Client", FieldKind::Text)));
        assert!(!borrowed(normalize("Équipe", FieldKind::Text)));
        assert!(borrowed(normalize("abcdef0123", FieldKind::Fingerprint)));
        assert!(!borrowed(normalize("ab:cd", FieldKind::Fingerprint)));
        assert!(!borrowed(normalize("ABCD", FieldKind::Fingerprint)));
        assert!(borrowed(normalize(
            "spiffe://example.org/NS/A",
            FieldKind::Uri
        )));
        assert!(!borrowed(normalize(
            "SPIFFE://example.org/ns",
            FieldKind::Uri
        )));
        assert!(borrowed(normalize("Payments-PROD", FieldKind::Namespace)));
    }

    #[test]
    fn normalize_values() {
        assert_eq!(normalize("Good-Client", FieldKind::Text), "good-client");
        assert_eq!(normalize("AB:cd:EF", FieldKind::Fingerprint), "abcdef");
        assert_eq!(
            normalize(
                "SPIFFE://Example.ORG:8443/NS/Payments?Q=A#F",
                FieldKind::Uri
            ),
            "spiffe://example.org:8443/NS/Payments?Q=A#F"
        );
        assert_eq!(
            normalize("HTTPS://EX.org?Q=1", FieldKind::Uri),
            "https://ex.org?Q=1"
        );
        assert_eq!(
            normalize("HTTPS://EX.ORG#FRAG", FieldKind::Uri),
            "https://ex.org#FRAG"
        );
        assert_eq!(
            normalize("URN:UUID:ABC-DEF", FieldKind::Uri),
            "urn:UUID:ABC-DEF"
        );
        assert_eq!(
            normalize("Not A URI/Path", FieldKind::Uri),
            "Not A URI/Path"
        );
        assert_eq!(normalize("1A://HOST", FieldKind::Uri), "1A://HOST");
        assert_eq!(normalize("SPIFFE://ÉX/A", FieldKind::Uri), "spiffe://Éx/A");
        assert_eq!(normalize("Payments", FieldKind::Namespace), "Payments");
        // Normalising twice changes nothing.
        for (value, kind) in [
            ("ΟΔΟΣ İstanbul Straße", FieldKind::Text),
            ("SPIFFE://A.B/C", FieldKind::Uri),
            ("AB:CD", FieldKind::Fingerprint),
        ] {
            let once = normalize(value, kind).into_owned();
            assert_eq!(normalize(&once, kind), once.as_str());
        }
    }

    #[test]
    fn uri_scheme_and_authority_are_case_insensitive_path_is_not() {
        let p = "spiffe://Example.org/ns/payments/*";
        assert!(hits(
            p,
            FieldKind::Uri,
            "SPIFFE://example.ORG/ns/payments/sa/w"
        ));
        assert!(hits(p, FieldKind::Uri, "spiffe://example.org/ns/payments/"));
        assert!(!hits(
            p,
            FieldKind::Uri,
            "spiffe://example.org/NS/payments/x"
        ));
        assert!(!hits(
            p,
            FieldKind::Uri,
            "spiffe://example.org/ns/Payments/x"
        ));
        assert!(!hits(p, FieldKind::Uri, "spiffe://example.org/ns/payments"));
        assert!(!hits(
            p,
            FieldKind::Uri,
            "spiffe://example.org.evil/ns/payments/x"
        ));

        let exact = "SPIFFE://EXAMPLE.ORG/ns/payments/sa/worker";
        assert!(hits(
            exact,
            FieldKind::Uri,
            "spiffe://example.org/ns/payments/sa/worker"
        ));
        assert!(!hits(
            exact,
            FieldKind::Uri,
            "spiffe://example.org/ns/payments/sa/Worker"
        ));
        assert!(hits(
            "https://Host.Example:8443/A?B#C",
            FieldKind::Uri,
            "HTTPS://host.example:8443/A?B#C"
        ));
        assert!(!hits(
            "https://host.example/a",
            FieldKind::Uri,
            "https://host.example/A"
        ));
    }

    #[test]
    fn uri_prefix_that_ends_inside_the_scheme_or_authority() {
        assert!(hits("SPIF*", FieldKind::Uri, "spiffe://example.org/a"));
        assert!(hits("spiffe:*", FieldKind::Uri, "SPIFFE://example.org/a"));
        assert!(hits(
            "spiffe://EXAM*",
            FieldKind::Uri,
            "spiffe://example.org/a"
        ));
        assert!(!hits(
            "spiffe://exam*",
            FieldKind::Uri,
            "spiffe://other.org/a"
        ));
    }

    #[test]
    fn uri_suffix_spanning_authority_and_path() {
        assert!(hits(
            "*.Example.ORG",
            FieldKind::Uri,
            "spiffe://td.example.org"
        ));
        assert!(hits(
            "*Example.org/ns/A",
            FieldKind::Uri,
            "spiffe://EXAMPLE.org/ns/A"
        ));
        assert!(!hits(
            "*Example.org/ns/A",
            FieldKind::Uri,
            "spiffe://example.org/ns/a"
        ));
        assert!(hits(
            "*/sa/Worker",
            FieldKind::Uri,
            "spiffe://x.org/ns/p/sa/Worker"
        ));
        assert!(!hits(
            "*/sa/Worker",
            FieldKind::Uri,
            "spiffe://x.org/ns/p/sa/worker"
        ));
        // A path that looks like a host stays case-sensitive.
        assert!(!hits(
            "*/Example.org",
            FieldKind::Uri,
            "spiffe://x/example.org"
        ));
        assert!(hits(
            "*/Example.org",
            FieldKind::Uri,
            "spiffe://x/Example.org"
        ));
    }

    #[test]
    fn uri_without_scheme_is_compared_exactly() {
        assert!(hits("Not A URI", FieldKind::Uri, "Not A URI"));
        assert!(!hits("not a uri", FieldKind::Uri, "Not A URI"));
        assert!(hits("URN:uuid:ABC", FieldKind::Uri, "urn:uuid:ABC"));
        assert!(!hits("urn:uuid:abc", FieldKind::Uri, "urn:uuid:ABC"));
    }

    #[test]
    fn fingerprint_any_case_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let upper_colons = vec!["AB"; 32].join(":");
        assert!(hits(&hex, FieldKind::Fingerprint, &upper_colons));
        assert!(hits(&upper_colons, FieldKind::Fingerprint, &hex));
        assert!(hits(&upper_colons, FieldKind::Fingerprint, &upper_colons));
        assert!(!hits(&hex, FieldKind::Fingerprint, &"ac".repeat(32)));
        assert!(hits("AB:AB*", FieldKind::Fingerprint, &hex));
        assert!(hits("*ab:AB", FieldKind::Fingerprint, &upper_colons));
        assert!(!hits("CD*", FieldKind::Fingerprint, &hex));
    }

    #[test]
    fn fingerprint_patterns_must_be_hex_of_the_right_length() {
        let bad = |text: &str| {
            assert_eq!(
                Pattern::parse(text, FieldKind::Fingerprint),
                Err(PatternError::BadFingerprint(text.to_owned())),
                "{text}"
            );
        };
        bad("abcd"); // exact but not 64 digits
        bad(&"ab".repeat(33));
        bad(&"zz".repeat(32));
        bad("sha256:abcd*");
        bad("*:");
        bad(":");
        bad(&format!("{}*", "a".repeat(65)));
        assert!(Pattern::parse(&"AB".repeat(32), FieldKind::Fingerprint).is_ok());
        assert!(Pattern::parse("ab*", FieldKind::Fingerprint).is_ok());
        assert!(Pattern::parse("*", FieldKind::Fingerprint).is_ok());
    }

    #[test]
    fn namespace_is_case_sensitive() {
        assert!(hits("payments", FieldKind::Namespace, "payments"));
        assert!(!hits("payments", FieldKind::Namespace, "Payments"));
        assert!(hits("team-*", FieldKind::Namespace, "team-a"));
        assert!(!hits("team-*", FieldKind::Namespace, "Team-a"));
        assert!(hits("*-prod", FieldKind::Namespace, "payments-prod"));
        assert!(!hits("*-prod", FieldKind::Namespace, "payments-PROD"));
        assert!(hits("*", FieldKind::Namespace, ""));
        assert!(!hits("payments", FieldKind::Namespace, ""));
    }
}
