//! [`FnCache`]: the cache of one function, and the lookup pipeline that the
//! macro-generated wrappers run.
//!
//! ```text
//! 1. local tier   exact-args lookup, expiry checked ── hit ─▶ return a clone
//! 2. flight       one computation per key per process; others wait for it (see `flight`)
//! 3. shared tier  GET {CACHE_KEY_PREFIX}:{ns}:{suffix}[:v{version}], envelope verified
//!                 ── hit ─▶ backfill local (remaining TTL, capped by local_timeout) ─▶ return
//! 4. origin       the function body
//! 5. write-back   local + shared, unless Err / None / an invalidation raced it
//! ```
//!
//! A failed shared operation is counted and skipped: the call goes on to
//! the next step.
//!
//! [`FnCache`] composes one part per concern, each in its own file:
//!
//! | file | concern |
//! |---|---|
//! | `spec` | [`FnSpec`]: what generated code declares |
//! | `policy` | timeouts, jitter, negative caching, fail-safe window, lock, refresh, group |
//! | `local` | step 1 (the one local hit path), local write-back, generations, tag index |
//! | `shared_link` | step 3 and the shared write-back: keys, versions, get, put, backfill, tags, notices |
//! | `miss` | steps 2 to 5, written once as async; sync calls drive it on their thread |
//! | `strategies`, `refresh` | what acts on a miss: fail-safe and the lock; refresh-ahead |
//! | `control` | `timeout_by` (a lifetime per value) and the fail-safe throttle |
//! | `deadline` | factory timeouts: the miss in the background, a stale or `OriginTimeout` answer |
//! | `entry` | what generated code calls, and [`CallEntry`] |
//! | `output` | how a return value maps to what is cached ([`OutputMode`]) |

use std::hash::Hash;

use quick_cache::Equivalent;
use std::time::Duration;

use crate::config::CacheType;
use crate::flight::Flights;
use crate::key::KeyError;
use crate::local::{AnyStore, ByteBound, Evictions, Stored};
use crate::metrics::{FnMetrics, FunctionStats};
use crate::runtime::{self, Runtime};
use crate::shared;
use crate::value::CacheValue;

mod control;
mod deadline;
mod entry;
mod idle;
mod local;
mod miss;
mod output;
mod policy;
mod refresh;
mod shared_link;
mod spec;
mod strategies;

use control::Controls;
pub use control::{refresh_now, refresh_now_async, TimeoutBy, DEFAULT_STALE_THROTTLE};
pub use deadline::{
    get_or_compute_async_bounded, get_or_compute_bounded, Deadlines, OriginTimeout,
};
pub use entry::{
    after_local_miss, after_local_miss_async, always, bypass, bypass_async, get_or_compute,
    get_or_compute_async, local_hit, no_tags, CallEntry,
};
pub use idle::{get_or_compute_async_idle, get_or_compute_idle, idle_hit, idle_slide, IdleHit};
pub(crate) use local::Generation;
use local::LocalTier;
pub use output::{OkOnly, OutputMode, Plain, SomeOnly, SomeOrNone, Succeeds};
use policy::{min_ttl, Policy};
pub use refresh::{get_or_compute_async_refreshing, get_or_compute_refreshing};
pub(crate) use shared_link::SharedLink;
pub use spec::{FnSpec, RenderKey, TierChoice, Timeout};

/// The bounds every local key satisfies: the exact (owned) arguments.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

/// The bounds every cached value satisfies in the local tier.
pub trait Value: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Value for T {}

/// The cache of one function: its policy, local tier, link to the shared
/// tier, flights and metrics.
///
/// Generated code creates one per `#[cached]` function on first call; user
/// code reaches it through [`fn_cache!`](../layercache/macro.fn_cache.html).
pub struct FnCache<K, V> {
    namespace: String,
    render: RenderKey<K>,
    /// `false` under `CACHE_TYPE=null`: every call runs the function.
    enabled: bool,
    policy: Policy,
    /// `timeout_by` and the fail-safe throttle.
    controls: Controls<K>,
    local: LocalTier<K, V>,
    shared: Option<SharedLink>,
    /// Step 2: computations in progress, by exact key.
    flights: Flights<K, V>,
    metrics: FnMetrics,
    /// The runtime this cache was built from and is registered with.
    runtime: &'static Runtime,
}

