//! Step 1 and the local half of step 5: a function's in-process tier, the
//! one local hit path, the generations that keep a raced computation from
//! writing back, and the index of local keys by tag.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use super::{Key, Value};
use crate::clock::{Clock, Timestamp};
use crate::local::{AnyStore, Stored};
use crate::metrics::FnMetrics;
use quick_cache::Equivalent;
use std::hash::Hash;

/// Key-level generation slots per function.
const SLOTS: usize = 64;

/// Below this many local entries the tag index is not pruned.
pub(super) const TAG_INDEX_MIN: u64 = 1024;

/// What a computation noted before it read anything: the function-wide
/// generation and its key's slot. A write-back goes ahead only if neither
/// moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    global: u64,
    slot: u64,
    pub(super) index: usize,
}

/// The in-process tier of one function.
pub(crate) struct LocalTier<K, V> {
    /// Whether the tier is used: caching is on and the function keeps
    /// local copies (`false` for `tier = "shared"` and `CACHE_TYPE=null`).
    pub(super) on: bool,
    /// The tier is on and counts hits (`Config::metrics`, the default): one
    /// test on the hit path covers both.
    counted: bool,
    pub(super) clock: Clock,
    store: AnyStore<K, V>,
    /// Bumped by every invalidation and `put`; a computation that started
    /// under an older generation does not write back (it may hold data read
    /// before the change that caused the invalidation).
    generation: AtomicU64,
    /// Bumped by invalidations of one key (this process's, other processes'
    /// notices, `put`): a computation checks its key's slot, so an update of
    /// one key does not void every other in-flight write-back.
    slots: [AtomicU64; SLOTS],
    /// Local keys by tag (`tags = [...]`): what a tag invalidation drops here.
    tag_index: Mutex<TagIndex<K>>,
}

/// Local keys by tag hash, how many (tag, key) pairs that makes, and the
/// count at which stale pairs are next pruned.
struct TagIndex<K> {
    keys: HashMap<u64, HashSet<K>>,
    pairs: u64,
    prune_at: u64,
}

impl<K> Default for TagIndex<K> {
    fn default() -> Self {
        TagIndex {
            keys: Default::default(),
            pairs: 0,
            prune_at: 4 * TAG_INDEX_MIN,
        }
    }
}

impl<K: Key, V: Value> LocalTier<K, V> {
    /// The tier over `store`, used when `on`; hits are counted when `counted`.
    pub(super) fn new(on: bool, counted: bool, clock: Clock, store: AnyStore<K, V>) -> Self {
        if on {
            clock.keep_recent();
        }
        LocalTier {
            on,
            counted: on && counted,
            clock,
            store,
            generation: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            tag_index: Default::default(),
        }
    }

    /// The one local hit path: `accept` sees the fresh entry and may still
    /// turn it away. `first` is false for the look again after joining a
    /// flight (an expired entry was already counted by the first).
    ///
    /// Freshness is decided by [`Clock::is_before`], which reads the exact
    /// clock only near an entry's deadline. Always inlined: as a call it
    /// spent 16 instructions of a u64 hit saving and restoring registers.
    #[inline(always)]
    pub(super) fn hit<Q: Hash + Equivalent<K> + ?Sized, T>(
        &self,
        metrics: &FnMetrics,
        key: &Q,
        first: bool,
        accept: impl FnOnce(Stored<V>) -> Option<T>,
    ) -> Option<T> {
        if self.counted {
            self.look::<true, Q, T>(metrics, key, first, accept)
        } else if self.on {
            self.look::<false, Q, T>(metrics, key, first, accept)
        } else {
            None
        }
    }

