//! Refresh-ahead: a hit in the last part of an entry's life
//! returns the cached value at once and starts one background computation
//! of a fresh one, so that callers under steady traffic never wait for the
//! function.
//!
//! One refresh per key per process: the refresh leads the key's flight
//! (see `flight`), so concurrent misses of that key join it instead of
//! starting their own, and hits due meanwhile start none.
//!
//! With `lock = true` one process of a fleet runs the function per
//! refresh; the others take its value. A refresh first reads the shared
//! tier: a value that outlives its local copy was stored by another
//! process since the copy was made, and becomes the copy. Otherwise it
//! takes the key's shared lock (reading again once held, for a holder that
//! finished just before) and runs the function; or, when another process
//! holds the lock, it waits for that holder's value, in the background, as
//! callers keep getting the local copy. Skipping instead would leave this
//! process on its old copy until it expired (the holder's value reaches
//! the shared tier, not this process). A tier that fails, or a holder
//! that delivers nothing in twice the lock's life, lets the refresh run
//! the function here (fail-open, as a miss does).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::entry::get_or_compute_async;
use super::local::Generation;
use super::miss::{compute, release};
use super::shared_link::{Rendered, SharedKey, SharedLink, SharedMiss};
use super::strategies::{outlives, Locked};
use super::{FnCache, Key, OutputMode, Value};
use crate::clock::Timestamp;
use crate::flight::Leader;
use crate::key::KeyError;
use crate::shared;
use crate::value::CacheValue;

/// A refresh about to start: it leads the key's flight.
struct Due<K: Key, V: Value> {
    leader: Leader<'static, K, V>,
    generation: Generation,
    rendered: Option<Result<Rendered, KeyError>>,
    /// When the local copy being refreshed expires.
    expires: Timestamp,
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Step 1 for a function with `refresh_ahead` or `xfetch`: the value,
    /// whether it is due for a refresh, and when it expires.
    fn local_get_refresh(&self, key: &K) -> Option<(V, bool, Timestamp)> {
        self.local_hit(key, true, |entry| {
            let left = entry.expires_at.nanos_since(self.local.clock.now());
            let by_ratio = self.policy.refresh_ahead.is_some_and(|ratio| {
                self.policy
                    .ttl
                    .is_some_and(|ttl| (left as f64) < ttl.as_nanos() as f64 * (1.0 - ratio))
            });
            let due = by_ratio || self.controls.xfetch_due(left);
            Some((entry.value, due, entry.expires_at))
        })
    }

    /// Starts a refresh of `key` unless one (or a computation) is already
    /// in flight; returns the flight's leader to hand to the refresh.
    fn begin_refresh(&'static self, key: &K, expires: Timestamp) -> Option<Due<K, V>> {
        let (generation, hash, rendered) = self.noted_miss(key);
        let leader = self.flights.lead(key, hash)?;
        self.metrics.record_refresh_start();
        Some(Due {
            leader,
            generation,
            rendered,
            expires,
        })
    }

    /// `lock = true`: whether this process runs the function for the
    /// refresh of a copy that `expires` (holding the lock), or takes
    /// another process's fresher value (see the module docs).
    async fn refresh_lock(
        &self,
        link: &SharedLink,
        key: &K,
        sk: &SharedKey,
        expires: Timestamp,
    ) -> Locked<V> {
        let found = self.shared_get::<V>(link, self.rendered(key)).await;
        let left = expires.nanos_since(self.local.clock.now());
        match found {
            Ok(hit) if outlives(&hit, Some(left)) => Locked::Found(hit),
            // The tier failed: run the function here rather than wait on it.
            Err(SharedMiss { key: None, .. }) => Locked::Proceed,
            _ => self.lock_or_wait(link, key, sk, Some(expires)).await,
        }
    }

