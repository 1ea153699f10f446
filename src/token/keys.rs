//! The key set of each issuer, and how it is kept fresh. Calls read the set
//! in force from an `ArcSwapOption` (no lock); a new set replaces it whole.
//!
//! - **A JWKS file** is read when the config is validated, and again by
//!   [`Tokens::reload`](super::Tokens::reload), which the reloader calls
//!   when the config's files change (the file is among
//!   `Config::watched_files`).
//! - **`jwks_url` / discovery** sets are fetched by [`keep_fresh`]: at
//!   start, then every `refresh`; a failed fetch is retried after 1 s,
//!   doubling up to `refresh`. A token with an unknown `kid` asks for one
//!   early fetch ([`IssuerKeys::request_refetch`]), at most once per
//!   [`EARLY_REFETCH_INTERVAL`], so that a rotation at the issuer is seen at
//!   once while a client sending made-up key ids cannot make the proxy
//!   hammer the issuer.
//! - **A failure never removes keys**: the last good set stays in force,
//!   the failure is logged with its reason and counted
//!   ([`IssuerStatus::fetch_failures`]).
//!
//! A set that is the same as the one in force (same keys, by digest) keeps
//! its generation; a changed one gets a new generation, and tokens cached
//! under the old one are verified again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::alg::Algorithm;
use super::fetch::{discovery_url, jwks_uri, Fetcher};
use super::jwks::KeySet;

/// The least time between two fetches asked for by unknown key ids.
pub const EARLY_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The first retry after a failed fetch (doubling up to `refresh`).
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Key set generations, unique in the process.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A key set in force.
#[derive(Debug)]
pub struct Installed {
    pub keys: Arc<KeySet>,
    pub generation: u64,
    pub since: SystemTime,
}

#[derive(Debug, Default)]
struct Refetch {
    /// When the last early fetch was asked for.
    last: Option<Instant>,
    /// An early fetch was asked for and has not completed yet.
    pending: bool,
}

#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    early_refetches: AtomicU64,
}

/// What an issuer's keys look like now: for readiness, metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    pub name: Arc<str>,
    /// Keys in force (0: none yet).
    pub keys: usize,
    pub generation: Option<u64>,
    /// When the set in force was installed.
    pub since: Option<SystemTime>,
    /// Fetches completed (successful or not); 0 for a file.
    pub fetches: u64,
    /// Fetches (or file reads on reload) that failed.
    pub fetch_failures: u64,
    /// Early fetches asked for by unknown key ids.
    pub early_refetches: u64,
    /// Why the last fetch or read failed, until one succeeds.
    pub last_error: Option<String>,
}

/// One issuer's keys.
#[derive(Debug)]
pub struct IssuerKeys {
    name: Arc<str>,
    current: ArcSwapOption<Installed>,
    /// Fetched over https (early refetches apply).
    remote: bool,
    refetch: Mutex<Refetch>,
    wake: Notify,
    /// Counts completed fetches, for callers waiting on an early one.
    fetched: watch::Sender<u64>,
    counters: Counters,
    last_error: Mutex<Option<String>>,
}

impl IssuerKeys {
    pub fn new(name: Arc<str>, remote: bool) -> IssuerKeys {
        IssuerKeys {
            name,
            current: ArcSwapOption::empty(),
            remote,
            refetch: Mutex::default(),
            wake: Notify::new(),
            fetched: watch::Sender::new(0),
            counters: Counters::default(),
            last_error: Mutex::new(None),
        }
    }

    /// The set in force, if there is one yet.
    pub fn current(&self) -> arc_swap::Guard<Option<Arc<Installed>>> {
        self.current.load()
    }