    /// [`LocalTier::hit`] on a tier that is on, counting a hit if `COUNTED`.
    #[inline(always)]
    fn look<const COUNTED: bool, Q: Hash + Equivalent<K> + ?Sized, T>(
        &self,
        metrics: &FnMetrics,
        key: &Q,
        first: bool,
        accept: impl FnOnce(Stored<V>) -> Option<T>,
    ) -> Option<T> {
        match self.store.get(key) {
            Some(entry) if self.clock.is_before(entry.expires_at) => {
                if let Some(found) = accept(entry) {
                    if COUNTED && metrics.count_local_hit() {
                        self.time_lookup(metrics, key);
                    }
                    return Some(found);
                }
            }
            // Left in place: the write-back that follows this miss replaces it,
            // and removing it here could drop a fresh value another thread just wrote.
            Some(_) if first => metrics.record_expired(),
            _ => {}
        }
        None
    }

    /// Records the latency of a hit, sampled: a hit reads no clock for it,
    /// and the sampled one times a repeat of its lookup.
    #[cold]
    #[inline(never)]
    fn time_lookup<Q: Hash + Equivalent<K> + ?Sized>(&self, metrics: &FnMetrics, key: &Q) {
        metrics.sampled();
        let started = self.clock.now();
        let entry = self.store.get(key);
        let fresh = entry.is_some_and(|e| self.clock.is_before(e.expires_at));
        std::hint::black_box(fresh);
        metrics
            .hit_latency
            .record(self.clock.now().nanos_since(started));
    }

    /// The value of `key` if present and fresh, counting nothing.
    pub(super) fn peek(&self, key: &K) -> Option<V> {
        self.store
            .get(key)
            .filter(|e| self.clock.is_before(e.expires_at))
            .map(|e| e.value)
    }

    /// The value of `key` if it expired less than `window` ago, or is fresh.
    pub(super) fn stale(&self, key: &K, window: Duration) -> Option<V> {
        if !self.on {
            return None;
        }
        let e = self.store.get(key)?;
        (self.clock.now() < e.expires_at.saturating_add(window)).then_some(e.value)
    }

    /// The store, for the idle hit path (`pipeline/idle.rs`), which moves
    /// a read entry's deadline.
    pub(super) fn store(&self) -> &AnyStore<K, V> {
        &self.store
    }

    /// Entries held (expired ones until they are read or evicted).
    pub(super) fn len(&self) -> u64 {
        self.store.len()
    }

    /// What the entries weigh (see [`LocalStore::weight`](crate::local::LocalStore::weight)).
    pub(super) fn weight(&self) -> u64 {
        self.store.weight()
    }

    /// What a computation for the key hashing to `hash` notes before it starts.
    #[inline]
    pub(super) fn generation(&self, hash: u64) -> Generation {
        let index = (hash % SLOTS as u64) as usize;
        Generation {
            global: self.generation.load(SeqCst),
            slot: self.slots[index].load(SeqCst),
            index,
        }
    }

    /// Whether nothing invalidated the key since `generation` was noted.
    #[inline]
    pub(super) fn is_current(&self, generation: Generation) -> bool {
        self.generation.load(SeqCst) == generation.global
            && self.slots[generation.index].load(SeqCst) == generation.slot
    }

    /// Voids in-flight computations of keys hashing to `hash`.
    #[inline]
    pub(super) fn bump_slot(&self, hash: u64) {
        self.slots[(hash % SLOTS as u64) as usize].fetch_add(1, SeqCst);
    }

    /// Step 5: stores `value` for `ttl` unless an invalidation happened
    /// since `generation` was noted.
    ///
    /// When an invalidation or `put` races the insert, the entry is removed
    /// afterwards, even if that was the `put`'s value: the race may cost a
    /// recomputation, but it never leaves a stale value in place.
    pub(super) fn write_back(
        &self,
        metrics: &FnMetrics,
        key: K,
        value: V,
        generation: Generation,
        ttl: Option<Duration>,
        tag: u64,
    ) {
        if !self.on {
            return;
        }
        if !self.is_current(generation) {
            metrics.record_not_cached();
            return;
        }
        self.insert(key.clone(), value, ttl, tag);
        // An invalidation may have run between the check above and the insert;
        // it bumps the generation before removing, so re-checking closes the gap.
        if !self.is_current(generation) {
            self.store.remove(&key);
            metrics.record_not_cached();
        }
    }

