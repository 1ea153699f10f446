//! A JWKS (RFC 7517) into the keys tokens are verified with. Supported:
//! RSA (`n`, `e`; moduli of 2048 to 8192 bits) for RS256/384/512 and
//! PS256/384/512, EC P-256 and P-384 (`crv`, `x`, `y`) for ES256 and
//! ES384, and OKP Ed25519 (`x`) for EdDSA. Each key is parsed once, here,
//! into aws-lc-rs public keys, one per algorithm it may verify, so that
//! verifying a token costs the signature check alone.
//!
//! A key is left out, with the reason (logged by whoever loads the set),
//! when it is not for signatures (`use` other than `"sig"`, `key_ops`
//! without `"verify"`), is symmetric (`kty` `"oct"`: HMAC is never
//! accepted), names an `alg` that does not fit its type or is not among
//! the issuer's `algorithms`, or is of an unsupported type, curve or size.
//! A key with `alg` verifies that algorithm only; one without verifies
//! every allowed algorithm of its type. A set with no usable key at all is
//! an error; so is one that is not a JWKS.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::alg::{Algorithm, KeyKind};
use super::jwt::decode_b64url;

/// The largest JWKS read, from a file or over https.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// The most keys one set may hold.
pub const MAX_KEYS: usize = 100;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Why a JWKS cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("over {} KiB", MAX_JWKS_BYTES / 1024)]
    TooLarge,
    #[error("not JSON ({0})")]
    Json(String),
    #[error("not a JWKS: expected an object with a \"keys\" array")]
    NotAJwks,
    #[error("{0} keys; at most {MAX_KEYS} are read")]
    TooManyKeys(usize),
    #[error("no usable key ({})", .0.join("; "))]
    NoUsableKey(Vec<String>),
    /// A file's problem, naming the file.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<JwksError>,
    },
}

/// One usable key.
pub struct Key {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it has one: then it verifies only that.
    pub alg: Option<Algorithm>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl Key {
    /// The parsed public key for `alg`, if this key may verify it.
    pub fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, key)| key)
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.verifiers.iter().map(|(a, _)| *a)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Over the usable keys' ids, types, algorithms and material: equal
    /// digests are the same keys (a refresh that changed nothing).
    digest: [u8; 32],
    skipped: Vec<String>,
}

impl KeySet {
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys whose `kid` is `kid`.
    pub fn with_kid<'a: 'b, 'b>(&'a self, kid: &'b str) -> impl Iterator<Item = &'a Key> + 'b {
        self.keys
            .iter()
            .filter(move |k| k.kid.as_deref() == Some(kid))
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The keys left out, each with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Reads a JWKS; `allowed` are the issuer's algorithms.
    pub fn parse(json: &[u8], allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| JwksError::Json(e.to_string()))?;
        let Some(Value::Array(list)) = doc.get("keys") else {
            return Err(JwksError::NotAJwks);
        };
        if list.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(list.len()));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (i, jwk) in list.iter().enumerate() {
            let name = match jwk.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("key {i} ({kid:?})"),
                None => format!("key {i}"),
            };
            let Value::Object(jwk) = jwk else {
                skipped.push(format!("{name}: not a JSON object"));
                continue;
            };
            match parse_key(jwk, allowed) {
                Ok((key, material)) => {
                    ctx.update(key.kid.as_deref().unwrap_or("").as_bytes());
                    ctx.update(&[0, key.kind as u8, key.alg.map_or(0xff, |a| a as u8)]);
                    ctx.update(&(material.len() as u64).to_be_bytes());
                    ctx.update(&material);
                    keys.push(key);
                }
                Err(reason) => skipped.push(format!("{name}: {reason}")),
            }
        }
        if keys.is_empty() {
            if skipped.is_empty() {
                skipped.push("the \"keys\" array is empty".to_owned());
            }
            return Err(JwksError::NoUsableKey(skipped));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        Ok(KeySet {
            keys,
            digest,
            skipped,
        })
    }

    /// Reads a JWKS file (at most [`MAX_JWKS_BYTES`]).
    pub fn load_file(path: &Path, allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        let read = |source| JwksError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_JWKS_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        KeySet::parse(&bytes, allowed).map_err(|e| JwksError::File {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }
}

fn text<'a>(jwk: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field:?} is not a string")),
    }
}

