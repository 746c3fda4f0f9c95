//! The manual cache: the guide's `cache.get / set / delete / clear` for code
//! that is not a function body, in a blocking ([`sync::Cache`]) and an async
//! ([`future::Cache`]) flavour with the same method names.
//!
//! Keys are full keys (`"my_key"`, `"user:42"`): they share one keyspace
//! with cached functions for [`invalidate_prefix`](crate::invalidate_prefix)
//! and [`clear`](crate::clear). Values of any [`CacheValue`] type can be
//! stored; reading a key as another type than it was written with is a miss.
//!
//! With a shared tier (`CACHE_TYPE=redis`) the manual cache uses it like a
//! cached function does: `get` falls back to Redis and keeps a local copy,
//! `set` writes both and tells other processes to drop their copies,
//! `delete` deletes everywhere. The key `k` is stored as
//! `{CACHE_KEY_PREFIX}:k` (unescaped: manual keys are the caller's own).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::key::render_template;
use crate::local::weigh::Weighable;
use crate::pipeline::{FnCache, FnSpec, Generation};
use crate::shared;
pub use crate::value::CacheValue;

mod named;
pub use named::Builder as NamedCacheBuilder;

/// A value of any type, which can still be weighed under a named cache's `max_bytes`.
type AnyValue = Arc<dyn Weighable>;

/// The cache behind a handle: the global manual cache or a named one.
type Store = &'static FnCache<String, AnyValue>;

/// The metrics name of the manual cache in [`stats()`](crate::stats).
pub const MANUAL_CACHE_NAME: &str = "layercache::manual";

fn store() -> Store {
    static STORE: OnceLock<&'static FnCache<String, AnyValue>> = OnceLock::new();
    STORE.get_or_init(|| {
        crate::invalidate::register(FnCache::new(FnSpec {
            jitter: Some(0.0),
            ..FnSpec::new(MANUAL_CACHE_NAME, "", render_template)
        }))
    })
}

fn get<T: CacheValue>(s: Store, key: &str) -> Option<T> {
    match s.shared_link() {
        None => s.lookup_with(&key.to_string(), |v| v.downcast_ref::<T>().cloned()),
        Some(_) => shared::block_on(get_async(s, key)),
    }
}

/// Local tier, then the shared tier (backfilling the local one), as `T`.
async fn get_async<T: CacheValue>(s: Store, key: &str) -> Option<T> {
    let key = key.to_string();
    if let Some(v) = s.local_get(&key, |v| v.downcast_ref::<T>().cloned()) {
        return Some(v);
    }
    if let Some(link) = s.shared_link() {
        let rendered = s.rendered(&key);
        let generation = s.generation(rendered.as_ref().map_or(0, |r| r.tag()));
        if let Ok((v, remaining, tag)) = s.shared_get::<T>(link, rendered).await {
            let local = || -> AnyValue { Arc::new(v.clone()) };
            s.backfill(key, local, remaining, generation, tag);
            return Some(v);
        }
    }
    s.record_miss();
    None
}

fn ttl_of(s: Store, timeout: Option<Duration>) -> Option<Duration> {
    match timeout {
        Some(t) if t.is_zero() => None,
        Some(t) => Some(t),
        None => s.timeout(),
    }
}

fn set<T: CacheValue>(s: Store, key: &str, value: T, timeout: Option<Duration>) {
    match s.shared_link() {
        None => s.put_local(key.to_string(), Arc::new(value), ttl_of(s, timeout), 0),
        Some(_) => shared::block_on(set_async(s, key, value, timeout)),
    }
}

async fn set_async<T: CacheValue>(s: Store, key: &str, value: T, timeout: Option<Duration>) {
    let ttl = ttl_of(s, timeout);
    match s.shared_link() {
        None => s.put_local(key.to_string(), Arc::new(value), ttl, 0),
        Some(link) => {
            let local: AnyValue = Arc::new(value.clone());
            s.put_shared(link, key.to_string(), local, &value, ttl)
                .await
        }
    }
}

