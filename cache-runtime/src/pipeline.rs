//! [`FnCache`]: the cache of one function, and the lookup pipeline that the
//! macro-generated wrappers run.
//!
//! ```text
//! lookup (local tier, expiry checked) ── hit ─▶ return a clone
//!   └─ miss ─▶ origin (the function body) ─▶ write-back unless Err / None / an invalidation raced it
//! ```

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::config::{self, CacheType};
use crate::key::KeyError;
use crate::local::{build_store, Evictions, LocalStore, Stored};
use crate::metrics::{FnMetrics, FunctionStats};

/// How long a function's entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The configured default ([`Config::default_timeout`](crate::Config::default_timeout)).
    Default,
    /// Entries never expire (`timeout = 0`, as in Flask-Caching).
    Never,
    /// Entries expire this long after they are written.
    After(Duration),
}

/// How a key is rendered into the suffix of its stable string key.
pub type RenderKey<K> = fn(&K, &mut String) -> Result<(), KeyError>;

/// What a cached function declares about its cache; built by generated code.
pub struct FnSpec<K> {
    /// Metrics name: the `key_prefix`, or the function's path.
    pub name: String,
    /// The key namespace: stable keys are `{namespace}:{suffix}` (just the
    /// suffix when empty, as for the manual cache).
    pub namespace: String,
    /// Entry lifetime.
    pub timeout: Timeout,
    /// Local-tier bound; `None` for the configured default.
    pub max_entries: Option<u64>,
    /// Renders a key's stable suffix.
    pub render: RenderKey<K>,
}

/// The bounds every local key satisfies: the exact (owned) arguments.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

/// The bounds every cached value satisfies in the local tier.
pub trait Value: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Value for T {}

/// The cache of one function: its local tier, metrics and invalidation state.
///
/// Generated code creates one per `#[cached]` function on first call; user
/// code reaches it through [`fn_cache!`](../layercache/macro.fn_cache.html).
pub struct FnCache<K, V> {
    namespace: String,
    ttl: Option<Duration>,
    enabled: bool,
    clock: Clock,
    store: Box<dyn LocalStore<K, V>>,
    metrics: FnMetrics,
    /// Bumped by every invalidation and `put`; a computation that started
    /// under an older generation does not write back (it may hold data read
    /// before the change that caused the invalidation).
    generation: AtomicU64,
    render: RenderKey<K>,
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// A cache configured by `spec` and the process configuration.
    pub fn new(spec: FnSpec<K>) -> FnCache<K, V> {
        let config = config::config();
        FnCache::with_config(spec, config)
    }

    pub(crate) fn with_config(spec: FnSpec<K>, config: &config::Config) -> FnCache<K, V> {
        let evictions = Evictions::default();
        let max_entries = spec.max_entries.unwrap_or(config.default_max_entries());
        let ttl = match spec.timeout {
            Timeout::Default => config.default_timeout(),
            Timeout::Never => None,
            Timeout::After(d) => Some(d),
        };
        tracing::debug!(name = %spec.name, ?ttl, max_entries, cache_type = %config.cache_type(), "layercache: function cache created");
        FnCache {
            namespace: spec.namespace,
            ttl,
            enabled: config.cache_type() != CacheType::Null,
            clock: config.clock().clone(),
            store: build_store(config.local_store(), max_entries, evictions.clone()),
            metrics: FnMetrics::new(spec.name, evictions),
            generation: AtomicU64::new(0),
            render: spec.render,
        }
    }

    /// The metrics name.
    pub fn name(&self) -> &str {
        self.metrics.name()
    }

    /// The key namespace (`key_prefix` or function path).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How long entries live; `None` when they never expire.
    pub fn timeout(&self) -> Option<Duration> {
        self.ttl
    }

    /// Whether caching is on (`false` under `CACHE_TYPE=null`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Entries held in the local tier (expired ones until they are read or evicted).
    pub fn len(&self) -> u64 {
        self.store.len()
    }

    /// `true` when the local tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This function's counters now.
    pub fn stats(&self) -> FunctionStats {
        self.metrics.snapshot(self.store.len())
    }

    /// The stable string key of `key` (without the global `CACHE_KEY_PREFIX`):
    /// `{namespace}:{rendered template or 128-bit hash}`.
    pub fn stable_key(&self, key: &K) -> Result<String, KeyError> {
        let mut out = String::with_capacity(self.namespace.len() + 40);
        if !self.namespace.is_empty() {
            out.push_str(&self.namespace);
            out.push(':');
        }
        (self.render)(key, &mut out)?;
        Ok(out)
    }

    /// When an entry written now with `ttl` expires.
    fn expires_at(&self, ttl: Option<Duration>) -> Timestamp {
        ttl.map_or(Timestamp::NEVER, |ttl| self.clock.now().saturating_add(ttl))
    }

