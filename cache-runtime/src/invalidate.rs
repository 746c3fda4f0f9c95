//! The registry of every function cache in the process, and the
//! operations that span them: prefix invalidation, clear, stats.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};

use crate::metrics::{FunctionStats, Stats};
use crate::pipeline::{FnCache, FnSpec, Key, Value};

/// What the registry needs of a function cache, whatever its key and value types.
trait Registered: Send + Sync {
    fn stats(&self) -> FunctionStats;
    fn invalidate_all(&self) -> u64;
    fn invalidate_prefix(&self, prefix: &str) -> u64;
}

impl<K: Key, V: Value> Registered for FnCache<K, V> {
    fn stats(&self) -> FunctionStats {
        FnCache::stats(self)
    }
    fn invalidate_all(&self) -> u64 {
        FnCache::invalidate_all(self)
    }
    fn invalidate_prefix(&self, prefix: &str) -> u64 {
        FnCache::invalidate_prefix(self, prefix)
    }
}

static REGISTRY: RwLock<Vec<&'static dyn Registered>> = RwLock::new(Vec::new());

fn registry() -> std::sync::RwLockReadGuard<'static, Vec<&'static dyn Registered>> {
    // A panic while holding the lock cannot leave the Vec half-written; keep going.
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// Creates, leaks and registers a function cache.
pub(crate) fn register<K: Key, V: Value>(cache: FnCache<K, V>) -> &'static FnCache<K, V> {
    let cache: &'static FnCache<K, V> = Box::leak(Box::new(cache));
    let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if reg.iter().any(|c| c.stats().name == cache.name()) {
        tracing::warn!(
            name = cache.name(),
            "layercache: two cached functions share one name; give them distinct key_prefix values so their keys and stats stay apart"
        );
    }
    reg.push(cache);
    cache
}

/// The slot a generated wrapper keeps its cache in.
pub type CacheSlot = OnceLock<&'static (dyn Any + Send + Sync)>;

/// The cache behind `slot`, created on first use from `spec`.
///
/// One slot normally holds one cache. A `#[cached]` method in a generic
/// `impl` shares one slot between instantiations; each instantiation then
/// gets its own cache from a side table keyed by type.
#[inline]
pub fn slot_cache<K: Key, V: Value>(
    slot: &'static CacheSlot,
    spec: impl FnOnce() -> FnSpec<K>,
) -> &'static FnCache<K, V> {
    let mut spec = Some(spec);
    let erased = *slot.get_or_init(|| {
        let spec = spec.take().expect("spec is used once");
        register(FnCache::<K, V>::new(spec())) as &'static (dyn Any + Send + Sync)
    });
    match erased.downcast_ref::<FnCache<K, V>>() {
        Some(cache) => cache,
        None => per_type_cache(
            slot,
            spec.expect("the slot was filled by another instantiation"),
        ),
    }
}

#[cold]
fn per_type_cache<K: Key, V: Value>(
    slot: &'static CacheSlot,
    spec: impl FnOnce() -> FnSpec<K>,
) -> &'static FnCache<K, V> {
    type Table = Mutex<HashMap<(usize, TypeId), &'static (dyn Any + Send + Sync)>>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    let id = (
        slot as *const CacheSlot as usize,
        TypeId::of::<FnCache<K, V>>(),
    );
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    let erased = *table.entry(id).or_insert_with(|| {
        register(FnCache::<K, V>::new(spec())) as &'static (dyn Any + Send + Sync)
    });
    erased
        .downcast_ref::<FnCache<K, V>>()
        .expect("the side table is keyed by the cache's type")
}

/// Counters of every cached function called so far (and of the manual cache).
///
/// ```
/// let stats = layercache_runtime::stats();
/// for f in &stats.functions {
///     println!("{}: {:.0}% of {} calls", f.name, f.hit_rate() * 100.0, f.requests());
/// }
/// ```
pub fn stats() -> Stats {
    let mut functions: Vec<FunctionStats> = registry().iter().map(|c| c.stats()).collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Stats { functions }
}

/// Drops every entry, of every function and of the manual cache, whose
/// stable key starts with `prefix` (the global `CACHE_KEY_PREFIX` is not
/// part of what is matched). Returns how many entries went.
///
/// Rendered argument values are escaped (see [`key::escape`](crate::key::escape)),
/// so build a prefix from a runtime value with `escape`.
///
/// An empty prefix drops nothing (it is refused and logged): a template
/// rendered from an empty value must not wipe every cache; use [`clear`].
pub fn invalidate_prefix(prefix: &str) -> u64 {
    if prefix.is_empty() {
        tracing::warn!("layercache: refusing to invalidate the empty prefix (it would drop everything); call clear() for that");
        return 0;
    }
    let removed = registry().iter().map(|c| c.invalidate_prefix(prefix)).sum();
    tracing::debug!(prefix, removed, "layercache: prefix invalidated");
    removed
}

/// Drops every entry of every cached function and of the manual cache
/// (Flask-Caching's `cache.clear()`). Returns how many entries went.
pub fn clear() -> u64 {
    let removed = registry().iter().map(|c| c.invalidate_all()).sum();
    tracing::debug!(removed, "layercache: cleared");
    removed
}
