//! Bearer tokens: the `authorization` header (`bearer_value`,
//! `bearer_token`), compact JWS parsing and verification (`Tokens::verify`,
//! which parses with `token::jwt` and checks against a key set) and JWKS
//! parsing (`KeySet::parse`). The first byte of an input picks the parser:
//!
//! - `0` a header value, `1` one padded to around the 16 KiB cap;
//! - `2` a token as is, `3` a fixed valid token mutated, `4` a token built
//!   from arbitrary header and claims (signed with the fixed key, or not),
//!   `7` a token padded to around the 16 KiB cap;
//! - `5` a JWKS as is (after a two-byte mask of the allowed algorithms),
//!   `6` one built from arbitrary keys (kty, crv, n/e/x/y, use, key_ops,
//!   alg, kid).
//!
//! Asserted, beyond never a panic:
//!
//! - `bearer_value` gives a token only for a value that starts with the
//!   scheme `bearer` (any case) followed by a space or nothing else; the
//!   token is the rest trimmed of ASCII whitespace, a slice of the value,
//!   never empty, at most 16 KiB; a value over the cap is refused by its
//!   length; what it refuses, it refuses for the reason a model of RFC 6750
//!   names. `bearer_token` over one header says the same; over two it
//!   refuses.
//! - `Tokens::verify` (one issuer, a fixed key set: an Ed25519 key whose
//!   private key this target holds, a P-256 key and an RS256-only RSA key)
//!   decides every token as an independent model does, reason for reason:
//!   the size cap before anything else, three strict base64url parts
//!   (checked by re-encoding), header and claims JSON objects, `crit`,
//!   `alg`/`kid`/`typ` types, `iss`, the algorithm, the key selection, the
//!   signature, then `exp`/`nbf`/`iat`/lifetime/`aud`/`sub`. The model's
//!   signature check is "the Ed25519 signature this target computes for
//!   the signing input, byte for byte" (Ed25519 signatures are
//!   deterministic and the verifier refuses non-canonical ones): so a
//!   mutated token verifies only if its bytes are a token this key signed,
//!   and one that verifies has the claims decoded from its payload, its
//!   `sub` and its `exp`. The same token verified again (from the cache)
//!   gives the same answer, and so does it through `authorization: Bearer`.
//! - `KeySet::parse`: its errors are those of the input (not JSON, no
//!   `keys` array, too many keys, no usable key); every key kept is an
//!   entry a model of the JWK rules keeps (kid, `use`, `key_ops`, kty, crv,
//!   material sizes, `alg` fitting and allowed), with that entry's kid and
//!   alg and exactly the algorithms the model gives it; an entry the model
//!   keeps is left out only as an invalid key (what aws-lc-rs refuses);
//!   parsing the same bytes twice gives the same set, and the kept entries
//!   alone give a set of the same digest.
//!
//! Not reached: the discovery document reader (`jwks_uri`, private to
//! `token::fetch`) and `jwt::parse` itself (private to `token`; reached
//! through `Tokens::verify`).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::Signer;
use rustls::SignatureScheme;
use serde_json::{json, Map, Value};
use temporal_mtls_proxy::internals::{
    bearer_token, bearer_value, Algorithm, IssuerConfig, KeySet, KeySource, TokenError, Tokens,
    TokensConfig, VerifiedToken,
};

/// The documented cap of a token (16 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// A header value may have the scheme, a space and some whitespace more.
const MAX_VALUE_LEN: usize = MAX_TOKEN_LEN + 6 + 16;
const NOW: u64 = 1_796_119_200; // 2026-12-01T10:00:00Z
const ISS: &str = "https://issuer.example";
const AUD: &str = "temporal";
const SKEW: u64 = 60;
const MAX_LIFETIME: u64 = 24 * 3600;
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;
/// The fixed Ed25519 key's seed (the corpus's tokens are signed with it).
const ED_SEED: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];
/// The P-256 base point: a valid public key (of private key 1).
const P256_X: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
const P256_Y: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";

// ---- base64url, independently of the proxy's ----

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Strict base64url without padding: decoded leniently, then accepted only
/// if it encodes back to the same text (which rules out `=`, other
/// characters, impossible lengths and set unused bits).
fn unb64(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (b64(&out).as_bytes() == text).then_some(out)
}

// ---- the fixed issuer ----

struct Fixture {
    signer: Box<dyn Signer>,
    /// The Ed25519 public key, base64url.
    public: String,
    config: TokensConfig,
    /// A token of the issuer that verifies at NOW.
    good: Vec<u8>,
}