    /// Step 1 of the pipeline: the local tier. Counts the hit or the miss;
    /// `accept` may still turn a found value away (the manual cache uses it
    /// for type checks), which counts as a miss.
    #[inline]
    pub(crate) fn lookup_with<T>(&self, key: &K, accept: impl FnOnce(V) -> Option<T>) -> Option<T> {
        if !self.enabled {
            self.metrics.record_miss();
            return None;
        }
        let now = self.clock.now();
        match self.store.get(key) {
            Some(entry) if now < entry.expires_at => {
                if let Some(found) = accept(entry.value) {
                    if self.metrics.record_local_hit() {
                        self.metrics
                            .hit_latency
                            .record(self.clock.now().nanos_since(now));
                    }
                    return Some(found);
                }
            }
            // Left in place: the write-back that follows this miss replaces it,
            // and removing it here could drop a fresh value another thread just wrote.
            Some(_) => self.metrics.record_expired(),
            None => {}
        }
        self.metrics.record_miss();
        None
    }

    /// The current generation, read before a computation starts.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// Step 5: write-back of a computed value, unless an invalidation happened
    /// since `generation` was read.
    ///
    /// When an invalidation or `put` races the insert, the entry is removed
    /// afterwards, even if that was the `put`'s value: the race may cost a
    /// recomputation, but it never leaves a stale value in place.
    pub(crate) fn write_back(&self, key: K, value: V, generation: u64) {
        self.write_back_with_timeout(key, value, generation, self.ttl)
    }

    pub(crate) fn write_back_with_timeout(
        &self,
        key: K,
        value: V,
        generation: u64,
        ttl: Option<Duration>,
    ) {
        if !self.enabled {
            return;
        }
        if self.generation.load(SeqCst) != generation {
            self.metrics.record_not_cached();
            return;
        }
        let expires_at = self.expires_at(ttl);
        self.store.insert(key.clone(), Stored { value, expires_at });
        // An invalidation may have run between the check above and the insert;
        // it bumps the generation before removing, so re-checking closes the gap.
        if self.generation.load(SeqCst) != generation {
            self.store.remove(&key);
            self.metrics.record_not_cached();
        }
    }

    /// The cached value of `key` if present and fresh, without counting a hit or a miss.
    pub fn peek(&self, key: &K) -> Option<V> {
        let now = self.clock.now();
        self.store
            .get(key)
            .filter(|e| now < e.expires_at)
            .map(|e| e.value)
    }

    /// Stores `value` as the result for `key` (the `#[cache_put]` operation),
    /// replacing any entry and cancelling in-flight computations' write-backs.
    pub fn put(&self, key: K, value: V) {
        self.put_with_timeout(key, value, self.ttl);
    }

    pub(crate) fn put_with_timeout(&self, key: K, value: V, ttl: Option<Duration>) {
        self.generation.fetch_add(1, SeqCst);
        if !self.enabled {
            return;
        }
        let expires_at = self.expires_at(ttl);
        self.store.insert(key, Stored { value, expires_at });
    }

    /// Drops the entry of `key`; `true` when there was one.
    pub fn invalidate(&self, key: &K) -> bool {
        self.generation.fetch_add(1, SeqCst);
        let removed = self.store.remove(key);
        self.metrics.record_invalidations(u64::from(removed));
        removed
    }

    /// Drops every entry of this function; returns how many there were.
    pub fn invalidate_all(&self) -> u64 {
        self.generation.fetch_add(1, SeqCst);
        let n = self.store.len();
        self.store.clear();
        self.metrics.record_invalidations(n);
        n
    }

