//! Bearer tokens (JWTs of OIDC issuers: Kubernetes service accounts, GitHub
//! Actions, AWS, GCP) as a second identity beside the client certificate.
//!
//! A call's token comes from its one `authorization: Bearer` header
//! ([`bearer_token`]); [`Tokens::verify`] decides it: by its `iss`, the
//! configured issuer it claims to be from; then its form (`jwt`), its
//! algorithm and key (`verify`, keys from `jwks`), its signature
//! (aws-lc-rs) and its claims. A verified token is cached by the SHA-256 of
//! its text until it expires (`cache`), so a client sending the same token
//! on every call pays for one signature check. Each issuer's keys are a
//! lock-free snapshot (`keys`), from a JWKS file or fetched over https
//! (`fetch`) and kept fresh by [`Tokens::refresh`].
//!
//! Files: `alg` (algorithms), `jwt` (parsing), `jwks` (key sets), `verify`
//! (signature and claims), `claims` (the verified token and claim paths),
//! `cache`, `keys` (key sets in force, refresh), `fetch` (https and
//! discovery), `bearer` (the header), `error` (the reasons), `settings`
//! (what the config says).
//!
//! Readiness: an issuer without a key set refuses all its tokens, so
//! [`Tokens::ready`] is false until every issuer has one (its first fetch
//! or file read succeeded). Later failures keep the last good set and do
//! not touch readiness: an issuer outage never takes a running proxy out of
//! service, while a proxy that starts without keys is not sent traffic it
//! would refuse (and a rollout stops at it instead of replacing working
//! replicas).

mod alg;
mod bearer;
mod cache;
mod claims;
mod error;
mod fetch;
mod jwks;
mod jwt;
mod keys;
mod settings;
#[cfg(test)]
mod test_keys;
mod verify;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use alg::{Algorithm, AlgorithmRefusal};
pub use bearer::{bearer_token, bearer_value};
pub use cache::token_digest;
pub use claims::VerifiedToken;
pub use error::TokenError;
pub use jwks::KeySet;
pub use jwt::MAX_TOKEN_LEN;
pub use keys::IssuerStatus;
pub use settings::{
    IssuerConfig, KeySource, TokensConfig, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_LIFETIME,
    DEFAULT_REFRESH,
};

use cache::{Lookup, TokenCache, DEFAULT_CAPACITY};
use error::Quoted;
use fetch::{Fetcher, FETCH_TIMEOUT};
use jwt::JwtError;
use keys::{FetchPlan, IssuerKeys, Remote};

struct Issuer {
    config: IssuerConfig,
    keys: Arc<IssuerKeys>,
}

/// The token verifier of a config: its issuers, their keys, the cache.
pub struct Tokens {
    issuers: Vec<Issuer>,
    /// `iss` → index in `issuers` (validation made them unique).
    by_iss: HashMap<String, usize>,
    cache: TokenCache,
    forward: bool,
}