/// Stores a value computed after a miss, unless `key` was deleted (or the
/// cache cleared) while it was being computed: it may be stale.
async fn store_computed<T: CacheValue>(
    s: Store,
    key: &str,
    value: T,
    timeout: Duration,
    generation: Generation,
) {
    let ttl = ttl_of(s, Some(timeout));
    match s.shared_link() {
        None => s.write_back_with_timeout(key.to_string(), Arc::new(value), generation, ttl, 0),
        Some(link) => {
            let local: AnyValue = Arc::new(value.clone());
            s.write_back_everywhere(link, key.to_string(), local, &value, generation, ttl)
                .await
        }
    }
}

/// Ends a get-or-insert's flight: waiters share `v`.
fn land_manual<T: CacheValue>(leader: Option<crate::flight::Leader<'_, String, AnyValue>>, v: &T) {
    if let Some(leader) = leader {
        leader.land(|| Some(Arc::new(v.clone()) as AnyValue));
    }
}

fn delete(s: Store, key: &str) -> bool {
    s.invalidate(&key.to_string())
}

async fn delete_async(s: Store, key: &str) -> bool {
    s.invalidate_async(&key.to_string()).await
}

async fn has_async(s: Store, key: &str) -> bool {
    let key = key.to_string();
    if s.peek(&key).is_some() {
        return true;
    }
    match s.shared_link() {
        Some(link) => s.shared_contains(link, &key).await,
        None => false,
    }
}

fn has(s: Store, key: &str) -> bool {
    match s.shared_link() {
        None => s.peek(&key.to_string()).is_some(),
        Some(_) => shared::block_on(has_async(s, key)),
    }
}

/// The values under `keys`, in order: the local tier, then the shared tier
/// for the keys it lacked, in one `get_many` of the store (one `MGET` on
/// Redis), backfilling the local tier.
async fn get_many_async<T: CacheValue>(s: Store, keys: &[&str]) -> Vec<Option<T>> {
    let Some(link) = s.shared_link() else {
        return keys.iter().map(|k| get(s, k)).collect();
    };
    let mut found: Vec<Option<T>> = keys
        .iter()
        .map(|k| s.local_get(&k.to_string(), |v| v.downcast_ref::<T>().cloned()))
        .collect();
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
    if missing.is_empty() {
        return found;
    }
    let rendered: Vec<_> = missing
        .iter()
        .map(|&i| s.rendered(&keys[i].to_string()))
        .collect();
    let generations: Vec<Generation> = rendered
        .iter()
        .map(|r| s.generation(r.as_ref().map_or(0, |r| r.tag())))
        .collect();
    let answers = s.shared_get_many::<T>(link, rendered).await;
    for ((i, generation), answer) in missing.into_iter().zip(generations).zip(answers) {
        match answer {
            Some((v, remaining, tag)) => {
                let local = || -> AnyValue { Arc::new(v.clone()) };
                s.backfill(keys[i].to_string(), local, remaining, generation, tag);
                found[i] = Some(v);
            }
            None => s.record_miss(),
        }
    }
    found
}

fn get_many<T: CacheValue>(s: Store, keys: &[&str]) -> Vec<Option<T>> {
    match s.shared_link() {
        None => keys.iter().map(|k| get(s, k)).collect(),
        Some(_) => shared::block_on(get_many_async(s, keys)),
    }
}

/// Stores each pair; the writes run concurrently (one pipelined burst on a
/// multiplexed Redis connection).
async fn set_many_async<T: CacheValue>(s: Store, items: &[(&str, T)], timeout: Option<Duration>) {
    futures_util::future::join_all(
        items
            .iter()
            .map(|(k, v)| set_async(s, k, v.clone(), timeout)),
    )
    .await;
}

fn set_many<T: CacheValue>(s: Store, items: &[(&str, T)], timeout: Option<Duration>) {
    match s.shared_link() {
        None => items
            .iter()
            .for_each(|(k, v)| set(s, k, v.clone(), timeout)),
        Some(_) => shared::block_on(set_many_async(s, items, timeout)),
    }
}

