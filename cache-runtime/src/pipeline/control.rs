//! Controls a function declares beyond its timeout: a timeout chosen per
//! value (`timeout_by`), the fail-safe throttle (`stale_throttle`) and the
//! forced refresh (`force_refresh`).
//!
//! **`timeout_by`** maps the value to be cached to its lifetime (the
//! `cached` crate's `expires`, moka's `Expiry`, Flask-Caching's
//! `timeout(rv)`). It applies to every write of the function, in both
//! tiers, and is capped by `timeout` when the function declares one.
//!
//! **`stale_throttle`** protects a failing origin (FusionCache's fail-safe
//! throttle). When `stale_if_error` serves a stale value because the
//! function failed, the key is throttled for the period: calls during it
//! take the stale value without running the function, so a failing origin
//! is asked once per period, not once per request. The stale value itself
//! is not rewritten: it stays bounded by its own `stale_if_error` window,
//! and an invalidation (which removes it) ends the throttle's effect at
//! once. A call that succeeds clears the key's throttle.
//!
//! **`xfetch = 1.0`** (probabilistic early refresh, Vattani, Chierichetti
//! and Lowenstein, VLDB 2015): each hit refreshes in the background when
//! `delta * beta * -ln(U) >= time left`, with `U` uniform in (0, 1] and
//! `delta` how long the function took (a moving average of its recent
//! runs). The chance grows as expiry nears and with a slower function, so
//! a hot key is refreshed once, shortly before it expires, without a fixed
//! threshold. Each process draws for its own local copy with its own
//! `delta`; with `lock = true` the fleet runs the function once per
//! refresh and the other processes take that value from the shared tier,
//! in the background, before their copies expire (see `refresh`).
//!
//! **`force_refresh = expr`** (Flask-Caching's `forced_update`, the
//! `cached` crate's `force_refresh`): when the expression holds, the call
//! skips every lookup, runs the function, and stores a cacheable result in
//! both tiers as [`FnCache::put`] does, so other processes drop their
//! copies. It counts as a miss.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use super::policy::min_ttl;
use super::{FnCache, FnSpec, Key, OutputMode, Timeout};
use crate::clock::Timestamp;
use crate::value::CacheValue;

/// `timeout_by`: the lifetime of a value, given as `&dyn Any` so that
/// [`FnSpec`] needs no value type; generated code downcasts to the
/// function's value type and calls the user's `fn(&V) -> Duration`.
/// `None` (a value of another type, which generated code never passes)
/// leaves the function's timeout in place.
pub type TimeoutBy = fn(&dyn Any) -> Option<Duration>;

/// The throttle period of a function with `stale_if_error` and no
/// `stale_throttle` (FusionCache's default too).
pub const DEFAULT_STALE_THROTTLE: Duration = Duration::from_secs(30);

/// Keys throttled at once beyond which expired entries are pruned on insert.
const PRUNE_AT: usize = 1024;

/// The controls of one function, resolved from its [`FnSpec`].
pub(crate) struct Controls<K> {
    timeout_by: Option<TimeoutBy>,
    /// The declared `timeout`, which caps `timeout_by`.
    cap: Option<Duration>,
    throttle: Option<Throttle<K>>,
    xfetch: Option<XFetch>,
}

/// `xfetch`'s beta and the function's recent origin time.
struct XFetch {
    beta: f64,
    /// Nanoseconds, a moving average of the last runs (0 before the first).
    delta: std::sync::atomic::AtomicU64,
}

/// Keys whose origin failed and was answered by a stale value, until when.
struct Throttle<K> {
    period: Duration,
    until: Mutex<HashMap<K, Timestamp>>,
}

impl<K: Key> Controls<K> {
    pub(super) fn new(spec: &FnSpec<K>) -> Controls<K> {
        let period = spec
            .stale_if_error
            .map(|_| spec.stale_throttle.unwrap_or(DEFAULT_STALE_THROTTLE))
            .filter(|p| !p.is_zero());
        Controls {
            timeout_by: spec.timeout_by,
            cap: match spec.timeout {
                Timeout::After(d) => Some(d),
                Timeout::Default | Timeout::Never => None,
            },
            throttle: period.map(|period| Throttle {
                period,
                until: Mutex::new(HashMap::new()),
            }),
            xfetch: spec
                .xfetch
                .filter(|b| b.is_finite() && *b > 0.0)
                .map(|beta| XFetch {
                    beta,
                    delta: Default::default(),
                }),
        }
    }