    /// The generation of the set in force (0: none).
    pub fn generation(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |i| i.generation)
    }

    /// Puts `keys` in force; `from` says where they came from (logs).
    /// Returns whether the keys changed.
    pub fn install(&self, keys: Arc<KeySet>, from: &str) -> bool {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let old = self.current.load_full();
        if old
            .as_ref()
            .is_some_and(|o| o.keys.digest() == keys.digest())
        {
            return false;
        }
        for reason in keys.skipped() {
            tracing::warn!(issuer = %self.name, from, "token issuer key left out: {reason}");
        }
        let kids: Vec<&str> = keys
            .keys()
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect();
        tracing::info!(
            issuer = %self.name,
            from,
            keys = keys.keys().len(),
            kids = %kids.join(", "),
            "token issuer keys in force"
        );
        self.current.store(Some(Arc::new(Installed {
            keys,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            since: SystemTime::now(),
        })));
        true
    }

    /// Records a failed fetch or read: the set in force (if any) stays.
    pub fn failed(&self, reason: String, from: &str) {
        self.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
        if self.current.load().is_some() {
            tracing::warn!(issuer = %self.name, from, reason = %reason,
                "cannot refresh token issuer keys; the last good key set stays in force");
        } else {
            tracing::error!(issuer = %self.name, from, reason = %reason,
                "cannot load token issuer keys; its tokens are refused until a load succeeds");
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// Why there are no keys (for the error of a call that needs them).
    pub fn no_keys_reason(&self) -> String {
        match &*self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(e) => format!("last fetch failed: {e}"),
            None => "not fetched yet".to_owned(),
        }
    }

    /// Asks for an early fetch (a token named an unknown `kid`). Returns
    /// whether one is now due or under way, that a caller may wait for
    /// ([`IssuerKeys::fetched`]): at most one is asked for per
    /// [`EARLY_REFETCH_INTERVAL`]; none for a file.
    pub fn request_refetch(&self, now: Instant) -> bool {
        if !self.remote {
            return false;
        }
        let mut state = self.refetch.lock().unwrap_or_else(PoisonError::into_inner);
        if state.pending {
            return true;
        }
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < EARLY_REFETCH_INTERVAL)
        {
            return false;
        }
        state.last = Some(now);
        state.pending = true;
        self.counters
            .early_refetches
            .fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        true
    }

    /// Changes when a fetch completes.
    pub fn fetched(&self) -> watch::Receiver<u64> {
        self.fetched.subscribe()
    }

    fn fetch_done(&self) {
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        self.refetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending = false;
        self.fetched.send_modify(|n| *n += 1);
    }

    pub fn status(&self) -> IssuerStatus {
        let current = self.current.load();
        IssuerStatus {
            name: self.name.clone(),
            keys: current.as_ref().map_or(0, |i| i.keys.keys().len()),
            generation: current.as_ref().map(|i| i.generation),
            since: current.as_ref().map(|i| i.since),
            fetches: self.counters.fetches.load(Ordering::Relaxed),
            fetch_failures: self.counters.fetch_failures.load(Ordering::Relaxed),
            early_refetches: self.counters.early_refetches.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Where a fetched set comes from.
#[derive(Debug, Clone)]
pub enum Remote {
    Url(String),
    /// The configured issuer, whose discovery document names the JWKS.
    Discovery(String),
}

/// What [`keep_fresh`] needs.
#[derive(Clone)]
pub struct FetchPlan {
    pub remote: Remote,
    pub fetcher: Fetcher,
    pub refresh: Duration,
    pub algorithms: Vec<Algorithm>,
}

/// One fetch of the key set.
pub async fn fetch_keys(plan: &FetchPlan) -> Result<KeySet, String> {
    let url = match &plan.remote {
        Remote::Url(url) => url.clone(),
        Remote::Discovery(issuer) => {
            let doc_url = discovery_url(issuer);
            let doc = plan
                .fetcher
                .get(&doc_url)
                .await
                .map_err(|e| e.to_string())?;
            jwks_uri(&doc, issuer).map_err(|e| format!("{doc_url}: {e}"))?
        }
    };
    let body = plan.fetcher.get(&url).await.map_err(|e| e.to_string())?;
    KeySet::parse(&body, &plan.algorithms).map_err(|e| format!("{url}: {e}"))
}

/// Fetches the keys at start, then every `refresh` (sooner after a failure,
/// or when an early fetch is asked for), until dropped.
pub async fn keep_fresh(keys: Arc<IssuerKeys>, plan: FetchPlan) {
    let mut retry = FIRST_RETRY.min(plan.refresh);
    loop {
        let from = match &plan.remote {
            Remote::Url(url) => url.as_str(),
            Remote::Discovery(_) => "discovery",
        };
        let wait = match fetch_keys(&plan).await {
            Ok(set) => {
                keys.install(Arc::new(set), from);
                retry = FIRST_RETRY.min(plan.refresh);
                plan.refresh
            }
            Err(reason) => {
                keys.failed(reason, from);
                let wait = retry;
                retry = (retry * 2).min(plan.refresh);
                wait
            }
        };
        keys.fetch_done();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = keys.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_keys::{jwks, TestKey};
    use super::*;

    fn set(keys: &[&TestKey]) -> Arc<KeySet> {
        let jwks = jwks(&keys.iter().map(|k| k.jwk()).collect::<Vec<_>>());
        Arc::new(KeySet::parse(jwks.as_bytes(), &Algorithm::DEFAULT).unwrap())
    }

    #[test]
    fn a_changed_set_gets_a_new_generation_the_same_keeps_its_own() {
        let keys = IssuerKeys::new(Arc::from("cluster"), false);
        assert_eq!(keys.generation(), 0);
        let a = TestKey::ec_p256("a");
        let b = TestKey::ec_p256("b");
        assert!(keys.install(set(&[&a]), "test"));
        let first = keys.generation();
        assert!(first > 0);
        assert!(!keys.install(set(&[&a]), "test"));
        assert_eq!(keys.generation(), first);
        assert!(keys.install(set(&[&a, &b]), "test"));
        assert!(keys.generation() > first);
    }

    #[test]
    fn a_failure_keeps_the_last_good_set_and_is_counted() {
        let keys = IssuerKeys::new(Arc::from("cluster"), true);
        keys.failed("connection refused".into(), "test");
        assert_eq!(
            keys.no_keys_reason(),
            "last fetch failed: connection refused"
        );
        assert_eq!(keys.status().keys, 0);
        keys.install(set(&[&TestKey::ec_p256("a")]), "test");
        assert_eq!(keys.status().last_error, None);
        let generation = keys.generation();
        keys.failed("HTTP 500".into(), "test");
        let status = keys.status();
        assert_eq!(status.keys, 1);
        assert_eq!(status.generation, Some(generation));
        assert_eq!(status.fetch_failures, 2);
        assert_eq!(status.last_error.as_deref(), Some("HTTP 500"));
    }

    #[test]
    fn early_refetches_are_rate_limited() {
        let keys = IssuerKeys::new(Arc::from("cluster"), true);
        let t0 = Instant::now();
        assert!(keys.request_refetch(t0));
        // Still pending: callers may wait for it.
        assert!(keys.request_refetch(t0 + Duration::from_secs(1)));
        keys.fetch_done();
        // Done, and asked for 29 s ago: no new one.
        assert!(!keys.request_refetch(t0 + Duration::from_secs(29)));
        assert!(keys.request_refetch(t0 + Duration::from_secs(30)));
        assert_eq!(keys.status().early_refetches, 2);
        // Files are never fetched early.
        let file = IssuerKeys::new(Arc::from("file"), false);
        assert!(!file.request_refetch(t0));
    }
}
