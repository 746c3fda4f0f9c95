use std::hash::Hash;

use quick_cache::{
    sync::Cache, DefaultHashBuilder, Equivalent, Lifecycle, OptionsBuilder, Weighter,
};

use super::{ByteBound, Evictions, LocalStore, Stored};

/// Counts quick_cache evictions (including inserts it refused to admit),
/// but not the old value an insert replaces, which quick_cache reports
/// through the same hook: the request state holds the key being inserted.
#[derive(Clone)]
struct CountEvictions(Evictions);

impl<K: Eq, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = Option<K>;

    #[inline]
    fn on_evict(&self, inserting: &mut Option<K>, key: K, _val: V) {
        if inserting.as_ref() != Some(&key) {
            self.0.add(1);
        }
    }
}

/// What an entry weighs against the store's bound: 1 without a byte bound,
/// the [`ByteBound::weigh`] estimate with one. It is computed again each
/// time quick_cache asks (on insert, and when it moves, replaces, evicts
/// or removes the entry; never on a read) rather than kept in the entry,
/// so that no entry of any function pays memory for the byte bound; and it
/// is one type with and without a bound, so every function's store is the
/// same type and a hit takes the same path.
struct EntryWeight<K>(Option<ByteBound<K>>);

impl<K> Clone for EntryWeight<K> {
    fn clone(&self) -> Self {
        EntryWeight(self.0)
    }
}

impl<K: 'static, V: 'static> Weighter<K, Stored<V>> for EntryWeight<K> {
    #[inline]
    fn weight(&self, key: &K, val: &Stored<V>) -> u64 {
        match &self.0 {
            None => 1,
            Some(bound) => bound.weigh(key, &val.value),
        }
    }
}

/// The default local store: a sharded [`quick_cache`] S3-FIFO cache.
///
/// # What `max_entries` guarantees
///
/// quick_cache splits its bound evenly over its shards and a key's shard
/// is picked by its hash, so a working set of exactly `max_entries` keys
/// leaves some shards over their share and others under: a plain bound of
/// 10,000 held about 9,894 of 10,000 keys, and the rest missed forever.
/// Each shard therefore gets headroom of six standard deviations of the
/// number of keys a uniform hash puts on it: any `max_entries` distinct
/// keys fit whole (a one-in-a-billion chance per shard that they do not),
/// so a working set of `max_entries` keys is served entirely from the
/// tier after warm-up. The store may then hold a little more than
/// `max_entries`: at most `max_entries + 6·√(max_entries·shards)`, and
/// shards are kept to at least 1,024 entries each, so that is at most
/// 19 % more (1.7 % at a million entries). Below 2,048 entries there is one
/// shard and the bound is exact.
///
/// # What `max_bytes` guarantees
///
/// Built with [`weighed`](Self::weighed), each entry weighs what
/// [`ByteBound::weigh`] says (see [`weigh`](super::weigh)), recomputed
/// whenever quick_cache moves or drops it (nothing is stored per entry),
/// and the weighed total never exceeds `max_bytes`: the bytes
/// are split over shards of at least 1 MiB each (one shard below 2 MiB)
/// with no headroom, rounded down to a multiple of the shard count. An
/// entry heavier than its shard's share is not admitted (and counted as an
/// eviction). Without a byte bound every entry weighs 1.
pub struct QuickCacheStore<K, V> {
    cache: Cache<K, Stored<V>, EntryWeight<K>, DefaultHashBuilder, CountEvictions>,
}

