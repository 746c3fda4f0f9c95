use std::hash::Hash;

use quick_cache::{sync::Cache, DefaultHashBuilder, Equivalent, OptionsBuilder, Weighter};

use super::quick::CountEvictions;
use super::weigh::ByteBound;
use super::{Evictions, LocalStore, Stored};

/// An entry and its weight, weighed once at insert: quick_cache asks an
/// entry's weight again whenever it moves or evicts it.
#[derive(Clone)]
struct Weighed<V> {
    entry: Stored<V>,
    weight: u64,
}

#[derive(Clone)]
struct ReadWeight;

impl<K, V> Weighter<K, Weighed<V>> for ReadWeight {
    #[inline]
    fn weight(&self, _key: &K, val: &Weighed<V>) -> u64 {
        val.weight
    }
}

/// Fewest bytes per shard: a shard refuses an entry heavier than its share.
const MIN_SHARD_BYTES: u64 = 1 << 20;

/// The local store of a function with `max_bytes`: a [`quick_cache`] cache
/// whose entries weigh what [`ByteBound::weigh`] says (see
/// [`weigh`](super::weigh)), so the weighed total never exceeds
/// `max_bytes`.
///
/// The bytes are split over shards of at least 1 MiB each (one shard up to
/// 2 MiB), and the total is a multiple of the shard count, so the shards'
/// bounds add up to no more than `max_bytes`. An entry heavier than its
/// shard's share is not admitted (and counted as an eviction).
pub struct WeighedStore<K, V> {
    cache: Cache<K, Weighed<V>, ReadWeight, DefaultHashBuilder, CountEvictions>,
    bound: ByteBound<K>,
}

impl<K, V> WeighedStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store whose entries weigh at most `bound.max_bytes` in all.
    pub fn new(bound: ByteBound<K>, evictions: Evictions) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let mut shards = (cpus * 4).next_power_of_two() as u64;
        while shards > 1 && bound.max_bytes / shards < MIN_SHARD_BYTES {
            shards /= 2;
        }
        let per_shard = bound.max_bytes / shards;
        // Sizes the initial tables only (they grow): a guess of 4 KiB an
        // entry, capped so a large bound does not allocate up front.
        let items = (bound.max_bytes / 4096).clamp(32 * shards, 1 << 16);
        let options = OptionsBuilder::new()
            .shards(shards as usize)
            .estimated_items_capacity(items as usize)
            .weight_capacity(per_shard * shards)
            .build()
            .expect("capacity options are always valid when both are set");
        let cache = Cache::with_options(
            options,
            ReadWeight,
            DefaultHashBuilder::default(),
            CountEvictions(evictions),
        );
        WeighedStore { cache, bound }
    }

    /// [`LocalStore::get`] by any form of the key (see [`super::Probe`]).
    #[inline]
    pub(crate) fn get_equivalent<Q: Hash + Equivalent<K> + ?Sized>(
        &self,
        key: &Q,
    ) -> Option<Stored<V>> {
        self.cache.get(key).map(|w| w.entry)
    }
}

impl<K, V> LocalStore<K, V> for WeighedStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get(&self, key: &K) -> Option<Stored<V>> {
        self.cache.get(key).map(|w| w.entry)
    }

    fn insert(&self, key: K, entry: Stored<V>) {
        let weight = self.bound.weigh(&key, &entry.value);
        let mut inserting = Some(key.clone());
        self.cache
            .insert_with_lifecycle(key, Weighed { entry, weight }, &mut inserting);
    }

    fn remove(&self, key: &K) -> bool {
        self.cache.remove(key).is_some()
    }

    fn clear(&self) {
        self.cache.clear();
    }

    fn retain(&self, keep: &dyn Fn(&K, &Stored<V>) -> bool) -> u64 {
        let before = self.cache.len() as u64;
        self.cache.retain(|k, w| keep(k, &w.entry));
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

    fn entry(v: Vec<u8>) -> Stored<Vec<u8>> {
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
        let store = WeighedStore::<u32, Vec<u8>>::new(bound(100_000, None), evictions.clone());
        for k in 0..1_000u32 {
            store.insert(k, entry(vec![0; 1_000]));
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
        let store = WeighedStore::<u32, Vec<u8>>::new(bound(100_000, None), Evictions::default());
        store.insert(1, entry(vec![0; 10_000]));
        let heavy = store.weight();
        store.insert(1, entry(vec![0; 10]));
        assert!(
            store.weight() < heavy - 9_000,
            "{} then {}",
            heavy,
            store.weight()
        );
        assert_eq!(store.get(&1).map(|e| e.value.len()), Some(10));
    }

    #[test]
    fn with_max_entries_both_bounds_hold() {
        let store =
            WeighedStore::<u32, Vec<u8>>::new(bound(100_000, Some(10)), Evictions::default());
        for k in 0..100u32 {
            store.insert(k, entry(vec![0; 10]));
        }
        assert!(
            store.len() <= 10,
            "{} entries over a bound of 10",
            store.len()
        );
        assert!(store.weight() <= 100_000);
    }
}
