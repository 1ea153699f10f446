//! Validation of `[tokens]`, `[[tokens.issuer]]` and `tls.client_certificate`
//! into a [`token::TokensConfig`](crate::token::TokensConfig): every problem
//! named by its key (`tokens.issuer[0].audiences`; issuers are numbered from
//! 0 in file order). JWKS files and `jwks_ca` bundles are read and checked
//! here, like certificates; nothing is fetched (a config check needs no
//! network): `jwks_url` and discovery issuers are only checked for form.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::problems::{resolve, Problems};
use super::raw::{RawIssuer, RawTokens};
use super::ClientCertificate;
use crate::tls::material;
use crate::token::{Algorithm, AlgorithmRefusal, IssuerConfig, KeySet, KeySource, TokensConfig};

/// The most a clock may be off.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// The least time between fetches: issuers serve many clients.
const MIN_REFRESH: Duration = Duration::from_secs(10);

pub(super) fn validate_tokens(
    p: &mut Problems,
    raw: Option<RawTokens>,
    base: &Path,
) -> Option<TokensConfig> {
    let raw = raw?;
    let raw_issuers = raw.issuer.unwrap_or_default();
    if raw_issuers.is_empty() {
        p.add(
            "tokens.issuer",
            "no issuers: add [[tokens.issuer]] tables, or remove [tokens]",
        );
    }
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut iss_seen: Vec<(String, usize)> = Vec::new();
    for (i, raw_issuer) in raw_issuers.into_iter().enumerate() {
        let key = format!("tokens.issuer[{i}]");
        if let Some(name) = &raw_issuer.name {
            if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
                p.add(
                    &format!("{key}.name"),
                    format!("{name:?} is also the name of tokens.issuer[{first}]"),
                );
            }
            names.push((name.clone(), i));
        }
        if let Some(iss) = &raw_issuer.issuer {
            if let Some((_, first)) = iss_seen.iter().find(|(s, _)| s == iss) {
                p.add(
                    &format!("{key}.issuer"),
                    format!("{iss:?} is also the issuer of tokens.issuer[{first}]: a token's iss must pick one issuer"),
                );
            }
            iss_seen.push((iss.clone(), i));
        }
        if let Some(issuer) = validate_issuer(p, &key, raw_issuer, base) {
            issuers.push(issuer);
        }
    }
    Some(TokensConfig {
        issuers,
        forward: raw.forward.unwrap_or(false),
    })
}