    /// Drops every entry whose stable key (without `CACHE_KEY_PREFIX`)
    /// starts with `prefix`; returns how many went.
    pub fn invalidate_prefix(&self, prefix: &str) -> u64 {
        let ns = self.namespace.as_str();
        let suffix_prefix = if ns.is_empty() {
            prefix
        } else if prefix.len() <= ns.len() {
            // Every key starts with "{ns}:", so either all match or none does.
            return if ns.starts_with(prefix) {
                self.invalidate_all()
            } else {
                0
            };
        } else if prefix.starts_with(ns) && prefix.as_bytes()[ns.len()] == b':' {
            &prefix[ns.len() + 1..]
        } else {
            return 0;
        };
        self.generation.fetch_add(1, SeqCst);
        let render = self.render;
        let mut buf = String::new();
        let buf = std::cell::RefCell::new(&mut buf);
        let removed = self.store.retain(&|k, _| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            // A key that cannot be rendered cannot match a prefix: keep it.
            render(k, &mut buf).is_err() || !buf.starts_with(suffix_prefix)
        });
        self.metrics.record_invalidations(removed);
        removed
    }

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

    /// Drops this entry; `true` when there was one.
    pub fn invalidate(&self) -> bool {
        self.cache.invalidate(&self.key)
    }

    /// Stores `value` as this call's result (priming or refreshing it).
    pub fn put(self, value: V) {
        self.cache.put(self.key, value);
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

/// How a function's return value maps to what is cached.
pub trait OutputMode<R> {
    /// What the cache stores.
    type Value: Value;
    /// The part of `r` to store, or `None` when `r` must not be cached.
    fn cacheable(r: &R) -> Option<&Self::Value>;
    /// Rebuilds a return value from a cached one.
    fn from_cached(v: Self::Value) -> R;
}

/// Whether a return value counts as success for `#[cache_invalidate]` and
/// `#[cache_put]`: everything but `Err`.
pub trait Succeeds<R> {
    /// `false` only for `Err` under [`OkOnly`].
    fn succeeded(r: &R) -> bool;
}

impl<R> Succeeds<R> for Plain {
    #[inline]
    fn succeeded(_: &R) -> bool {
        true
    }
}

impl<T, E> Succeeds<Result<T, E>> for OkOnly {
    #[inline]
    fn succeeded(r: &Result<T, E>) -> bool {
        r.is_ok()
    }
}

impl<T> Succeeds<Option<T>> for SomeOnly {
    #[inline]
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

/// Any return type: always cached.
pub struct Plain;
/// `Result<T, E>`: only `Ok(T)` is cached.
pub struct OkOnly;
/// `Option<T>`: only `Some(T)` is cached.
pub struct SomeOnly;

impl<T: Value> OutputMode<T> for Plain {
    type Value = T;
    #[inline]
    fn cacheable(r: &T) -> Option<&T> {
        Some(r)
    }
    #[inline]
    fn from_cached(v: T) -> T {
        v
    }
}

impl<T: Value, E> OutputMode<Result<T, E>> for OkOnly {
    type Value = T;
    #[inline]
    fn cacheable(r: &Result<T, E>) -> Option<&T> {
        r.as_ref().ok()
    }
    #[inline]
    fn from_cached(v: T) -> Result<T, E> {
        Ok(v)
    }
}

impl<T: Value> OutputMode<Option<T>> for SomeOnly {
    type Value = T;
    #[inline]
    fn cacheable(r: &Option<T>) -> Option<&T> {
        r.as_ref()
    }
    #[inline]
    fn from_cached(v: T) -> Option<T> {
        Some(v)
    }
}

/// One run of the origin: started after a miss, finished with its result.
///
/// Dropped without [`Computation::finish`] while unwinding, it counts a
/// panic of the origin; dropped otherwise (a cancelled async call) it counts
/// nothing.
struct Computation<'a, K, V> {
    cache: &'a FnCache<K, V>,
    generation: u64,
    started: Timestamp,
}

impl<K, V> Drop for Computation<'_, K, V> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cache.metrics.record_origin_panic();
        }
    }
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// Step 4 begins: note the generation (for the write-back guard) and the time.
    fn begin(&self) -> Computation<'_, K, V> {
        Computation {
            cache: self,
            generation: self.generation(),
            started: self.clock.now(),
        }
    }
}

impl<K: Key, V: Value> Computation<'_, K, V> {
    /// Step 5: record the origin's latency and write the result back if it is cacheable.
    fn finish<M: OutputMode<R, Value = V>, R>(self, key: K, r: &R) {
        let cache = self.cache;
        cache
            .metrics
            .origin_latency
            .record(cache.clock.now().nanos_since(self.started));
        match M::cacheable(r) {
            Some(v) => cache.write_back(key, v.clone(), self.generation),
            None => {
                if cache.enabled {
                    cache.metrics.record_not_cached();
                }
            }
        }
    }
}

/// The pipeline for a sync function: local tier, then `origin`, then write-back.
#[inline]
pub fn get_or_compute<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    K: Key,
{
    if let Some(v) = cache.lookup_with(&key, Some) {
        return M::from_cached(v);
    }
    compute::<M, K, R>(cache, key, origin)
}

#[inline(never)]
fn compute<M, K, R>(cache: &FnCache<K, M::Value>, key: K, origin: impl FnOnce() -> R) -> R
where
    M: OutputMode<R>,
    K: Key,
{
    let computation = cache.begin();
    let r = origin();
    computation.finish::<M, R>(key, &r);
    r
}

/// The pipeline for an `async fn`: local tier, then `origin.await`, then write-back.
pub async fn get_or_compute_async<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    origin: impl std::future::Future<Output = R>,
) -> R
where
    M: OutputMode<R>,
    K: Key,
{
    if let Some(v) = cache.lookup_with(&key, Some) {
        return M::from_cached(v);
    }
    let computation = cache.begin();
    let r = origin.await;
    computation.finish::<M, R>(key, &r);
    r
}