/// The keys of the fixed set: kid, kind, the key's own alg.
const MODEL_KEYS: [(&str, &str, Option<&str>); 3] = [
    ("k1", "Ed25519", None),
    ("p1", "EcP256", None),
    ("r1", "Rsa", Some("RS256")),
];

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&ED_SEED);
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from(pkcs8),
        ))
        .expect("the Ed25519 key");
        let spki = key.public_key().expect("its public key");
        let public = spki.as_ref()[spki.as_ref().len() - 32..].to_vec();
        let signer = key
            .choose_scheme(&[SignatureScheme::ED25519])
            .expect("an Ed25519 signer");
        let mut n = vec![0xc5u8; 256];
        n[255] |= 1;
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64(&public)},
            {"kty": "EC", "crv": "P-256", "kid": "p1", "x": P256_X, "y": P256_Y},
            {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(&n), "e": "AQAB"},
        ]});
        let keys = KeySet::parse(jwks.to_string().as_bytes(), &Algorithm::DEFAULT)
            .expect("the fixed key set");
        assert_eq!(keys.keys().len(), 3, "{:?}", keys.skipped());
        let mut issuer = IssuerConfig::new(
            "fuzz",
            ISS,
            &[AUD],
            KeySource::File {
                path: "fuzz-jwks.json".into(),
                keys: Arc::new(keys),
            },
        );
        issuer.algorithms = Algorithm::DEFAULT.to_vec();
        let config = TokensConfig {
            issuers: vec![issuer],
            forward: false,
        };
        let mut f = Fixture {
            signer,
            public: b64(&public),
            config,
            good: Vec::new(),
        };
        f.good = f
            .token(
                &json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}),
                &json!({"iss": ISS, "sub": "system:serviceaccount:payments:worker",
                        "aud": AUD, "iat": NOW - 10, "exp": NOW + 3600}),
            )
            .into_bytes();
        f
    })
}

impl Fixture {
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.signer.sign(input).expect("an Ed25519 signature")
    }

    fn token(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

// ---- the model of verification ----

/// What the model expects: a verified token's sub, claims and exp, or the
/// label of the refusal.
type Expected = Result<(String, Map<String, Value>, u64), String>;

fn object(text: &[u8], part: &str) -> Result<Map<String, Value>, String> {
    let bytes = unb64(text).ok_or_else(|| format!("b64 {part}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("object {part}")),
        Err(_) => Err(format!("json {part}")),
    }
}

fn kind_of(alg: &str) -> &'static str {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "Rsa",
        "ES256" => "EcP256",
        "ES384" => "EcP384",
        "EdDSA" => "Ed25519",
        _ => "",
    }
}

const ALLOWED: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

fn date(claims: &Map<String, Value>, claim: &str) -> Result<Option<u64>, String> {
    let Some(v) = claims.get(claim) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(format!("bad {claim}"));
    };
    let secs = if let Some(u) = n.as_u64() {
        u
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => f as u64,
            _ => return Err(format!("bad {claim}")),
        }
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(format!("bad {claim}"));
    }
    Ok(Some(secs))
}

