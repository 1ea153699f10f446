//! Verified tokens, kept until they expire so that a client sending the
//! same token on every call pays for one signature check, not one per call.
//!
//! Entries are keyed by the SHA-256 of the token: the token itself is never
//! kept, and a cryptographic digest means no other token can find a cached
//! one. An entry is valid until the token's `exp` plus the issuer's clock
//! skew (the same rule as a first verification), and is refused after that
//! even while it is still held. It also records the generation of the
//! issuer's key set it was verified with: when the keys change (a rotation
//! that removed a key), the token is verified again against the new set.
//!
//! Bounded: at most `capacity` entries over 16 shards (each a `Mutex`
//! around a small map, held only for a lookup or an insert; with one worker
//! thread per core the shards are rarely contended). A full shard drops its
//! expired entries first, then its oldest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;

use super::claims::VerifiedToken;

/// The default bound of a cache.
pub const DEFAULT_CAPACITY: usize = 10_000;
const SHARDS: usize = 16;

/// The SHA-256 of a token.
pub type TokenDigest = [u8; 32];

pub fn token_digest(token: &[u8]) -> TokenDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

struct Entry {
    token: Arc<VerifiedToken>,
    /// `exp` and `exp + clock_skew`, in seconds since the epoch.
    exp: u64,
    valid_until: u64,
    issuer: usize,
    generation: u64,
    /// Insertion order within the shard.
    seq: u64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<TokenDigest, Entry>,
    next_seq: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Verified with key set `generation` of issuer `issuer`, not expired.
    Hit {
        token: Arc<VerifiedToken>,
        issuer: usize,
        generation: u64,
    },
    /// Verified once, expired since (`exp`): refused, and dropped.
    Expired {
        exp: u64,
    },
    Miss,
}

pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &TokenDigest) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token of `key` at `now` (seconds since the epoch).
    pub fn get(&self, key: &TokenDigest, now: u64) -> Lookup {
        let mut shard = self.shard(key);
        let Some(entry) = shard.entries.get(key) else {
            return Lookup::Miss;
        };
        if now > entry.valid_until {
            let exp = entry.exp;
            shard.entries.remove(key);
            return Lookup::Expired { exp };
        }
        Lookup::Hit {
            token: entry.token.clone(),
            issuer: entry.issuer,
            generation: entry.generation,
        }
    }

    /// Keeps a verified token; `skew` is its issuer's clock skew.
    pub fn insert(
        &self,
        key: TokenDigest,
        token: Arc<VerifiedToken>,
        (issuer, generation): (usize, u64),
        (exp, skew): (u64, u64),
        now: u64,
    ) {
        let mut shard = self.shard(&key);
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            shard.entries.retain(|_, e| e.valid_until >= now);
            if shard.entries.len() >= self.per_shard {
                let oldest = shard
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.seq)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    shard.entries.remove(&oldest);
                }
            }
        }
        let seq = shard.next_seq;
        shard.next_seq += 1;
        shard.entries.insert(
            key,
            Entry {
                token,
                exp,
                valid_until: exp.saturating_add(skew),
                issuer,
                generation,
                seq,
            },
        );
    }

    /// Entries held now (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn token(sub: &str) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer: Arc::from("cluster"),
            sub: sub.to_owned(),
            claims: serde_json::Map::new(),
            exp: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn a_hit_until_exp_plus_skew_then_refused_and_dropped() {
        let cache = TokenCache::new(100);
        let key = token_digest(b"a.b.c");
        cache.insert(key, token("a"), (0, 7), (1000, 60), 900);
        match cache.get(&key, 1060) {
            Lookup::Hit {
                token,
                issuer,
                generation,
            } => {
                assert_eq!(token.sub, "a");
                assert_eq!((issuer, generation), (0, 7));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cache.get(&key, 1061),
            Lookup::Expired { exp: 1000 }
        ));
        assert!(matches!(cache.get(&key, 1061), Lookup::Miss));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn other_tokens_miss() {
        let cache = TokenCache::new(100);
        cache.insert(token_digest(b"a.b.c"), token("a"), (0, 1), (1000, 0), 0);
        assert!(matches!(
            cache.get(&token_digest(b"a.b.d"), 0),
            Lookup::Miss
        ));
    }

    #[test]
    fn bounded_evicting_expired_then_oldest() {
        let cache = TokenCache::new(SHARDS * 4);
        // Many more tokens than fit: the cache never grows past its bound.
        for i in 0..1000u32 {
            let key = token_digest(&i.to_be_bytes());
            cache.insert(key, token("x"), (0, 1), (10_000, 0), 0);
        }
        assert!(cache.len() <= SHARDS * 4, "{}", cache.len());

        // In one shard: expired entries go first, then the oldest.
        let cache = TokenCache::new(SHARDS * 2);
        let same_shard: Vec<TokenDigest> = (0..10_000u32)
            .map(|i| token_digest(&i.to_be_bytes()))
            .filter(|k| usize::from(k[0]) % SHARDS == 0)
            .take(4)
            .collect();
        let (old, expiring, newer, newest) =
            (same_shard[0], same_shard[1], same_shard[2], same_shard[3]);
        cache.insert(old, token("old"), (0, 1), (10_000, 0), 0);
        cache.insert(expiring, token("expiring"), (0, 1), (50, 0), 0);
        cache.insert(newer, token("newer"), (0, 1), (10_000, 0), 100);
        // The expired one made room.
        assert!(matches!(cache.get(&old, 100), Lookup::Hit { .. }));
        assert!(matches!(cache.get(&expiring, 100), Lookup::Miss));
        cache.insert(newest, token("newest"), (0, 1), (10_000, 0), 100);
        // None expired: the oldest made room.
        assert!(matches!(cache.get(&old, 100), Lookup::Miss));
        assert!(matches!(cache.get(&newer, 100), Lookup::Hit { .. }));
        assert!(matches!(cache.get(&newest, 100), Lookup::Hit { .. }));
    }
}