impl<K, V> QuickCacheStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store holding any `max_entries` keys (see the type's documentation).
    pub fn new(max_entries: u64, evictions: Evictions) -> Self {
        let (shards, capacity) = sharding(max_entries.max(1));
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        QuickCacheStore::with_capacity(shards, items, capacity, None, evictions)
    }

    /// A store whose entries weigh at most `bound.max_bytes` in all (see
    /// the type's documentation).
    pub fn weighed(bound: ByteBound<K>, evictions: Evictions) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let mut shards = (cpus * 4).next_power_of_two() as u64;
        while shards > 1 && bound.max_bytes / shards < MIN_SHARD_BYTES {
            shards /= 2;
        }
        // Sizes the initial tables only (they grow): a guess of 4 KiB an
        // entry, capped so a large bound does not allocate up front.
        let items = (bound.max_bytes / 4096).clamp(32 * shards, 1 << 16) as usize;
        let capacity = (bound.max_bytes / shards) * shards;
        QuickCacheStore::with_capacity(shards as usize, items, capacity, Some(bound), evictions)
    }

    fn with_capacity(
        shards: usize,
        items: usize,
        weight: u64,
        bytes: Option<ByteBound<K>>,
        evictions: Evictions,
    ) -> Self {
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(weight)
            .build()
            .expect("capacity options are always valid when both are set");
        let cache = Cache::with_options(
            options,
            EntryWeight(bytes),
            DefaultHashBuilder::default(),
            CountEvictions(evictions),
        );
        QuickCacheStore { cache }
    }

    /// [`LocalStore::get`] by any form of the key (see [`super::Probe`]).
    #[inline]
    pub(crate) fn get_equivalent<Q: Hash + Equivalent<K> + ?Sized>(
        &self,
        key: &Q,
    ) -> Option<Stored<V>> {
        self.cache.get(key)
    }

    /// Changes the entry under `key` in place, under its shard's lock, if
    /// there is one and `change` says so (see [`super::AnyStore::update`]).
    pub(crate) fn update(&self, key: &K, change: impl FnOnce(&mut Stored<V>) -> bool) {
        use quick_cache::sync::{EntryAction, EntryResult};
        // A zero timeout: a key being loaded through quick_cache's own
        // placeholder (never the pipeline's: its flights are its own) is left alone.
        match self
            .cache
            .entry(key, Some(std::time::Duration::ZERO), |_, v| {
                change(v);
                EntryAction::Retain(())
            }) {
            // Dropping the guard unused takes the placeholder away again.
            EntryResult::Vacant(guard) => drop(guard),
            EntryResult::Retained(())
            | EntryResult::Removed(..)
            | EntryResult::Replaced(..)
            | EntryResult::Timeout => {}
        }
    }
}

/// Fewest entries per shard: fewer, larger shards keep the headroom small.
const MIN_SHARD_ENTRIES: u64 = 1024;

/// Fewest bytes per shard under a byte bound: a shard refuses an entry
/// heavier than its share.
const MIN_SHARD_BYTES: u64 = 1 << 20;

/// Standard deviations of headroom per shard.
const HEADROOM_SIGMAS: f64 = 6.0;

/// The shard count (quick_cache's default of four per CPU, halved while a
/// shard would get under [`MIN_SHARD_ENTRIES`]) and the total capacity
/// that gives each shard its share of `max_entries` plus the headroom.
fn sharding(max_entries: u64) -> (usize, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut shards = (cpus * 4).next_power_of_two() as u64;
    while shards > 1 && max_entries / shards < MIN_SHARD_ENTRIES {
        shards /= 2;
    }
    if shards == 1 {
        return (1, max_entries);
    }
    let share = max_entries.div_ceil(shards);
    // Keys per shard under a uniform hash: binomial(max_entries, 1 / shards).
    let p = 1.0 / shards as f64;
    let sigma = (max_entries as f64 * p * (1.0 - p)).sqrt();
    let per_shard = share + (HEADROOM_SIGMAS * sigma).ceil() as u64;
    (shards as usize, per_shard.saturating_mul(shards))
}

