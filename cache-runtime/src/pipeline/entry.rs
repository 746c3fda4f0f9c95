//! The call entry: what generated code calls ([`get_or_compute`],
//! [`get_or_compute_async`], [`bypass`]) and the handle on one call's
//! entry ([`CallEntry`]).

use std::future::Future;
use std::hash::Hash;

use quick_cache::Equivalent;

use super::miss::{compute, miss, Awaited};
use super::{FnCache, Key, OutputMode, Value};
use crate::key::KeyError;
use crate::shared;
use crate::value::CacheValue;

/// The pipeline for a sync function: local tier, shared tier, `origin`, write-back.
#[inline]
pub fn get_or_compute<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    // Tags are rendered only now, after a local miss: a hit never pays for them.
    let tags = tags(&key);
    compute::<M, K, R>(cache, key, cache_if, &tags, origin)
}

/// Step 1 for a wrapper whose key is the tuple of its arguments: looks the
/// call up by `probe`, the arguments borrowed ([`Probe`](crate::local::Probe)),
/// so a hit builds no owned key. After a miss the wrapper builds the key
/// and calls [`after_local_miss`] or [`after_local_miss_async`].
#[inline(always)]
pub fn local_hit<M, K, Q, R>(cache: &FnCache<K, M::Value>, probe: &Q) -> Option<R>
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
    Q: Hash + Equivalent<K> + ?Sized,
{
    cache.local_get(probe, Some).map(M::from_cached)
}

/// Steps 2 to 5 for a sync function, after [`local_hit`] missed.
pub fn after_local_miss<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    let tags = tags(&key);
    compute::<M, K, R>(cache, key, cache_if, &tags, origin)
}

/// Steps 2 to 5 for an `async fn`, after [`local_hit`] missed.
pub async fn after_local_miss_async<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl Future<Output = R>,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    let tags = tags(&key);
    miss::<M, K, R, _>(cache, key, cache_if, &tags, Awaited(origin)).await
}

/// The pipeline for an `async fn`: local tier, shared tier, `origin.await`, write-back.
pub async fn get_or_compute_async<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl Future<Output = R>,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    let tags = tags(&key);
    miss::<M, K, R, _>(cache, key, cache_if, &tags, Awaited(origin)).await
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// A handle on the entry of one call: read, invalidate or replace it.
    pub fn entry(&'static self, key: K) -> CallEntry<K, V> {
        CallEntry { cache: self, key }
    }
}

/// One call's entry in a function's cache, from
/// [`entry!`](../layercache/macro.entry.html) or generated code.
pub struct CallEntry<K: 'static, V: 'static> {
    cache: &'static FnCache<K, V>,
    key: K,
}

impl<K: Key, V: Value> CallEntry<K, V> {
    /// The cached value if present and fresh (counts neither hit nor miss).
    pub fn get(&self) -> Option<V> {
        self.cache.peek(&self.key)
    }

    /// Whether a fresh value is cached.
    pub fn is_cached(&self) -> bool {
        self.get().is_some()
    }

    /// Drops this entry everywhere (see [`FnCache::invalidate`]); `true`
    /// when this process or the shared tier held it.
    pub fn invalidate(&self) -> bool {
        self.cache.invalidate(&self.key)
    }

    /// [`CallEntry::invalidate`] for async code.
    pub async fn invalidate_async(&self) -> bool {
        self.cache.invalidate_async(&self.key).await
    }

    /// The exact-arguments key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The stable string key (see [`FnCache::stable_key`]).
    pub fn stable_key(&self) -> Result<String, KeyError> {
        self.cache.stable_key(&self.key)
    }

    /// The function's cache.
    pub fn cache(&self) -> &'static FnCache<K, V> {
        self.cache
    }
}

impl<K: Key, V: CacheValue> CallEntry<K, V> {
    /// Stores `value` as this call's result (priming or refreshing it), in
    /// every tier (see [`FnCache::put`]).
    pub fn put(self, value: V) {
        self.cache.put(self.key, value);
    }

    /// [`CallEntry::put`] for async code.
    pub async fn put_async(self, value: V) {
        self.cache.put_async(self.key, value).await;
    }

    /// The full key of this call in the shared tier
    /// (`{CACHE_KEY_PREFIX}:{stable key}[:v{version}]`), or `None` without
    /// a shared tier (or when it cannot be reached to read the version).
    pub fn shared_key(&self) -> Option<String> {
        let link = self.cache.shared.as_ref()?;
        shared::block_on(self.cache.shared_key(link, &self.key))
            .ok()
            .map(|k| k.full)
    }
}

/// The tags of a function without `tags`.
#[inline(always)]
pub fn no_tags<K>(_: &K) -> Vec<String> {
    Vec::new()
}

/// The `cache_if` of a function without one: every cacheable result is stored.
#[inline(always)]
pub fn always<R>(_: &R) -> bool {
    true
}

/// `unless = ...` held: the call bypasses the cache (counted) and runs the function.
pub fn bypass<K: Key, V: Value, R>(cache: &FnCache<K, V>, origin: impl FnOnce() -> R) -> R {
    cache.metrics.record_bypass();
    origin()
}

/// [`bypass`] for an `async fn`.
pub async fn bypass_async<K: Key, V: Value, R>(
    cache: &FnCache<K, V>,
    origin: impl std::future::Future<Output = R>,
) -> R {
    cache.metrics.record_bypass();
    origin.await
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Steps 1 and 3 only, for a caller that wants the value if it is
    /// cached but must not compute it (a view cache answering `HEAD` from
    /// the `GET`'s entry): the local tier, then the shared tier (a shared
    /// hit is kept locally, as after a miss). Never joins a flight, never
    /// runs anything, never writes a new value. Counts a hit, or a miss when
    /// no tier has the key.
    #[cfg(feature = "axum")]
    pub(crate) async fn lookup_async(&self, key: K) -> Option<V> {
        if let Some(v) = self.local_get(&key, Some) {
            return Some(v);
        }
        if let Some(link) = &self.shared {
            let rendered = self.rendered(&key);
            let generation = self.local.generation(
                rendered
                    .as_ref()
                    .map_or(0, super::shared_link::Rendered::tag),
            );
            if let Ok(hit) = self.shared_get::<V>(link, rendered).await {
                return Some(self.settle_hit(key, hit, generation, &[]));
            }
        }
        self.metrics.record_miss();
        None
    }
}