    /// The background part: take another process's fresher value (with
    /// `lock = true`) or run `origin` (caught if it panics) and write the
    /// result back everywhere; land the flight.
    async fn refresh<M: OutputMode<R, Value = V>, R, Fut: Future<Output = R>>(
        &'static self,
        key: K,
        due: Due<K, V>,
        cache_if: fn(&R) -> bool,
        tags: Vec<String>,
        origin: impl FnOnce() -> Fut,
    ) {
        let Due {
            leader,
            generation,
            rendered,
            expires,
        } = due;
        let mut held = None;
        let mut sk = None;
        let mut tag = 0;
        if let (Some(link), Some(rendered)) = (&self.shared, rendered) {
            match link.key(&self.metrics.shared, rendered).await {
                Ok(k) => {
                    tag = k.tag;
                    if self.policy.lock.is_some() {
                        match self.refresh_lock(link, &key, &k, expires).await {
                            Locked::Held(lock) => held = Some(lock),
                            Locked::Found(hit) => {
                                let v = self.settle_hit(key, hit, generation, &tags);
                                leader.land(|| Some(v));
                                self.metrics.record_refresh();
                                return;
                            }
                            Locked::Proceed => {}
                        }
                    }
                    sk = Some(k);
                }
                Err((_, t)) => tag = t,
            }
        }
        let computation = self.begin(generation);
        let body = crate::flight::run_led_async(Some(leader.id()), origin());
        let r = match AssertUnwindSafe(body).catch_unwind().await {
            Ok(r) => r,
            Err(_) => {
                // `computation` and `leader` drop here: a counted panic, an
                // empty landing; the entry keeps its value until it expires.
                self.metrics.record_origin_panic();
                tracing::warn!(
                    name = self.name(),
                    "layercache: a background refresh panicked"
                );
                release(held).await;
                drop(leader);
                self.metrics.record_refresh();
                return;
            }
        };
        let stored = computation.finish::<M, R>(key, &r, cache_if, &tags, tag);
        if let (Some(link), Some(sk)) = (&self.shared, &sk) {
            self.write_shared(link, sk, stored, generation, &tags).await;
        }
        release(held).await;
        self.land_computed(Some(leader), stored, generation);
        // Counted once the flight has landed: the key is free for the next one.
        self.metrics.record_refresh();
    }
}

/// The pipeline of a sync function with `refresh_ahead`: like
/// [`get_or_compute`](super::get_or_compute), but a hit due for a refresh runs `origin` on a
/// background thread (of the I/O runtime's blocking pool).
pub fn get_or_compute_refreshing<M, K, R>(
    cache: &'static FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl FnOnce() -> R + Send + 'static,
) -> R
where
    M: OutputMode<R> + 'static,
    M::Value: CacheValue,
    K: Key,
    R: Send + 'static,
{
    let Some((v, due, expires)) = cache.local_get_refresh(&key) else {
        let tags = tags(&key);
        return compute::<M, K, R>(cache, key, cache_if, &tags, origin);
    };
    if due {
        if let Some(due) = cache.begin_refresh(&key, expires) {
            let tags = tags(&key);
            shared::io_runtime().spawn_blocking(move || {
                shared::block_on(cache.refresh::<M, R, _>(
                    key,
                    due,
                    cache_if,
                    tags,
                    // Called inside the refresh's panic guard.
                    move || async move { origin() },
                ))
            });
        }
    }
    M::from_cached(v)
}

/// [`get_or_compute_refreshing`] for an `async fn`: the refresh is a task
/// on the caller's runtime (or the I/O runtime outside one).
pub async fn get_or_compute_async_refreshing<M, K, R>(
    cache: &'static FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl Future<Output = R> + Send + 'static,
) -> R
where
    M: OutputMode<R> + 'static,
    M::Value: CacheValue,
    K: Key,
    R: Send + 'static,
{
    let Some((v, due, expires)) = cache.local_get_refresh(&key) else {
        return get_or_compute_async::<M, K, R>(cache, key, cache_if, tags, origin).await;
    };
    if due {
        if let Some(due) = cache.begin_refresh(&key, expires) {
            let tags = tags(&key);
            let job = cache.refresh::<M, R, _>(key, due, cache_if, tags, || origin);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn(job)),
                Err(_) => drop(shared::io_runtime().spawn(job)),
            }
        }
    }
    M::from_cached(v)
}
