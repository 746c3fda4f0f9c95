//! The in-process tier: a bounded map from exact arguments to a value and
//! its expiry time.
//!
//! The pipeline talks to it through [`LocalStore`], so the store behind it
//! can be chosen per process ([`LocalStoreKind`]). Expiry is decided by the
//! pipeline on read (the store only keeps the timestamp); the bound is the
//! store's job.

use crate::clock::Timestamp;
pub use crate::config::LocalStoreKind;
pub use crate::metrics::Evictions;
use quick_cache::Equivalent;
use std::hash::Hash;

mod probe;
mod quick;
pub mod weigh;
pub use probe::Probe;
pub use quick::QuickCacheStore;
pub use weigh::{ByteBound, HeapBytes};

#[cfg(feature = "moka")]
mod moka_store;
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use moka_store::MokaStore;

/// A value in the local tier and the time it stops being served.
#[derive(Debug, Clone)]
pub struct Stored<V> {
    /// The cached value.
    pub value: V,
    /// When the entry expires; [`Timestamp::NEVER`] for no expiry.
    pub expires_at: Timestamp,
    /// For a function with a shared tier, a 64-bit hash of the entry's
    /// stable key, so an invalidation notice from another process (which
    /// names the stable key, not the arguments) can find it; 0 otherwise.
    pub tag: u64,
}

/// A bounded, concurrent map: the in-process tier of one cached function.
///
/// Implementations must be safe to share across threads and must hold at
/// most their configured number of entries (or, under a [`ByteBound`],
/// weigh at most its bytes), counting every entry they drop to make room in
/// the [`Evictions`] they were built with.
pub trait LocalStore<K, V>: Send + Sync {
    /// A copy of the entry under `key`, expired or not.
    fn get(&self, key: &K) -> Option<Stored<V>>;
    /// Stores `entry` under `key`, replacing any previous one.
    fn insert(&self, key: K, entry: Stored<V>);
    /// Removes the entry under `key`; `true` when there was one.
    fn remove(&self, key: &K) -> bool;
    /// Removes every entry.
    fn clear(&self);
    /// Removes every entry for which `keep` returns `false`; returns how many went.
    fn retain(&self, keep: &dyn Fn(&K, &Stored<V>) -> bool) -> u64;
    /// The number of entries held now (expired ones included until they are read or evicted).
    fn len(&self) -> u64;
    /// `true` when the store holds no entry.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What the entries weigh together: their estimated bytes under a
    /// [`ByteBound`] (see [`weigh`]), otherwise one each.
    fn weight(&self) -> u64 {
        self.len()
    }
}

/// Builds the store of `kind` holding at most `max_entries` entries.
pub fn build_store<K, V>(
    kind: LocalStoreKind,
    max_entries: u64,
    evictions: Evictions,
) -> Box<dyn LocalStore<K, V>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    match kind {
        LocalStoreKind::QuickCache => Box::new(QuickCacheStore::new(max_entries, evictions)),
        #[cfg(feature = "moka")]
        LocalStoreKind::Moka => Box::new(MokaStore::new(max_entries, evictions)),
    }
}

/// The store of a function's local tier, as the pipeline holds it: an
/// enum rather than a `Box<dyn LocalStore>`, so a lookup may take a
/// borrowed form of the key (a trait object cannot have a generic method)
/// and a hit makes no indirect call. Everything else goes through
/// [`LocalStore`].
pub(crate) enum AnyStore<K, V> {
    Quick(QuickCacheStore<K, V>),
    #[cfg(feature = "moka")]
    Moka(MokaStore<K, V>),
}

impl<K, V> AnyStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The store of `kind` for `max_entries` entries, or for what `bytes`
    /// allows (both bounds when `bytes` was made with `max_entries`).
    pub(crate) fn build(
        kind: LocalStoreKind,
        max_entries: u64,
        bytes: Option<ByteBound<K>>,
        evictions: Evictions,
    ) -> Self {
        match (kind, bytes) {
            (LocalStoreKind::QuickCache, None) => {
                AnyStore::Quick(QuickCacheStore::new(max_entries, evictions))
            }
            (LocalStoreKind::QuickCache, Some(bytes)) => {
                AnyStore::Quick(QuickCacheStore::weighed(bytes, evictions))
            }
            #[cfg(feature = "moka")]
            (LocalStoreKind::Moka, None) => AnyStore::Moka(MokaStore::new(max_entries, evictions)),
            #[cfg(feature = "moka")]
            (LocalStoreKind::Moka, Some(bytes)) => {
                AnyStore::Moka(MokaStore::weighed(bytes, evictions))
            }
        }
    }

    /// A copy of the entry under the key `key` stands for, expired or not.
    #[inline]
    pub(crate) fn get<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> Option<Stored<V>> {
        match self {
            AnyStore::Quick(store) => store.get_equivalent(key),
            #[cfg(feature = "moka")]
            AnyStore::Moka(store) => store.get_equivalent(key),
        }
    }

    /// Changes the entry under `key` in place if there is one: `change`
    /// sees the entry held now (not a copy read earlier, which a write may
    /// since have replaced) and returns whether it changed it. What sliding
    /// expiration (`time_to_idle`) moves a read entry's deadline with.
    pub(crate) fn update(&self, key: &K, change: impl FnOnce(&mut Stored<V>) -> bool) {
        match self {
            AnyStore::Quick(store) => store.update(key, change),
            #[cfg(feature = "moka")]
            AnyStore::Moka(store) => store.update(key, change),
        }
    }
}