fn model(f: &Fixture, token: &[u8]) -> Expected {
    if token.len() > MAX_TOKEN_LEN {
        return Err("too_long".into());
    }
    if token.is_empty() {
        return Err("empty".into());
    }
    let parts: Vec<&[u8]> = token.split(|b| *b == b'.').collect();
    match parts.len() {
        3 => {}
        5 => return Err("encrypted".into()),
        _ => return Err("parts".into()),
    }
    let header = object(parts[0], "header")?;
    let claims = object(parts[1], "claims")?;
    let signature = match parts[2] {
        [] => Vec::new(),
        s => unb64(s).ok_or("b64 signature")?,
    };
    if header.contains_key("crit") {
        return Err("critical".into());
    }
    let alg = match header.get("alg") {
        None => return Err("no alg".into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("alg not a string".into()),
    };
    let mut kid = None;
    for field in ["kid", "typ"] {
        match header.get(field) {
            None => {}
            Some(Value::String(s)) => {
                if field == "kid" {
                    kid = Some(s.clone());
                }
            }
            Some(_) => return Err(format!("{field} not a string")),
        }
    }
    match claims.get("iss") {
        None => return Err("no iss".into()),
        Some(Value::String(s)) if s == ISS => {}
        Some(Value::String(_)) => return Err("unknown issuer".into()),
        Some(_) => return Err("bad iss".into()),
    }
    if !ALLOWED.contains(&alg.as_str()) {
        return Err(if kind_of(&alg).is_empty() {
            "alg refused".into()
        } else {
            "alg not for issuer".into()
        });
    }
    let kind = kind_of(&alg);
    let fits = |k: &(&str, &str, Option<&str>)| k.1 == kind && k.2.is_none_or(|a| a == alg);
    let chosen: Vec<&str> = match &kid {
        Some(kid) => {
            let same: Vec<_> = MODEL_KEYS.iter().filter(|k| k.0 == kid).collect();
            let Some(first) = same.first() else {
                return Err("unknown kid".into());
            };
            let fitting: Vec<&str> = same.iter().filter(|k| fits(k)).map(|k| k.0).collect();
            if fitting.is_empty() {
                return Err(if first.1 != kind {
                    "key type".into()
                } else if first.2.is_some() {
                    "key alg".into()
                } else {
                    "no key for alg".into()
                });
            }
            fitting
        }
        None => {
            let fitting: Vec<&str> = MODEL_KEYS.iter().filter(|k| fits(k)).map(|k| k.0).collect();
            match fitting.len() {
                0 => return Err("no key for alg".into()),
                1 => fitting,
                _ => return Err("kid required".into()),
            }
        }
    };
    // Only k1's private key is known: nothing else can have signed.
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    if !(chosen.contains(&"k1") && f.sign(signing_input) == signature) {
        return Err("bad signature".into());
    }
    let exp = date(&claims, "exp")?.ok_or("missing exp")?;
    if NOW > exp.saturating_add(SKEW) {
        return Err("expired".into());
    }
    if let Some(nbf) = date(&claims, "nbf")? {
        if NOW + SKEW < nbf {
            return Err("not yet valid".into());
        }
    }
    let iat = date(&claims, "iat")?;
    if iat.is_some_and(|iat| iat > NOW + SKEW) {
        return Err("issued in future".into());
    }
    if exp.saturating_sub(iat.unwrap_or(NOW)) > MAX_LIFETIME {
        return Err("lifetime".into());
    }
    let auds: Vec<&Value> = match claims.get("aud") {
        None => return Err("missing aud".into()),
        Some(v @ Value::String(_)) => vec![v],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list.iter().collect(),
        Some(_) => return Err("bad aud".into()),
    };
    if !auds.iter().any(|a| *a == AUD) {
        return Err("audience".into());
    }
    let sub = match claims.get("sub") {
        None => return Err("missing sub".into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("bad sub".into()),
    };
    Ok((sub, claims, exp))
}

/// The model's label of a refusal.
fn label(e: &TokenError) -> String {
    let text = e.to_string();
    let part = |t: &str| {
        let rest = t.strip_prefix("malformed token: ").unwrap_or(t);
        if rest.starts_with("the header is") {
            "header"
        } else if rest.starts_with("the claims set is") {
            "claims"
        } else if rest.starts_with("the signature is") {
            "signature"
        } else {
            "?"
        }
    };
    match e {
        TokenError::Jwt(_) => {
            if text.starts_with("token over 16 KiB (") {
                "too_long".into()
            } else if text == "malformed token: empty" {
                "empty".into()
            } else if text.contains("an encrypted token (JWE, 5 parts)") {
                "encrypted".into()
            } else if text.contains("part(s) separated by") {
                "parts".into()
            } else if text.contains(" is not base64url without padding") {
                format!("b64 {}", part(&text))
            } else if text.contains(" is not JSON (") {
                format!("json {}", part(&text))
            } else if text.contains(" is not a JSON object") {
                format!("object {}", part(&text))
            } else if text.contains("the header has no \"alg\"") {
                "no alg".into()
            } else if let Some(field) = text
                .strip_prefix("malformed token: the header's \"")
                .and_then(|t| t.strip_suffix("\" is not a string"))
            {
                format!("{field} not a string")
            } else if text.starts_with("token header lists critical extensions") {
                "critical".into()
            } else {
                format!("jwt? {text}")
            }
        }
        TokenError::NoIssuer => "no iss".into(),
        TokenError::BadClaim { claim, .. } => format!("bad {claim}"),
        TokenError::UnknownIssuer(_) => "unknown issuer".into(),
        TokenError::AlgorithmNotAllowed(_) => "alg refused".into(),
        TokenError::AlgorithmNotAllowedForIssuer { .. } => "alg not for issuer".into(),
        TokenError::UnknownKeyId { .. } => "unknown kid".into(),
        TokenError::KeyTypeMismatch { .. } => "key type".into(),
        TokenError::KeyAlgorithmMismatch { .. } => "key alg".into(),
        TokenError::NoKeyForAlgorithm { .. } => "no key for alg".into(),
        TokenError::KidRequired { .. } => "kid required".into(),
        TokenError::BadSignature => "bad signature".into(),
        TokenError::MissingClaim(c) => format!("missing {c}"),
        TokenError::Expired { .. } => "expired".into(),
        TokenError::NotYetValid { .. } => "not yet valid".into(),
        TokenError::IssuedInFuture { .. } => "issued in future".into(),
        TokenError::LifetimeTooLong { .. } => "lifetime".into(),
        TokenError::AudienceNotAccepted(_) => "audience".into(),
        other => format!("unexpected: {other}"),
    }
}

fn same(a: &Result<Arc<VerifiedToken>, TokenError>, b: &Result<Arc<VerifiedToken>, TokenError>) {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (&a.issuer, &a.sub, &a.claims, a.exp),
                (&b.issuer, &b.sub, &b.claims, b.exp)
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("different answers: {a:?} / {b:?}"),
    }
}

/// Verifies `token` and holds the answer to the model's.
fn check_token(token: &[u8]) {
    let f = fixture();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let tokens = Tokens::from_config(&f.config);
    let got = tokens.verify(token, now);
    let want = model(f, token);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        match &got {
            Ok(v) => eprintln!("verified: {:?}", v.sub),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    match (&got, &want) {
        (Ok(v), Ok((sub, claims, exp))) => {
            assert_eq!(&*v.issuer, "fuzz");
            assert_eq!(&v.sub, sub);
            assert_eq!(&v.claims, claims, "claims are not the payload's");
            assert_eq!(v.exp, UNIX_EPOCH + Duration::from_secs(*exp));
            assert!(v.exp > now - Duration::from_secs(SKEW + 1));
        }
        (Err(e), Err(l)) => {
            assert_eq!(&label(e), l, "{e}");
            if l == "too_long" {
                assert_eq!(
                    e.to_string(),
                    format!("token over 16 KiB ({} bytes)", token.len())
                );
            }
            let _ = e.kind();
        }
        (Ok(v), Err(l)) => panic!("verified ({:?}) what the model refuses: {l}", v.sub),
        (Err(e), Ok(_)) => panic!("refused ({e}) what the model verifies"),
    }
    // Again: from the cache when verified.
    same(&got, &tokens.verify(token, now));
    // Through the header, when the token survives being put in one.
    if !token.is_empty()
        && !token.first().unwrap().is_ascii_whitespace()
        && !token.last().unwrap().is_ascii_whitespace()
        && token.len() <= MAX_TOKEN_LEN
    {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(token);
        assert_eq!(bearer_value(&value).ok(), Some(token));
        if let Ok(hv) = HeaderValue::from_bytes(&value) {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, hv);
            let t = bearer_token(&headers).expect("a bearer token").unwrap();
            same(&got, &Tokens::from_config(&f.config).verify(t, now));
        }
    }
}

// ---- bearer ----

fn check_bearer(value: &[u8]) {
    let got = bearer_value(value);
    let want: Result<&[u8], String> = (|| {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!("token over 16 KiB ({} bytes)", value.len()));
        }
        let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
            Some(at) => (&value[..at], &value[at + 1..]),
            None => (value, &[][..]),
        };
        if !scheme.eq_ignore_ascii_case(b"Bearer") {
            return Err("not a Bearer token".into());
        }
        let start = rest.iter().position(|b| !b.is_ascii_whitespace());
        let end = rest.iter().rposition(|b| !b.is_ascii_whitespace());
        let (Some(s), Some(e)) = (start, end) else {
            return Err("malformed token: empty".into());
        };
        let token = &rest[s..=e];
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!("token over 16 KiB ({} bytes)", token.len()));
        }
        Ok(token)
    })();
    match (&got, &want) {
        (Ok(t), Ok(w)) => {
            assert_eq!(t, w);
            // A slice of the value, after the scheme.
            let (start, end) = (
                value.as_ptr() as usize,
                value.as_ptr() as usize + value.len(),
            );
            let at = t.as_ptr() as usize;
            assert!(at >= start + 6 && at + t.len() <= end);
            assert!(value[..6].eq_ignore_ascii_case(b"bearer") && value[6] == b' ');
            assert!(!t.is_empty() && t.len() <= MAX_TOKEN_LEN);
        }
        (Err(e), Err(w)) => assert_eq!(&e.to_string(), w),
        _ => panic!("bearer_value {got:?}, expected {want:?}"),
    }
    if let Ok(hv) = HeaderValue::from_bytes(value) {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, hv.clone());
        match (bearer_token(&headers), &got) {
            (Ok(Some(t)), Ok(g)) => assert_eq!(t, *g),
            (Err(e), Err(g)) => assert_eq!(&e, g),
            (other, g) => panic!("bearer_token {other:?}, bearer_value {g:?}"),
        }
        headers.append(AUTHORIZATION, hv);
        assert_eq!(
            bearer_token(&headers),
            Err(TokenError::TwoAuthorizationHeaders)
        );
    }
}