fn bytes(jwk: &Map<String, Value>, field: &str) -> Result<Vec<u8>, String> {
    let value = text(jwk, field)?.ok_or_else(|| format!("no {field:?}"))?;
    decode_b64url(value.as_bytes()).map_err(|e| format!("{field:?} is not base64url ({e})"))
}

/// A key and the bytes of its material (for the set's digest), or why it
/// is left out.
fn parse_key(jwk: &Map<String, Value>, allowed: &[Algorithm]) -> Result<(Key, Vec<u8>), String> {
    let kid = text(jwk, "kid")?.map(str::to_owned);
    match text(jwk, "use")? {
        None | Some("sig") => {}
        Some(other) => return Err(format!("use {other:?}: not a signing key")),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("key_ops does not include \"verify\"".to_owned());
        }
    }
    let kty = text(jwk, "kty")?.ok_or("no \"kty\"")?;
    let (kind, material) = match kty {
        "RSA" => {
            let n = strip_zeros(bytes(jwk, "n")?);
            let e = strip_zeros(bytes(jwk, "e")?);
            let bits = bit_len(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits; at most {MAX_RSA_BITS} are supported"
                ));
            }
            if e.is_empty() {
                return Err("RSA exponent is zero".to_owned());
            }
            (KeyKind::Rsa, Material::Rsa { n, e })
        }
        "EC" => {
            let crv = text(jwk, "crv")?.ok_or("no \"crv\"")?;
            let (kind, len) = match crv {
                "P-256" => (KeyKind::EcP256, 32),
                "P-384" => (KeyKind::EcP384, 48),
                other => {
                    return Err(format!(
                        "EC curve {other:?} is not supported (P-256, P-384)"
                    ))
                }
            };
            let x = bytes(jwk, "x")?;
            let y = bytes(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes each"));
            }
            // The uncompressed point, as aws-lc-rs reads EC public keys.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, Material::Point(point))
        }
        "OKP" => {
            let crv = text(jwk, "crv")?.ok_or("no \"crv\"")?;
            if crv != "Ed25519" {
                return Err(format!("OKP curve {crv:?} is not supported (Ed25519)"));
            }
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".to_owned());
            }
            (KeyKind::Ed25519, Material::Point(x))
        }
        "oct" => {
            return Err("a symmetric key (kty \"oct\"): HMAC is never accepted".to_owned());
        }
        other => return Err(format!("key type {other:?} is not supported")),
    };
    let alg = match text(jwk, "alg")? {
        None => None,
        Some(name) => match Algorithm::parse(name) {
            Ok(alg) if alg.key_kind() != kind => {
                return Err(format!("alg {name} does not fit {kind}"));
            }
            Ok(alg) if !allowed.contains(&alg) => {
                return Err(format!("alg {name} is not among the issuer's algorithms"));
            }
            Ok(alg) => Some(alg),
            Err(_) => {
                return Err(format!(
                    "alg {name:?} is not a signature algorithm this proxy verifies"
                ))
            }
        },
    };
    let algorithms: Vec<Algorithm> = match alg {
        Some(alg) => vec![alg],
        None => allowed
            .iter()
            .copied()
            .filter(|a| a.key_kind() == kind)
            .collect(),
    };
    if algorithms.is_empty() {
        return Err(format!("none of the issuer's algorithms uses {kind}"));
    }
    let mut verifiers = Vec::with_capacity(algorithms.len());
    for alg in algorithms {
        let parsed = match (&material, alg.rsa_parameters()) {
            (Material::Rsa { n, e }, Some(params)) => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(params)
                .map_err(|e| format!("not a valid RSA public key ({e})"))?,
            (Material::Point(point), None) => ParsedPublicKey::new(alg.verification(), point)
                .map_err(|e| format!("not a valid {} public key ({e})", alg.name()))?,
            // Algorithms were chosen by the key's kind above.
            _ => return Err(format!("alg {alg} does not fit {kind}")),
        };
        verifiers.push((alg, parsed));
    }
    Ok((
        Key {
            kid,
            kind,
            alg,
            verifiers,
        },
        material.digest_bytes(),
    ))
}