/// Deletes each key everywhere; returns how many were there.
async fn delete_many_async(s: Store, keys: &[&str]) -> u64 {
    let found = futures_util::future::join_all(keys.iter().map(|k| delete_async(s, k))).await;
    found.into_iter().filter(|&f| f).count() as u64
}

fn delete_many(s: Store, keys: &[&str]) -> u64 {
    match s.shared_link() {
        None => keys.iter().filter(|k| delete(s, k)).count() as u64,
        Some(_) => shared::block_on(delete_many_async(s, keys)),
    }
}

/// What the blocking and the async handle share: `Debug` (the cache's
/// name), `Default` (the global cache) and `global()`.
macro_rules! handle_basics {
    () => {
        impl std::fmt::Debug for Cache {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Cache")
                    .field("name", &self.store.name())
                    .finish()
            }
        }

        impl Default for Cache {
            fn default() -> Cache {
                Cache::global()
            }
        }

        impl Cache {
            /// The process's manual cache.
            pub fn global() -> Cache {
                Cache { store: store() }
            }
        }
    };
}

/// The blocking manual cache.
pub mod sync {
    use super::*;

    /// A handle on the process's manual cache, or on a named one; cheap to copy.
    ///
    /// ```
    /// use std::time::Duration;
    /// use layercache_runtime::sync::Cache;
    ///
    /// let cache = Cache::global();
    /// assert_eq!(cache.get::<String>("greeting"), None);
    /// cache.set("greeting", "hello".to_string(), Duration::from_secs(300));
    /// assert_eq!(cache.get::<String>("greeting").as_deref(), Some("hello"));
    /// assert_eq!(cache.get::<u64>("greeting"), None, "another type is a miss");
    /// assert!(cache.delete("greeting"));
    /// let v = cache.get_or_insert_with("answer", Duration::from_secs(60), || 42u64);
    /// assert_eq!(v, 42);
    ///
    /// // Several keys at once: one round trip to a shared tier where it allows.
    /// cache.set_many(&[("a", 1u32), ("b", 2)], Duration::from_secs(60));
    /// assert_eq!(cache.get_many::<u32>(&["a", "b", "c"]), vec![Some(1), Some(2), None]);
    /// assert_eq!(cache.delete_many(&["a", "b", "c"]), 2);
    /// ```
    #[derive(Clone, Copy)]
    pub struct Cache {
        pub(super) store: Store,
    }

    handle_basics!();

    impl Cache {
        /// A named cache: its own namespace, default timeout and bound,
        /// over the process's tiers. Set its options on the returned
        /// builder, or use it as the cache directly (it derefs to one built
        /// with the defaults). See [`NamedCacheBuilder`](crate::NamedCacheBuilder).
        ///
        /// ```
        /// use std::time::Duration;
        /// use layercache_runtime::sync::Cache;
        ///
        /// let sessions = Cache::named("sessions")
        ///     .timeout(Duration::from_secs(1800))
        ///     .max_entries(10_000)
        ///     .build();
        /// sessions.set_default("s1", "alice".to_string());
        /// assert_eq!(Cache::global().get::<String>("s1"), None, "its own namespace");
        /// assert_eq!(sessions.clear(), 1, "clear drops only its entries");
        /// ```
        pub fn named(name: &str) -> super::named::Builder<Cache> {
            super::named::Builder::new(name)
        }

        /// The cache's name: [`MANUAL_CACHE_NAME`] for the global one.
        pub fn name(&self) -> &str {
            self.store.name()
        }

        /// What its local tier's entries weigh: their estimated bytes under
        /// [`max_bytes`](super::NamedCacheBuilder::max_bytes), otherwise their number.
        pub fn weight(&self) -> u64 {
            self.store.weight()
        }

        /// The value under `key` if present, fresh and of type `T`.
        pub fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
            get(self.store, key)
        }

