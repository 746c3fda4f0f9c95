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

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::key::render_template;
use crate::pipeline::{FnCache, FnSpec, Generation};
use crate::shared;
pub use crate::value::CacheValue;

type AnyValue = Arc<dyn Any + Send + Sync>;

/// The metrics name of the manual cache in [`stats()`](crate::stats).
pub const MANUAL_CACHE_NAME: &str = "layercache::manual";

fn store() -> &'static FnCache<String, AnyValue> {
    static STORE: OnceLock<&'static FnCache<String, AnyValue>> = OnceLock::new();
    STORE.get_or_init(|| {
        crate::invalidate::register(FnCache::new(FnSpec {
            jitter: Some(0.0),
            ..FnSpec::new(MANUAL_CACHE_NAME, "", render_template)
        }))
    })
}

fn get<T: CacheValue>(key: &str) -> Option<T> {
    match store().shared_link() {
        None => store().lookup_with(&key.to_string(), |v| v.downcast_ref::<T>().cloned()),
        Some(_) => shared::block_on(get_async(key)),
    }
}

/// Local tier, then the shared tier (backfilling the local one), as `T`.
async fn get_async<T: CacheValue>(key: &str) -> Option<T> {
    let s = store();
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

fn ttl_of(timeout: Option<Duration>) -> Option<Duration> {
    match timeout {
        Some(t) if t.is_zero() => None,
        Some(t) => Some(t),
        None => store().timeout(),
    }
}

fn set<T: CacheValue>(key: &str, value: T, timeout: Option<Duration>) {
    match store().shared_link() {
        None => store().put_local(key.to_string(), Arc::new(value), ttl_of(timeout), 0),
        Some(_) => shared::block_on(set_async(key, value, timeout)),
    }
}

async fn set_async<T: CacheValue>(key: &str, value: T, timeout: Option<Duration>) {
    let s = store();
    let ttl = ttl_of(timeout);
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
    key: &str,
    value: T,
    timeout: Duration,
    generation: Generation,
) {
    let s = store();
    let ttl = ttl_of(Some(timeout));
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

fn delete(key: &str) -> bool {
    store().invalidate(&key.to_string())
}

async fn delete_async(key: &str) -> bool {
    store().invalidate_async(&key.to_string()).await
}

async fn has_async(key: &str) -> bool {
    let s = store();
    let key = key.to_string();
    if s.peek(&key).is_some() {
        return true;
    }
    match s.shared_link() {
        Some(link) => s.shared_contains(link, &key).await,
        None => false,
    }
}

fn has(key: &str) -> bool {
    match store().shared_link() {
        None => store().peek(&key.to_string()).is_some(),
        Some(_) => shared::block_on(has_async(key)),
    }
}

/// The blocking manual cache.
pub mod sync {
    use super::*;

    /// A handle on the process's manual cache; cheap to copy.
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
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cache {
        _private: (),
    }

    impl Cache {
        /// The process's manual cache.
        pub fn global() -> Cache {
            Cache { _private: () }
        }

        /// The value under `key` if present, fresh and of type `T`.
        pub fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
            get(key)
        }

        /// Stores `value` under `key` for `timeout` (`Duration::ZERO`: never expires).
        pub fn set<T: CacheValue>(&self, key: &str, value: T, timeout: Duration) {
            set(key, value, Some(timeout))
        }

        /// Stores `value` under `key` for the configured default timeout.
        pub fn set_default<T: CacheValue>(&self, key: &str, value: T) {
            set(key, value, None)
        }

        /// Whether a fresh value is stored under `key` (counts neither hit nor miss).
        pub fn has(&self, key: &str) -> bool {
            has(key)
        }

        /// Removes `key`; `true` when it was there.
        pub fn delete(&self, key: &str) -> bool {
            delete(key)
        }

        /// Removes every key, of this cache and of every cached function,
        /// that starts with `prefix`. Returns how many went.
        pub fn delete_prefix(&self, prefix: &str) -> u64 {
            crate::invalidate_prefix(prefix)
        }

        /// Empties this cache and every cached function's (Flask's `cache.clear()`).
        pub fn clear(&self) -> u64 {
            crate::clear()
        }

        /// The value under `key`, or `make()`'s result, stored for `timeout`.
        pub fn get_or_insert_with<T: CacheValue>(
            &self,
            key: &str,
            timeout: Duration,
            make: impl FnOnce() -> T,
        ) -> T {
            if let Some(v) = get(key) {
                return v;
            }
            let s = store();
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
            shared::block_on(store_computed(key, v.clone(), timeout, generation));
            land_manual(leader, &v);
            v
        }
    }
}

/// The async manual cache: the same methods as [`sync::Cache`], as `async fn`s,
/// so code keeps working unchanged when a networked shared tier is configured.
pub mod future {
    use super::*;

    /// A handle on the process's manual cache; cheap to copy.
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
    /// # });
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Waker};
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = Context::from_waker(Waker::noop());
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cache {
        _private: (),
    }

    impl Cache {
        /// The process's manual cache.
        pub fn global() -> Cache {
            Cache { _private: () }
        }

        /// The value under `key` if present, fresh and of type `T`.
        pub async fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
            get_async(key).await
        }

        /// Stores `value` under `key` for `timeout` (`Duration::ZERO`: never expires).
        pub async fn set<T: CacheValue>(&self, key: &str, value: T, timeout: Duration) {
            set_async(key, value, Some(timeout)).await
        }

        /// Stores `value` under `key` for the configured default timeout.
        pub async fn set_default<T: CacheValue>(&self, key: &str, value: T) {
            set_async(key, value, None).await
        }

        /// Whether a fresh value is stored under `key`.
        pub async fn has(&self, key: &str) -> bool {
            has_async(key).await
        }

        /// Removes `key`; `true` when it was there.
        pub async fn delete(&self, key: &str) -> bool {
            delete_async(key).await
        }

        /// Removes every key starting with `prefix`, here and in every cached function.
        pub async fn delete_prefix(&self, prefix: &str) -> u64 {
            crate::invalidate_prefix_async(prefix).await
        }

        /// Empties this cache and every cached function's, awaiting the
        /// shared tier (it never blocks the executor).
        pub async fn clear(&self) -> u64 {
            crate::clear_async().await
        }

        /// The value under `key`, or `make`'s output, stored for `timeout`.
        pub async fn get_or_insert_with<T: CacheValue>(
            &self,
            key: &str,
            timeout: Duration,
            make: impl std::future::Future<Output = T>,
        ) -> T {
            if let Some(v) = get_async(key).await {
                return v;
            }
            let s = store();
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
            store_computed(key, v.clone(), timeout, generation).await;
            land_manual(leader, &v);
            v
        }
    }
}