// ---- JWKS ----

fn allowed(mask: u16) -> Vec<Algorithm> {
    Algorithm::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, a)| *a)
        .collect()
}

/// What the model makes of one entry: kid, kind, alg and the algorithms it
/// verifies (kept unless the crypto library refuses the key), or `None`.
type ModelKey = Option<(
    Option<String>,
    &'static str,
    Option<Algorithm>,
    Vec<Algorithm>,
)>;

fn model_key(jwk: &Value, allowed: &[Algorithm]) -> ModelKey {
    let jwk = jwk.as_object()?;
    let text = |field: &str| -> Result<Option<&str>, ()> {
        match jwk.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(()),
        }
    };
    let material = |field: &str| -> Option<Vec<u8>> { unb64(text(field).ok()??.as_bytes()) };
    let kid = text("kid").ok()?.map(str::to_owned);
    if !matches!(text("use").ok()?, None | Some("sig")) {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        if !ops
            .as_array()?
            .iter()
            .any(|op| op.as_str() == Some("verify"))
        {
            return None;
        }
    }
    let kind = match text("kty").ok()?? {
        "RSA" => {
            let n = material("n")?;
            let e = material("e")?;
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
            if !(2048..=8192).contains(&bits) || e.iter().all(|b| *b == 0) {
                return None;
            }
            "Rsa"
        }
        "EC" => {
            let (kind, len) = match text("crv").ok()?? {
                "P-256" => ("EcP256", 32),
                "P-384" => ("EcP384", 48),
                _ => return None,
            };
            if material("x")?.len() != len || material("y")?.len() != len {
                return None;
            }
            kind
        }
        "OKP" => {
            if text("crv").ok()?? != "Ed25519" || material("x")?.len() != 32 {
                return None;
            }
            "Ed25519"
        }
        _ => return None,
    };
    let alg = match text("alg").ok()? {
        None => None,
        Some(name) => {
            let alg = *Algorithm::ALL.iter().find(|a| a.name() == name)?;
            if kind_of(name) != kind || !allowed.contains(&alg) {
                return None;
            }
            Some(alg)
        }
    };
    let algorithms: Vec<Algorithm> = match alg {
        Some(a) => vec![a],
        None => allowed
            .iter()
            .copied()
            .filter(|a| kind_of(a.name()) == kind)
            .collect(),
    };
    if algorithms.is_empty() {
        return None;
    }
    Some((kid, kind, alg, algorithms))
}

