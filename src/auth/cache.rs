//! Verified-token cache (authentication): remembers tokens that passed [`JwtVerifier::verify`]
//! so a client repeating the same bearer token skips the signature check.
//!
//! Sits in front of the verifier: the authentication stage hashes the presented token
//! once into a [`TokenKey`], asks [`VerifiedTokenCache::get`], and only on a miss verifies
//! and [`insert`](VerifiedTokenCache::insert)s. Not yet wired into the request path or the
//! config.
//!
//! What it guarantees (docs/research/auth.md §3):
//! - **Only successes are cached.** There is no way to store a failure: a refused token is
//!   verified again on every request, so a key that appears later (JWKS refresh) or a
//!   clock that catches up (`nbf`) is honoured at once, and garbage cannot fill the cache.
//! - **A hit is bound to its audience.** The key is `SHA-256(audience ‖ 0x00 ‖ token)`, so
//!   a token verified for one route's audience is never a hit on another route.
//! - **A hit never outlives the token.** An entry expires at `min(exp, insert time +
//!   max_ttl)`; past it, `get` removes the entry and misses. The verifier's clock-skew
//!   leeway is not extended to hits: after `exp` the token is verified again.
//! - **A key-set change invalidates hits.** Each entry records the key-set generation it
//!   was verified under (`JwksCache` bumps it on every change); a hit under another
//!   generation is removed and misses, so a key removed from the set stops working
//!   without waiting for `max_ttl`.
//! - **Memory is bounded** by the capacity given at construction (least-recently and
//!   least-frequently used entries are evicted first, by `quick_cache`'s CLOCK-Pro).
//!
//! The token itself is never stored, only its hash.
//!
//! [`JwtVerifier::verify`]: super::jwt::JwtVerifier::verify

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{Context, SHA256};
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, UnitWeighter};

use super::jwt::VerifiedToken;

/// Seconds since the Unix epoch; the clock entries are stamped and checked with.
pub type Clock = fn() -> u64;

/// The system clock, in whole seconds (the unit of `exp`).
pub fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `SHA-256(audience ‖ 0x00 ‖ token)`: what an entry is found by.
///
/// Built once per request and used for both the lookup and, after a miss, the insert.
/// The 0x00 separator cannot occur in an audience URL, so no (audience, token) pair
/// collides with another by shifting bytes across the boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn new(audience: &str, token: &str) -> Self {
        let mut hash = Context::new(&SHA256);
        hash.update(audience.as_bytes());
        hash.update(&[0]);
        hash.update(token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(hash.finish().as_ref());
        Self(key)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell keys apart in a log; the hash is not a secret, but
        // there is no reason to print all of it.
        let prefix = self.0.get(..4).unwrap_or_default();
        write!(f, "TokenKey({}…)", crate::hex::Hex(prefix))
    }
}

#[derive(Clone)]
struct Entry {
    verified: Arc<VerifiedToken>,
    /// Seconds since the epoch; the entry is a hit while `now < expires_at`.
    expires_at: u64,
    /// The key-set generation the token was verified under.
    generation: u64,
}

/// Bounded, concurrent cache of verified tokens. See the module documentation.
pub struct VerifiedTokenCache {
    entries: Cache<TokenKey, Entry>,
    capacity: usize,
    max_ttl_secs: u64,
    clock: Clock,
}

impl fmt::Debug for VerifiedTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokenCache")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Shards smaller than this hold too few entries for eviction to pick well.
const MIN_SHARD_ITEMS: usize = 32;

impl VerifiedTokenCache {
    /// A cache of at most `capacity` entries, each kept at most `max_ttl` (and never past
    /// the token's `exp`), on the system clock. A capacity of 0 caches nothing.
    pub fn new(capacity: usize, max_ttl: Duration) -> Self {
        Self::with_clock(capacity, max_ttl, system_clock)
    }

    /// As [`new`](Self::new), reading time from `clock` (seconds since the Unix epoch).
    pub fn with_clock(capacity: usize, max_ttl: Duration, clock: Clock) -> Self {
        // quick_cache gives each shard `ceil(capacity / shards)` entries, so the total
        // can exceed the capacity by up to `shards - 1`. Choosing the shard count here and
        // rounding the capacity down to a multiple of it keeps `len() <= capacity`.
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut shards = (parallelism * 4).next_power_of_two();
        while shards > 1 && capacity / shards < MIN_SHARD_ITEMS {
            shards /= 2;
        }
        let usable = capacity / shards * shards;
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(usable)
            .weight_capacity(usable as u64)
            .build();
        let entries = match options {
            Ok(options) => Cache::with_options(
                options,
                UnitWeighter,
                DefaultHashBuilder::default(),
                Default::default(),
            ),
            // Unreachable: both required options are set above.
            Err(_) => Cache::new(usable),
        };
        Self {
            entries,
            capacity: usable,
            max_ttl_secs: max_ttl.as_secs(),
            clock,
        }
    }

    /// The verified token for `key`, if one was cached under `generation` and has not
    /// expired. A stale or expired entry is removed.
    pub fn get(&self, key: &TokenKey, generation: u64) -> Option<Arc<VerifiedToken>> {
        let entry = self.entries.get(key)?;
        let now = (self.clock)();
        if now < entry.expires_at && entry.generation == generation {
            return Some(entry.verified);
        }
        // Only if it is still unusable: another request may have replaced it meanwhile.
        self.entries
            .remove_if(key, |e| now >= e.expires_at || e.generation != generation);
        None
    }

