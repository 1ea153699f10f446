//! One token against one issuer: its algorithm, the key that verifies it,
//! the signature (aws-lc-rs), then the claims. Which issuer a token belongs
//! to is decided before, by its `iss` (unverified until the signature
//! checks, so it only picks which keys to try).
//!
//! Key selection:
//! - with a `kid`, the issuer's keys of that id that may verify the
//!   token's algorithm (their type fits it, and a key with its own `alg`
//!   only that one); none of that id is "unknown key id", one of another
//!   type or algorithm is named as such (an EC key never verifies RS256);
//! - without a `kid`, the one key of the set that may verify the algorithm;
//!   none, or more than one, is refused (a kid is then required). So a
//!   set of one key per type needs no kids, and a set in rotation does.
//!
//! Claims: `exp` is required; `exp`, `nbf` and `iat` are judged with the
//! issuer's `clock_skew`; `aud` (a string or an array) must hold one of the
//! issuer's `audiences`; the lifetime, `exp - iat` (or `exp - now` without
//! `iat`), must not exceed `max_lifetime`; `sub` is required (it is the
//! identity rules and audit lines name).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::signature::ParsedPublicKey;
use serde_json::{Map, Value};

use super::alg::{Algorithm, AlgorithmRefusal};
use super::claims::VerifiedToken;
use super::error::{Quoted, TokenError};
use super::jwks::KeySet;
use super::jwt::Jws;
use super::settings::IssuerConfig;

/// 9999-12-31T23:59:59Z: a later NumericDate is not one a real issuer
/// writes, and would not fit the clock's types.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// The token's algorithm, if the issuer allows it. `none` and HMAC never
/// are, whatever the config says (the config cannot name them either).
pub(super) fn algorithm(alg: &str, issuer: &IssuerConfig) -> Result<Algorithm, TokenError> {
    match Algorithm::parse(alg) {
        Ok(a) if issuer.algorithms.contains(&a) => Ok(a),
        Ok(a) => Err(TokenError::AlgorithmNotAllowedForIssuer {
            alg: a,
            issuer: issuer.name.clone(),
        }),
        Err(AlgorithmRefusal::Unsigned | AlgorithmRefusal::Hmac | AlgorithmRefusal::Unknown) => {
            Err(TokenError::AlgorithmNotAllowed(Quoted::new(alg)))
        }
    }
}

/// The keys that may verify a token of `alg` with `kid` (see the module
/// doc).
pub(super) fn select_keys<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    issuer: &Arc<str>,
) -> Result<Vec<&'k ParsedPublicKey>, TokenError> {
    match kid {
        Some(kid) => {
            let mut same_id = keys.with_kid(kid).peekable();
            let Some(first) = same_id.peek().copied() else {
                return Err(TokenError::UnknownKeyId {
                    kid: Quoted::new(kid),
                    issuer: issuer.clone(),
                });
            };
            let fitting: Vec<&ParsedPublicKey> =
                same_id.filter_map(|key| key.verifier(alg)).collect();
            if !fitting.is_empty() {
                return Ok(fitting);
            }
            Err(if first.kind != alg.key_kind() {
                TokenError::KeyTypeMismatch {
                    kid: Quoted::new(kid),
                    issuer: issuer.clone(),
                    kind: first.kind,
                    alg,
                }
            } else if let Some(key_alg) = first.alg {
                TokenError::KeyAlgorithmMismatch {
                    kid: Quoted::new(kid),
                    issuer: issuer.clone(),
                    key_alg,
                    alg,
                }
            } else {
                TokenError::NoKeyForAlgorithm {
                    issuer: issuer.clone(),
                    alg,
                }
            })
        }
        None => {
            let fitting: Vec<&ParsedPublicKey> = keys
                .keys()
                .iter()
                .filter_map(|key| key.verifier(alg))
                .collect();
            match fitting.len() {
                0 => Err(TokenError::NoKeyForAlgorithm {
                    issuer: issuer.clone(),
                    alg,
                }),
                1 => Ok(fitting),
                count => Err(TokenError::KidRequired {
                    issuer: issuer.clone(),
                    alg,
                    count,
                }),
            }
        }
    }
}