    /// XFetch's draw for a hit on an entry with `left` nanoseconds to live.
    pub(super) fn xfetch_due(&self, left: u64) -> bool {
        let Some(x) = &self.xfetch else {
            return false;
        };
        let delta = x.delta.load(std::sync::atomic::Ordering::Relaxed) as f64;
        // 1 - U is in (0, 1]: its logarithm is finite.
        let draw = -(1.0 - fastrand::f64()).ln();
        delta * x.beta * draw >= left as f64
    }

    /// The origin ran for `nanos`: XFetch's `delta` follows it.
    pub(super) fn note_origin(&self, nanos: u64) {
        if let Some(x) = &self.xfetch {
            use std::sync::atomic::Ordering::Relaxed;
            let old = x.delta.load(Relaxed);
            let new = if old == 0 {
                nanos
            } else {
                (old / 4) * 3 + nanos / 4
            };
            x.delta.store(new, Relaxed);
        }
    }

    /// The lifetime of `value`: `timeout_by`'s, capped by `timeout`, when
    /// the function has one; otherwise `default` (the policy's).
    #[inline]
    pub(super) fn ttl_of<V: 'static>(
        &self,
        value: &V,
        default: Option<Duration>,
    ) -> Option<Duration> {
        match self.timeout_by.and_then(|f| f(value as &dyn Any)) {
            Some(d) => min_ttl(Some(d), self.cap),
            None => default,
        }
    }
}

impl<K> Throttle<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Timestamp>> {
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// A throttled key's stale value, served in place of running the
    /// function again; `None` when the key is not throttled or has no stale
    /// value left (then the throttle is lifted and the function runs).
    pub(super) async fn throttled(&self, key: &K) -> Option<V> {
        let throttle = self.controls.throttle.as_ref()?;
        let now = self.local.clock.now();
        {
            let until = throttle.lock();
            if until.is_empty() || until.get(key).is_none_or(|&t| now >= t) {
                return None;
            }
        }
        match self.stale_value(key).await {
            Some(v) => {
                self.metrics.record_stale_hit();
                Some(v)
            }
            None => {
                throttle.lock().remove(key);
                None
            }
        }
    }

    /// The function failed and a stale value answered: throttle the key.
    pub(super) fn throttle(&self, key: &K) {
        let Some(throttle) = &self.controls.throttle else {
            return;
        };
        let now = self.local.clock.now();
        let mut until = throttle.lock();
        if until.len() >= PRUNE_AT {
            until.retain(|_, t| now < *t);
        }
        until.insert(key.clone(), now.saturating_add(throttle.period));
        tracing::debug!(name = self.name(), period = ?throttle.period, "layercache: origin failed; throttled (stale_throttle)");
    }

    /// The function answered: lift the key's throttle, if any.
    pub(super) fn unthrottle(&self, key: &K) {
        if let Some(throttle) = &self.controls.throttle {
            let mut until = throttle.lock();
            if !until.is_empty() {
                until.remove(key);
            }
        }
    }
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Stores a forced refresh's result, if cacheable, in every tier.
    async fn store_forced<M: OutputMode<R, Value = V>, R>(
        &self,
        key: K,
        r: &R,
        cache_if: fn(&R) -> bool,
        tags: &[String],
    ) {
        let Some(v) = M::cacheable(r).filter(|_| cache_if(r) && self.enabled) else {
            self.metrics.record_not_cached();
            return;
        };
        let default = self.policy.entry_ttl(M::is_negative(v));
        let ttl = min_ttl(self.controls.ttl_of(v, default), M::lifetime(v));
        self.index_tags(&key, tags);
        match &self.shared {
            Some(link) => self.put_shared(link, key, v.clone(), v, ttl).await,
            None => self.put_local(key, v.clone(), min_ttl(ttl, self.policy.local_cap), 0),
        }
    }
}

/// `force_refresh = ...` held: run the function and store its result
/// everywhere, without looking anything up.
pub fn refresh_now<M, K, R>(
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
    cache.metrics.record_miss();
    let tags = tags(&key);
    let r = origin();
    crate::shared::block_on(cache.store_forced::<M, R>(key, &r, cache_if, &tags));
    r
}

/// [`refresh_now`] for an `async fn`.
pub async fn refresh_now_async<M, K, R>(
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
    cache.metrics.record_miss();
    let tags = tags(&key);
    let r = origin.await;
    cache.store_forced::<M, R>(key, &r, cache_if, &tags).await;
    r
}
