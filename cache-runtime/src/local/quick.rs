use std::hash::Hash;

use quick_cache::{sync::Cache, DefaultHashBuilder, Lifecycle, OptionsBuilder, UnitWeighter};

use super::{Evictions, LocalStore, Stored};

/// Counts quick_cache evictions (including inserts it refused to admit).
#[derive(Clone)]
struct CountEvictions(Evictions);

impl<K, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = ();

    #[inline]
    fn on_evict(&self, _state: &mut (), _key: K, _val: V) {
        self.0.add(1);
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
        self.cache.insert(key, entry);
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
