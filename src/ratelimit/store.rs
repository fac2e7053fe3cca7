//! The keyed state behind one limit: governor's GCRA over a bounded cache.
//!
//! Each key holds its theoretical arrival time (TAT, governor's state). The keys live in a
//! `quick_cache` of at most `max_keys` entries, whose CLOCK-Pro eviction resists scans: a
//! flood of addresses seen once (a botnet, an IPv6 range) goes through the cold part of the
//! cache and evicts itself, while the clients that keep coming back keep their state.
//! Memory stays bounded whatever arrives. An evicted key starts again with a whole
//! allowance, so under such a flood the limit errs on the side of letting a client in,
//! never of refusing clients it has never seen.

use std::convert::Infallible;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::nanos::Nanos;
use governor::state::StateStore;

/// A bounded keyed state store for governor.
pub struct BoundedStore<K: Hash + Eq + Clone> {
    entries: quick_cache::sync::Cache<K, Arc<AtomicU64>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for BoundedStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedStore")
            .field("keys", &self.entries.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    pub fn new(max_keys: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(max_keys.max(1)),
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let state = match self
            .entries
            .get_or_insert_with(key, || Ok::<_, Infallible>(Arc::new(AtomicU64::new(0))))
        {
            Ok(state) => state,
            Err(never) => match never {},
        };
        // governor's compare-and-swap update of the TAT (0: no state yet).
        let mut prev = state.load(Ordering::Acquire);
        loop {
            let (result, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
            match state.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(result),
                Err(current) => prev = current,
            }
        }
    }
}

/// A [`BoundedStore`] shared between the limiter and whoever watches its size.
#[derive(Debug)]
pub struct SharedStore<K: Hash + Eq + Clone>(pub Arc<BoundedStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for SharedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}