        /// The values under `keys`, in order (`None` for each missing one).
        pub fn get_many<T: CacheValue>(&self, keys: &[&str]) -> Vec<Option<T>> {
            get_many(self.store, keys)
        }

        /// Stores `value` under `key` for `timeout` (`Duration::ZERO`: never expires).
        pub fn set<T: CacheValue>(&self, key: &str, value: T, timeout: Duration) {
            set(self.store, key, value, Some(timeout))
        }

        /// Stores each `(key, value)` for `timeout` (`Duration::ZERO`: never expires).
        pub fn set_many<T: CacheValue>(&self, items: &[(&str, T)], timeout: Duration) {
            set_many(self.store, items, Some(timeout))
        }

        /// Stores `value` under `key` for the cache's default timeout.
        pub fn set_default<T: CacheValue>(&self, key: &str, value: T) {
            set(self.store, key, value, None)
        }

        /// Whether a fresh value is stored under `key` (counts neither hit nor miss).
        pub fn has(&self, key: &str) -> bool {
            has(self.store, key)
        }

        /// Removes `key`; `true` when it was there.
        pub fn delete(&self, key: &str) -> bool {
            delete(self.store, key)
        }

        /// Removes each of `keys` everywhere; returns how many were there.
        pub fn delete_many(&self, keys: &[&str]) -> u64 {
            delete_many(self.store, keys)
        }

        /// Removes every key, of this cache and of every cached function,
        /// that starts with `prefix`. Returns how many went.
        pub fn delete_prefix(&self, prefix: &str) -> u64 {
            crate::invalidate_prefix(prefix)
        }

        /// Empties the cache (Flask's `cache.clear()`). The global cache
        /// empties every cached function's too; a named cache drops only its
        /// own entries, in every process.
        pub fn clear(&self) -> u64 {
            if self.store.name() == MANUAL_CACHE_NAME {
                crate::clear()
            } else {
                self.store.invalidate_all()
            }
        }

        /// The value under `key`, or `make()`'s result, stored for `timeout`.
        pub fn get_or_insert_with<T: CacheValue>(
            &self,
            key: &str,
            timeout: Duration,
            make: impl FnOnce() -> T,
        ) -> T {
            let s = self.store;
            if let Some(v) = get(s, key) {
                return v;
            }
            let k = key.to_string();
            let generation = s.generation(s.key_hash(&k));
            // One `make` per key per process: concurrent callers wait for it.
            let leader = match s.flight_or_value(&k) {
                Err(other) => match other.downcast_ref::<T>() {
                    Some(v) => return v.clone(),
                    None => None, // stored as another type: compute this one
                },
                Ok(leader) => leader,
            };
            let v = crate::flight::run_led(leader.as_ref().map(|l| l.id()), make);
            shared::block_on(store_computed(s, key, v.clone(), timeout, generation));
            land_manual(leader, &v);
            v
        }
    }
}

/// The async manual cache: the same methods as [`sync::Cache`], as `async fn`s,
/// so code keeps working unchanged when a networked shared tier is configured.
pub mod future {
    use super::*;