fn describe(set: &Result<KeySet, String>) -> String {
    match set {
        Ok(set) => {
            let keys: Vec<String> = set
                .keys()
                .iter()
                .map(|k| {
                    let algs: Vec<Algorithm> = k.algorithms().collect();
                    format!("{:?} {:?} {:?} {algs:?}", k.kid, k.kind, k.alg)
                })
                .collect();
            format!("{keys:?} {:?} {:?}", set.skipped(), set.digest())
        }
        Err(e) => e.clone(),
    }
}

fn check_jwks(json: &[u8], allowed: &[Algorithm]) {
    let got = KeySet::parse(json, allowed).map_err(|e| e.to_string());
    let again = KeySet::parse(json, allowed).map_err(|e| e.to_string());
    assert_eq!(describe(&got), describe(&again), "not deterministic");
    let doc = match serde_json::from_slice::<Value>(json) {
        Ok(doc) => doc,
        Err(_) => {
            let e = got.expect_err("not JSON, yet parsed");
            assert!(e.starts_with("not JSON ("), "{e}");
            return;
        }
    };
    let Some(Value::Array(list)) = doc.get("keys") else {
        assert_eq!(
            got.expect_err("not a JWKS, yet parsed"),
            "not a JWKS: expected an object with a \"keys\" array"
        );
        return;
    };
    if list.len() > 100 {
        assert_eq!(
            got.expect_err("too many keys, yet parsed"),
            format!("{} keys; at most 100 are read", list.len())
        );
        return;
    }
    let models: Vec<ModelKey> = list.iter().map(|k| model_key(k, allowed)).collect();
    let set = match got {
        Ok(set) => set,
        Err(e) => {
            assert!(e.starts_with("no usable key ("), "{e}");
            if list.is_empty() {
                assert_eq!(e, "no usable key (the \"keys\" array is empty)");
            }
            return;
        }
    };
    // Which entries were left out, by the "key N" each reason starts with.
    let mut skipped = vec![false; list.len()];
    for reason in set.skipped() {
        let digits: String = reason
            .strip_prefix("key ")
            .expect("a reason names its key")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let i: usize = digits.parse().expect("a key index");
        assert!(!skipped[i], "key {i} skipped twice");
        skipped[i] = true;
        if models[i].is_some() {
            assert!(
                reason.contains(": not a valid "),
                "key {i} left out for a reason the model does not see: {reason}"
            );
        }
    }
    let kept: Vec<usize> = (0..list.len()).filter(|i| !skipped[*i]).collect();
    assert_eq!(kept.len(), set.keys().len());
    for (key, &i) in set.keys().iter().zip(&kept) {
        let Some((kid, kind, alg, algorithms)) = &models[i] else {
            panic!("key {i} kept, the model leaves it out: {}", list[i]);
        };
        assert_eq!(&key.kid, kid, "key {i}");
        assert_eq!(format!("{:?}", key.kind), *kind, "key {i}");
        assert_eq!(&key.alg, alg, "key {i}");
        assert_eq!(&key.algorithms().collect::<Vec<_>>(), algorithms, "key {i}");
        for a in algorithms {
            assert!(key.verifier(*a).is_some());
        }
    }
    // The kept entries alone: the same keys, the same digest.
    let alone = json!({"keys": kept.iter().map(|i| list[*i].clone()).collect::<Vec<_>>()});
    let alone = KeySet::parse(alone.to_string().as_bytes(), allowed).expect("the kept keys");
    assert!(alone.skipped().is_empty(), "{:?}", alone.skipped());
    assert_eq!(alone.digest(), set.digest());
}

