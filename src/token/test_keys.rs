//! Keys made at test time and tokens signed with them, for the unit tests
//! of this module (the integration tests have their own issuer,
//! `tests/support/issuer.rs`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaEncoding, RsaKeyPair,
};
use serde_json::{json, Value};

use super::alg::Algorithm;
use super::jwt::encode_b64url;

pub(super) enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub(super) struct TestKey {
    pub kid: String,
    /// What [`TestKey::token`] signs with.
    pub alg: Algorithm,
    pub signer: Signer,
}

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::Rs256,
            signer: Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
        }
    }

    pub fn ec_p256(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::Es256,
            signer: Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            ),
        }
    }

    pub fn ec_p384(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::Es384,
            signer: Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            ),
        }
    }

    pub fn ed25519(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDsa,
            signer: Signer::Ed(Ed25519KeyPair::generate().unwrap()),
        }
    }

    /// A 1024-bit RSA JWK (aws-lc-rs does not generate keys that small; the
    /// modulus only has to look like one, it is refused for its size).
    pub fn rsa_1024(kid: &str) -> FakeJwk {
        let mut n = vec![0xc5u8; 128];
        n[127] |= 1;
        FakeJwk(json!({"kty": "RSA", "kid": kid, "n": encode_b64url(&n), "e": "AQAB"}))
    }

    /// The public key as a JWK (no `alg`, no `use`).
    pub fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(kp) => {
                let (n, e) = rsa_public_numbers(kp.public_key().as_ref());
                json!({
                    "kty": "RSA",
                    "kid": self.kid,
                    "n": encode_b64url(n),
                    "e": encode_b64url(e),
                })
            }
            Signer::Ec(kp) => {
                let point = kp.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if len == 32 { "P-256" } else { "P-384" };
                json!({
                    "kty": "EC",
                    "kid": self.kid,
                    "crv": crv,
                    "x": encode_b64url(&point[1..1 + len]),
                    "y": encode_b64url(&point[1 + len..]),
                })
            }
            Signer::Ed(kp) => json!({
                "kty": "OKP",
                "kid": self.kid,
                "crv": "Ed25519",
                "x": encode_b64url(kp.public_key().as_ref()),
            }),
        }
    }

    /// The signature of `input` with `alg` (which must fit the key).
    pub fn signature(&self, alg: Algorithm, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(kp) => {
                let encoding: &'static dyn RsaEncoding = match alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::Rs512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::Ps256 => &signature::RSA_PSS_SHA256,
                    Algorithm::Ps384 => &signature::RSA_PSS_SHA384,
                    Algorithm::Ps512 => &signature::RSA_PSS_SHA512,
                    other => panic!("{other} with an RSA key"),
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(encoding, &rng, input, &mut sig).unwrap();
                sig
            }
            Signer::Ec(kp) => kp.sign(&rng, input).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(input).as_ref().to_vec(),
        }
    }

    /// A token with `header` and `claims` exactly, signed with `alg`.
    pub fn sign(&self, alg: Algorithm, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            encode_b64url(header.to_string().as_bytes()),
            encode_b64url(claims.to_string().as_bytes())
        );
        let sig = self.signature(alg, input.as_bytes());
        format!("{input}.{}", encode_b64url(&sig))
    }

    /// A token of this key's algorithm and kid with `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            self.alg,
            &json!({"alg": self.alg.name(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// `n` and `e` of a DER RSAPublicKey (RFC 8017 A.1.1: a SEQUENCE of two
/// INTEGERs), without leading zeros.
fn rsa_public_numbers(der: &[u8]) -> (&[u8], &[u8]) {
    fn item(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag);
        let (len, start) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            n => {
                let count = usize::from(n & 0x7f);
                let len = der[2..2 + count]
                    .iter()
                    .fold(0, |acc, b| (acc << 8) | usize::from(*b));
                (len, 2 + count)
            }
        };
        (&der[start..start + len], &der[start + len..])
    }
    let (seq, _) = item(der, 0x30);
    let (n, rest) = item(seq, 0x02);
    let (e, _) = item(rest, 0x02);
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    let e = &e[e.iter().take_while(|b| **b == 0).count()..];
    (n, e)
}

/// A JWK that only has to be parsed, never used.
pub(super) struct FakeJwk(Value);

impl FakeJwk {
    pub fn jwk(&self) -> Value {
        self.0.clone()
    }
}

/// A JWKS document of `keys`.
pub(super) fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A token "signed" with HS256, `secret` as the HMAC key.
pub(super) fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        encode_b64url(header.to_string().as_bytes()),
        encode_b64url(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", encode_b64url(tag.as_ref()))
}

/// An unsigned token (`alg: none`, empty signature).
pub(super) fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        encode_b64url(json!({"alg": "none"}).to_string().as_bytes()),
        encode_b64url(claims.to_string().as_bytes())
    )
}
