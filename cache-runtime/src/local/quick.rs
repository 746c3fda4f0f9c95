use std::hash::Hash;

use quick_cache::{sync::Cache, DefaultHashBuilder, Lifecycle, OptionsBuilder, UnitWeighter};

use super::{Evictions, LocalStore, Stored};

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

/// The default local store: a sharded [`quick_cache`] S3-FIFO cache.
pub struct QuickCacheStore<K, V> {
    cache: Cache<K, Stored<V>, UnitWeighter, DefaultHashBuilder, CountEvictions>,
}

impl<K, V> QuickCacheStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store holding at most `max_entries` entries.
    pub fn new(max_entries: u64, evictions: Evictions) -> Self {
        let max_entries = max_entries.max(1);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(usize::try_from(max_entries).unwrap_or(usize::MAX))
            .weight_capacity(max_entries)
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