// ---- structured inputs ----

#[derive(Debug, Arbitrary)]
enum Text {
    Known(u8),
    Other(String),
    Number(i64),
    Null,
}

impl Text {
    fn value(&self, known: &[&str]) -> Value {
        match self {
            Text::Known(i) => Value::from(known[usize::from(*i) % known.len()]),
            Text::Other(s) => Value::from(s.as_str()),
            Text::Number(n) => Value::from(*n),
            Text::Null => Value::Null,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Leaf {
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    List(Vec<String>),
    Obj(Vec<(String, i32)>),
}

impl Leaf {
    fn value(&self) -> Value {
        match self {
            Leaf::Int(n) => json!(n),
            Leaf::Uint(n) => json!(n),
            Leaf::Float(f) => json!(f),
            Leaf::Str(s) => json!(s),
            Leaf::Bool(b) => json!(b),
            Leaf::Null => Value::Null,
            Leaf::List(l) => json!(l),
            Leaf::Obj(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Date {
    /// NOW plus this many seconds.
    Offset(i32),
    Float(f32),
    Other(Leaf),
}

impl Date {
    fn value(&self) -> Value {
        match self {
            Date::Offset(d) => json!(NOW as i64 + i64::from(*d)),
            Date::Float(f) => json!(NOW as f64 + f64::from(*f)),
            Date::Other(l) => l.value(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Signature {
    Good,
    Empty,
    Raw(Vec<u8>),
    /// The good one with one bit flipped.
    Flip(u16),
    /// The good signature of other claims.
    OfOther,
    /// Text as is (not base64url-encoded).
    Text(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Built {
    alg: Option<Text>,
    kid: Option<Text>,
    typ: Option<Text>,
    crit: Option<Leaf>,
    header_extra: Vec<(String, Leaf)>,
    iss: Option<Text>,
    sub: Option<Text>,
    aud: Option<Vec<Text>>,
    aud_single: bool,
    exp: Option<Date>,
    nbf: Option<Date>,
    iat: Option<Date>,
    claims_extra: Vec<(String, Leaf)>,
    signature: Signature,
}

const ALGS: &[&str] = &[
    "EdDSA", "ES256", "RS256", "PS256", "PS384", "PS512", "ES384", "RS512", "none", "HS256",
    "eddsa",
];
const KIDS: &[&str] = &["k1", "p1", "r1", "k2", ""];

impl Built {
    fn token(&self, f: &Fixture) -> Vec<u8> {
        let mut header = Map::new();
        fn put(map: &mut Map<String, Value>, k: &str, v: Option<Value>) {
            if let Some(v) = v {
                map.insert(k.to_owned(), v);
            }
        }
        for (k, v) in &self.header_extra {
            header.insert(k.clone(), v.value());
        }
        put(&mut header, "alg", self.alg.as_ref().map(|t| t.value(ALGS)));
        put(&mut header, "kid", self.kid.as_ref().map(|t| t.value(KIDS)));
        put(
            &mut header,
            "typ",
            self.typ.as_ref().map(|t| t.value(&["JWT"])),
        );
        put(&mut header, "crit", self.crit.as_ref().map(Leaf::value));
        let mut claims = Map::new();
        for (k, v) in &self.claims_extra {
            claims.insert(k.clone(), v.value());
        }
        let isss = [ISS, "https://issuer.example/", "https://other.example"];
        put(
            &mut claims,
            "iss",
            self.iss.as_ref().map(|t| t.value(&isss)),
        );
        let subs = ["system:serviceaccount:payments:worker", ""];
        put(
            &mut claims,
            "sub",
            self.sub.as_ref().map(|t| t.value(&subs)),
        );
        let auds = [AUD, "vault", "Temporal"];
        let aud = self.aud.as_ref().map(|list| {
            let values: Vec<Value> = list.iter().map(|t| t.value(&auds)).collect();
            match (self.aud_single, values.first()) {
                (true, Some(first)) => first.clone(),
                _ => Value::Array(values),
            }
        });
        put(&mut claims, "aud", aud);
        put(&mut claims, "exp", self.exp.as_ref().map(Date::value));
        put(&mut claims, "nbf", self.nbf.as_ref().map(Date::value));
        put(&mut claims, "iat", self.iat.as_ref().map(Date::value));
        let input = format!(
            "{}.{}",
            b64(Value::Object(header).to_string().as_bytes()),
            b64(Value::Object(claims).to_string().as_bytes())
        );
        let sig = match &self.signature {
            Signature::Good => b64(&f.sign(input.as_bytes())),
            Signature::Empty => String::new(),
            Signature::Raw(raw) => b64(raw),
            Signature::Flip(bit) => {
                let mut sig = f.sign(input.as_bytes());
                let bit = usize::from(*bit) % (sig.len() * 8);
                sig[bit / 8] ^= 1 << (bit % 8);
                b64(&sig)
            }
            Signature::OfOther => b64(&f.sign(b"eyJhbGciOiJFZERTQSJ9.e30")),
            Signature::Text(t) => String::from_utf8_lossy(t).into_owned(),
        };
        format!("{input}.{sig}").into_bytes()
    }
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    Flip {
        at: u16,
        bit: u8,
    },
    Set {
        at: u16,
        byte: u8,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Remove {
        at: u16,
        len: u8,
    },
    Truncate(u16),
    /// Part `part` (mod 3) replaced by these bytes, base64url-encoded.
    Part {
        part: u8,
        bytes: Vec<u8>,
    },
    /// Part `part` replaced by a JSON object with one member changed.
    Member {
        part: u8,
        name: String,
        value: Leaf,
    },
}

fn mutate(token: &mut Vec<u8>, m: &Mutation) {
    let at = |i: u16, len: usize| usize::from(i) % (len + 1);
    match m {
        Mutation::Flip { at: i, bit } => {
            if !token.is_empty() {
                let i = usize::from(*i) % token.len();
                token[i] ^= 1 << (bit % 8);
            }
        }
        Mutation::Set { at: i, byte } => {
            if !token.is_empty() {
                let i = usize::from(*i) % token.len();
                token[i] = *byte;
            }
        }
        Mutation::Insert { at: i, bytes } => {
            let i = at(*i, token.len());
            token.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove { at: i, len } => {
            let i = at(*i, token.len());
            let end = (i + usize::from(*len)).min(token.len());
            token.drain(i..end);
        }
        Mutation::Truncate(n) => token.truncate(usize::from(*n)),
        Mutation::Part { part, bytes } => replace_part(token, *part, b64(bytes).as_bytes()),
        Mutation::Member { part, name, value } => {
            let parts: Vec<&[u8]> = token.split(|b| *b == b'.').collect();
            let i = usize::from(*part % 2);
            let Some(Value::Object(mut map)) = parts
                .get(i)
                .and_then(|p| unb64(p))
                .and_then(|b| serde_json::from_slice(&b).ok())
            else {
                return;
            };
            map.insert(name.clone(), value.value());
            let text = b64(Value::Object(map).to_string().as_bytes());
            replace_part(token, *part % 2, text.as_bytes());
        }
    }
}

fn replace_part(token: &mut Vec<u8>, part: u8, with: &[u8]) {
    let mut parts: Vec<Vec<u8>> = token.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
    let i = usize::from(part) % parts.len().max(1);
    if let Some(p) = parts.get_mut(i) {
        *p = with.to_vec();
    }
    *token = parts.join(&b'.');
}

#[derive(Debug, Arbitrary)]
enum Material {
    Raw(Vec<u8>),
    /// Text as is (not base64url-encoded).
    Text(String),
    Number(i64),
    /// The P-256 base point's x or y, the fixed Ed25519 key.
    P256X,
    P256Y,
    Ed25519,
    /// 256 bytes (a 2048-bit modulus) from these.
    Rsa2048(Vec<u8>),
    /// 65537.
    E,
}

impl Material {
    fn value(&self) -> Value {
        match self {
            Material::Raw(b) => json!(b64(b)),
            Material::Text(t) => json!(t),
            Material::Number(n) => json!(n),
            Material::P256X => json!(P256_X),
            Material::P256Y => json!(P256_Y),
            Material::Ed25519 => json!(fixture().public),
            Material::Rsa2048(seed) => {
                let mut n: Vec<u8> = (0..256)
                    .map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(0xa5))
                    .collect();
                n[0] |= 0x80;
                n[255] |= 1;
                json!(b64(&n))
            }
            Material::E => json!("AQAB"),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Jwk {
    not_object: bool,
    kty: Option<Text>,
    crv: Option<Text>,
    kid: Option<Text>,
    use_: Option<Text>,
    key_ops: Option<Vec<Text>>,
    alg: Option<Text>,
    n: Option<Material>,
    e: Option<Material>,
    x: Option<Material>,
    y: Option<Material>,
    extra: Option<(String, Leaf)>,
}

impl Jwk {
    fn value(&self) -> Value {
        if self.not_object {
            return json!("a string");
        }
        let mut map = Map::new();
        if let Some((k, v)) = &self.extra {
            map.insert(k.clone(), v.value());
        }
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(k.to_owned(), v);
            }
        };
        put(
            "kty",
            self.kty
                .as_ref()
                .map(|t| t.value(&["RSA", "EC", "OKP", "oct"])),
        );
        let crvs = ["P-256", "P-384", "Ed25519", "P-521", "X25519"];
        put("crv", self.crv.as_ref().map(|t| t.value(&crvs)));
        put("kid", self.kid.as_ref().map(|t| t.value(KIDS)));
        put("use", self.use_.as_ref().map(|t| t.value(&["sig", "enc"])));
        let ops = ["verify", "sign", "encrypt"];
        put(
            "key_ops",
            self.key_ops
                .as_ref()
                .map(|l| Value::Array(l.iter().map(|t| t.value(&ops)).collect())),
        );
        put("alg", self.alg.as_ref().map(|t| t.value(ALGS)));
        put("n", self.n.as_ref().map(Material::value));
        put("e", self.e.as_ref().map(Material::value));
        put("x", self.x.as_ref().map(Material::value));
        put("y", self.y.as_ref().map(Material::value));
        Value::Object(map)
    }
}

#[derive(Debug, Arbitrary)]
struct Jwks {
    allowed: u16,
    keys: Vec<Jwk>,
}

/// `data` padded to `len` bytes (its bytes cycled, or `a`s).
fn padded(prefix: &[u8], data: &[u8], len: usize) -> Vec<u8> {
    let mut out = prefix.to_vec();
    let fill = if data.is_empty() { &b"a"[..] } else { data };
    while out.len() < len {
        let n = (len - out.len()).min(fill.len());
        out.extend_from_slice(&fill[..n]);
    }
    out.truncate(len);
    out
}

fn near_cap(data: &[u8], cap: usize) -> (usize, &[u8]) {
    let (delta, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])) % 96, rest),
        _ => (0, data),
    };
    (cap - 48 + delta, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match selector % 8 {
        0 => check_bearer(rest),
        1 => {
            let (len, rest) = near_cap(rest, MAX_VALUE_LEN);
            let split = rest.iter().position(|b| *b == b'|').unwrap_or(rest.len());
            check_bearer(&padded(&rest[..split], &rest[split..], len));
        }
        2 => check_token(rest),
        3 => {
            let mut u = Unstructured::new(rest);
            let Ok(mutations) = Vec::<Mutation>::arbitrary(&mut u) else {
                return;
            };
            let mut token = f.good.clone();
            for m in &mutations {
                mutate(&mut token, m);
            }
            check_token(&token);
        }
        4 => {
            let mut u = Unstructured::new(rest);
            let Ok(built) = Built::arbitrary(&mut u) else {
                return;
            };
            check_token(&built.token(f));
        }
        5 => {
            let (mask, json) = match rest {
                [a, b, json @ ..] => (u16::from_le_bytes([*a, *b]), json),
                _ => (0x1ff, rest),
            };
            check_jwks(json, &allowed(mask));
        }
        6 => {
            let mut u = Unstructured::new(rest);
            let Ok(jwks) = Jwks::arbitrary(&mut u) else {
                return;
            };
            let keys: Vec<Value> = jwks.keys.iter().map(Jwk::value).collect();
            let doc = json!({ "keys": keys }).to_string();
            check_jwks(doc.as_bytes(), &allowed(jwks.allowed));
        }
        _ => {
            let (len, rest) = near_cap(rest, MAX_TOKEN_LEN);
            let base = if rest.is_empty() { &f.good[..] } else { rest };
            check_token(&padded(base, b"A", len));
        }
    }
});
