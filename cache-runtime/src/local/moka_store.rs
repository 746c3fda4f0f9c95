use std::hash::Hash;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use quick_cache::Equivalent;

use super::{ByteBound, Evictions, LocalStore, Stored};

/// A local store backed by [`moka::sync::Cache`] (TinyLFU admission, LRU eviction).
pub struct MokaStore<K, V> {
    cache: Cache<K, Stored<V>>,
}

impl<K, V> MokaStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store holding at most `max_entries` entries.
    pub fn new(max_entries: u64, evictions: Evictions) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_entries.max(1))
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.add(1);
                }
            })
            .build();
        MokaStore { cache }
    }

    /// A store whose entries weigh at most `bound.max_bytes` in all (see
    /// [`weigh`](super::weigh)). moka takes an entry's weight as a `u32`:
    /// one weighing more than 4 GiB counts as 4 GiB. Like its entry bound,
    /// moka applies the byte bound in its maintenance, so the total may run
    /// over it between an insert and the next maintenance (at the latest
    /// [`LocalStore::len`] or [`LocalStore::weight`], which run it).
    pub fn weighed(bound: ByteBound<K>, evictions: Evictions) -> Self {
        let cache = Cache::builder()
            .max_capacity(bound.max_bytes)
            .weigher(move |k, v: &Stored<V>| {
                u32::try_from(bound.weigh(k, &v.value)).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.add(1);
                }
            })
            .build();
        MokaStore { cache }
    }

    /// [`LocalStore::get`] by any form of the key (see [`super::Probe`]).
    #[inline]
    pub(crate) fn get_equivalent<Q: Hash + Equivalent<K> + ?Sized>(
        &self,
        key: &Q,
    ) -> Option<Stored<V>> {
        self.cache.get(key)
    }

    /// Changes the entry under `key` atomically, if there is one and
    /// `change` says so (see [`super::AnyStore::update`]).
    pub(crate) fn update(&self, key: &K, change: impl FnOnce(&mut Stored<V>) -> bool) {
        use moka::ops::compute::Op;
        self.cache.entry_by_ref(key).and_compute_with(|entry| {
            let Some(entry) = entry else {
                return Op::Nop;
            };
            let mut stored = entry.into_value();
            if change(&mut stored) {
                Op::Put(stored)
            } else {
                Op::Nop
            }
        });
    }
}

impl<K, V> LocalStore<K, V> for MokaStore<K, V>
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
        self.cache.invalidate_all();
        // moka applies invalidate_all lazily; make it visible to len() and to readers now.
        self.cache.run_pending_tasks();
    }

    fn retain(&self, keep: &dyn Fn(&K, &Stored<V>) -> bool) -> u64 {
        let doomed: Vec<_> = self
            .cache
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k)
            .collect();
        let mut removed = 0;
        for k in doomed {
            if self.cache.remove(&*k).is_some() {
                removed += 1;
            }
        }
        removed
    }

    fn len(&self) -> u64 {
        // entry_count is eventually consistent; settle pending maintenance first.
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn weight(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}