    /// A handle on the process's manual cache, or on a named one; cheap to copy.
    ///
    /// ```
    /// # futures_lite_block_on(async {
    /// use std::time::Duration;
    /// use layercache_runtime::future::Cache;
    ///
    /// let cache = Cache::global();
    /// cache.set("page", vec![1u8, 2, 3], Duration::from_secs(30)).await;
    /// assert_eq!(cache.get::<Vec<u8>>("page").await, Some(vec![1, 2, 3]));
    /// let n = cache.get_or_insert_with("n", Duration::from_secs(30), async { 7u32 }).await;
    /// assert_eq!(n, 7);
    /// let carts = Cache::named("carts").timeout(Duration::from_secs(60)).build();
    /// carts.set_many(&[("c1", 3u8), ("c2", 4)], Duration::ZERO).await;
    /// assert_eq!(carts.get_many::<u8>(&["c1", "c2"]).await, vec![Some(3), Some(4)]);
    /// # });
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Waker};
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = Context::from_waker(Waker::noop());
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// ```
    #[derive(Clone, Copy)]
    pub struct Cache {
        pub(super) store: Store,
    }

    handle_basics!();

    impl Cache {
        /// A named cache (see [`sync::Cache::named`](super::sync::Cache::named)):
        /// the same cache as the blocking handle of that name.
        pub fn named(name: &str) -> super::named::Builder<Cache> {
            super::named::Builder::new(name)
        }

        /// The cache's name: [`MANUAL_CACHE_NAME`] for the global one.
        pub fn name(&self) -> &str {
            self.store.name()
        }

        /// What its local tier's entries weigh: their estimated bytes under
        /// [`max_bytes`](super::NamedCacheBuilder::max_bytes), otherwise their number.
        pub fn weight(&self) -> u64 {
            self.store.weight()
        }

        /// The value under `key` if present, fresh and of type `T`.
        pub async fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
            get_async(self.store, key).await
        }

        /// The values under `keys`, in order (`None` for each missing one).
        pub async fn get_many<T: CacheValue>(&self, keys: &[&str]) -> Vec<Option<T>> {
            get_many_async(self.store, keys).await
        }

        /// Stores `value` under `key` for `timeout` (`Duration::ZERO`: never expires).
        pub async fn set<T: CacheValue>(&self, key: &str, value: T, timeout: Duration) {
            set_async(self.store, key, value, Some(timeout)).await
        }

        /// Stores each `(key, value)` for `timeout` (`Duration::ZERO`: never expires).
        pub async fn set_many<T: CacheValue>(&self, items: &[(&str, T)], timeout: Duration) {
            set_many_async(self.store, items, Some(timeout)).await
        }

        /// Stores `value` under `key` for the cache's default timeout.
        pub async fn set_default<T: CacheValue>(&self, key: &str, value: T) {
            set_async(self.store, key, value, None).await
        }

        /// Whether a fresh value is stored under `key`.
        pub async fn has(&self, key: &str) -> bool {
            has_async(self.store, key).await
        }

        /// Removes `key`; `true` when it was there.
        pub async fn delete(&self, key: &str) -> bool {
            delete_async(self.store, key).await
        }

        /// Removes each of `keys` everywhere; returns how many were there.
        pub async fn delete_many(&self, keys: &[&str]) -> u64 {
            delete_many_async(self.store, keys).await
        }

        /// Removes every key starting with `prefix`, here and in every cached function.
        pub async fn delete_prefix(&self, prefix: &str) -> u64 {
            crate::invalidate_prefix_async(prefix).await
        }

        /// Empties the cache, awaiting the shared tier (it never blocks the
        /// executor). The global cache empties every cached function's too;
        /// a named cache drops only its own entries, in every process.
        pub async fn clear(&self) -> u64 {
            if self.store.name() == MANUAL_CACHE_NAME {
                crate::clear_async().await
            } else {
                self.store.invalidate_all_async().await
            }
        }

        /// The value under `key`, or `make`'s output, stored for `timeout`.
        pub async fn get_or_insert_with<T: CacheValue>(
            &self,
            key: &str,
            timeout: Duration,
            make: impl std::future::Future<Output = T>,
        ) -> T {
            let s = self.store;
            if let Some(v) = get_async(s, key).await {
                return v;
            }
            let k = key.to_string();
            let generation = s.generation(s.key_hash(&k));
            let leader = match s.flight_or_value_async(&k).await {
                Err(other) => match other.downcast_ref::<T>() {
                    Some(v) => return v.clone(),
                    None => None,
                },
                Ok(leader) => leader,
            };
            let v = crate::flight::run_led_async(leader.as_ref().map(|l| l.id()), make).await;
            store_computed(s, key, v.clone(), timeout, generation).await;
            land_manual(leader, &v);
            v
        }
    }
}