    /// Remembers that the token behind `key` passed verification under key-set
    /// `generation`. Only ever call this with a success: failures are never cached.
    ///
    /// Nothing is stored if the token is already past its `exp` (the verifier's leeway
    /// may have let it through) or if `max_ttl` is zero.
    pub fn insert(&self, key: TokenKey, verified: Arc<VerifiedToken>, generation: u64) {
        let now = (self.clock)();
        let expires_at = verified
            .expires_at
            .min(now.saturating_add(self.max_ttl_secs));
        if expires_at <= now || self.capacity == 0 {
            return;
        }
        self.entries.insert(
            key,
            Entry {
                verified,
                expires_at,
                generation,
            },
        );
    }

    /// Entries held now, including expired ones not yet looked up or evicted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries the cache holds (the constructor's capacity, rounded down to a
    /// multiple of the shard count when it is large).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every entry (e.g. when the issuer configuration is reloaded).
    pub fn clear(&self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::Map;

    use super::*;

    const AUD_A: &str = "https://mcp.example.com/a/mcp";
    const AUD_B: &str = "https://mcp.example.com/b/mcp";
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    const T0: u64 = 1_800_000_000;

    fn verified(expires_at: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer: "https://auth.example.com".into(),
            claims: Map::new(),
            expires_at,
            principal: Arc::new(crate::auth::Principal::new(
                "alice",
                crate::auth::AuthMethod::Jwt,
            )),
        })
    }

    // One clock per test that moves time, so tests running in parallel do not share it.
    static EXPIRY_NOW: AtomicU64 = AtomicU64::new(T0);
    fn expiry_clock() -> u64 {
        EXPIRY_NOW.load(Ordering::SeqCst)
    }
    fn fixed_clock() -> u64 {
        T0
    }

    #[test]
    fn hit_after_insert_and_miss_for_another_audience_or_token() {
        let cache = VerifiedTokenCache::with_clock(100, Duration::from_secs(300), fixed_clock);
        let key = TokenKey::new(AUD_A, TOKEN);
        assert!(cache.get(&key, 1).is_none());
        cache.insert(key, verified(T0 + 60), 1);
        let hit = cache.get(&TokenKey::new(AUD_A, TOKEN), 1).unwrap();
        assert_eq!(hit.issuer, "https://auth.example.com");
        // Same token, another route's audience: never a hit.
        assert!(cache.get(&TokenKey::new(AUD_B, TOKEN), 1).is_none());
        assert!(
            cache
                .get(&TokenKey::new(AUD_A, "other.token.x"), 1)
                .is_none()
        );
        // The separator keeps bytes from sliding across the audience/token boundary.
        assert_ne!(TokenKey::new("ab", "c"), TokenKey::new("a", "bc"));
    }

    #[test]
    fn expires_at_the_token_exp_or_max_ttl_whichever_is_first() {
        let cache = VerifiedTokenCache::with_clock(100, Duration::from_secs(300), expiry_clock);
        let set = |t| EXPIRY_NOW.store(t, Ordering::SeqCst);
        set(T0);
        // exp before max_ttl: the hit ends at exp, never later.
        let short = TokenKey::new(AUD_A, "short");
        cache.insert(short, verified(T0 + 60), 1);
        // max_ttl before exp: the hit ends at now + max_ttl.
        let long = TokenKey::new(AUD_A, "long");
        cache.insert(long, verified(T0 + 3600), 1);
        set(T0 + 59);
        assert!(cache.get(&short, 1).is_some());
        set(T0 + 60);
        assert!(cache.get(&short, 1).is_none(), "hit at exp");
        set(T0 + 299);
        assert!(cache.get(&long, 1).is_some());
        set(T0 + 300);
        assert!(cache.get(&long, 1).is_none(), "hit past max_ttl");
        // Expired entries are removed on lookup.
        assert!(cache.is_empty());
        // A token already past exp (let through by the verifier's leeway) is not stored.
        cache.insert(short, verified(T0 + 250), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn generation_mismatch_misses_and_removes() {
        let cache = VerifiedTokenCache::with_clock(100, Duration::from_secs(300), fixed_clock);
        let key = TokenKey::new(AUD_A, TOKEN);
        cache.insert(key, verified(T0 + 60), 7);
        assert!(cache.get(&key, 7).is_some());
        assert!(cache.get(&key, 8).is_none(), "key set rotated");
        assert!(cache.is_empty());
        // Verified again under the new generation, it is a hit again.
        cache.insert(key, verified(T0 + 60), 8);
        assert!(cache.get(&key, 8).is_some());
    }

    #[test]
    fn stays_within_capacity() {
        for capacity in [0, 1, 10, 100, 1000, 4097] {
            let cache =
                VerifiedTokenCache::with_clock(capacity, Duration::from_secs(300), fixed_clock);
            assert!(cache.capacity() <= capacity);
            for i in 0..capacity * 3 + 10 {
                cache.insert(TokenKey::new(AUD_A, &i.to_string()), verified(T0 + 60), 1);
                assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
            }
            if capacity >= 10 {
                assert!(cache.len() >= capacity / 2, "{} of {capacity}", cache.len());
            }
        }
    }

    #[test]
    fn zero_max_ttl_caches_nothing() {
        let cache = VerifiedTokenCache::with_clock(100, Duration::ZERO, fixed_clock);
        let key = TokenKey::new(AUD_A, TOKEN);
        cache.insert(key, verified(T0 + 60), 1);
        assert!(cache.get(&key, 1).is_none());
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let key = TokenKey::new(AUD_A, TOKEN);
        assert!(!format!("{key:?}").contains(TOKEN));
        let cache = VerifiedTokenCache::new(10, Duration::from_secs(60));
        assert!(format!("{cache:?}").contains("capacity"));
    }
}