/// What [`Tokens::reload`] did for one file-backed issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReload {
    pub issuer: Arc<str>,
    /// `Ok(true)`: new keys in force; `Ok(false)`: unchanged; `Err`: the
    /// file could not be used, the keys in force stay.
    pub outcome: Result<bool, String>,
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// The verifier of `config`. Issuers with a JWKS file have their keys
    /// at once; the others get theirs from [`Tokens::refresh`].
    pub fn from_config(config: &TokensConfig) -> Tokens {
        Tokens::with_cache_capacity(config, DEFAULT_CAPACITY)
    }

    /// [`Tokens::from_config`] with a cache of another bound.
    pub fn with_cache_capacity(config: &TokensConfig, capacity: usize) -> Tokens {
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let mut by_iss = HashMap::new();
        for (i, c) in config.issuers.iter().enumerate() {
            let remote = !matches!(c.source, KeySource::File { .. });
            let keys = Arc::new(IssuerKeys::new(c.name.clone(), remote));
            if let KeySource::File { path, keys: set } = &c.source {
                keys.install(set.clone(), &path.display().to_string());
            }
            by_iss.entry(c.issuer.clone()).or_insert(i);
            issuers.push(Issuer {
                config: c.clone(),
                keys,
            });
        }
        Tokens {
            issuers,
            by_iss,
            cache: TokenCache::new(capacity),
            forward: config.forward,
        }
    }

    /// `[tokens] forward`: whether the `authorization` header goes on to
    /// the frontend.
    pub fn forward(&self) -> bool {
        self.forward
    }

    /// Verifies a bearer token (from [`bearer_token`]) at `now`.
    ///
    /// The per-call cost with a cached token: a SHA-256 of the token, one
    /// shard lock, one key-set generation read (`cargo bench --bench
    /// token`). A token with an unknown `kid` of an issuer whose keys are
    /// fetched asks for an early fetch (see [`Tokens::verify_waiting`]).
    pub fn verify(&self, token: &[u8], now: SystemTime) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong { len: token.len() }.into());
        }
        let now = unix_secs(now);
        let digest = token_digest(token);
        match self.cache.get(&digest, now) {
            Lookup::Hit {
                token,
                issuer,
                generation,
            } if self.issuers[issuer].keys.generation() == generation => return Ok(token),
            // Verified with keys since replaced: verified again below.
            Lookup::Hit { .. } | Lookup::Miss => {}
            Lookup::Expired { exp } => return Err(TokenError::Expired { exp }),
        }
        let (verified, issuer, generation) = self.verify_uncached(token, now)?;
        let verified = Arc::new(verified);
        let exp = unix_secs(verified.exp);
        let skew = self.issuers[issuer].config.clock_skew.as_secs();
        self.cache.insert(
            digest,
            verified.clone(),
            (issuer, generation),
            (exp, skew),
            now,
        );
        Ok(verified)
    }

    fn verify_uncached(
        &self,
        token: &[u8],
        now: u64,
    ) -> Result<(VerifiedToken, usize, u64), TokenError> {
        let jws = jwt::parse(token)?;
        let iss = match jws.claims.get("iss") {
            None => return Err(TokenError::NoIssuer),
            Some(serde_json::Value::String(iss)) => iss,
            Some(_) => {
                return Err(TokenError::BadClaim {
                    claim: "iss",
                    problem: "is not a string",
                })
            }
        };
        let index = *self
            .by_iss
            .get(iss)
            .ok_or_else(|| TokenError::UnknownIssuer(Quoted::new(iss)))?;
        let issuer = &self.issuers[index];
        let alg = verify::algorithm(&jws.header.alg, &issuer.config)?;
        let installed = issuer.keys.current();
        let Some(installed) = installed.as_ref() else {
            return Err(TokenError::NoKeys {
                issuer: issuer.config.name.clone(),
                reason: issuer.keys.no_keys_reason(),
            });
        };
        match verify::check_signature(&jws, alg, &installed.keys, &issuer.config.name) {
            Ok(()) => {}
            Err(e @ TokenError::UnknownKeyId { .. }) => {
                issuer.keys.request_refetch(tokio::time::Instant::now());
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let generation = installed.generation;
        let verified = verify::check_claims(jws.claims, &issuer.config, now)?;
        Ok((verified, index, generation))
    }

    /// [`Tokens::verify`], but a token with an unknown `kid` whose issuer's
    /// keys are fetched waits for the early fetch it asks for (at most
    /// twice [`FETCH_TIMEOUT`]: discovery and JWKS) and is verified once
    /// more: the first token signed with a key the issuer just rotated in
    /// is accepted instead of refused. With the early fetch rate-limited
    /// ([`EARLY_REFETCH_INTERVAL`]), other unknown key ids do not wait.
    pub async fn verify_waiting(
        &self,
        token: &[u8],
        now: SystemTime,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        // Subscribed before verifying, so that a fetch completing in
        // between is not missed.
        let mut fetched: Vec<_> = self.issuers.iter().map(|i| i.keys.fetched()).collect();
        match self.verify(token, now) {
            Err(TokenError::UnknownKeyId { issuer, .. }) => {
                let Some(index) = self.issuers.iter().position(|i| i.config.name == issuer) else {
                    return self.verify(token, now);
                };
                let keys = &self.issuers[index].keys;
                if keys.request_refetch(tokio::time::Instant::now()) {
                    let waited = fetched[index].changed();
                    let _ = tokio::time::timeout(FETCH_TIMEOUT * 2, waited).await;
                }
                self.verify(token, now)
            }
            other => other,
        }
    }

    /// Keeps the fetched key sets fresh: fetches each `jwks_url` and
    /// discovery issuer's keys now, then every `refresh` (and early on an
    /// unknown `kid`), until the future is dropped. Spawn it once on the
    /// runtime that serves the admin listener and reloads; abort it at
    /// shutdown. Issuers with a JWKS file are not fetched.
    pub fn refresh(&self) -> impl Future<Output = ()> + Send + 'static {
        let loops: Vec<_> = self
            .issuers
            .iter()
            .filter_map(|issuer| {
                let c = &issuer.config;
                let remote = match &c.source {
                    KeySource::File { .. } => return None,
                    KeySource::Url(url) => Remote::Url(url.clone()),
                    KeySource::Discovery => Remote::Discovery(c.issuer.clone()),
                };
                let plan = FetchPlan {
                    remote,
                    fetcher: Fetcher::new(c.jwks_ca.as_ref().map(|(_, roots)| roots.clone())),
                    refresh: c.refresh,
                    algorithms: c.algorithms.clone(),
                };
                Some(keys::keep_fresh(issuer.keys.clone(), plan))
            })
            .collect();
        async move {
            futures_util::future::join_all(loops).await;
        }
    }

    /// Reads the JWKS files again (the reloader calls this when the
    /// config's files change). A file that cannot be read or has no usable
    /// key leaves the keys in force as they are.
    pub fn reload(&self) -> Vec<FileReload> {
        self.issuers
            .iter()
            .filter_map(|issuer| {
                let KeySource::File { path, .. } = &issuer.config.source else {
                    return None;
                };
                let from = path.display().to_string();
                let outcome = match KeySet::load_file(path, &issuer.config.algorithms) {
                    Ok(set) => Ok(issuer.keys.install(Arc::new(set), &from)),
                    Err(e) => {
                        let reason = e.to_string();
                        issuer.keys.failed(reason.clone(), &from);
                        Err(reason)
                    }
                };
                Some(FileReload {
                    issuer: issuer.config.name.clone(),
                    outcome,
                })
            })
            .collect()
    }

    /// Ready when every issuer has a key set; otherwise why not (see the
    /// module doc).
    pub fn ready(&self) -> Result<(), String> {
        let missing: Vec<String> = self
            .issuers
            .iter()
            .filter(|i| i.keys.current().is_none())
            .map(|i| {
                format!(
                    "token issuer {:?}: {}",
                    i.config.name,
                    i.keys.no_keys_reason()
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }

    /// Each issuer's keys, fetches and failures (for metrics and logs).
    pub fn status(&self) -> Vec<IssuerStatus> {
        self.issuers.iter().map(|i| i.keys.status()).collect()
    }

    /// The configured issuers' names, in config order.
    pub fn issuer_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.issuers.iter().map(|i| &i.config.name)
    }

    /// Verified tokens held in the cache now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests;

/// For other modules' unit tests (the token layer's): a JWKS and a token it
/// verifies now. Test code only.
#[cfg(test)]
pub(crate) mod testing {
    use super::test_keys::{jwks, TestKey};

    /// A JWKS with one RSA key, and a token of `iss` for `aud` with `sub`,
    /// valid for ten minutes from now.
    pub(crate) fn rsa_jwks_and_token(iss: &str, aud: &str, sub: &str) -> (String, String) {
        let key = TestKey::rsa("k1");
        let now = super::unix_secs(std::time::SystemTime::now());
        let token = key.token(&serde_json::json!({
            "iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 600,
        }));
        (jwks(&[key.jwk()]), token)
    }
}
