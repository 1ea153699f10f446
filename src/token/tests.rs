//! The verifier as the call path uses it: issuer by `iss`, the cache, key
//! changes, file reloads, readiness.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::test_keys::{jwks, TestKey};
use super::*;

const NOW: u64 = 1_796_119_200; // 2026-12-01T10:00:00Z

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn claims(iss: &str, sub: &str, exp: u64) -> Value {
    json!({"iss": iss, "sub": sub, "aud": ["temporal"], "iat": NOW - 10, "exp": exp})
}

fn write_jwks(path: &Path, keys: &[&TestKey]) {
    let doc = jwks(&keys.iter().map(|k| k.jwk()).collect::<Vec<_>>());
    std::fs::write(path, doc).unwrap();
}

fn file_issuer(name: &str, iss: &str, path: &Path) -> IssuerConfig {
    let keys = Arc::new(KeySet::load_file(path, &Algorithm::DEFAULT).unwrap());
    IssuerConfig::new(
        name,
        iss,
        &["temporal"],
        KeySource::File {
            path: path.to_owned(),
            keys,
        },
    )
}

struct Setup {
    dir: tempfile::TempDir,
    cluster: TestKey,
    github: TestKey,
    tokens: Tokens,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestKey::rsa("c1");
    let github = TestKey::ec_p256("g1");
    write_jwks(&dir.path().join("cluster.json"), &[&cluster]);
    write_jwks(&dir.path().join("github.json"), &[&github]);
    let config = TokensConfig {
        issuers: vec![
            file_issuer(
                "cluster",
                "https://kubernetes.default.svc",
                &dir.path().join("cluster.json"),
            ),
            file_issuer(
                "github",
                "https://token.actions.githubusercontent.com",
                &dir.path().join("github.json"),
            ),
        ],
        forward: false,
    };
    let tokens = Tokens::from_config(&config);
    Setup {
        dir,
        cluster,
        github,
        tokens,
    }
}

#[test]
fn each_token_is_verified_by_the_issuer_its_iss_names() {
    let s = setup();
    let t = s.cluster.token(&claims(
        "https://kubernetes.default.svc",
        "system:serviceaccount:payments:worker",
        NOW + 600,
    ));
    let verified = s.tokens.verify(t.as_bytes(), at(NOW)).unwrap();
    assert_eq!(&*verified.issuer, "cluster");
    assert_eq!(verified.sub, "system:serviceaccount:payments:worker");
    assert_eq!(verified.claim("aud"), ["temporal"]);

    let t = s.github.token(&claims(
        "https://token.actions.githubusercontent.com",
        "repo:acme/app:ref:refs/heads/main",
        NOW + 600,
    ));
    assert_eq!(
        &*s.tokens.verify(t.as_bytes(), at(NOW)).unwrap().issuer,
        "github"
    );

    // The cluster's key under the github issuer's name: github's keys do
    // not know it.
    let t = s.cluster.token(&claims(
        "https://token.actions.githubusercontent.com",
        "x",
        NOW + 600,
    ));
    assert_eq!(
        s.tokens
            .verify(t.as_bytes(), at(NOW))
            .unwrap_err()
            .to_string(),
        "unknown key id \"c1\" for issuer \"github\""
    );
    let t = s
        .cluster
        .token(&claims("https://evil.example", "x", NOW + 600));
    assert_eq!(
        s.tokens
            .verify(t.as_bytes(), at(NOW))
            .unwrap_err()
            .to_string(),
        "issuer \"https://evil.example\" not configured"
    );
    let t = s
        .cluster
        .token(&json!({"sub": "x", "aud": "temporal", "exp": NOW + 60}));
    assert_eq!(
        s.tokens
            .verify(t.as_bytes(), at(NOW))
            .unwrap_err()
            .to_string(),
        "token has no \"iss\" claim"
    );
    assert!(s.tokens.ready().is_ok());
    assert!(!s.tokens.forward());
    assert_eq!(
        s.tokens.issuer_names().map(|n| &**n).collect::<Vec<_>>(),
        ["cluster", "github"]
    );
}

#[test]
fn a_cached_token_is_the_same_verification_until_it_expires() {
    let s = setup();
    let t = s.cluster.token(&claims(
        "https://kubernetes.default.svc",
        "worker",
        NOW + 600,
    ));
    let first = s.tokens.verify(t.as_bytes(), at(NOW)).unwrap();
    let again = s.tokens.verify(t.as_bytes(), at(NOW + 1)).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second call is a cache hit"
    );
    assert_eq!(s.tokens.cached(), 1);
    // Within the clock skew after exp: still good.
    assert!(s.tokens.verify(t.as_bytes(), at(NOW + 660)).is_ok());
    // Past it: refused, although it was verified.
    assert_eq!(
        s.tokens
            .verify(t.as_bytes(), at(NOW + 661))
            .unwrap_err()
            .to_string(),
        "token expired at 2026-12-01T10:10:00Z"
    );
    assert_eq!(s.tokens.cached(), 0);
    assert!(s.tokens.verify(t.as_bytes(), at(NOW + 661)).is_err());
}

