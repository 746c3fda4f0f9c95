use std::hash::Hash;

use quick_cache::{
    sync::Cache, DefaultHashBuilder, Equivalent, Lifecycle, OptionsBuilder, UnitWeighter,
};

use super::{Evictions, LocalStore, Stored};

/// Counts quick_cache evictions (including inserts it refused to admit),
/// but not the old value an insert replaces, which quick_cache reports
/// through the same hook: the request state holds the key being inserted.
#[derive(Clone)]
pub(super) struct CountEvictions(pub(super) Evictions);

impl<K: Eq, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = Option<K>;

    #[inline]
    fn on_evict(&self, inserting: &mut Option<K>, key: K, _val: V) {
        if inserting.as_ref() != Some(&key) {
            self.0.add(1);
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
pub struct QuickCacheStore<K, V> {
    cache: Cache<K, Stored<V>, UnitWeighter, DefaultHashBuilder, CountEvictions>,
}

impl<K, V> QuickCacheStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store holding any `max_entries` keys (see the type's documentation).
    pub fn new(max_entries: u64, evictions: Evictions) -> Self {
        let (shards, capacity) = sharding(max_entries.max(1));
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
            .weight_capacity(capacity)
            .build()
            .expect("capacity options are always valid when both are set");
        let cache = Cache::with_options(
            options,
            UnitWeighter,
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
}

/// Fewest entries per shard: fewer, larger shards keep the headroom small.
const MIN_SHARD_ENTRIES: u64 = 1024;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

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
}
