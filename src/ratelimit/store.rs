//! The keyed state behind one limit: governor's GCRA over a map with a bound.
//!
//! Each key holds its theoretical arrival time (TAT, governor's state) and when it was last
//! seen. A key idle for longer than it takes to refill its whole burst is indistinguishable
//! from a new one, so [`BoundedStore::prune`] drops it. While the map holds `max_keys` keys,
//! a key not in it shares one overflow state with every other such key: a flood of new
//! clients (a million spoofed-looking source addresses, an IPv6 range) gets one allowance
//! between them and cannot grow memory, while the clients already tracked keep theirs.

use std::hash::Hash;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use governor::state::StateStore;

/// One key's state: the TAT (0: none yet) and the last time it was measured.
#[derive(Debug, Default)]
struct Entry {
    tat: AtomicU64,
    seen: AtomicU64,
}

impl Entry {
    /// governor's compare-and-swap update of the TAT.
    fn measure<T, F, E>(&self, f: &F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut prev = self.tat.load(Ordering::Acquire);
        loop {
            let (result, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
            match self.tat.compare_exchange_weak(
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

/// A bounded keyed state store for governor.
#[derive(Debug)]
pub struct BoundedStore<K: Hash + Eq, C: Clock> {
    map: DashMap<K, Entry>,
    overflow: Entry,
    max_keys: usize,
    /// After this long unseen, a key's state is back to new.
    idle: Duration,
    clock: C,
    start: C::Instant,
    /// When the map was last pruned (clock nanos since `start`).
    pruned: AtomicU64,
}

/// The map is swept at most this often, so that a full map under a flood of new keys costs
/// one sweep per interval, not one per request.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A map smaller than this is only swept when full.
const SWEEP_FROM: usize = 1024;

impl<K: Hash + Eq + Clone, C: Clock> BoundedStore<K, C> {
    pub fn new(max_keys: usize, idle: Duration, clock: C) -> Self {
        let start = clock.now();
        Self {
            map: DashMap::new(),
            overflow: Entry::default(),
            max_keys: max_keys.max(1),
            idle,
            clock,
            start,
            pruned: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sweeps the map if it has not been swept for [`SWEEP_EVERY`].
    fn maybe_prune(&self, now: u64) {
        let last = self.pruned.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= SWEEP_EVERY.as_nanos() as u64;
        if due
            && self
                .pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.prune();
        }
    }

    /// Drops every key idle long enough to be new again.
    pub fn prune(&self) {
        let now = self.now();
        let idle = u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX);
        self.map
            .retain(|_, entry| now.saturating_sub(entry.seen.load(Ordering::Relaxed)) < idle);
    }
}

impl<K: Hash + Eq + Clone, C: Clock> StateStore for BoundedStore<K, C> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let now = self.now();
        if let Some(entry) = self.map.get(key) {
            entry.seen.store(now, Ordering::Relaxed);
            return entry.measure(&f);
        }
        let len = self.map.len();
        if len >= SWEEP_FROM {
            self.maybe_prune(now);
        }
        if self.map.len() >= self.max_keys {
            return self.overflow.measure(&f);
        }
        let entry = self.map.entry(key.clone()).or_default();
        entry.seen.store(now, Ordering::Relaxed);
        entry.measure(&f)
    }
}

/// A [`BoundedStore`] shared between the limiter and whoever watches its size.
#[derive(Debug)]
pub struct SharedStore<K: Hash + Eq, C: Clock>(pub std::sync::Arc<BoundedStore<K, C>>);

impl<K: Hash + Eq + Clone, C: Clock> StateStore for SharedStore<K, C> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}