#[test]
fn a_refused_token_is_not_cached() {
    let s = setup();
    let mut c = claims("https://kubernetes.default.svc", "worker", NOW + 600);
    c["aud"] = "vault".into();
    let t = s.cluster.token(&c);
    for _ in 0..2 {
        assert_eq!(
            s.tokens
                .verify(t.as_bytes(), at(NOW))
                .unwrap_err()
                .to_string(),
            "audience \"vault\" not accepted"
        );
    }
    assert_eq!(s.tokens.cached(), 0);
    let long = vec![b'a'; MAX_TOKEN_LEN + 1];
    assert_eq!(
        s.tokens.verify(&long, at(NOW)).unwrap_err().kind(),
        "too_long"
    );
}

#[test]
fn a_reloaded_file_brings_a_new_kid_and_retires_a_removed_key() {
    let s = setup();
    let path = s.dir.path().join("cluster.json");
    let next = TestKey::rsa("c2");
    let old = s.cluster.token(&claims(
        "https://kubernetes.default.svc",
        "worker",
        NOW + 600,
    ));
    let new = next.token(&claims(
        "https://kubernetes.default.svc",
        "worker",
        NOW + 600,
    ));
    assert!(s.tokens.verify(old.as_bytes(), at(NOW)).is_ok());
    assert!(s.tokens.verify(new.as_bytes(), at(NOW)).is_err());

    // Rotation: both keys published.
    write_jwks(&path, &[&s.cluster, &next]);
    let reloads = s.tokens.reload();
    assert_eq!(reloads.len(), 2);
    assert_eq!(reloads[0].outcome, Ok(true));
    assert_eq!(
        reloads[1].outcome,
        Ok(false),
        "github's file did not change"
    );
    assert!(s.tokens.verify(new.as_bytes(), at(NOW)).is_ok());
    assert!(s.tokens.verify(old.as_bytes(), at(NOW)).is_ok());

    // The old key retired: its cached token is verified again, and refused.
    write_jwks(&path, &[&next]);
    s.tokens.reload();
    assert_eq!(
        s.tokens
            .verify(old.as_bytes(), at(NOW))
            .unwrap_err()
            .to_string(),
        "unknown key id \"c1\" for issuer \"cluster\""
    );
    assert!(s.tokens.verify(new.as_bytes(), at(NOW)).is_ok());

    // A broken file keeps the keys in force, and says why.
    std::fs::write(&path, "{").unwrap();
    let reloads = s.tokens.reload();
    let err = reloads[0].outcome.clone().unwrap_err();
    assert!(err.contains("not JSON"), "{err}");
    assert!(s.tokens.verify(new.as_bytes(), at(NOW)).is_ok());
    let status = &s.tokens.status()[0];
    assert_eq!(status.keys, 1);
    assert_eq!(status.fetch_failures, 1);
}

#[test]
fn an_issuer_without_keys_is_not_ready_and_refuses_its_tokens() {
    let config = TokensConfig {
        issuers: vec![IssuerConfig::new(
            "gh",
            "https://token.actions.githubusercontent.com",
            &["temporal"],
            KeySource::Url("https://token.actions.githubusercontent.com/.well-known/jwks".into()),
        )],
        forward: true,
    };
    let tokens = Tokens::from_config(&config);
    assert!(tokens.forward());
    assert_eq!(
        tokens.ready().unwrap_err(),
        "token issuer \"gh\": not fetched yet"
    );
    let key = TestKey::rsa("k");
    let t = key.token(&claims(
        "https://token.actions.githubusercontent.com",
        "x",
        NOW + 60,
    ));
    assert_eq!(
        tokens
            .verify(t.as_bytes(), at(NOW))
            .unwrap_err()
            .to_string(),
        "no keys for issuer \"gh\" yet (not fetched yet)"
    );
}

#[tokio::test]
async fn an_unknown_kid_asks_for_one_early_fetch_and_waiting_is_bounded() {
    tokio::time::pause();
    let config = TokensConfig {
        issuers: vec![IssuerConfig::new(
            "remote",
            "https://issuer.example",
            &["temporal"],
            KeySource::Url("https://127.0.0.1:1/jwks".into()),
        )],
        forward: false,
    };
    let tokens = Tokens::from_config(&config);
    let issuer = &tokens.issuers[0];
    let key = TestKey::ec_p256("known");
    let set = jwks(&[key.jwk()]);
    issuer.keys.install(
        Arc::new(KeySet::parse(set.as_bytes(), &Algorithm::DEFAULT).unwrap()),
        "test",
    );
    let stranger = TestKey::ec_p256("new");
    let t = stranger.token(&claims("https://issuer.example", "x", NOW + 60));
    // No refresh loop runs: the wait ends at its bound, and the token is
    // refused with the reason.
    let err = tokens
        .verify_waiting(t.as_bytes(), at(NOW))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key id \"new\" for issuer \"remote\""
    );
    assert_eq!(tokens.status()[0].early_refetches, 1);
    // More unknown kids within 30 s ask for nothing more (one is pending).
    for _ in 0..10 {
        assert!(tokens.verify(t.as_bytes(), at(NOW)).is_err());
    }
    assert_eq!(tokens.status()[0].early_refetches, 1);
}