/// Verifies the signature of `jws` with the issuer's keys.
pub(super) fn check_signature(
    jws: &Jws<'_>,
    alg: Algorithm,
    keys: &KeySet,
    issuer: &Arc<str>,
) -> Result<(), TokenError> {
    let candidates = select_keys(keys, jws.header.kid.as_deref(), alg, issuer)?;
    let verified = candidates
        .iter()
        .any(|key| key.verify_sig(jws.signing_input, &jws.signature).is_ok());
    if verified {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// A NumericDate claim, in whole seconds (fractions are cut).
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<u64>, TokenError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let bad = |problem| TokenError::BadClaim { claim, problem };
    let Value::Number(n) = value else {
        return Err(bad("is not a number"));
    };
    let secs = match (n.as_u64(), n.as_f64()) {
        (Some(secs), _) => secs,
        (None, Some(f)) if f.is_finite() && f >= 0.0 => f as u64,
        _ => return Err(bad("is not a NumericDate (seconds since 1970)")),
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(bad("is not a NumericDate (seconds since 1970)"));
    }
    Ok(Some(secs))
}

/// The token's audiences, quoted, for an error (at most five).
fn audiences_text(auds: &[&str]) -> String {
    let mut shown: Vec<String> = auds
        .iter()
        .take(5)
        .map(|a| Quoted::new(a).to_string())
        .collect();
    if auds.len() > 5 {
        shown.push("…".to_owned());
    }
    shown.join(", ")
}

/// Checks the claims of a token whose signature verified, at `now`
/// (seconds since the epoch), and makes it the verified token.
pub(super) fn check_claims(
    claims: Map<String, Value>,
    issuer: &IssuerConfig,
    now: u64,
) -> Result<VerifiedToken, TokenError> {
    let skew = issuer.clock_skew.as_secs();
    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp });
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if now.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid { nbf });
        }
    }
    let iat = numeric_date(&claims, "iat")?;
    if let Some(iat) = iat {
        if iat > now.saturating_add(skew) {
            return Err(TokenError::IssuedInFuture { iat });
        }
    }
    let lifetime = Duration::from_secs(exp.saturating_sub(iat.unwrap_or(now)));
    if lifetime > issuer.max_lifetime {
        return Err(TokenError::LifetimeTooLong {
            lifetime,
            max: issuer.max_lifetime,
        });
    }
    let auds: Vec<&str> = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => {
            let auds: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
            auds.ok_or(TokenError::BadClaim {
                claim: "aud",
                problem: "is not a string or an array of strings",
            })?
        }
        Some(_) => {
            return Err(TokenError::BadClaim {
                claim: "aud",
                problem: "is not a string or an array of strings",
            })
        }
    };
    if !auds
        .iter()
        .any(|aud| issuer.audiences.iter().any(|a| a == aud))
    {
        return Err(TokenError::AudienceNotAccepted(audiences_text(&auds)));
    }
    let sub = match claims.get("sub") {
        None => return Err(TokenError::MissingClaim("sub")),
        Some(Value::String(sub)) => sub.clone(),
        Some(_) => {
            return Err(TokenError::BadClaim {
                claim: "sub",
                problem: "is not a string",
            })
        }
    };
    Ok(VerifiedToken {
        issuer: issuer.name.clone(),
        sub,
        claims,
        exp: UNIX_EPOCH + Duration::from_secs(exp),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::jwt;
    use super::super::settings::KeySource;
    use super::super::test_keys::{hs256, jwks, unsigned, TestKey};
    use super::*;

    const NOW: u64 = 1_796_119_200; // 2026-12-01T10:00:00Z

    fn issuer() -> IssuerConfig {
        IssuerConfig::new(
            "cluster",
            "https://issuer.example",
            &["temporal"],
            KeySource::Discovery,
        )
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": "https://issuer.example",
            "sub": "system:serviceaccount:payments:worker",
            "aud": "temporal",
            "iat": NOW - 10,
            "exp": NOW + 3600,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    /// The whole check of one token against `keys`.
    fn verify(
        token: &str,
        keys: &KeySet,
        config: &IssuerConfig,
    ) -> Result<VerifiedToken, TokenError> {
        let jws = jwt::parse(token.as_bytes())?;
        let alg = algorithm(&jws.header.alg, config)?;
        check_signature(&jws, alg, keys, &config.name)?;
        check_claims(jws.claims, config, NOW)
    }

    fn set(keys: &[&TestKey]) -> KeySet {
        let jwks = jwks(&keys.iter().map(|k| k.jwk()).collect::<Vec<_>>());
        KeySet::parse(jwks.as_bytes(), &Algorithm::ALL).unwrap()
    }

    fn all_algorithms() -> IssuerConfig {
        let mut c = issuer();
        c.algorithms = Algorithm::ALL.to_vec();
        c
    }

    #[test]
    fn good_tokens_of_every_algorithm_verify() {
        let rsa = TestKey::rsa("r");
        let p256 = TestKey::ec_p256("p256");
        let p384 = TestKey::ec_p384("p384");
        let ed = TestKey::ed25519("ed");
        let keys = set(&[&rsa, &p256, &p384, &ed]);
        let config = all_algorithms();
        let mut cases: Vec<(&TestKey, Algorithm)> = [
            Algorithm::Rs256,
            Algorithm::Rs384,
            Algorithm::Rs512,
            Algorithm::Ps256,
            Algorithm::Ps384,
            Algorithm::Ps512,
        ]
        .into_iter()
        .map(|a| (&rsa, a))
        .collect();
        cases.extend([
            (&p256, Algorithm::Es256),
            (&p384, Algorithm::Es384),
            (&ed, Algorithm::EdDsa),
        ]);
        for (key, alg) in cases {
            let token = key.sign(
                alg,
                &json!({"alg": alg.name(), "kid": key.kid}),
                &claims(json!({})),
            );
            let verified = verify(&token, &keys, &config).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(verified.sub, "system:serviceaccount:payments:worker");
            assert_eq!(&*verified.issuer, "cluster");
            assert_eq!(verified.exp, UNIX_EPOCH + Duration::from_secs(NOW + 3600));
        }
    }

    #[test]
    fn bad_tokens_are_refused_each_with_its_reason() {
        let rsa = TestKey::rsa("r1");
        let ec = TestKey::ec_p256("e1");
        let other_issuers_key = TestKey::rsa("theirs");
        let keys = set(&[&rsa, &ec]);
        let config = issuer();
        let good = claims(json!({}));
        let rsa_header = json!({"alg": "RS256", "kid": "r1"});
        let rsa_public = rsa.jwk()["n"].as_str().unwrap().to_owned();
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "alg none",
                unsigned(&good),
                "algorithm \"none\" not allowed",
            ),
            (
                "HS256 with the RSA public key as the secret",
                hs256(
                    rsa_public.as_bytes(),
                    &json!({"alg": "HS256", "kid": "r1"}),
                    &good,
                ),
                "algorithm \"HS256\" not allowed",
            ),
            (
                "an EC key with an RS256 header",
                ec.sign(
                    Algorithm::Es256,
                    &json!({"alg": "RS256", "kid": "e1"}),
                    &good,
                ),
                "key \"e1\" of issuer \"cluster\" is an EC P-256 key, which cannot verify RS256",
            ),
            (
                "a kid of another issuer",
                other_issuers_key.token(&good),
                "unknown key id \"theirs\" for issuer \"cluster\"",
            ),
            (
                "signed by another key under our kid",
                other_issuers_key.sign(Algorithm::Rs256, &rsa_header, &good),
                "signature does not verify",
            ),
            (
                "a changed claim",
                {
                    let t = rsa.token(&good);
                    let (input, sig) = t.rsplit_once('.').unwrap();
                    let (header, _) = input.split_once('.').unwrap();
                    let forged = claims(json!({"sub": "admin"}));
                    format!(
                        "{header}.{}.{sig}",
                        jwt::encode_b64url(forged.to_string().as_bytes())
                    )
                },
                "signature does not verify",
            ),
            (
                "expired",
                rsa.token(&claims(json!({"iat": NOW - 7200, "exp": NOW - 3600}))),
                "token expired at 2026-12-01T09:00:00Z",
            ),
            (
                "nbf in the future",
                rsa.token(&claims(json!({"nbf": NOW + 600}))),
                "token not valid before 2026-12-01T10:10:00Z",
            ),
            (
                "iat in the future",
                rsa.token(&claims(json!({"iat": NOW + 600}))),
                "token issued in the future (iat 2026-12-01T10:10:00Z)",
            ),
            (
                "lifetime over max_lifetime",
                rsa.token(&claims(json!({"iat": NOW - 3600, "exp": NOW + 47 * 3600}))),
                "token lifetime 48h exceeds max_lifetime 24h",
            ),
            (
                "lifetime over max_lifetime without iat",
                rsa.token(&claims(json!({"iat": null, "exp": NOW + 25 * 3600}))),
                "token lifetime 25h exceeds max_lifetime 24h",
            ),
            (
                "wrong aud",
                rsa.token(&claims(json!({"aud": ["vault", "sts"]}))),
                "audience \"vault\", \"sts\" not accepted",
            ),
            (
                "no aud",
                rsa.token(&claims(json!({"aud": null}))),
                "token has no \"aud\" claim",
            ),
            (
                "no exp",
                rsa.token(&claims(json!({"exp": null}))),
                "token has no \"exp\" claim",
            ),
            (
                "no sub",
                rsa.token(&claims(json!({"sub": null}))),
                "token has no \"sub\" claim",
            ),
            (
                "exp as text",
                rsa.token(&claims(json!({"exp": "tomorrow"}))),
                "token claim \"exp\" is not a number",
            ),
            (
                "exp far away",
                rsa.token(&claims(json!({"exp": 1e300}))),
                "token claim \"exp\" is not a NumericDate",
            ),
            (
                "a crit header",
                rsa.sign(
                    Algorithm::Rs256,
                    &json!({"alg": "RS256", "kid": "r1", "crit": ["b64"], "b64": false}),
                    &good,
                ),
                "token header lists critical extensions",
            ),
            (
                "an algorithm not in the issuer's list",
                rsa.sign(
                    Algorithm::Ps512,
                    &json!({"alg": "PS512", "kid": "r1"}),
                    &good,
                ),
                "algorithm PS512 not allowed for issuer \"cluster\"",
            ),
            (
                "a JWE",
                "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".to_owned(),
                "encrypted token (JWE, 5 parts) is not accepted",
            ),
            (
                "bad base64",
                "eyJ.e30.%%%".to_owned(),
                "malformed token: the header is not base64url",
            ),
        ];
        for (what, token, expected) in cases {
            let err = verify(&token, &keys, &config)
                .map(|t| t.sub)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{what}: {err:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn skew_is_allowed_on_both_sides() {
        let rsa = TestKey::rsa("r1");
        let keys = set(&[&rsa]);
        let config = issuer();
        // Expired 59 s ago, valid from 59 s from now, issued 59 s ahead.
        for extra in [
            json!({"iat": NOW - 3600, "exp": NOW - 59}),
            json!({"nbf": NOW + 59}),
            json!({"iat": NOW + 59}),
        ] {
            let token = rsa.token(&claims(extra.clone()));
            assert!(verify(&token, &keys, &config).is_ok(), "{extra}");
        }
        let token = rsa.token(&claims(json!({"iat": NOW - 3600, "exp": NOW - 61})));
        assert!(matches!(
            verify(&token, &keys, &config),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn an_audience_array_needs_one_accepted_entry() {
        let rsa = TestKey::rsa("r1");
        let keys = set(&[&rsa]);
        let mut config = issuer();
        config.audiences = vec!["temporal".into(), "temporal-prod".into()];
        let token = rsa.token(&claims(
            json!({"aud": ["sts.amazonaws.com", "temporal-prod"]}),
        ));
        assert!(verify(&token, &keys, &config).is_ok());
        let token = rsa.token(&claims(json!({"aud": ["temporal", 5]})));
        assert_eq!(
            verify(&token, &keys, &config).unwrap_err().to_string(),
            "token claim \"aud\" is not a string or an array of strings"
        );
    }

    #[test]
    fn a_token_without_kid_needs_exactly_one_fitting_key() {
        let rsa = TestKey::rsa("r1");
        let rsa2 = TestKey::rsa("r2");
        let ec = TestKey::ec_p256("e1");
        let config = issuer();
        let no_kid = rsa.sign(
            Algorithm::Rs256,
            &json!({"alg": "RS256"}),
            &claims(json!({})),
        );
        // One RSA key (and an EC key, which does not fit RS256): used.
        assert!(verify(&no_kid, &set(&[&rsa, &ec]), &config).is_ok());
        // Two RSA keys: a kid is required.
        assert_eq!(
            verify(&no_kid, &set(&[&rsa, &rsa2]), &config).unwrap_err().to_string(),
            "token has no key id (kid) and issuer \"cluster\" has 2 keys for RS256: a kid is required"
        );
        // No RSA key at all.
        assert_eq!(
            verify(&no_kid, &set(&[&ec]), &config)
                .unwrap_err()
                .to_string(),
            "issuer \"cluster\" has no key for RS256"
        );
    }

    #[test]
    fn a_key_with_alg_refuses_another_algorithm() {
        let rsa = TestKey::rsa("r1");
        let mut jwk = rsa.jwk();
        jwk["alg"] = "RS256".into();
        let keys = KeySet::parse(jwks(&[jwk]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        let token = rsa.sign(
            Algorithm::Ps256,
            &json!({"alg": "PS256", "kid": "r1"}),
            &claims(json!({})),
        );
        assert_eq!(
            verify(&token, &keys, &issuer()).unwrap_err().to_string(),
            "key \"r1\" of issuer \"cluster\" is for RS256 only, not PS256"
        );
    }
}