/// Whether a function may use `tier`: one with `time_to_idle` needs a
/// store that moves an entry's expiry on a read; on another (the
/// filesystem store) it keeps its entries in-process, and says so.
fn idle_can_share<K>(spec: &FnSpec<K>, tier: &shared::Tier) -> bool {
    if spec.time_to_idle.is_none() || tier.can_touch() {
        return true;
    }
    tracing::error!(
        name = %spec.name,
        store = %tier.describe(),
        "layercache: `time_to_idle` needs a shared store that can move an entry's expiry on a read (Redis 6.2+, Redis Cluster, memcached, SQLite); this function keeps its entries in-process only"
    );
    false
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// A cache configured by `spec` and the process configuration.
    pub fn new(spec: FnSpec<K>) -> FnCache<K, V> {
        FnCache::with_runtime(spec, runtime::global())
    }

    /// The only place a cache reads the configuration and the shared tier:
    /// what it needs of them is kept in its parts.
    pub(crate) fn with_runtime(mut spec: FnSpec<K>, runtime: &'static Runtime) -> FnCache<K, V> {
        let config = runtime.config();
        let evictions = Evictions::default();
        let max_entries = spec.max_entries.unwrap_or(config.default_max_entries());
        let enabled = config.cache_type() != CacheType::Null;
        let shared = (enabled && config.cache_type().is_shared() && spec.tier != TierChoice::Local)
            .then(|| runtime.tier())
            .flatten()
            .filter(|tier| idle_can_share(&spec, tier))
            .map(|tier| {
                SharedLink::new(
                    runtime,
                    tier,
                    spec.namespace.clone(),
                    spec.versioned.clone(),
                )
            });
        // Without a shared tier, `tier = "shared"` would cache nothing: keep the local tier.
        let local = spec.tier != TierChoice::Shared || shared.is_none();
        let policy = Policy::new(&mut spec, config, shared.is_some());
        tracing::debug!(name = %spec.name, ttl = ?policy.ttl, max_entries, cache_type = %config.cache_type(), shared = shared.is_some(), local, "layercache: function cache created");
        let bytes = spec
            .max_bytes
            .map(|n| ByteBound::new(n, spec.max_entries, spec.heap_bytes));
        let store = AnyStore::build(config.local_store(), max_entries, bytes, evictions.clone());
        let controls = Controls::new(&spec);
        FnCache {
            namespace: spec.namespace,
            render: spec.render,
            enabled,
            policy,
            controls,
            local: LocalTier::new(
                enabled && local,
                config.metrics(),
                config.clock().clone(),
                store,
            ),
            shared,
            flights: Flights::new(),
            metrics: FnMetrics::new(spec.name, evictions, config.metrics()),
            runtime,
        }
    }

    /// The runtime this cache belongs to.
    pub(crate) fn runtime(&self) -> &'static Runtime {
        self.runtime
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
        self.policy.ttl
    }

    /// Whether caching is on (`false` under `CACHE_TYPE=null`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether this function uses a shared tier.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Entries held in the local tier (expired ones until they are read or evicted).
    pub fn len(&self) -> u64 {
        self.local.len()
    }

    /// What the local tier's entries weigh: their estimated bytes under
    /// `max_bytes` (see [`local::weigh`](crate::local::weigh)), otherwise
    /// their number.
    pub fn weight(&self) -> u64 {
        self.local.weight()
    }

    /// `true` when the local tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This function's counters now.
    pub fn stats(&self) -> FunctionStats {
        self.metrics.snapshot(self.local.len())
    }

    /// Zeroes this function's counters (see [`reset_stats`](crate::reset_stats)).
    pub(crate) fn reset_stats(&self) {
        self.metrics.reset();
    }

    /// The stable string key of `key` (without the global `CACHE_KEY_PREFIX`):
    /// `{namespace}:{rendered template or 128-bit hash}`.
    pub fn stable_key(&self, key: &K) -> Result<String, KeyError> {
        self.render_stable(key).map(|(stable, _)| stable)
    }

    fn render_stable(&self, key: &K) -> Result<(String, u64), KeyError> {
        let mut out = String::with_capacity(self.namespace.len() + 40);
        if !self.namespace.is_empty() {
            out.push_str(&self.namespace);
            out.push(':');
        }
        let check = (self.render)(key, &mut out)?;
        Ok((out, check))
    }

    /// Step 1 of the pipeline: the local tier. Counts the hit or the miss;
    /// `accept` may still turn a found value away (the manual cache uses it
    /// for type checks), which counts as a miss.
    #[inline]
    pub(crate) fn lookup_with<T>(&self, key: &K, accept: impl FnOnce(V) -> Option<T>) -> Option<T> {
        let found = self.local_get(key, accept);
        if found.is_none() {
            self.metrics.record_miss();
        }
        found
    }

    /// Step 1 without counting a miss (a shared hit may still answer).
    #[inline(always)]
    pub(crate) fn local_get<Q: Hash + Equivalent<K> + ?Sized, T>(
        &self,
        key: &Q,
        accept: impl FnOnce(V) -> Option<T>,
    ) -> Option<T> {
        self.local_lookup(key, accept, true)
    }

    /// Step 1; `first` is false for the look again after joining a flight
    /// (an expired entry was already counted by the first look).
    #[inline(always)]
    fn local_lookup<Q: Hash + Equivalent<K> + ?Sized, T>(
        &self,
        key: &Q,
        accept: impl FnOnce(V) -> Option<T>,
        first: bool,
    ) -> Option<T> {
        self.local_hit(key, first, |entry| accept(entry.value))
    }

    /// Step 1 through the one local hit path (see [`LocalTier::hit`]).
    #[inline(always)]
    fn local_hit<Q: Hash + Equivalent<K> + ?Sized, T>(
        &self,
        key: &Q,
        first: bool,
        accept: impl FnOnce(Stored<V>) -> Option<T>,
    ) -> Option<T> {
        self.local.hit(&self.metrics, key, first, accept)
    }

    /// The hash that picks `key`'s generation slot: the local tag (hash of
    /// the stable key, which is all a notice from another process names)
    /// for a function with a shared tier; a hash of the arguments otherwise.
    pub(crate) fn key_hash(&self, key: &K) -> u64 {
        if self.shared.is_some() {
            self.render_stable(key).map_or(0, |(stable, _)| {
                xxhash_rust::xxh3::xxh3_64(stable.as_bytes())
            })
        } else {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
        }
    }

    /// What a computation for the key hashing to `hash` notes before it starts.
    pub(crate) fn generation(&self, hash: u64) -> Generation {
        self.local.generation(hash)
    }

    /// Step 5 locally, for the function's local timeout.
    #[cfg(test)]
    pub(crate) fn write_back(&self, key: K, value: V, generation: Generation, tag: u64) {
        self.write_back_with_timeout(key, value, generation, self.policy.local_ttl, tag)
    }

    /// Step 5 locally: `value` for `ttl` (capped while the bus is down),
    /// unless an invalidation happened since `generation` was noted.
    pub(crate) fn write_back_with_timeout(
        &self,
        key: K,
        value: V,
        generation: Generation,
        ttl: Option<Duration>,
        tag: u64,
    ) {
        let (ttl, tag) = self.idle_stamp(self.cap_while_bus_down(ttl), tag);
        self.local
            .write_back(&self.metrics, key, value, generation, ttl, tag);
    }

    /// The cached value of `key` if present and fresh, without counting a hit or a miss.
    pub fn peek(&self, key: &K) -> Option<V> {
        self.local.peek(key)
    }

    /// Stores `value` as the result for `key` (the `#[cache_put]` operation),
    /// replacing any entry and cancelling in-flight computations' write-backs.
    pub(crate) fn put_local(&self, key: K, value: V, ttl: Option<Duration>, tag: u64) {
        self.local.bump_slot(self.key_hash(&key));
        let (ttl, tag) = self.idle_stamp(self.cap_while_bus_down(ttl), tag);
        self.local.put(key, value, ttl, tag);
    }

    /// Drops the local entry of `key` (this process only); `true` when there was one.
    pub(crate) fn invalidate_local(&self, key: &K) -> bool {
        self.local.remove(&self.metrics, key, self.key_hash(key))
    }

    /// Records that the local entry of `key` carries `tags`.
    fn index_tags(&self, key: &K, tags: &[String]) {
        self.local.index_tags(key, tags);
    }

    /// Drops the entry of `key` in every tier and, through the bus, in
    /// every process's local tier; `true` when this process's local tier or
    /// the shared tier held it.
    ///
    /// With a shared tier this waits for the delete (at most the tier's
    /// timeout); from async code prefer [`FnCache::invalidate_async`].
    pub fn invalidate(&self, key: &K) -> bool {
        let mut removed = self.invalidate_local(key);
        if let Some(link) = &self.shared {
            removed |= shared::block_on(self.invalidate_shared(link, key));
            // A read in this process during the round trip may have fetched
            // the old value from the shared tier and kept it: drop it again.
            self.invalidate_local(key);
        }
        removed
    }

    /// [`FnCache::invalidate`] for async code.
    pub async fn invalidate_async(&self, key: &K) -> bool {
        let mut removed = self.invalidate_local(key);
        if let Some(link) = &self.shared {
            removed |= self.invalidate_shared(link, key).await;
            self.invalidate_local(key);
        }
        removed
    }

    /// The function's and its group's shared versions as this process knows
    /// them; `None` while either is unknown or without a shared tier.
    pub(crate) fn known_versions(&self) -> Option<(u64, u64)> {
        self.shared.as_ref()?.known_versions()
    }

    /// The longest a local copy of a shared entry lives while the bus is down.
    pub(crate) fn bus_down_cap(&self) -> Duration {
        self.policy
            .local_cap
            .unwrap_or(shared::BUS_DOWN_LOCAL_TIMEOUT)
    }

    /// Drops every local entry of this function (this process only).
    pub(crate) fn invalidate_all_local(&self) -> u64 {
        self.local.clear(&self.metrics)
    }

    /// Drops every entry of this function in every tier and process:
    /// O(1) in the shared tier, by moving the function to a new version
    /// (old entries become unreachable and expire). Returns how many local
    /// entries went.
    pub fn invalidate_all(&self) -> u64 {
        let n = self.invalidate_all_local();
        if let Some(link) = &self.shared {
            shared::block_on(link.bump(
                &self.metrics.shared,
                self.name(),
                self.policy.ttl.is_none(),
            ));
            // Reads during the round trip used the old version: drop what they kept.
            self.invalidate_all_local();
        }
        n
    }

    /// [`FnCache::invalidate_all`] for async code.
    pub async fn invalidate_all_async(&self) -> u64 {
        let n = self.invalidate_all_local();
        if let Some(link) = &self.shared {
            link.bump(&self.metrics.shared, self.name(), self.policy.ttl.is_none())
                .await;
            self.invalidate_all_local();
        }
        n
    }

    /// A notice from another process: drop local entries of the stable key
    /// whose tag is `tag`, and void in-flight computations.
    pub(crate) fn drop_tagged(&self, tag: u64) -> u64 {
        if self.policy.idle.is_some() {
            return self.drop_tagged_idle(tag);
        }
        self.local.drop_tagged(&self.metrics, tag)
    }

    /// Drops the local entries carrying the tag whose hash is `tag_hash`.
    pub(crate) fn drop_tag(&self, tag_hash: u64) -> u64 {
        self.local.take_tag(tag_hash).map_or(0, |keys| {
            keys.iter().filter(|k| self.invalidate_local(k)).count() as u64
        })
    }

    /// The version group, if any (`versioned = "..."`).
    pub(crate) fn group(&self) -> Option<&str> {
        self.policy.group.as_deref()
    }

    /// The group's version moved to `version` (here or in another
    /// process): drop the local entries, read under older versions.
    pub(crate) fn group_bumped(&self, version: u64) -> u64 {
        if let Some(link) = &self.shared {
            link.raise(true, version);
        }
        self.invalidate_all_local()
    }

    /// A notice from another process: the function moved to `version`.
    pub(crate) fn remote_invalidate_all(&self, version: u64) -> u64 {
        if let Some(link) = &self.shared {
            link.raise(false, version);
        }
        self.invalidate_all_local()
    }

    /// The bus came back after a gap: notices may have been lost, so drop
    /// the local copies of shared entries and re-read the version.
    pub(crate) fn forget_shared_state(&self) -> u64 {
        match &self.shared {
            Some(link) => {
                link.forget_versions();
                self.invalidate_all_local()
            }
            None => 0,
        }
    }

    /// [`FnCache::invalidate_prefix_local`], under a name that hid that it
    /// leaves the shared tier and other processes alone.
    #[deprecated(
        since = "0.1.0",
        note = "this process's local tier only: call `invalidate_prefix_local`, or `layercache::invalidate_prefix` for every tier and process"
    )]
    pub fn invalidate_prefix(&self, prefix: &str) -> u64 {
        self.invalidate_prefix_local(prefix)
    }

    /// Drops every entry of this process's local tier whose stable key
    /// (without `CACHE_KEY_PREFIX`) starts with `prefix`; returns how many
    /// went. The shared tier and other processes are reached once for all
    /// functions by [`invalidate_prefix`](crate::invalidate_prefix).
    pub fn invalidate_prefix_local(&self, prefix: &str) -> u64 {
        let ns = self.namespace.as_str();
        let suffix_prefix = if ns.is_empty() {
            prefix
        } else if prefix.len() <= ns.len() {
            // Every key starts with "{ns}:", so either all match or none does.
            return if ns.starts_with(prefix) {
                self.invalidate_all_local()
            } else {
                0
            };
        } else if prefix.starts_with(ns) && prefix.as_bytes()[ns.len()] == b':' {
            &prefix[ns.len() + 1..]
        } else {
            return 0;
        };
        let render = self.render;
        let mut buf = String::new();
        let buf = std::cell::RefCell::new(&mut buf);
        self.local.drop_matching(&self.metrics, &|k| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            // A key that cannot be rendered cannot match a prefix: keep it.
            render(k, &mut buf).is_ok() && buf.starts_with(suffix_prefix)
        })
    }

    /// The function's link to the shared tier, if it has one.
    pub(crate) fn shared_link(&self) -> Option<&SharedLink> {
        self.shared.as_ref()
    }

    /// Counts a call that found nothing in any tier.
    pub(crate) fn record_miss(&self) {
        self.metrics.record_miss();
    }

    /// The clock entries expire by (the configured one, a mock in tests).
    #[cfg(feature = "axum")]
    pub(crate) fn clock(&self) -> &crate::clock::Clock {
        &self.local.clock
    }
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Stores `value` as the result for `key` (the `#[cache_put]`
    /// operation) in every tier, cancels in-flight computations'
    /// write-backs, and tells other processes to drop their local copies.
    /// With a shared tier this waits for the write (at most the tier's
    /// timeout); from async code prefer [`FnCache::put_async`].
    pub fn put(&self, key: K, value: V) {
        let ttl = self.controls.ttl_of(&value, self.policy.entry_ttl(false));
        match &self.shared {
            Some(link) => shared::block_on(self.put_shared(link, key, value.clone(), &value, ttl)),
            None => self.put_local(key, value, min_ttl(ttl, self.policy.local_cap), 0),
        }
    }

    /// [`FnCache::put`] for async code.
    pub async fn put_async(&self, key: K, value: V) {
        let ttl = self.controls.ttl_of(&value, self.policy.entry_ttl(false));
        match &self.shared {
            Some(link) => self.put_shared(link, key, value.clone(), &value, ttl).await,
            None => self.put_local(key, value, min_ttl(ttl, self.policy.local_cap), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A local-only spec over `u64` keys, with every option at its default.
    fn local_spec(name: &str) -> FnSpec<u64> {
        FnSpec {
            timeout: Timeout::Never,
            tier: TierChoice::Local,
            ..FnSpec::new(name, name, crate::key::render_hashed::<u64>)
        }
    }

    #[test]
    fn a_cache_on_an_isolated_runtime_follows_its_configuration_and_registers_only_there() {
        let null = Runtime::leak(Config::builder().cache_type(CacheType::Null).build());
        let simple = Runtime::leak(Config::default());
        let off: &FnCache<u64, u64> =
            crate::invalidate::register(FnCache::with_runtime(local_spec("isolated_off"), null));
        let on: &FnCache<u64, u64> =
            crate::invalidate::register(FnCache::with_runtime(local_spec("isolated_on"), simple));
        assert!(!off.is_enabled(), "CACHE_TYPE=null of its own runtime");
        assert!(on.is_enabled());
        let names = |rt: &Runtime| -> Vec<String> {
            rt.registry()
                .caches()
                .iter()
                .map(|c| c.stats().name)
                .collect()
        };
        assert_eq!(names(null), ["isolated_off"]);
        assert_eq!(names(simple), ["isolated_on"]);
        assert!(
            !crate::stats()
                .functions
                .iter()
                .any(|f| f.name.starts_with("isolated_")),
            "the process's runtime does not list them"
        );
        assert!(null.tier().is_none() && simple.tier().is_none());
    }

    #[test]
    fn invalidating_one_key_voids_only_computations_of_that_key_s_slot() {
        let cache: FnCache<u64, u64> =
            FnCache::with_runtime(local_spec("guard_test"), Runtime::leak(Config::default()));
        let (a, b) = (
            1u64,
            (1..1000)
                .find(|k| {
                    cache.generation(cache.key_hash(k)).index
                        != cache.generation(cache.key_hash(&1)).index
                })
                .unwrap(),
        );
        let ga = cache.generation(cache.key_hash(&a));
        let gb = cache.generation(cache.key_hash(&b));
        cache.invalidate_local(&a);
        cache.write_back(a, 10, ga, 0);
        cache.write_back(b, 20, gb, 0);
        assert_eq!(
            cache.peek(&a),
            None,
            "a computation that raced its key's invalidation is not kept"
        );
        assert_eq!(cache.peek(&b), Some(20), "another key's computation is");
        let gb = cache.generation(cache.key_hash(&b));
        cache.invalidate_all_local();
        cache.write_back(b, 21, gb, 0);
        assert_eq!(
            cache.peek(&b),
            None,
            "invalidating everything voids every computation"
        );
    }

    #[test]
    fn the_configured_jitter_spreads_entry_timeouts_unless_the_function_sets_its_own() {
        let config = Config::builder().ttl_jitter(0.2).build();
        let spec = |jitter| FnSpec {
            timeout: Timeout::After(Duration::from_secs(100)),
            jitter,
            none_timeout: Some(Duration::from_secs(5)),
            ..local_spec("jitter_test")
        };
        let spread: FnCache<u64, u64> =
            FnCache::with_runtime(spec(None), Runtime::leak(config.clone()));
        let ttls: Vec<f64> = (0..2000)
            .map(|_| spread.policy.entry_ttl(false).unwrap().as_secs_f64())
            .collect();
        let (lo, hi) = ttls
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), t| (l.min(*t), h.max(*t)));
        assert!(lo >= 80.0 && hi <= 120.0, "within ±20 %: {lo}..{hi}");
        assert!(lo < 82.0 && hi > 118.0, "and spread over it: {lo}..{hi}");
        let negative = spread.policy.entry_ttl(true).unwrap().as_secs_f64();
        assert!(
            (4.0..=6.0).contains(&negative),
            "none_timeout is jittered too: {negative}"
        );
        let fixed: FnCache<u64, u64> =
            FnCache::with_runtime(spec(Some(0.0)), Runtime::leak(config));
        assert!(
            (0..100).all(|_| fixed.policy.entry_ttl(false) == Some(Duration::from_secs(100))),
            "`jitter = 0` on the function wins over the configured default"
        );
    }

    #[test]
    fn the_tag_index_forgets_evicted_keys_and_a_tag_drops_what_remains() {
        let cache: FnCache<u64, u64> = FnCache::with_runtime(
            FnSpec {
                max_entries: Some(100),
                ..local_spec("tag_index_test")
            },
            Runtime::leak(Config::default()),
        );
        let tags = ["t".to_string()];
        for k in 0..50_000u64 {
            cache.index_tags(&k, &tags);
            cache.write_back(k, k, cache.generation(cache.key_hash(&k)), 0);
        }
        let pairs = cache.local.tag_pairs();
        assert!(
            pairs <= 2 * 4 * local::TAG_INDEX_MIN,
            "stale keys are pruned as the tier evicts them: {pairs} indexed"
        );
        let live = cache.len();
        assert_eq!(cache.drop_tag(xxhash_rust::xxh3::xxh3_64(b"t")), live);
        assert_eq!(cache.len(), 0, "every live entry carried the tag");
        assert_eq!(cache.local.tag_pairs(), 0);
    }

    #[test]
    fn reset_stats_zeroes_every_counter_of_the_runtime_s_caches_and_keeps_their_entries() {
        let rt = Runtime::leak(Config::default());
        let cache: &FnCache<u64, u64> =
            crate::invalidate::register(FnCache::with_runtime(local_spec("reset_test"), rt));
        cache.lookup_with(&1, Some);
        cache.write_back(1, 10, cache.generation(cache.key_hash(&1)), 0);
        // One lookup in HIT_SAMPLE_EVERY is timed: some of these hits are.
        for _ in 0..crate::metrics::HIT_SAMPLE_EVERY {
            assert_eq!(cache.lookup_with(&1, Some), Some(10));
        }
        let before = cache.stats();
        assert_eq!(
            (before.local_hits, before.misses),
            (u64::from(crate::metrics::HIT_SAMPLE_EVERY), 1)
        );
        assert!(before.hit_latency.count > 0);
        crate::invalidate::reset_runtime_stats(rt);
        let after = cache.stats();
        assert_eq!(
            FunctionStats {
                name: after.name.clone(),
                entries: 1,
                ..FunctionStats::default()
            },
            after,
            "every count is zero, the entry stays"
        );
        assert_eq!(cache.lookup_with(&1, Some), Some(10));
        assert_eq!(cache.stats().local_hits, 1, "counting goes on from zero");
    }

    #[test]
    fn a_working_set_of_max_entries_keys_hits_every_time_after_warm_up() {
        let cache: FnCache<u64, u64> = FnCache::with_runtime(
            FnSpec {
                max_entries: Some(10_000),
                ..local_spec("working_set_test")
            },
            Runtime::leak(Config::default()),
        );
        for k in 0..10_000u64 {
            assert_eq!(cache.lookup_with(&k, Some), None);
            cache.write_back(k, k, cache.generation(cache.key_hash(&k)), 0);
        }
        let hits = (0..10_000u64)
            .filter(|k| cache.lookup_with(k, Some) == Some(*k))
            .count();
        assert_eq!(hits, 10_000, "every key of the working set is held");
        assert_eq!(cache.stats().evictions, 0);
    }

    #[test]
    fn min_ttl_keeps_the_shorter_life() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(min_ttl(s(300), s(5)), s(5));
        assert_eq!(min_ttl(None, s(5)), s(5));
        assert_eq!(min_ttl(s(3), None), s(3));
        assert_eq!(min_ttl(None, None), None);
    }
}
