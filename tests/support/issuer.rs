//! A token issuer made at test time: RSA-2048 and EC P-256 keys (aws-lc-rs),
//! tokens signed with them (and the bad ones the tests need, built by hand),
//! their JWKS, and a small https server on loopback (hyper HTTP/1.1 behind
//! rustls, with the test PKI's server certificate) that serves the JWKS and
//! an OpenID discovery document, whose key set a test can replace while it
//! runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::pki::TestPki;

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// base64url without padding (RFC 7515 section 2).
pub fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
}

/// A signing key with its key id.
pub struct Key {
    pub kid: String,
    pair: Pair,
}

impl Key {
    pub fn rsa(kid: &str) -> Key {
        Key {
            kid: kid.to_owned(),
            pair: Pair::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap()),
        }
    }

    pub fn ec(kid: &str) -> Key {
        Key {
            kid: kid.to_owned(),
            pair: Pair::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()),
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS256",
            Pair::Ec(_) => "ES256",
        }
    }

    /// The DER RSAPublicKey (RSA keys only).
    pub fn rsa_public_der(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(kp) => kp.public_key().as_ref().to_vec(),
            Pair::Ec(_) => panic!("not an RSA key"),
        }
    }

    /// The public key as a JWK with `kid` and `use = "sig"`.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(kp) => {
                let (n, e) = rsa_numbers(kp.public_key().as_ref());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(n), "e": b64(e)})
            }
            Pair::Ec(kp) => {
                // An uncompressed point: 0x04, x, y.
                let point = kp.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    /// `header.claims` signed by this key (with its own algorithm, whatever
    /// `header` says).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Pair::Ec(kp) => kp.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A token of this key's algorithm and kid with `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// `n` and `e` of a DER RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e },
/// leading zero bytes removed.
fn rsa_numbers(der: &[u8]) -> (&[u8], &[u8]) {
    /// One TLV: (its value, what follows it).
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
    let (seq, _) = tlv(der, 0x30);
    let (n, rest) = tlv(seq, 0x02);
    let (e, _) = tlv(rest, 0x02);
    let trim = |v: &[u8]| -> usize { v.iter().take_while(|b| **b == 0).count() };
    (&n[trim(n)..], &e[trim(e)..])
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Standard claims of a good token: `iss`, `sub`, `aud`, issued now, for
/// ten minutes.
pub fn claims(iss: &str, sub: &str, aud: &str) -> Value {
    let now = now();
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + 600})
}

/// The https server of an issuer: `/jwks.json` and
/// `/.well-known/openid-configuration` on a loopback port.
pub struct IssuerServer {
    /// `https://127.0.0.1:PORT`: the issuer URL (`iss`) and the base of
    /// both documents.
    pub url: String,
    jwks: Arc<Mutex<String>>,
    fetches: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl IssuerServer {
    /// Serves `jwks` with the test PKI's server certificate (clients trust
    /// `pki.ca`).
    pub async fn start(pki: &TestPki, jwks: String) -> IssuerServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("https://127.0.0.1:{}", addr.port());
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let jwks = Arc::new(Mutex::new(jwks));
        let fetches = Arc::new(Mutex::new(0));
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })
        .to_string();
        let task = {
            let (jwks, fetches) = (jwks.clone(), fetches.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let (acceptor, jwks, fetches, discovery) = (
                        acceptor.clone(),
                        jwks.clone(),
                        fetches.clone(),
                        discovery.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| {
                                let body = match req.uri().path() {
                                    "/jwks.json" => {
                                        *fetches.lock().unwrap() += 1;
                                        Some(jwks.lock().unwrap().clone())
                                    }
                                    "/.well-known/openid-configuration" => Some(discovery.clone()),
                                    _ => None,
                                };
                                let resp = match body {
                                    Some(b) => http::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(b))),
                                    None => http::Response::builder()
                                        .status(404)
                                        .body(Full::new(Bytes::new())),
                                };
                                async move { resp }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        IssuerServer {
            url,
            jwks,
            fetches,
            task,
        }
    }

    /// Serves another key set from now on (a rotation at the issuer).
    pub fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        *self.fetches.lock().unwrap()
    }
}

impl Drop for IssuerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
