//! What `[tokens]` and `[[tokens.issuer]]` say, as plain data: built and
//! validated by the config module (`config::tokens`), turned into the
//! running verifier by [`Tokens::from_config`](super::Tokens::from_config).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use super::alg::Algorithm;
use super::jwks::KeySet;

/// Tolerance for `exp`, `nbf` and `iat` against this machine's clock.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The longest lifetime a token may have (`exp - iat`, or `exp - now`).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often a `jwks_url` or discovery key set is fetched again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);

/// `[tokens]`.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub issuers: Vec<IssuerConfig>,
    /// `[tokens] forward`: the `authorization` header is passed on to the
    /// frontend (default: removed before forwarding).
    pub forward: bool,
}

/// One `[[tokens.issuer]]`.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// What rules and audit lines call it.
    pub name: Arc<str>,
    /// The token's `iss` must equal this, exactly.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub source: KeySource,
    /// The CA bundle for the https fetches, and its file; `None`: the
    /// system's roots.
    pub jwks_ca: Option<(PathBuf, Arc<RootCertStore>)>,
    /// Never empty; never `none` or HMAC (not representable).
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
    pub refresh: Duration,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS file, read (and checked) when the config was validated;
    /// read again by [`Tokens::reload`](super::Tokens::reload).
    File { path: PathBuf, keys: Arc<KeySet> },
    /// A JWKS fetched over https.
    Url(String),
    /// `jwks_uri` of `{issuer}/.well-known/openid-configuration`.
    Discovery,
}

impl KeySource {
    /// The file the keys are read from, for the reload watcher.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            KeySource::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl IssuerConfig {
    /// An issuer with the defaults, for tests and benches.
    pub fn new(name: &str, issuer: &str, audiences: &[&str], source: KeySource) -> IssuerConfig {
        IssuerConfig {
            name: Arc::from(name),
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            source,
            jwks_ca: None,
            algorithms: Algorithm::DEFAULT.to_vec(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            refresh: DEFAULT_REFRESH,
        }
    }
}
