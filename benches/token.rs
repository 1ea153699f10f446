//! Bearer token verification, measured: the per-call cost with a token the
//! proxy has verified before (taken from the `authorization` header, looked
//! up in the cache by its SHA-256), and a first verification (parse,
//! signature, claims, cache insert) with RSA 2048 (RS256) and P-256
//! (ES256). `cargo bench --bench token`.
//!
//! The keys and tokens are made here with aws-lc-rs, as the test issuer
//! (tests/support/issuer.rs) makes them; the JWKS is parsed by the proxy's
//! own `KeySet::parse`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use temporal_mtls_proxy::internals::{
    bearer_token, Algorithm, IssuerConfig, KeySet, KeySource, Tokens, TokensConfig,
};

const ISS: &str = "https://kubernetes.default.svc.cluster.local";

/// base64url without padding (RFC 7515 section 2).
fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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

/// The value of one DER TLV with `tag` at the start of `der`, and what
/// follows it (lengths up to two bytes: enough for an RSA 2048 key).
fn tlv(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(der[0], tag, "unexpected DER tag");
    let (len, at) = match der[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (der[2] as usize, 3),
        0x82 => (((der[2] as usize) << 8) | der[3] as usize, 4),
        other => panic!("DER length form {other:#x}"),
    };
    (&der[at..at + len], &der[at + len..])
}

fn unsigned(v: &[u8]) -> &[u8] {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    &v[zeros..]
}

enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
}

impl Signer {
    fn rsa2048() -> Signer {
        Signer::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("RSA key"))
    }

    fn p256() -> Signer {
        Signer::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    /// The public key as a JWK.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Rsa(kp) => {
                // RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
                let (seq, _) = tlv(kp.public_key().as_ref(), 0x30);
                let (n, rest) = tlv(seq, 0x02);
                let (e, _) = tlv(rest, 0x02);
                json!({"kty": "RSA", "kid": kid, "use": "sig",
                       "n": b64(unsigned(n)), "e": b64(unsigned(e))})
            }
            Signer::Ec(kp) => {
                // An uncompressed point: 0x04, x, y.
                let point = kp.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }

    fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signature");
                sig
            }
            Signer::Ec(kp) => kp
                .sign(&rng, input.as_bytes())
                .expect("EC signature")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// Claims as a Kubernetes projected service-account token has them (a
/// nested claim, as rules match), valid for ten minutes.
fn claims() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "iss": ISS,
        "sub": "system:serviceaccount:payments:worker",
        "aud": ["temporal"],
        "iat": now, "nbf": now, "exp": now + 600,
        "kubernetes.io": {
            "namespace": "payments",
            "serviceaccount": {"name": "worker", "uid": "7c1e3f5a-0d2b-4e8f-9a6c-2b4d6f8a0c1e"},
            "pod": {"name": "worker-5d8f7c9b6-x2x7q", "uid": "0b9d7e5c-3a1f-4c2e-8d6b-9f1a3c5e7b2d"},
        },
    })
}

/// One issuer with both keys in a JWKS "file" (parsed, not read: the bench
/// touches no disk).
fn config(rsa: &Signer, ec: &Signer) -> TokensConfig {
    let jwks = json!({"keys": [rsa.jwk("r1"), ec.jwk("e1")]}).to_string();
    let keys = KeySet::parse(jwks.as_bytes(), &Algorithm::DEFAULT).expect("JWKS");
    let source = KeySource::File {
        path: "cluster-jwks.json".into(),
        keys: Arc::new(keys),
    };
    TokensConfig {
        issuers: vec![IssuerConfig::new("cluster", ISS, &["temporal"], source)],
        forward: false,
    }
}

fn bench(c: &mut Criterion) {
    let (rsa, ec) = (Signer::rsa2048(), Signer::p256());
    let config = config(&rsa, &ec);
    let rs256 = rsa.token("r1", &claims());
    let es256 = ec.token("e1", &claims());
    let now = SystemTime::now();

    // (a) Every call after the first with the same token: the header read,
    // the digest, the cache lookup.
    let tokens = Tokens::from_config(&config);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {rs256}").parse().expect("header value"),
    );
    tokens
        .verify(rs256.as_bytes(), now)
        .expect("RS256 verifies");
    let name = format!("cached token (RS256, {} bytes), per call", rs256.len());
    c.bench_function(&name, |b| {
        b.iter(|| {
            let token = bearer_token(black_box(&headers))
                .expect("one bearer header")
                .expect("a token");
            black_box(tokens.verify(token, now).expect("cached"))
        })
    });

    // (b) A token the proxy has not seen: a verifier with an empty cache
    // each time (made outside the timed part).
    for (name, token) in [
        ("first verification, RSA 2048 (RS256)", &rs256),
        ("first verification, P-256 (ES256)", &es256),
    ] {
        c.bench_function(name, |b| {
            b.iter_batched(
                || Tokens::from_config(&config),
                |tokens| {
                    let verified = tokens.verify(black_box(token.as_bytes()), now);
                    // Dropped outside the timed part, with the verifier.
                    (verified.expect("verifies"), tokens)
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