/// A name rules, audit lines and the identity header can carry as is.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An `https://host...` URL, or why not.
fn https_url(text: &str) -> Result<(), String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => {
            return Err(format!(
                "{text:?} is http://: keys must be fetched over TLS (https://)"
            ))
        }
        _ => return Err(format!("{text:?} is not an https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}

fn validate_issuer(
    p: &mut Problems,
    key: &str,
    raw: RawIssuer,
    base: &Path,
) -> Option<IssuerConfig> {
    let before = p.len();
    let k = |field: &str| format!("{key}.{field}");

    let name = match raw.name {
        None => {
            p.required(&k("name"), None::<String>);
            None
        }
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            p.add(
                &k("name"),
                format!("{n:?}: use 1 to 64 letters, digits, '-', '_' or '.' (rules and audit lines name the issuer by it)"),
            );
            None
        }
    };
    let discovery = raw.discovery.unwrap_or(false);
    let issuer = match raw.issuer {
        None => {
            p.required(&k("issuer"), None::<String>);
            None
        }
        Some(iss) if iss.is_empty() => {
            p.add(
                &k("issuer"),
                "must not be empty: the iss of the issuer's tokens",
            );
            None
        }
        Some(iss) => {
            if discovery {
                if let Err(e) = https_url(&iss) {
                    p.add(
                        &k("issuer"),
                        format!("{e}; with discovery = true it must be the https:// URL the discovery document is read from"),
                    );
                }
            }
            Some(iss)
        }
    };
    let audiences = match raw.audiences {
        None => {
            p.add(
                &k("audiences"),
                "is required: the audiences a token must be issued for (its aud), e.g. [\"temporal\"]",
            );
            Vec::new()
        }
        Some(list) if list.is_empty() => {
            p.add(
                &k("audiences"),
                "must not be empty: a token is accepted only for one of these audiences (its aud)",
            );
            Vec::new()
        }
        Some(list) => {
            if list.iter().any(String::is_empty) {
                p.add(&k("audiences"), "an audience must not be empty");
            }
            list
        }
    };

    let algorithms = match raw.algorithms {
        None => Algorithm::DEFAULT.to_vec(),
        Some(list) if list.is_empty() => {
            p.add(
                &k("algorithms"),
                "must not be empty (leave it out for the default: RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)",
            );
            Vec::new()
        }
        Some(list) => {
            let mut algorithms = Vec::new();
            for name in &list {
                match Algorithm::parse(name) {
                    Ok(alg) => {
                        if !algorithms.contains(&alg) {
                            algorithms.push(alg);
                        }
                    }
                    Err(refusal) => {
                        let why = match refusal {
                            AlgorithmRefusal::Unsigned => {
                                "is never accepted: an unsigned token proves nothing"
                            }
                            AlgorithmRefusal::Hmac => {
                                "is never accepted: HMAC needs a shared secret, and with a public key as the secret anyone could sign"
                            }
                            AlgorithmRefusal::Unknown => {
                                "is not supported; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
                            }
                        };
                        p.add(&k("algorithms"), format!("{name:?} {why}"));
                    }
                }
            }
            algorithms
        }
    };

    let clock_skew = match raw.clock_skew.as_deref() {
        None => crate::token::DEFAULT_CLOCK_SKEW,
        Some("0" | "0s") => Duration::ZERO,
        Some(text) => {
            let d = p.duration(
                &k("clock_skew"),
                Some(text),
                crate::token::DEFAULT_CLOCK_SKEW,
            );
            if d > MAX_CLOCK_SKEW {
                p.add(&k("clock_skew"), format!("{text:?} is more than 1h"));
            }
            d
        }
    };
    let max_lifetime = p.duration(
        &k("max_lifetime"),
        raw.max_lifetime.as_deref(),
        crate::token::DEFAULT_MAX_LIFETIME,
    );

    // Exactly one source of keys.
    let sources: Vec<&str> = [
        ("jwks", raw.jwks.is_some()),
        ("jwks_url", raw.jwks_url.is_some()),
        ("discovery = true", discovery),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    let fetched = raw.jwks.is_none() && (raw.jwks_url.is_some() || discovery);
    match sources.len() {
        0 => p.add(
            key,
            "has no keys: set one of jwks (a JWKS file), jwks_url (fetched over https) or discovery = true (the issuer's OpenID discovery document)",
        ),
        1 => {}
        _ => p.add(
            key,
            format!(
                "{} are {} set; use exactly one source of keys",
                sources.join(" and "),
                if sources.len() == 2 { "both" } else { "all" }
            ),
        ),
    }
    let refresh = match raw.refresh.as_deref() {
        None => crate::token::DEFAULT_REFRESH,
        Some(text) => {
            if !fetched {
                p.add(
                    &k("refresh"),
                    "only applies to jwks_url or discovery (a jwks file is read again when it changes)",
                );
            }
            let d = p.duration(&k("refresh"), Some(text), crate::token::DEFAULT_REFRESH);
            if d < MIN_REFRESH {
                p.add(&k("refresh"), format!("{text:?} is less than 10s"));
            }
            d
        }
    };
    let jwks_ca = match raw.jwks_ca {
        None => None,
        Some(ca) => {
            if !fetched {
                p.add(
                    &k("jwks_ca"),
                    "only applies to jwks_url or discovery (the CA of the https fetches)",
                );
            }
            let path = resolve(base, &ca);
            p.load(&k("jwks_ca"), material::load_ca_bundle(&path))
                .map(|roots| (path, Arc::new(roots)))
        }
    };
    let source = match (raw.jwks, raw.jwks_url) {
        (Some(file), None) if !discovery => {
            let path = resolve(base, &file);
            if algorithms.is_empty() {
                None
            } else {
                p.load(&k("jwks"), KeySet::load_file(&path, &algorithms))
                    .map(|keys| KeySource::File {
                        path,
                        keys: Arc::new(keys),
                    })
            }
        }
        (None, Some(url)) if !discovery => match https_url(&url) {
            Ok(()) => Some(KeySource::Url(url)),
            Err(e) => {
                p.add(&k("jwks_url"), e);
                None
            }
        },
        (None, None) if discovery => Some(KeySource::Discovery),
        _ => None,
    };

    if p.len() != before {
        return None;
    }
    Some(IssuerConfig {
        name: Arc::from(name?),
        issuer: issuer?,
        audiences,
        source: source?,
        jwks_ca,
        algorithms,
        clock_skew,
        max_lifetime,
        refresh,
    })
}

/// `tls.client_certificate`: "required" (default) or "optional", which
/// needs token issuers (a connection without a certificate may only make
/// calls with a valid token).
pub(super) fn validate_client_certificate(
    p: &mut Problems,
    raw: Option<&str>,
    tokens: Option<&TokensConfig>,
) -> ClientCertificate {
    match raw {
        None | Some("required") => ClientCertificate::Required,
        Some("optional") => {
            if tokens.is_none_or(|t| t.issuers.is_empty()) {
                p.add(
                    "tls.client_certificate",
                    "\"optional\" needs [[tokens.issuer]]: a connection without a certificate may only make calls that carry a valid token",
                );
            }
            ClientCertificate::Optional
        }
        Some(other) => {
            p.add(
                "tls.client_certificate",
                format!("{other:?} is not supported; use \"required\" or \"optional\""),
            );
            ClientCertificate::Required
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw::RawConfig;
    use super::*;

    /// The problems of a `[tokens]` text, as "key: message" lines.
    fn check(text: &str, base: &Path) -> (Option<TokensConfig>, Vec<String>) {
        let raw: RawConfig = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let tokens = validate_tokens(&mut p, raw.tokens, base);
        let client = raw.tls.and_then(|t| t.client_certificate);
        validate_client_certificate(&mut p, client.as_deref(), tokens.as_ref());
        (tokens, p.0.iter().map(ToString::to_string).collect())
    }

    fn jwks_file(dir: &Path) -> std::path::PathBuf {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let point = aws_lc_rs::signature::KeyPair::public_key(&key)
            .as_ref()
            .to_vec();
        let b64 = |b: &[u8]| {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut bits = 0u32;
            let mut n = 0;
            let mut out = String::new();
            for byte in b {
                bits = (bits << 8) | u32::from(*byte);
                n += 8;
                while n >= 6 {
                    n -= 6;
                    out.push(char::from(A[((bits >> n) & 63) as usize]));
                }
            }
            if n > 0 {
                out.push(char::from(A[((bits << (6 - n)) & 63) as usize]));
            }
            out
        };
        let doc = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        }]});
        let path = dir.join("cluster-jwks.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        path
    }

    #[test]
    fn a_complete_config_with_every_source() {
        let dir = tempfile::tempdir().unwrap();
        jwks_file(dir.path());
        let (tokens, problems) = check(
            r#"
            [tls]
            client_certificate = "optional"
            [tokens]
            forward = true
            [[tokens.issuer]]
            name = "cluster"
            issuer = "https://kubernetes.default.svc.cluster.local"
            audiences = ["temporal"]
            jwks = "cluster-jwks.json"
            algorithms = ["ES256", "RS256", "ES256"]
            clock_skew = "0s"
            max_lifetime = "1h"
            [[tokens.issuer]]
            name = "github"
            issuer = "https://token.actions.githubusercontent.com"
            audiences = ["temporal", "temporal-prod"]
            jwks_url = "https://token.actions.githubusercontent.com/.well-known/jwks"
            refresh = "10m"
            [[tokens.issuer]]
            name = "gcp"
            issuer = "https://accounts.google.com"
            audiences = ["temporal"]
            discovery = true
            "#,
            dir.path(),
        );
        assert!(problems.is_empty(), "{problems:#?}");
        let tokens = tokens.unwrap();
        assert!(tokens.forward);
        let [cluster, github, gcp] = &tokens.issuers[..] else {
            panic!("three issuers")
        };
        assert_eq!(&*cluster.name, "cluster");
        assert_eq!(cluster.algorithms, [Algorithm::Es256, Algorithm::Rs256]);
        assert_eq!(cluster.clock_skew, Duration::ZERO);
        assert_eq!(cluster.max_lifetime, Duration::from_secs(3600));
        assert_eq!(
            cluster.source.file(),
            Some(dir.path().join("cluster-jwks.json").as_path())
        );
        assert!(matches!(&github.source, KeySource::Url(u) if u.ends_with("/jwks")));
        assert_eq!(github.refresh, Duration::from_secs(600));
        assert_eq!(github.algorithms, Algorithm::DEFAULT);
        assert!(matches!(gcp.source, KeySource::Discovery));
        assert_eq!(gcp.clock_skew, crate::token::DEFAULT_CLOCK_SKEW);
        assert_eq!(gcp.max_lifetime, crate::token::DEFAULT_MAX_LIFETIME);
        assert_eq!(gcp.refresh, crate::token::DEFAULT_REFRESH);
    }

    #[test]
    fn every_problem_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (_, problems) = check(
            r#"
            [tls]
            client_certificate = "sometimes"
            [[tokens.issuer]]
            name = "cluster"
            issuer = "https://kubernetes.default.svc"
            audiences = []
            jwks = "missing.json"
            jwks_url = "https://issuer.example/jwks"
            algorithms = ["none", "HS256", "ES512", "RS256"]
            [[tokens.issuer]]
            name = "cluster"
            issuer = "https://kubernetes.default.svc"
            [[tokens.issuer]]
            name = "bad name!"
            issuer = "kubernetes"
            audiences = ["temporal"]
            discovery = true
            refresh = "1s"
            jwks_ca = "missing-ca.pem"
            [[tokens.issuer]]
            name = "plain"
            issuer = "https://issuer.example"
            audiences = ["temporal", ""]
            jwks_url = "http://issuer.example/jwks"
            clock_skew = "2h"
            max_lifetime = "0s"
            [[tokens.issuer]]
            name = "file"
            issuer = "https://file.example"
            audiences = ["temporal"]
            jwks = "missing.json"
            refresh = "5m"
            jwks_ca = "ca.pem"
            algorithms = []
            "#,
            dir.path(),
        );
        for expected in [
            "tokens.issuer[0].audiences: must not be empty".to_owned(),
            "tokens.issuer[0].algorithms: \"none\" is never accepted: an unsigned token proves nothing".to_owned(),
            "tokens.issuer[0].algorithms: \"HS256\" is never accepted: HMAC".to_owned(),
            "tokens.issuer[0].algorithms: \"ES512\" is not supported".to_owned(),
            "tokens.issuer[0]: jwks and jwks_url are both set; use exactly one source of keys".to_owned(),
            "tokens.issuer[1].name: \"cluster\" is also the name of tokens.issuer[0]".to_owned(),
            "tokens.issuer[1].issuer: \"https://kubernetes.default.svc\" is also the issuer of tokens.issuer[0]".to_owned(),
            "tokens.issuer[1].audiences: is required".to_owned(),
            "tokens.issuer[1]: has no keys: set one of jwks".to_owned(),
            "tokens.issuer[2].name: \"bad name!\": use 1 to 64 letters".to_owned(),
            "tokens.issuer[2].issuer: \"kubernetes\" is not an https:// URL; with discovery = true".to_owned(),
            "tokens.issuer[2].refresh: \"1s\" is less than 10s".to_owned(),
            format!("tokens.issuer[2].jwks_ca: cannot read {}", dir.path().join("missing-ca.pem").display()),
            "tokens.issuer[3].audiences: an audience must not be empty".to_owned(),
            "tokens.issuer[3].jwks_url: \"http://issuer.example/jwks\" is http://: keys must be fetched over TLS".to_owned(),
            "tokens.issuer[3].clock_skew: \"2h\" is more than 1h".to_owned(),
            "tokens.issuer[3].max_lifetime: must be greater than zero".to_owned(),
            "tokens.issuer[4].refresh: only applies to jwks_url or discovery".to_owned(),
            "tokens.issuer[4].jwks_ca: only applies to jwks_url or discovery".to_owned(),
            "tokens.issuer[4].algorithms: must not be empty".to_owned(),
            "tls.client_certificate: \"sometimes\" is not supported; use \"required\" or \"optional\"".to_owned(),
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&expected)),
                "missing {expected:?} in {problems:#?}"
            );
        }
        // The first issuer's file is not read: it has two sources.
        assert!(
            !problems
                .iter()
                .any(|p| p.starts_with("tokens.issuer[0].jwks:")),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_jwks_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hmac.json"),
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
        )
        .unwrap();
        let (_, problems) = check(
            r#"
            [[tokens.issuer]]
            name = "a"
            issuer = "https://a.example"
            audiences = ["temporal"]
            jwks = "missing.json"
            [[tokens.issuer]]
            name = "b"
            issuer = "https://b.example"
            audiences = ["temporal"]
            jwks = "hmac.json"
            "#,
            dir.path(),
        );
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].starts_with(&format!(
                "tokens.issuer[0].jwks: cannot read {}",
                dir.path().join("missing.json").display()
            )),
            "{problems:#?}"
        );
        assert_eq!(
            problems[1],
            format!(
                "tokens.issuer[1].jwks: {}: no usable key (key 0: a symmetric key (kty \"oct\"): HMAC is never accepted)",
                dir.path().join("hmac.json").display()
            )
        );
    }

    #[test]
    fn tokens_without_issuers_and_optional_certificates_without_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, problems) = check("[tokens]\nforward = true\n", dir.path());
        assert!(tokens.is_some());
        assert_eq!(
            problems,
            ["tokens.issuer: no issuers: add [[tokens.issuer]] tables, or remove [tokens]"]
        );
        let (tokens, problems) = check("[tls]\nclient_certificate = \"optional\"\n", dir.path());
        assert!(tokens.is_none());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("tls.client_certificate: \"optional\" needs [[tokens.issuer]]")
        );
        let (tokens, problems) = check("", dir.path());
        assert!(tokens.is_none() && problems.is_empty());
    }
}
