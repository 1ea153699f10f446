//! Why a call's token is refused: one enum for the header, the token's form,
//! its key, its signature and its claims. The text of each is the reason in
//! words, fit for the grpc-message of an UNAUTHENTICATED status; what a
//! client wrote (an `iss`, a `kid`, an `alg`) is quoted and cut to 64
//! characters. [`TokenError::kind`] is a fixed label per reason, for metrics
//! and audit lines.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::alg::{Algorithm, KeyKind};
use super::jwt::JwtError;

/// A value a client wrote, as shown in an error: quoted, at most 64
/// characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub fn new(text: &str) -> Quoted {
        const MAX: usize = 64;
        match text.char_indices().nth(MAX) {
            None => Quoted(format!("{text:?}")),
            Some((at, _)) => Quoted(format!("{:?}…", &text[..at])),
        }
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A NumericDate (seconds since the epoch) as RFC 3339.
pub(super) fn date(secs: u64) -> String {
    let at = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A duration the way the config writes it: "48h", "1h30m", "90s".
pub(super) fn span(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("two authorization headers")]
    TwoAuthorizationHeaders,
    #[error("not a Bearer token")]
    NotBearer,
    /// The token's form (also its size).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("token has no \"iss\" claim")]
    NoIssuer,
    #[error("issuer {0} not configured")]
    UnknownIssuer(Quoted),
    /// `none`, HMAC, or a name this proxy does not verify: never allowed.
    #[error("algorithm {0} not allowed")]
    AlgorithmNotAllowed(Quoted),
    #[error("algorithm {alg} not allowed for issuer {issuer:?}")]
    AlgorithmNotAllowedForIssuer { alg: Algorithm, issuer: Arc<str> },
    #[error("no keys for issuer {issuer:?} yet ({reason})")]
    NoKeys { issuer: Arc<str>, reason: String },
    #[error("unknown key id {kid} for issuer {issuer:?}")]
    UnknownKeyId { kid: Quoted, issuer: Arc<str> },
    #[error("key {kid} of issuer {issuer:?} is {kind}, which cannot verify {alg}")]
    KeyTypeMismatch {
        kid: Quoted,
        issuer: Arc<str>,
        kind: KeyKind,
        alg: Algorithm,
    },
    #[error("key {kid} of issuer {issuer:?} is for {key_alg} only, not {alg}")]
    KeyAlgorithmMismatch {
        kid: Quoted,
        issuer: Arc<str>,
        key_alg: Algorithm,
        alg: Algorithm,
    },
    #[error("token has no key id (kid) and issuer {issuer:?} has {count} keys for {alg}: a kid is required")]
    KidRequired {
        issuer: Arc<str>,
        alg: Algorithm,
        count: usize,
    },
    #[error("issuer {issuer:?} has no key for {alg}")]
    NoKeyForAlgorithm { issuer: Arc<str>, alg: Algorithm },
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has no {0:?} claim")]
    MissingClaim(&'static str),
    #[error("token claim {claim:?} {problem}")]
    BadClaim {
        claim: &'static str,
        problem: &'static str,
    },
    #[error("token expired at {}", date(*exp))]
    Expired { exp: u64 },
    #[error("token not valid before {}", date(*nbf))]
    NotYetValid { nbf: u64 },
    #[error("token issued in the future (iat {})", date(*iat))]
    IssuedInFuture { iat: u64 },
    /// The token's audiences, each quoted.
    #[error("audience {0} not accepted")]
    AudienceNotAccepted(String),
    #[error("token lifetime {} exceeds max_lifetime {}", span(*lifetime), span(*max))]
    LifetimeTooLong { lifetime: Duration, max: Duration },
}

impl TokenError {
    /// A fixed label per reason (bounded cardinality, for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::TwoAuthorizationHeaders => "two_authorization_headers",
            TokenError::NotBearer => "not_bearer",
            TokenError::Jwt(JwtError::TooLong { .. }) => "too_long",
            TokenError::Jwt(JwtError::Encrypted) => "encrypted",
            TokenError::Jwt(JwtError::Critical { .. }) => "critical_header",
            TokenError::Jwt(_) => "malformed",
            TokenError::NoIssuer | TokenError::MissingClaim(_) => "missing_claim",
            TokenError::BadClaim { .. } => "malformed",
            TokenError::UnknownIssuer(_) => "unknown_issuer",
            TokenError::AlgorithmNotAllowed(_)
            | TokenError::AlgorithmNotAllowedForIssuer { .. } => "algorithm_not_allowed",
            TokenError::NoKeys { .. } => "no_keys",
            TokenError::UnknownKeyId { .. } => "unknown_key_id",
            TokenError::KeyTypeMismatch { .. }
            | TokenError::KeyAlgorithmMismatch { .. }
            | TokenError::KidRequired { .. }
            | TokenError::NoKeyForAlgorithm { .. } => "no_fitting_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::IssuedInFuture { .. } => "issued_in_future",
            TokenError::AudienceNotAccepted(_) => "audience_not_accepted",
            TokenError::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_quoted_and_cut() {
        assert_eq!(Quoted::new("k2").to_string(), "\"k2\"");
        assert_eq!(Quoted::new("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        let long = "x".repeat(100);
        assert_eq!(
            Quoted::new(&long).to_string(),
            format!("\"{}\"…", "x".repeat(64))
        );
        let wide = "é".repeat(70);
        assert!(Quoted::new(&wide).to_string().ends_with("\"…"));
    }

    #[test]
    fn dates_and_spans_read_as_the_config_writes_them() {
        assert_eq!(date(1_796_119_200), "2026-12-01T10:00:00Z");
        assert_eq!(span(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(span(Duration::from_secs(5400)), "1h30m");
        assert_eq!(span(Duration::from_secs(90)), "1m30s");
        assert_eq!(span(Duration::ZERO), "0s");
    }

    #[test]
    fn the_texts_of_the_issue() {
        let cluster: Arc<str> = Arc::from("cluster");
        for (err, text) in [
            (
                TokenError::Expired { exp: 1_796_119_200 },
                "token expired at 2026-12-01T10:00:00Z",
            ),
            (
                TokenError::UnknownKeyId {
                    kid: Quoted::new("k2"),
                    issuer: cluster.clone(),
                },
                "unknown key id \"k2\" for issuer \"cluster\"",
            ),
            (
                TokenError::AlgorithmNotAllowed(Quoted::new("HS256")),
                "algorithm \"HS256\" not allowed",
            ),
            (
                TokenError::LifetimeTooLong {
                    lifetime: Duration::from_secs(48 * 3600),
                    max: Duration::from_secs(24 * 3600),
                },
                "token lifetime 48h exceeds max_lifetime 24h",
            ),
            (
                TokenError::UnknownIssuer(Quoted::new("https://evil.example")),
                "issuer \"https://evil.example\" not configured",
            ),
            (
                TokenError::KeyTypeMismatch {
                    kid: Quoted::new("e1"),
                    issuer: cluster,
                    kind: KeyKind::EcP256,
                    alg: Algorithm::Rs256,
                },
                "key \"e1\" of issuer \"cluster\" is an EC P-256 key, which cannot verify RS256",
            ),
        ] {
            assert_eq!(err.to_string(), text);
        }
        assert_eq!(TokenError::BadSignature.kind(), "bad_signature");
        assert_eq!(
            TokenError::Jwt(JwtError::TooLong { len: 20000 }).kind(),
            "too_long"
        );
    }
}