    /// Stores `value` for `ttl`, replacing any entry (after the caller
    /// voided the key's computations).
    pub(super) fn put(&self, key: K, value: V, ttl: Option<Duration>, tag: u64) {
        if self.on {
            self.insert(key, value, ttl, tag);
        }
    }

    fn insert(&self, key: K, value: V, ttl: Option<Duration>, tag: u64) {
        let expires_at = ttl.map_or(Timestamp::NEVER, |ttl| self.clock.now().saturating_add(ttl));
        self.store.insert(
            key,
            Stored {
                value,
                expires_at,
                tag,
            },
        );
    }

    /// Drops the entry of `key`, whose hash is `hash`, and voids its
    /// computations; `true` when there was one.
    pub(super) fn remove(&self, metrics: &FnMetrics, key: &K, hash: u64) -> bool {
        self.bump_slot(hash);
        let removed = self.store.remove(key);
        metrics.record_invalidations(u64::from(removed));
        removed
    }

    /// Drops every entry and voids every computation.
    pub(super) fn clear(&self, metrics: &FnMetrics) -> u64 {
        self.generation.fetch_add(1, SeqCst);
        let n = self.store.len();
        self.store.clear();
        metrics.record_invalidations(n);
        n
    }

    /// Drops the entries whose stable key's tag is `tag` (a notice names
    /// the stable key, not the arguments).
    pub(super) fn drop_tagged(&self, metrics: &FnMetrics, tag: u64) -> u64 {
        self.bump_slot(tag);
        let n = self.store.retain(&|_, e| e.tag != tag);
        metrics.record_invalidations(n);
        n
    }

    /// Drops the entries for which `matches` holds and voids every computation.
    pub(super) fn drop_matching(&self, metrics: &FnMetrics, matches: &dyn Fn(&K) -> bool) -> u64 {
        self.generation.fetch_add(1, SeqCst);
        let removed = self.store.retain(&|k, _| !matches(k));
        metrics.record_invalidations(removed);
        removed
    }

    /// Records that the entry of `key` carries `tags`.
    pub(super) fn index_tags(&self, key: &K, tags: &[String]) {
        if tags.is_empty() || !self.on {
            return;
        }
        let mut index = self.tag_index.lock().unwrap_or_else(|e| e.into_inner());
        for t in tags {
            let added = index
                .keys
                .entry(xxhash_rust::xxh3::xxh3_64(t.as_bytes()))
                .or_default()
                .insert(key.clone());
            index.pairs += u64::from(added);
        }
        // Entries evicted or expired leave their keys behind: prune when the
        // index outgrows the tier; the next prune waits until it has at least
        // doubled again, so pruning stays amortized O(1) per write.
        if index.pairs > index.prune_at {
            let TagIndex {
                keys,
                pairs,
                prune_at,
            } = &mut *index;
            for set in keys.values_mut() {
                set.retain(|k| self.store.get(k).is_some());
            }
            keys.retain(|_, set| !set.is_empty());
            *pairs = keys.values().map(|set| set.len() as u64).sum();
            *prune_at = (4 * self.store.len().max(TAG_INDEX_MIN)).max(2 * *pairs);
        }
    }

    /// Takes the keys indexed under the tag whose hash is `tag_hash`.
    pub(super) fn take_tag(&self, tag_hash: u64) -> Option<HashSet<K>> {
        let mut index = self.tag_index.lock().unwrap_or_else(|e| e.into_inner());
        let keys = index.keys.remove(&tag_hash);
        index.pairs -= keys.as_ref().map_or(0, |k| k.len() as u64);
        keys
    }

    /// (tag, key) pairs in the tag index (for tests).
    #[cfg(test)]
    pub(super) fn tag_pairs(&self) -> u64 {
        self.tag_index.lock().unwrap().pairs
    }
}