/// A key's public material.
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An EC point (uncompressed) or an Ed25519 key.
    Point(Vec<u8>),
}

impl Material {
    /// Unambiguous bytes for the set's digest.
    fn digest_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Material::Rsa { n, e } => {
                for part in [n, e] {
                    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    out.extend_from_slice(part);
                }
            }
            Material::Point(point) => out.extend_from_slice(point),
        }
        out
    }
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_keys::{jwks, TestKey};
    use super::*;

    #[test]
    fn every_supported_key_type_loads_with_its_algorithms() {
        let rsa = TestKey::rsa("r1");
        let p256 = TestKey::ec_p256("e1");
        let p384 = TestKey::ec_p384("e2");
        let ed = TestKey::ed25519("o1");
        let set = KeySet::parse(
            jwks(&[rsa.jwk(), p256.jwk(), p384.jwk(), ed.jwk()]).as_bytes(),
            &Algorithm::ALL,
        )
        .unwrap();
        assert!(set.skipped().is_empty(), "{:?}", set.skipped());
        let algs: Vec<Vec<Algorithm>> = set
            .keys()
            .iter()
            .map(|k| k.algorithms().collect())
            .collect();
        assert_eq!(
            algs[0],
            vec![
                Algorithm::Rs256,
                Algorithm::Rs384,
                Algorithm::Rs512,
                Algorithm::Ps256,
                Algorithm::Ps384,
                Algorithm::Ps512
            ]
        );
        assert_eq!(algs[1], vec![Algorithm::Es256]);
        assert_eq!(algs[2], vec![Algorithm::Es384]);
        assert_eq!(algs[3], vec![Algorithm::EdDsa]);
        assert_eq!(set.with_kid("e2").count(), 1);
        assert_eq!(set.with_kid("nope").count(), 0);
    }

    #[test]
    fn a_key_with_alg_verifies_only_that() {
        let mut jwk = TestKey::rsa("r1").jwk();
        jwk["alg"] = "PS256".into();
        let set = KeySet::parse(jwks(&[jwk]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        let key = &set.keys()[0];
        assert_eq!(key.alg, Some(Algorithm::Ps256));
        assert!(key.verifier(Algorithm::Ps256).is_some());
        assert!(key.verifier(Algorithm::Rs256).is_none());
    }

    #[test]
    fn unusable_keys_are_left_out_with_their_reasons() {
        let rsa = TestKey::rsa("good");
        let mut enc = TestKey::rsa("enc").jwk();
        enc["use"] = "enc".into();
        let mut ops = TestKey::ec_p256("ops").jwk();
        ops["key_ops"] = serde_json::json!(["encrypt"]);
        let mut misfit = TestKey::ec_p256("misfit").jwk();
        misfit["alg"] = "RS256".into();
        let mut not_allowed = TestKey::rsa("ps512").jwk();
        not_allowed["alg"] = "PS512".into();
        let mut oaep = TestKey::rsa("oaep").jwk();
        oaep["alg"] = "RSA-OAEP".into();
        let small = TestKey::rsa_1024("small");
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let p521 =
            serde_json::json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"});
        let ed448 = serde_json::json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": "AA"});
        let mut off_curve = TestKey::ec_p256("off").jwk();
        off_curve["y"] = off_curve["x"].clone();
        let set = KeySet::parse(
            jwks(&[
                rsa.jwk(),
                enc,
                ops,
                misfit,
                not_allowed,
                oaep,
                small.jwk(),
                oct,
                p521,
                ed448,
                off_curve,
                serde_json::json!("a string"),
            ])
            .as_bytes(),
            &Algorithm::DEFAULT,
        )
        .unwrap();
        assert_eq!(set.keys().len(), 1);
        let skipped = set.skipped().join("\n");
        for expected in [
            "key 1 (\"enc\"): use \"enc\": not a signing key",
            "key 2 (\"ops\"): key_ops does not include \"verify\"",
            "key 3 (\"misfit\"): alg RS256 does not fit an EC P-256 key",
            "key 4 (\"ps512\"): alg PS512 is not among the issuer's algorithms",
            "key 5 (\"oaep\"): alg \"RSA-OAEP\" is not a signature algorithm",
            "key 6 (\"small\"): RSA modulus of 1024 bits; at least 2048 are required",
            "key 7 (\"hmac\"): a symmetric key (kty \"oct\"): HMAC is never accepted",
            "key 8 (\"p521\"): EC curve \"P-521\" is not supported",
            "key 9 (\"ed448\"): OKP curve \"Ed448\" is not supported",
            "key 10 (\"off\"): not a valid ES256 public key",
            "key 11: not a JSON object",
        ] {
            assert!(
                skipped.contains(expected),
                "{expected:?} not in:\n{skipped}"
            );
        }
    }

    #[test]
    fn a_set_without_usable_keys_or_not_a_jwks_is_an_error() {
        let only_enc = serde_json::json!({"keys": [{"kty": "oct", "k": "AA"}]});
        let err = KeySet::parse(only_enc.to_string().as_bytes(), &Algorithm::DEFAULT).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no usable key (key 0: a symmetric key"),
            "{err}"
        );
        assert_eq!(
            KeySet::parse(br#"{"keys":[]}"#, &Algorithm::DEFAULT)
                .unwrap_err()
                .to_string(),
            "no usable key (the \"keys\" array is empty)"
        );
        assert_eq!(
            KeySet::parse(br#"{"kty":"RSA"}"#, &Algorithm::DEFAULT)
                .unwrap_err()
                .to_string(),
            "not a JWKS: expected an object with a \"keys\" array"
        );
        assert!(KeySet::parse(b"{", &Algorithm::DEFAULT)
            .unwrap_err()
            .to_string()
            .starts_with("not JSON"));
        let many = serde_json::json!({"keys": vec![serde_json::json!({}); MAX_KEYS + 1]});
        assert!(matches!(
            KeySet::parse(many.to_string().as_bytes(), &Algorithm::DEFAULT),
            Err(JwksError::TooManyKeys(101))
        ));
        // RSA keys when the issuer allows only ES256: nothing to verify with.
        let rsa_only = jwks(&[TestKey::rsa("r").jwk()]);
        let err = KeySet::parse(rsa_only.as_bytes(), &[Algorithm::Es256]).unwrap_err();
        assert!(
            err.to_string()
                .contains("none of the issuer's algorithms uses an RSA key"),
            "{err}"
        );
    }

    #[test]
    fn the_digest_tells_a_changed_set() {
        let a = TestKey::rsa("a");
        let b = TestKey::ec_p256("b");
        let one = KeySet::parse(jwks(&[a.jwk()]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        let same = KeySet::parse(jwks(&[a.jwk()]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        let two = KeySet::parse(jwks(&[a.jwk(), b.jwk()]).as_bytes(), &Algorithm::DEFAULT).unwrap();
        assert_eq!(one.digest(), same.digest());
        assert_ne!(one.digest(), two.digest());
    }

    #[test]
    fn a_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let err = KeySet::load_file(&path, &Algorithm::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot read {}", path.display())),
            "{err}"
        );
        std::fs::write(&path, "[]").unwrap();
        let err = KeySet::load_file(&path, &Algorithm::DEFAULT)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: not a JWKS: expected an object with a \"keys\" array",
                path.display()
            )
        );
        std::fs::write(&path, vec![b' '; MAX_JWKS_BYTES + 1]).unwrap();
        let err = KeySet::load_file(&path, &Algorithm::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("over 1024 KiB"), "{err}");
    }

    #[test]
    fn bit_lengths_and_leading_zeros() {
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[0xff]), 8);
        assert_eq!(strip_zeros(vec![0, 0, 5]), vec![5]);
    }
}