impl<K, V> LocalStore<K, V> for QuickCacheStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    fn get(&self, key: &K) -> Option<Stored<V>> {
        self.cache.get(key)
    }

    #[inline]
    fn insert(&self, key: K, entry: Stored<V>) {
        let mut inserting = Some(key.clone());
        self.cache.insert_with_lifecycle(key, entry, &mut inserting);
    }

    fn remove(&self, key: &K) -> bool {
        self.cache.remove(key).is_some()
    }

    fn clear(&self) {
        self.cache.clear();
    }

    fn retain(&self, keep: &dyn Fn(&K, &Stored<V>) -> bool) -> u64 {
        let before = self.cache.len() as u64;
        self.cache.retain(|k, v| keep(k, v));
        before.saturating_sub(self.cache.len() as u64)
    }

    fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    fn weight(&self) -> u64 {
        self.cache.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::local::weigh::heap_bytes_of;

    fn entry(v: u32) -> Stored<u32> {
        Stored {
            value: v,
            expires_at: Timestamp::ZERO,
            tag: 0,
        }
    }

    #[test]
    fn a_working_set_of_max_entries_keys_is_held_whole() {
        for max_entries in [10_000u64, 100_000] {
            let evictions = Evictions::default();
            let store: QuickCacheStore<u64, u32> =
                QuickCacheStore::new(max_entries, evictions.clone());
            for k in 0..max_entries {
                store.insert(k, entry(0));
            }
            assert_eq!(evictions.get(), 0, "bound {max_entries}");
            assert_eq!(store.len(), max_entries);
        }
    }

    #[test]
    fn the_headroom_is_at_most_a_fifth_and_none_for_one_shard() {
        for max_entries in [1u64, 100, 2047, 2048, 10_000, 1_000_000, 1 << 40] {
            let (shards, capacity) = sharding(max_entries);
            assert!(capacity >= max_entries, "{max_entries}");
            assert!(
                (capacity as f64) <= max_entries as f64 * 1.2,
                "{max_entries}: {capacity} over {shards} shards"
            );
            if shards == 1 {
                assert_eq!(capacity, max_entries);
            }
        }
        assert_eq!(sharding(2047), (1, 2047), "under 2,048 entries: one shard");
    }

    #[test]
    fn replacing_a_key_is_not_an_eviction_but_overflowing_the_bound_is() {
        let evictions = Evictions::default();
        let store: QuickCacheStore<u32, u32> = QuickCacheStore::new(100, evictions.clone());
        for v in 0..10 {
            store.insert(1, entry(v));
        }
        assert_eq!(store.get(&1).map(|e| e.value), Some(9));
        assert_eq!(evictions.get(), 0, "ten writes of one key evict nothing");
        for k in 0..1000 {
            store.insert(k, entry(k));
        }
        assert!(store.len() <= 100);
        assert!(evictions.get() >= 800, "{} evictions", evictions.get());
    }

    fn blob(v: Vec<u8>) -> Stored<Vec<u8>> {
        Stored {
            value: v,
            expires_at: Timestamp::NEVER,
            tag: 0,
        }
    }

    fn bound(max_bytes: u64, max_entries: Option<u64>) -> ByteBound<u32> {
        ByteBound::new(
            max_bytes,
            max_entries,
            Some(|_, v| heap_bytes_of::<Vec<u8>>(v)),
        )
    }

    #[test]
    fn the_weighed_total_stays_under_max_bytes_and_counts_evictions() {
        let evictions = Evictions::default();
        let store =
            QuickCacheStore::<u32, Vec<u8>>::weighed(bound(100_000, None), evictions.clone());
        for k in 0..1_000u32 {
            store.insert(k, blob(vec![0; 1_000]));
            assert!(store.weight() <= 100_000, "{} after {k}", store.weight());
        }
        assert!(
            store.len() < 100,
            "{} entries of over 1,000 bytes",
            store.len()
        );
        assert!(evictions.get() >= 900, "{} evictions", evictions.get());
    }

    #[test]
    fn replacing_an_entry_replaces_its_weight() {
        let store =
            QuickCacheStore::<u32, Vec<u8>>::weighed(bound(100_000, None), Evictions::default());
        store.insert(1, blob(vec![0; 10_000]));
        let heavy = store.weight();
        store.insert(1, blob(vec![0; 10]));
        assert!(
            store.weight() < heavy - 9_000,
            "{} then {}",
            heavy,
            store.weight()
        );
        assert_eq!(store.get(&1).map(|e| e.value.len()), Some(10));
    }

    #[test]
    fn weights_recomputed_on_removal_and_eviction_balance_to_zero() {
        let store =
            QuickCacheStore::<u32, Vec<u8>>::weighed(bound(100_000, None), Evictions::default());
        for k in 0..500u32 {
            store.insert(k, blob(vec![0; (k as usize * 37) % 2_000]));
        }
        for k in 0..500u32 {
            store.remove(&k);
        }
        assert_eq!((store.len(), store.weight()), (0, 0));
    }

    #[test]
    fn an_entry_carries_no_weight_of_its_own() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<Stored<u64>>(),
            size_of::<u64>() + size_of::<Timestamp>() + size_of::<u64>()
        );
    }

    #[test]
    fn with_max_entries_both_bounds_hold() {
        let store = QuickCacheStore::<u32, Vec<u8>>::weighed(
            bound(100_000, Some(10)),
            Evictions::default(),
        );
        for k in 0..100u32 {
            store.insert(k, blob(vec![0; 10]));
        }
        assert!(
            store.len() <= 10,
            "{} entries over a bound of 10",
            store.len()
        );
        assert!(store.weight() <= 100_000);
    }
}