impl<K, V> std::ops::Deref for AnyStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Target = dyn LocalStore<K, V>;

    fn deref(&self) -> &Self::Target {
        match self {
            AnyStore::Quick(store) => store,
            #[cfg(feature = "moka")]
            AnyStore::Moka(store) => store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn kinds() -> Vec<LocalStoreKind> {
        vec![
            LocalStoreKind::QuickCache,
            #[cfg(feature = "moka")]
            LocalStoreKind::Moka,
        ]
    }

    fn entry(v: u32) -> Stored<u32> {
        Stored {
            tag: 0,
            value: v,
            expires_at: Timestamp::NEVER,
        }
    }

    #[test]
    fn every_store_gets_inserts_removes_and_clears() {
        for kind in kinds() {
            let store = build_store::<String, u32>(kind, 100, Evictions::default());
            store.insert("a".into(), entry(1));
            store.insert("b".into(), entry(2));
            assert_eq!(store.get(&"a".into()).map(|e| e.value), Some(1), "{kind:?}");
            assert!(store.remove(&"a".into()), "{kind:?}");
            assert!(!store.remove(&"a".into()), "{kind:?}");
            assert!(store.get(&"a".into()).is_none(), "{kind:?}");
            store.clear();
            assert!(store.get(&"b".into()).is_none(), "{kind:?}");
            assert_eq!(store.len(), 0, "{kind:?}");
        }
    }

    #[test]
    fn every_store_retains_by_predicate_and_reports_removals() {
        for kind in kinds() {
            let store = build_store::<u32, u32>(kind, 100, Evictions::default());
            for i in 0..10 {
                store.insert(i, entry(i));
            }
            let removed = store.retain(&|k, _| k.is_multiple_of(2));
            assert_eq!(removed, 5, "{kind:?}");
            assert!(store.get(&3).is_none(), "{kind:?}");
            assert_eq!(store.get(&4).map(|e| e.value), Some(4), "{kind:?}");
        }
    }

    #[test]
    fn every_store_enforces_its_bound_and_counts_evictions() {
        for kind in kinds() {
            let evictions = Evictions::default();
            let store = build_store::<u32, u32>(kind, 50, evictions.clone());
            for i in 0..1_000 {
                store.insert(i, entry(i));
            }
            let len = store.len();
            assert!(len <= 50, "{kind:?} holds {len} entries over a bound of 50");
            assert!(
                evictions.get() >= 1_000 - 50,
                "{kind:?} counted {} evictions",
                evictions.get()
            );
        }
    }

    #[test]
    fn every_store_holds_its_byte_bound_and_counts_evictions() {
        for kind in kinds() {
            let evictions = Evictions::default();
            let heap: HeapBytes<u32> = |_, v| weigh::heap_bytes_of::<Vec<u8>>(v);
            let bound = ByteBound::new(100_000, None, Some(heap));
            let store = AnyStore::<u32, Vec<u8>>::build(kind, 10, Some(bound), evictions.clone());
            for i in 0..1_000 {
                let value = vec![0; 1_000];
                store.insert(
                    i,
                    Stored {
                        value,
                        expires_at: Timestamp::NEVER,
                        tag: 0,
                    },
                );
            }
            let weight = store.weight();
            assert!(
                weight <= 100_000,
                "{kind:?} weighs {weight} over a bound of 100,000"
            );
            assert!(
                store.len() > 10,
                "{kind:?}: bytes bound it, not max_entries"
            );
            assert!(
                evictions.get() >= 900,
                "{kind:?} counted {}",
                evictions.get()
            );
        }
    }

    #[test]
    fn every_store_updates_an_entry_in_place_and_creates_none() {
        for kind in kinds() {
            let store = AnyStore::<u32, u32>::build(kind, 10, None, Evictions::default());
            store.insert(1, entry(7));
            store.update(&1, |e| {
                e.tag = 42;
                true
            });
            assert_eq!(
                store.get(&1).map(|e| (e.value, e.tag)),
                Some((7, 42)),
                "{kind:?}"
            );
            store.update(&1, |e| {
                e.tag = 43;
                false
            });
            store.update(&2, |_| panic!("no entry to change"));
            assert!(store.get(&2).is_none(), "{kind:?}");
            assert_eq!(store.len(), 1, "{kind:?}");
        }
    }

    #[test]
    fn stored_entries_keep_their_expiry() {
        for kind in kinds() {
            let store = build_store::<u32, u32>(kind, 10, Evictions::default());
            let at = Timestamp::NEVER;
            let _ = at.saturating_add(Duration::from_secs(1));
            store.insert(
                1,
                Stored {
                    value: 7,
                    expires_at: at,
                    tag: 0,
                },
            );
            assert_eq!(store.get(&1).map(|e| e.expires_at), Some(at), "{kind:?}");
        }
    }
}
