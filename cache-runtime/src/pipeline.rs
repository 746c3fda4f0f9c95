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

use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::clock::{Clock, Timestamp};
use crate::codec::{self, CodecError, EnvelopeError, Meta};
use crate::config::{self, CacheType};
use crate::flight::{self as flight, Flights, Followed, Join, Leader};
use crate::key::KeyError;
use crate::local::{build_store, Evictions, LocalStore, Stored};
use crate::manual::CacheValue;
use crate::metrics::{FnMetrics, FunctionStats};
use crate::shared::outbox::Pending;
use crate::shared::{self, ErrorKind, Notice, SharedError, Tier};

mod miss;
mod refresh;
use miss::{compute, release};
pub use miss::{get_or_compute, get_or_compute_async};
pub use refresh::{get_or_compute_async_refreshing, get_or_compute_refreshing};

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

/// How a key is rendered into the suffix of its stable string key; returns
/// the key check stored in shared envelopes (see [`codec`](crate::codec)).
pub type RenderKey<K> = fn(&K, &mut String) -> Result<u64, KeyError>;

/// Which tiers a function uses (`tier = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TierChoice {
    /// The in-process tier only, even when a shared tier is configured.
    Local,
    /// The shared tier only: every call asks it (no local copy to go stale).
    Shared,
    /// Both (the default): local, then shared.
    #[default]
    Both,
}

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
    /// Which tiers the function uses.
    pub tier: TierChoice,
    /// Caps the life of local copies below `timeout` (`local_timeout`), so
    /// a copy missed by an invalidation notice cannot outlive it.
    pub local_timeout: Option<Duration>,
    /// Spread of each entry's timeout (`jitter = 0.1`: ±10 %); `None` for
    /// the configured default ([`Config::ttl_jitter`](crate::Config::ttl_jitter)).
    pub jitter: Option<f64>,
    /// Life of a cached negative result (`none_timeout`, with
    /// `cache_none = true`); `None` for the function's timeout.
    pub none_timeout: Option<Duration>,
    /// Distributed single-flight (`lock = true`): after a shared miss, a
    /// process computes only while it holds the key's lock in the shared
    /// tier, which expires after this long if its holder dies.
    pub lock: Option<Duration>,
    /// Fail-safe (`stale_if_error`): when the function returns `Err`, a
    /// value that expired less than this long ago is returned instead.
    pub stale_if_error: Option<Duration>,
    /// Refresh-ahead (`refresh_ahead = 0.8`): a hit after this fraction of
    /// the timeout starts a background refresh.
    pub refresh_ahead: Option<f64>,
    /// Version group (`versioned = "user"`): the group's version is part
    /// of every shared key, so [`bump_version`](crate::bump_version) drops
    /// all of the group's entries in O(1).
    pub versioned: Option<String>,
}

impl<K> FnSpec<K> {
    /// A spec with every option at its default: the configured timeout,
    /// bound and jitter, both tiers, no strategy. Callers set what they
    /// declare with struct update syntax (`FnSpec { lock, ..FnSpec::new(..) }`).
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        render: RenderKey<K>,
    ) -> FnSpec<K> {
        FnSpec {
            name: name.into(),
            namespace: namespace.into(),
            timeout: Timeout::Default,
            max_entries: None,
            render,
            tier: TierChoice::Both,
            local_timeout: None,
            jitter: None,
            none_timeout: None,
            lock: None,
            stale_if_error: None,
            refresh_ahead: None,
            versioned: None,
        }
    }
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
    /// Life of local copies: `ttl` capped by `local_timeout`.
    local_ttl: Option<Duration>,
    /// `local_timeout`: caps every local copy's life.
    local_cap: Option<Duration>,
    /// Each entry's timeout is spread by ±`jitter` of itself.
    jitter: f64,
    /// Timeout of negative results (`none_timeout`); `None` for `ttl`.
    none_ttl: Option<Duration>,
    /// The shared lock's life (`lock = true`), when there is a shared tier.
    lock: Option<Duration>,
    /// How long past expiry a value may stand in for an `Err`.
    stale: Option<Duration>,
    /// The fraction of the timeout after which a hit refreshes.
    refresh_ahead: Option<f64>,
    /// The version group, if any.
    group: Option<String>,
    enabled: bool,
    /// Whether the local tier is used (`false` for `tier = "shared"`).
    local: bool,
    shared: Option<SharedFn>,
    clock: Clock,
    store: Box<dyn LocalStore<K, V>>,
    metrics: FnMetrics,
    /// Bumped by every invalidation and `put`; a computation that started
    /// under an older generation does not write back (it may hold data read
    /// before the change that caused the invalidation).
    generation: AtomicU64,
    /// Bumped by invalidations of one key (this process's, other processes'
    /// notices, `put`): a computation checks its key's slot, so an update of
    /// one key does not void every other in-flight write-back.
    slots: [AtomicU64; GUARD_SLOTS],
    render: RenderKey<K>,
    /// Step 2: computations in progress, by exact key.
    flights: Flights<K, V>,
    /// Local keys by tag (`tags = [...]`): what a tag invalidation drops here.
    tag_index: std::sync::Mutex<TagIndex<K>>,
}

/// Local keys by tag hash, how many (tag, key) pairs that makes, and the
/// count at which stale pairs are next pruned.
struct TagIndex<K> {
    keys: std::collections::HashMap<u64, std::collections::HashSet<K>>,
    pairs: u64,
    prune_at: u64,
}

impl<K> Default for TagIndex<K> {
    fn default() -> Self {
        TagIndex {
            keys: Default::default(),
            pairs: 0,
            prune_at: 4 * TAG_INDEX_MIN,
        }
    }
}

/// Below this many local entries the tag index is not pruned.
const TAG_INDEX_MIN: u64 = 1024;

/// Key-level guard slots per function.
const GUARD_SLOTS: usize = 64;

/// What a computation noted before it read anything: the function-wide
/// generation and its key's slot. A write-back goes ahead only if neither
/// moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guard {
    global: u64,
    slot: u64,
    index: usize,
}

/// A function's link to the shared tier.
pub(crate) struct SharedFn {
    tier: &'static Tier,
    /// The function's version in the shared tier ([`UNKNOWN_VERSION`] until read).
    version: AtomicU64,
    /// Its version group's version (0 without a group).
    group_version: AtomicU64,
    /// Whether the value type survives the codec: unknown until the first
    /// write checks it, then ok or broken. A type the codec cannot read
    /// back (a `Serialize` impl that writes what its `Deserialize` does not
    /// read) would make every call a GET, a failed decode and a SET.
    codec: std::sync::atomic::AtomicU8,
}

const CODEC_UNKNOWN: u8 = 0;
const CODEC_OK: u8 = 1;
const CODEC_BROKEN: u8 = 2;

/// The version of a function not yet read from the shared tier.
const UNKNOWN_VERSION: u64 = u64::MAX;

/// Whether the shared tier is asked for the function's own value type (not
/// another type, as the manual cache does).
fn is_value_type<T: 'static, V: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<V>()
}

/// Moves `version` up to `to`, never down: notices of two bumps may arrive
/// out of order, and going back would revive keys the later bump retired.
fn raise_version(version: &AtomicU64, to: u64) {
    let mut cur = version.load(SeqCst);
    while cur == UNKNOWN_VERSION || cur < to {
        match version.compare_exchange(cur, to, SeqCst, SeqCst) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

impl SharedKey {
    fn stable(&self) -> &str {
        &self.full[self.stable.clone()]
    }

    /// The key of the distributed lock (`lock = true`) on this entry.
    fn lock_key(&self) -> String {
        format!("{}lock:{}", shared::RESERVED_PREFIX, self.full)
    }
}

/// Why a shared lookup found nothing: the key to write back under (`None`
/// when the tier failed: a write would likely cost a second timeout) and
/// the local tag either way.
#[derive(Default)]
pub(crate) struct SharedMiss {
    key: Option<SharedKey>,
    tag: u64,
}

impl SharedMiss {
    fn at(key: SharedKey) -> SharedMiss {
        SharedMiss {
            tag: key.tag,
            key: Some(key),
        }
    }
}

/// A call's full key (`{CACHE_KEY_PREFIX}:{stable key}`, in one buffer),
/// key check and local tag.
pub(crate) struct Rendered {
    buf: String,
    stable_at: usize,
    check: u64,
    tag: u64,
}

impl Rendered {
    /// The local tag (and guard-slot hash) of the call.
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }
}

/// A call's key in the shared tier, computed once per miss.
pub(crate) struct SharedKey {
    /// `{CACHE_KEY_PREFIX}:{stable}[:v{version}]`: what is stored.
    full: String,
    /// Where `{ns}:{suffix}` (what notices and prefix invalidation name) sits in `full`.
    stable: std::ops::Range<usize>,
    /// Hash of `stable`: the local entry's tag.
    tag: u64,
    /// The key check written into envelopes.
    check: u64,
    /// The stored bytes failed verification: replace or delete them.
    corrupt: bool,
}

fn min_ttl(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
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
        let enabled = config.cache_type() != CacheType::Null;
        let shared = (enabled && config.cache_type().is_shared() && spec.tier != TierChoice::Local)
            .then(shared::tier)
            .flatten()
            .map(|tier| SharedFn {
                tier,
                version: AtomicU64::new(UNKNOWN_VERSION),
                group_version: AtomicU64::new(if spec.versioned.is_some() {
                    UNKNOWN_VERSION
                } else {
                    0
                }),
                codec: std::sync::atomic::AtomicU8::new(CODEC_UNKNOWN),
            });
        // Without a shared tier, `tier = "shared"` would cache nothing: keep the local tier.
        let local = spec.tier != TierChoice::Shared || shared.is_none();
        tracing::debug!(name = %spec.name, ?ttl, max_entries, cache_type = %config.cache_type(), shared = shared.is_some(), local, "layercache: function cache created");
        FnCache {
            namespace: spec.namespace,
            ttl,
            local_ttl: min_ttl(ttl, spec.local_timeout),
            local_cap: spec.local_timeout,
            jitter: spec
                .jitter
                .filter(|j| j.is_finite() && (0.0..1.0).contains(j))
                .unwrap_or(config.ttl_jitter()),
            none_ttl: spec.none_timeout,
            lock: spec.lock.filter(|_| shared.is_some()),
            stale: spec.stale_if_error,
            refresh_ahead: spec
                .refresh_ahead
                .filter(|r| r.is_finite() && *r > 0.0 && *r < 1.0),
            group: spec.versioned,
            enabled,
            local,
            shared,
            clock: config.clock().clone(),
            store: build_store(config.local_store(), max_entries, evictions.clone()),
            metrics: FnMetrics::new(spec.name, evictions, config.metrics()),
            generation: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            render: spec.render,
            flights: Flights::new(),
            tag_index: Default::default(),
        }
    }

    /// The timeout of one new entry: the function's (or `none_timeout` for
    /// a negative result), spread by the jitter.
    pub(crate) fn entry_ttl(&self, negative: bool) -> Option<Duration> {
        let base = if negative {
            self.none_ttl.or(self.ttl)
        } else {
            self.ttl
        }?;
        if self.jitter == 0.0 {
            return Some(base);
        }
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base))
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

    /// Whether this function uses a shared tier.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
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

    /// When an entry written now with `ttl` expires.
    fn expires_at(&self, ttl: Option<Duration>) -> Timestamp {
        ttl.map_or(Timestamp::NEVER, |ttl| self.clock.now().saturating_add(ttl))
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
    #[inline]
    pub(crate) fn local_get<T>(&self, key: &K, accept: impl FnOnce(V) -> Option<T>) -> Option<T> {
        self.local_lookup(key, accept, true)
    }

    /// Step 1; `first` is false for the look again after joining a flight
    /// (an expired entry was already counted by the first look).
    #[inline]
    fn local_lookup<T>(
        &self,
        key: &K,
        accept: impl FnOnce(V) -> Option<T>,
        first: bool,
    ) -> Option<T> {
        self.local_hit(key, first, |entry, _| accept(entry.value))
    }

    /// The one local hit path: `accept` sees the fresh entry and the time
    /// it was read at (refresh-ahead judges the entry's age by it).
    #[inline]
    pub(crate) fn local_hit<T>(
        &self,
        key: &K,
        first: bool,
        accept: impl FnOnce(Stored<V>, Timestamp) -> Option<T>,
    ) -> Option<T> {
        if !self.enabled || !self.local {
            return None;
        }
        let now = self.clock.now();
        match self.store.get(key) {
            Some(entry) if now < entry.expires_at => {
                if let Some(found) = accept(entry, now) {
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
            Some(_) if first => self.metrics.record_expired(),
            _ => {}
        }
        None
    }

    /// The hash that picks `key`'s guard slot: the local tag (hash of the
    /// stable key, which is all a notice from another process names) for a
    /// function with a shared tier; a hash of the arguments otherwise.
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
    pub(crate) fn guard(&self, hash: u64) -> Guard {
        let index = (hash % GUARD_SLOTS as u64) as usize;
        Guard {
            global: self.generation.load(SeqCst),
            slot: self.slots[index].load(SeqCst),
            index,
        }
    }

    /// Whether nothing invalidated the guarded key since `guard` was taken.
    fn is_current(&self, guard: Guard) -> bool {
        self.generation.load(SeqCst) == guard.global
            && self.slots[guard.index].load(SeqCst) == guard.slot
    }

    /// Voids in-flight computations of keys hashing to `hash`.
    fn bump_slot(&self, hash: u64) {
        self.slots[(hash % GUARD_SLOTS as u64) as usize].fetch_add(1, SeqCst);
    }

    /// Step 5: write-back of a computed value, unless an invalidation happened
    /// since `generation` was read.
    ///
    /// When an invalidation or `put` races the insert, the entry is removed
    /// afterwards, even if that was the `put`'s value: the race may cost a
    /// recomputation, but it never leaves a stale value in place.
    #[cfg(test)]
    pub(crate) fn write_back(&self, key: K, value: V, generation: Guard, tag: u64) {
        self.write_back_with_timeout(key, value, generation, self.local_ttl, tag)
    }

    pub(crate) fn write_back_with_timeout(
        &self,
        key: K,
        value: V,
        generation: Guard,
        ttl: Option<Duration>,
        tag: u64,
    ) {
        if !self.enabled || !self.local {
            return;
        }
        if !self.is_current(generation) {
            self.metrics.record_not_cached();
            return;
        }
        let expires_at = self.expires_at(self.cap_while_bus_down(ttl));
        self.store.insert(
            key.clone(),
            Stored {
                value,
                expires_at,
                tag,
            },
        );
        // An invalidation may have run between the check above and the insert;
        // it bumps the generation before removing, so re-checking closes the gap.
        if !self.is_current(generation) {
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
    pub(crate) fn put_local(&self, key: K, value: V, ttl: Option<Duration>, tag: u64) {
        self.bump_slot(self.key_hash(&key));
        if !self.enabled || !self.local {
            return;
        }
        let expires_at = self.expires_at(self.cap_while_bus_down(ttl));
        self.store.insert(
            key,
            Stored {
                value,
                expires_at,
                tag,
            },
        );
    }

    /// Drops the local entry of `key` (this process only); `true` when there was one.
    pub(crate) fn invalidate_local(&self, key: &K) -> bool {
        self.bump_slot(self.key_hash(key));
        let removed = self.store.remove(key);
        self.metrics.record_invalidations(u64::from(removed));
        removed
    }

    /// Drops the entry of `key` in every tier and, through the bus, in
    /// every process's local tier; `true` when this process's local tier or
    /// the shared tier held it.
    ///
    /// With a shared tier this waits for the delete (at most the tier's
    /// timeout); from async code prefer [`FnCache::invalidate_async`].
    pub fn invalidate(&self, key: &K) -> bool {
        let mut removed = self.invalidate_local(key);
        if let Some(sf) = &self.shared {
            removed |= shared::block_on(self.invalidate_shared(sf, key));
            // A read in this process during the round trip may have fetched
            // the old value from the shared tier and kept it: drop it again.
            self.invalidate_local(key);
        }
        removed
    }

    /// [`FnCache::invalidate`] for async code.
    pub async fn invalidate_async(&self, key: &K) -> bool {
        let mut removed = self.invalidate_local(key);
        if let Some(sf) = &self.shared {
            removed |= self.invalidate_shared(sf, key).await;
            self.invalidate_local(key);
        }
        removed
    }

    /// Deletes the shared entry and tells other processes; `true` when the
    /// shared tier held it.
    async fn invalidate_shared(&self, sf: &SharedFn, key: &K) -> bool {
        let m = &self.metrics.shared;
        let result = async {
            let sk = match self.shared_key(sf, key).await {
                Ok(sk) => sk,
                Err((err, _)) => {
                    // The function's version could not be read (say its
                    // cluster node is down), so the stored key is unknown;
                    // other processes can still drop their local copies.
                    if let Ok(stable) = self.stable_key(key) {
                        let notice = self.key_notice(sf, &stable);
                        if !sf.tier.bus_refused() {
                            let _ = sf.tier.publish(&notice).await;
                        }
                    }
                    return Err(err);
                }
            };
            let notice = self.key_notice(sf, sk.stable());
            // A refused bus refuses PUBLISH too, which would fail the delete.
            let notice = (!sf.tier.bus_refused()).then_some(notice);
            let keys = [sk.full];
            sf.tier
                .call(Some(m), sf.tier.timeout(), |s| {
                    s.delete(&keys, notice.as_deref())
                })
                .await
        }
        .await;
        match result {
            Ok(n) => n > 0,
            Err(err) => {
                self.defer_key(sf, key, &err);
                false
            }
        }
    }

    /// The notice telling other processes to drop their copies of `stable`.
    fn key_notice(&self, sf: &SharedFn, stable: &str) -> String {
        Notice::Key {
            namespace: &self.namespace,
            stable,
        }
        .encode(sf.tier.instance())
    }

    /// Queues the invalidation of `key` in the outbox (see [`shared::outbox`]).
    fn defer_key(&self, sf: &SharedFn, key: &K, err: &SharedError) {
        // No stable key, no shared entry to delete.
        if let Ok(stable) = self.stable_key(key) {
            self.defer_stable(sf, stable, err);
        }
    }

    /// Queues the deletion of the shared entry `stable` in the outbox.
    fn defer_stable(&self, sf: &SharedFn, stable: String, err: &SharedError) {
        tracing::debug!(name = self.name(), %err, "layercache: the shared tier did not take an invalidation; it waits in the outbox");
        sf.tier.defer(Pending::Key {
            namespace: self.namespace.clone(),
            stable,
            group: self.group.clone(),
        });
    }

    /// Whether a pending invalidation in the outbox may cover this
    /// function's shared entries: its shared reads wait for it.
    fn outbox_blocks(&self, sf: &SharedFn) -> bool {
        sf.tier
            .outbox
            .blocks(&self.namespace, self.group.as_deref())
    }

    /// How long a new local copy lives: `ttl`, capped while the bus is
    /// down by `local_timeout` (or [`shared::BUS_DOWN_LOCAL_TIMEOUT`]),
    /// since no notice would drop it.
    fn cap_while_bus_down(&self, ttl: Option<Duration>) -> Option<Duration> {
        match &self.shared {
            Some(sf) if sf.tier.bus_is_down() => min_ttl(ttl, Some(self.bus_down_cap())),
            _ => ttl,
        }
    }

    /// The function's and its group's shared versions as this process knows
    /// them; `None` while either is unknown or without a shared tier.
    pub(crate) fn known_versions(&self) -> Option<(u64, u64)> {
        let sf = self.shared.as_ref()?;
        let (v, g) = (sf.version.load(SeqCst), sf.group_version.load(SeqCst));
        (v != UNKNOWN_VERSION && g != UNKNOWN_VERSION).then_some((v, g))
    }

    /// The longest a local copy of a shared entry lives while the bus is down.
    pub(crate) fn bus_down_cap(&self) -> Duration {
        self.local_cap.unwrap_or(shared::BUS_DOWN_LOCAL_TIMEOUT)
    }

    /// Drops every local entry of this function (this process only).
    pub(crate) fn invalidate_all_local(&self) -> u64 {
        self.generation.fetch_add(1, SeqCst);
        let n = self.store.len();
        self.store.clear();
        self.metrics.record_invalidations(n);
        n
    }

    /// Drops every entry of this function in every tier and process:
    /// O(1) in the shared tier, by moving the function to a new version
    /// (old entries become unreachable and expire). Returns how many local
    /// entries went.
    pub fn invalidate_all(&self) -> u64 {
        let n = self.invalidate_all_local();
        if let Some(sf) = &self.shared {
            shared::block_on(self.invalidate_all_shared(sf));
            // Reads during the round trip used the old version: drop what they kept.
            self.invalidate_all_local();
        }
        n
    }

    /// [`FnCache::invalidate_all`] for async code.
    pub async fn invalidate_all_async(&self) -> u64 {
        let n = self.invalidate_all_local();
        if let Some(sf) = &self.shared {
            self.invalidate_all_shared(sf).await;
            self.invalidate_all_local();
        }
        n
    }

    async fn invalidate_all_shared(&self, sf: &SharedFn) {
        let tier = sf.tier;
        let m = &self.metrics.shared;
        let key = tier.version_key(&self.namespace);
        let now_ms = tier.clock().unix_millis();
        let bumped = tier
            .call(Some(m), tier.timeout(), |s| s.bump_version(&key, now_ms))
            .await;
        match bumped {
            Ok(version) => {
                raise_version(&sf.version, version);
                // Every cache on this namespace (view caches and the manual
                // cache share the empty one) adopts the same number.
                crate::invalidate::namespace_moved(&self.namespace, version);
                if self.ttl.is_none() {
                    // Entries that never expire would stay under the old
                    // version forever: sweep them in the background.
                    let prefix = format!("{}:", tier.full_key(&self.namespace));
                    tier.spawn_prefix_delete(prefix);
                }
                let notice = Notice::All {
                    namespace: &self.namespace,
                    version,
                }
                .encode(tier.instance());
                if tier.bus_refused() {
                    return;
                }
                if let Err(err) = tier.publish(&notice).await {
                    tracing::debug!(name = self.name(), %err, "layercache: could not tell other processes about an invalidation; it waits in the outbox");
                    tier.defer(Pending::All {
                        namespace: self.namespace.clone(),
                    });
                }
            }
            Err(err) => {
                // Unknown now: the next shared lookup re-reads it (after the
                // outbox has moved it on).
                sf.version.store(UNKNOWN_VERSION, SeqCst);
                tracing::debug!(name = self.name(), %err, "layercache: could not move the function to a new shared version; the bump waits in the outbox");
                tier.defer(Pending::All {
                    namespace: self.namespace.clone(),
                });
            }
        }
    }

    /// A notice from another process: drop local entries of the stable key
    /// whose tag is `tag`, and void in-flight computations.
    pub(crate) fn drop_tagged(&self, tag: u64) -> u64 {
        self.bump_slot(tag);
        let n = self.store.retain(&|_, e| e.tag != tag);
        self.metrics.record_invalidations(n);
        n
    }

    /// Records that the local entry of `key` carries `tags`.
    fn index_tags(&self, key: &K, tags: &[String]) {
        if tags.is_empty() || !self.enabled || !self.local {
            return;
        }
        let mut index = self.tag_index.lock().unwrap_or_else(|e| e.into_inner());
        for t in tags {
            let added = index
                .keys
                .entry(xxhash_rust::xxh3::xxh3_64(t.as_bytes()))
                .or_default()
                .insert(key.clone());
            index.pairs += u64::from(added);
        }
        // Entries evicted or expired leave their keys behind: prune when the
        // index outgrows the tier; the next prune waits until it has at least
        // doubled again, so pruning stays amortized O(1) per write.
        if index.pairs > index.prune_at {
            let TagIndex {
                keys,
                pairs,
                prune_at,
            } = &mut *index;
            for set in keys.values_mut() {
                set.retain(|k| self.store.get(k).is_some());
            }
            keys.retain(|_, set| !set.is_empty());
            *pairs = keys.values().map(|set| set.len() as u64).sum();
            *prune_at = (4 * self.store.len().max(TAG_INDEX_MIN)).max(2 * *pairs);
        }
    }

    /// Drops the local entries carrying the tag whose hash is `tag_hash`.
    pub(crate) fn drop_tag(&self, tag_hash: u64) -> u64 {
        let keys = {
            let mut index = self.tag_index.lock().unwrap_or_else(|e| e.into_inner());
            let keys = index.keys.remove(&tag_hash);
            index.pairs -= keys.as_ref().map_or(0, |k| k.len() as u64);
            keys
        };
        keys.map_or(0, |keys| {
            keys.iter().filter(|k| self.invalidate_local(k)).count() as u64
        })
    }

    /// The version group, if any (`versioned = "..."`).
    pub(crate) fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The group's version moved to `version` (here or in another
    /// process): drop the local entries, read under older versions.
    pub(crate) fn group_bumped(&self, version: u64) -> u64 {
        if let Some(sf) = &self.shared {
            raise_version(&sf.group_version, version);
        }
        self.invalidate_all_local()
    }

    /// A notice from another process: the function moved to `version`.
    pub(crate) fn remote_invalidate_all(&self, version: u64) -> u64 {
        if let Some(sf) = &self.shared {
            raise_version(&sf.version, version);
        }
        self.invalidate_all_local()
    }

    /// The bus came back after a gap: notices may have been lost, so drop
    /// the local copies of shared entries and re-read the version.
    pub(crate) fn forget_shared_state(&self) -> u64 {
        match &self.shared {
            Some(sf) => {
                sf.version.store(UNKNOWN_VERSION, SeqCst);
                if self.group.is_some() {
                    sf.group_version.store(UNKNOWN_VERSION, SeqCst);
                }
                self.invalidate_all_local()
            }
            None => 0,
        }
    }

    /// Drops every local entry whose stable key (without `CACHE_KEY_PREFIX`)
    /// starts with `prefix`; returns how many went. The shared tier is
    /// handled once for all functions by [`invalidate_prefix`](crate::invalidate_prefix).
    pub fn invalidate_prefix(&self, prefix: &str) -> u64 {
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
        let sf = self.cache.shared.as_ref()?;
        shared::block_on(self.cache.shared_key(sf, &self.key))
            .ok()
            .map(|k| k.full)
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
    /// Whether `v` is a negative result (a cached `None`), which lives for
    /// `none_timeout` instead of `timeout`.
    #[inline]
    fn is_negative(_v: &Self::Value) -> bool {
        false
    }
    /// Whether `r` is an error, which a stale value may replace
    /// (`stale_if_error`).
    #[inline]
    fn is_error(_r: &R) -> bool {
        false
    }
    /// How long `v` may live at most, below the function's timeout (the
    /// view cache's HTTP freshness lifetime); `None`: the timeout alone.
    #[inline]
    fn lifetime(_v: &Self::Value) -> Option<Duration> {
        None
    }
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
/// `Option<T>` with `cache_none = true`: `None` is cached too (negative
/// caching, against cache penetration), for `none_timeout`.
pub struct SomeOrNone;

impl<T: Value> OutputMode<Option<T>> for SomeOrNone {
    type Value = Option<T>;
    #[inline]
    fn cacheable(r: &Option<T>) -> Option<&Option<T>> {
        Some(r)
    }
    #[inline]
    fn from_cached(v: Option<T>) -> Option<T> {
        v
    }
    #[inline]
    fn is_negative(v: &Option<T>) -> bool {
        v.is_none()
    }
}

impl<T> Succeeds<Option<T>> for SomeOrNone {
    #[inline]
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

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
    #[inline]
    fn is_error(r: &Result<T, E>) -> bool {
        r.is_err()
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

/// One run of the origin: started after a miss.
///
/// Dropped without [`Computation::finish`] while unwinding, it counts a
/// panic of the origin; dropped otherwise (a cancelled async call) it counts
/// nothing.
struct Computation<'a, K, V> {
    cache: &'a FnCache<K, V>,
    generation: Guard,
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
    /// The function's version in the shared tier, read once and then kept
    /// up to date by notices.
    async fn version(&self, sf: &SharedFn) -> Result<u64, SharedError> {
        self.known_version(sf, &sf.version, || sf.tier.version_key(&self.namespace))
            .await
    }

    /// The version of the function's group, read once and then kept up
    /// to date by notices; 0 without a group.
    async fn group_version(&self, sf: &SharedFn) -> Result<u64, SharedError> {
        match &self.group {
            Some(group) => {
                self.known_version(sf, &sf.group_version, || sf.tier.group_key(group))
                    .await
            }
            None => Ok(0),
        }
    }

    /// `cell`, or the number under `key()` in the shared tier when `cell`
    /// is still unknown.
    async fn known_version(
        &self,
        sf: &SharedFn,
        cell: &AtomicU64,
        key: impl FnOnce() -> String,
    ) -> Result<u64, SharedError> {
        let v = cell.load(SeqCst);
        if v != UNKNOWN_VERSION {
            return Ok(v);
        }
        let key = key();
        let read = sf
            .tier
            .call(Some(&self.metrics.shared), sf.tier.timeout(), |s| {
                s.read_version(&key)
            })
            .await?;
        // A notice may have set a newer version while we read: keep it.
        let _ = cell.compare_exchange(UNKNOWN_VERSION, read, SeqCst, SeqCst);
        Ok(cell.load(SeqCst))
    }

    /// The call's shared key. On failure, the error and the local tag (0
    /// when the key cannot even be rendered): a local copy must carry its
    /// tag even when the shared tier is down, or a later notice from
    /// another process could not find it.
    async fn shared_key(&self, sf: &SharedFn, key: &K) -> Result<SharedKey, (SharedError, u64)> {
        self.shared_key_from(sf, self.rendered(key)).await
    }

    /// The stable key of `key`, its key check and its tag, rendered once per call.
    pub(crate) fn rendered(&self, key: &K) -> Result<Rendered, KeyError> {
        let prefix = self.shared.as_ref().map_or("", |sf| sf.tier.key_prefix());
        let mut buf = String::with_capacity(prefix.len() + self.namespace.len() + 48);
        if !prefix.is_empty() {
            buf.push_str(prefix);
            buf.push(':');
        }
        let stable_at = buf.len();
        if !self.namespace.is_empty() {
            buf.push_str(&self.namespace);
            buf.push(':');
        }
        let check = (self.render)(key, &mut buf)?;
        let tag = xxhash_rust::xxh3::xxh3_64(&buf.as_bytes()[stable_at..]);
        Ok(Rendered {
            buf,
            stable_at,
            check,
            tag,
        })
    }

    async fn shared_key_from(
        &self,
        sf: &SharedFn,
        rendered: Result<Rendered, KeyError>,
    ) -> Result<SharedKey, (SharedError, u64)> {
        let Rendered {
            buf: mut full,
            stable_at,
            check,
            tag,
        } = rendered.map_err(|e| {
            self.metrics.shared.record_error(ErrorKind::Encode);
            (SharedError::new(ErrorKind::Encode, e.to_string()), 0)
        })?;
        let version = self.version(sf).await.map_err(|e| (e, tag))?;
        let group_version = self.group_version(sf).await.map_err(|e| (e, tag))?;
        let stable = stable_at..full.len();
        if version != 0 {
            let _ = write!(full, ":v{version}");
        }
        if group_version != 0 {
            let _ = write!(full, ":g{group_version}");
        }
        Ok(SharedKey {
            stable,
            full,
            tag,
            check,
            corrupt: false,
        })
    }
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// Step 3: the shared tier, decoding a `T` (the value type for a
    /// function; the caller's type for the manual cache).
    /// `Ok(value, remaining life, tag)` on a hit; otherwise what the
    /// write-back needs.
    pub(crate) async fn shared_get<T: DeserializeOwned + 'static>(
        &self,
        sf: &SharedFn,
        rendered: Result<Rendered, KeyError>,
    ) -> Result<(T, Option<Duration>, u64), SharedMiss> {
        let m = &self.metrics.shared;
        if (sf.codec.load(SeqCst) == CODEC_BROKEN && is_value_type::<T, V>())
            || self.outbox_blocks(sf)
        {
            return Err(SharedMiss {
                key: None,
                tag: rendered.map_or(0, |r| r.tag),
            });
        }
        let mut sk = match self.shared_key_from(sf, rendered).await {
            Ok(sk) => sk,
            Err((_, tag)) => return Err(SharedMiss { key: None, tag }),
        };
        let tag = sk.tag;
        let span = tracing::trace_span!(
            "layercache.shared",
            function = self.name(),
            op = "get",
            outcome = tracing::field::Empty
        );
        let get = sf
            .tier
            .call(Some(m), sf.tier.timeout(), |s| s.get(&sk.full));
        let bytes = match tracing::Instrument::instrument(get, span.clone()).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                span.record("outcome", "miss");
                m.record_miss();
                return Err(SharedMiss::at(sk));
            }
            Err(err) if err.kind == ErrorKind::Corrupt => {
                // The store could not read this key as a value (counted by
                // the tier): a miss whose write-back replaces it.
                span.record("outcome", "corrupt");
                m.record_miss();
                tracing::warn!(name = self.name(), key = %sk.full, %err, "layercache: unusable shared key; treating as a miss and replacing it");
                sk.corrupt = true;
                return Err(SharedMiss::at(sk));
            }
            Err(_) => {
                span.record("outcome", "error");
                return Err(SharedMiss { key: None, tag });
            }
        };
        match sf.tier.settings().codec.open::<T>(&bytes, sk.check) {
            Ok((value, meta)) => {
                let now_ms = sf.tier.clock().unix_millis();
                let remaining = match meta.expires_at_ms {
                    0 => None,
                    at if at > now_ms => Some(Duration::from_millis(at - now_ms)),
                    // Expired by its own clock (Redis had not dropped it yet).
                    _ => {
                        span.record("outcome", "expired");
                        m.record_miss();
                        return Err(SharedMiss::at(sk));
                    }
                };
                span.record("outcome", "hit");
                Ok((value, remaining, sk.tag))
            }
            Err(err) => {
                span.record("outcome", "corrupt");
                m.record_error(ErrorKind::Corrupt);
                m.record_miss();
                if err == EnvelopeError::Type {
                    // A deploy that changed the type, or the manual cache read as another type.
                    tracing::debug!(name = self.name(), key = %sk.full, "layercache: shared value of another type; a miss");
                } else if err == EnvelopeError::Key {
                    // Almost always a function with other argument types under
                    // the same templated key (a deploy, a shared `key_prefix`).
                    tracing::debug!(name = self.name(), key = %sk.full, "layercache: shared value written for other arguments or argument types; a miss");
                } else {
                    tracing::warn!(name = self.name(), key = %sk.full, %err, len = bytes.len(), "layercache: unusable bytes under a shared key; treating as a miss and replacing them");
                }
                sk.corrupt = true;
                Err(SharedMiss::at(sk))
            }
        }
    }

    /// Step 5 for the shared tier: seal and store `value` unless an
    /// invalidation raced the computation or it is too large.
    pub(crate) async fn shared_put<T: CacheValue>(
        &self,
        sf: &SharedFn,
        sk: &SharedKey,
        value: &T,
        generation: Guard,
        ttl: Option<Duration>,
    ) -> bool {
        let m = &self.metrics.shared;
        if !self.is_current(generation) {
            return false;
        }
        let now_ms = sf.tier.clock().unix_millis();
        let meta = Meta {
            type_fingerprint: codec::type_fingerprint::<T>(),
            key_check: sk.check,
            written_at_ms: now_ms,
            expires_at_ms: ttl.map_or(0, |t| {
                now_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            }),
        };
        let settings = sf.tier.settings();
        let bytes = match settings.codec.seal(value, &meta, settings.max_value_size) {
            Ok(bytes) => bytes,
            Err(CodecError::TooLarge { limit }) => {
                // Encoding stopped at the limit: the value cost `limit` bytes, not its size.
                m.record_error(ErrorKind::Oversize);
                tracing::debug!(
                    name = self.name(),
                    limit,
                    "layercache: value over the shared size limit; kept in-process only"
                );
                if sk.corrupt {
                    let keys = [sk.full.clone()];
                    let _ = sf
                        .tier
                        .call(Some(m), sf.tier.timeout(), |s| s.delete(&keys, None))
                        .await;
                }
                return false;
            }
            Err(err) => {
                m.record_error(ErrorKind::Encode);
                tracing::warn!(name = self.name(), %err, "layercache: cannot encode a value for the shared tier; kept in-process only");
                return false;
            }
        };
        if is_value_type::<T, V>() && sf.codec.load(SeqCst) != CODEC_OK {
            // Once per function: can the codec read this type back?
            if let Err(err) = settings.codec.open::<T>(&bytes, sk.check) {
                if sf.codec.swap(CODEC_BROKEN, SeqCst) != CODEC_BROKEN {
                    tracing::error!(name = self.name(), %err, codec = settings.codec.as_str(), "layercache: the value type does not survive the codec; this function stays in-process");
                }
                m.record_error(ErrorKind::Encode);
                return false;
            }
            sf.codec.store(CODEC_OK, SeqCst);
        }
        let len = bytes.len();
        let stored = sf
            .tier
            .call(Some(m), sf.tier.timeout(), |s| {
                // Kept past the envelope's expiry for the fail-safe window.
                s.set(
                    &sk.full,
                    bytes,
                    ttl.map(|t| t.saturating_add(self.stale.unwrap_or_default())),
                )
            })
            .await;
        if let Err(err) = &stored {
            if err.kind == ErrorKind::Timeout {
                // The SET may still run when a stalled server wakes up,
                // after an invalidation that made this value old: have the
                // outbox delete the key once the server answers.
                self.defer_stable(sf, sk.stable().to_string(), err);
            }
        }
        let stored = stored.is_ok();
        if stored {
            m.record_write(len);
            // An invalidation may have deleted the key while the SET was in
            // flight; the value may predate it, so take it out again.
            if !self.is_current(generation) {
                let keys = [sk.full.clone()];
                let _ = sf
                    .tier
                    .call(Some(m), sf.tier.timeout(), |s| s.delete(&keys, None))
                    .await;
                return false;
            }
        }
        stored
    }

    /// Deletes bytes that failed verification when nothing replaces them.
    pub(crate) async fn drop_corrupt(&self, sf: &SharedFn, sk: &SharedKey) {
        let keys = [sk.full.clone()];
        let _ = sf
            .tier
            .call(Some(&self.metrics.shared), sf.tier.timeout(), |s| {
                s.delete(&keys, None)
            })
            .await;
    }

    /// A shared hit: count it and keep a local copy for the rest of its
    /// life (capped by `local_timeout`), unless an invalidation raced it.
    pub(crate) fn backfill(
        &self,
        key: K,
        local_copy: impl FnOnce() -> V,
        remaining: Option<Duration>,
        generation: Guard,
        tag: u64,
    ) {
        self.metrics.record_shared_hit();
        if !self.enabled || !self.local {
            // No local tier: no copy to make (a clone per shared hit otherwise).
            return;
        }
        self.write_back_with_timeout(
            key,
            local_copy(),
            generation,
            min_ttl(remaining, self.local_ttl),
            tag,
        );
    }

    /// Stores `local` in this process and `shared` (the same value, in its
    /// serializable form) in the shared tier, for `ttl`; then tells other
    /// processes to drop the copies it replaces (an explicit write is an
    /// update, unlike a write-back after a miss).
    pub(crate) async fn put_shared<T: CacheValue>(
        &self,
        sf: &SharedFn,
        key: K,
        local: V,
        shared: &T,
        ttl: Option<Duration>,
    ) {
        let (sk, tag) = match self.shared_key(sf, &key).await {
            Ok(sk) => {
                let tag = sk.tag;
                (Some(sk), tag)
            }
            Err((_, tag)) => (None, tag),
        };
        let Some(sk) = sk else {
            // The old value may still be in the shared tier: it must go.
            self.defer_key(
                sf,
                &key,
                &SharedError::new(ErrorKind::Skipped, "no version"),
            );
            self.put_local(key, local, min_ttl(ttl, self.local_ttl), tag);
            return;
        };
        self.put_local(key.clone(), local, min_ttl(ttl, self.local_ttl), tag);
        // After the put's own bump: only a later invalidation cancels the write.
        let generation = self.guard(tag);
        let published = if self.shared_put(sf, &sk, shared, generation, ttl).await {
            let notice = self.key_notice(sf, sk.stable());
            sf.tier.bus_refused() || sf.tier.publish(&notice).await.is_ok()
        } else {
            false
        };
        if !published && self.is_current(generation) {
            // Not written (down, oversize) or not announced: whatever the
            // shared tier or other processes hold for the key is older.
            let err = SharedError::new(ErrorKind::Skipped, "put not written or not announced");
            self.defer_key(sf, &key, &err);
        }
    }

    /// The function's link to the shared tier, if it has one.
    pub(crate) fn shared_fn(&self) -> Option<&SharedFn> {
        self.shared.as_ref()
    }

    /// Step 5 outside a `#[cached]` call (the manual cache's
    /// get-or-insert): `local` here and `shared` in the shared tier, for
    /// `ttl`, unless an invalidation happened since `generation`.
    pub(crate) async fn write_back_everywhere<T: CacheValue>(
        &self,
        sf: &SharedFn,
        key: K,
        local: V,
        shared: &T,
        generation: Guard,
        ttl: Option<Duration>,
    ) {
        match self.shared_key(sf, &key).await {
            Ok(sk) => {
                let local_ttl = min_ttl(ttl, self.local_ttl);
                self.write_back_with_timeout(key, local, generation, local_ttl, sk.tag);
                self.shared_put(sf, &sk, shared, generation, ttl).await;
            }
            Err((_, tag)) => self.write_back_with_timeout(
                key,
                local,
                generation,
                min_ttl(ttl, self.local_ttl),
                tag,
            ),
        }
    }

    /// Whether the shared tier holds a fresh envelope under `key`, of any type.
    pub(crate) async fn shared_contains(&self, sf: &SharedFn, key: &K) -> bool {
        if self.outbox_blocks(sf) {
            return false;
        }
        let Ok(sk) = self.shared_key(sf, key).await else {
            return false;
        };
        let found = sf
            .tier
            .call(Some(&self.metrics.shared), sf.tier.timeout(), |s| {
                s.get(&sk.full)
            })
            .await;
        let now_ms = sf.tier.clock().unix_millis();
        matches!(found, Ok(Some(bytes)) if codec::read_meta(&bytes)
            .is_ok_and(|(_, m)| m.key_check == sk.check && (m.expires_at_ms == 0 || m.expires_at_ms > now_ms)))
    }

    /// Counts a call that found nothing in any tier.
    pub(crate) fn record_miss(&self) {
        self.metrics.record_miss();
    }

    /// The clock entries expire by (the configured one, a mock in tests).
    #[cfg(feature = "axum")]
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }
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
        if let Some(sf) = &self.shared {
            let rendered = self.rendered(&key);
            let generation = self.guard(rendered.as_ref().map_or(0, Rendered::tag));
            if let Ok(hit) = self.shared_get::<V>(sf, rendered).await {
                return Some(self.settle_hit(key, hit, generation, &[]));
            }
        }
        self.metrics.record_miss();
        None
    }
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Stores `value` as the result for `key` (the `#[cache_put]`
    /// operation) in every tier, cancels in-flight computations'
    /// write-backs, and tells other processes to drop their local copies.
    /// With a shared tier this waits for the write (at most the tier's
    /// timeout); from async code prefer [`FnCache::put_async`].
    pub fn put(&self, key: K, value: V) {
        let ttl = self.entry_ttl(false);
        match &self.shared {
            Some(sf) => shared::block_on(self.put_shared(sf, key, value.clone(), &value, ttl)),
            None => self.put_local(key, value, min_ttl(ttl, self.local_cap), 0),
        }
    }

    /// [`FnCache::put`] for async code.
    pub async fn put_async(&self, key: K, value: V) {
        let ttl = self.entry_ttl(false);
        match &self.shared {
            Some(sf) => self.put_shared(sf, key, value.clone(), &value, ttl).await,
            None => self.put_local(key, value, min_ttl(ttl, self.local_cap), 0),
        }
    }

    /// After a local miss: the call's guard and, for a function with a
    /// shared tier, its rendered key (rendered once: it picks the guard
    /// slot and is the shared key).
    fn miss_guard(&self, key: &K) -> (Guard, u64, Option<Result<Rendered, KeyError>>) {
        match &self.shared {
            Some(_) => {
                let rendered = self.rendered(key);
                let hash = rendered.as_ref().map_or(0, Rendered::tag);
                (self.guard(hash), hash, Some(rendered))
            }
            None => {
                let hash = self.key_hash(key);
                (self.guard(hash), hash, None)
            }
        }
    }

    /// Step 3's outcome: on a hit, the value (kept locally for the rest of
    /// its life); on a miss, the key back and what the write-back needs.
    fn settle(
        &self,
        key: K,
        found: Result<(V, Option<Duration>, u64), SharedMiss>,
        generation: Guard,
        tags: &[String],
    ) -> Result<V, (K, SharedMiss)> {
        match found {
            Ok(hit) => Ok(self.settle_hit(key, hit, generation, tags)),
            Err(miss) => Err((key, miss)),
        }
    }

    /// A shared hit: keep it locally for the rest of its life.
    fn settle_hit(
        &self,
        key: K,
        (v, remaining, tag): (V, Option<Duration>, u64),
        generation: Guard,
        tags: &[String],
    ) -> V {
        self.index_tags(&key, tags);
        self.backfill(key, || v.clone(), remaining, generation, tag);
        v
    }

    /// Fail-safe: the value of `key` that expired less than the
    /// `stale_if_error` window ago, locally or in the shared tier (a
    /// fresh one another process wrote meanwhile is taken too).
    async fn stale_value(&self, key: &K) -> Option<V>
    where
        V: CacheValue,
    {
        let window = self.stale?;
        let now = self.clock.now();
        if self.local {
            if let Some(e) = self.store.get(key) {
                if now < e.expires_at.saturating_add(window) {
                    return Some(e.value);
                }
            }
        }
        let sf = self.shared.as_ref().filter(|sf| !self.outbox_blocks(sf))?;
        let sk = self.shared_key(sf, key).await.ok()?;
        let bytes = sf
            .tier
            .call(Some(&self.metrics.shared), sf.tier.timeout(), |s| {
                s.get(&sk.full)
            })
            .await
            .ok()??;
        let (value, meta) = sf.tier.settings().codec.open::<V>(&bytes, sk.check).ok()?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let now_ms = sf.tier.clock().unix_millis();
        (meta.expires_at_ms == 0 || now_ms < meta.expires_at_ms.saturating_add(window_ms))
            .then_some(value)
    }

    /// Step 4 failed (`Err`): a stale value in its place, if the function
    /// has `stale_if_error` and one is within the window.
    async fn fail_safe(&self, key: &K) -> Option<V>
    where
        V: CacheValue,
    {
        self.stale?;
        let v = self.stale_value(key).await?;
        self.metrics.record_stale_hit();
        tracing::debug!(
            name = self.name(),
            "layercache: the function failed; serving a stale value (stale_if_error)"
        );
        Some(v)
    }

    /// Distributed single-flight (`lock = true`), after a shared miss:
    /// take the key's lock in the shared tier and, once it is held, read
    /// the shared tier again (a holder that finished just before may have
    /// stored the value) before computing; or wait for the process holding
    /// it to store the value. A holder that dies
    /// releases by the lock's expiry; a shared tier that fails lets the
    /// caller compute (fail-open), as does a wait longer than twice the
    /// lock's life.
    async fn lock_or_wait(&self, sf: &SharedFn, key: &K, sk: &SharedKey) -> Locked<V>
    where
        V: CacheValue,
    {
        let Some(ttl) = self.lock else {
            return Locked::Proceed;
        };
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let lock_key = sk.lock_key();
        let token = format!("{}:{}", sf.tier.instance(), TOKENS.fetch_add(1, SeqCst));
        let m = &self.metrics.shared;
        let started = self.clock.now();
        let mut backoff = LOCK_POLL_FIRST;
        loop {
            match sf
                .tier
                .try_lock(m, lock_key.clone(), token.clone(), ttl)
                .await
            {
                Ok(Some(held)) => {
                    // The previous holder may have written the value and
                    // released the lock between this caller's miss and its
                    // lock: look again, or the origin runs twice.
                    return match self.shared_get::<V>(sf, self.rendered(key)).await {
                        Ok(found) => {
                            held.release().await;
                            Locked::Found(found)
                        }
                        Err(_) => Locked::Held(held),
                    };
                }
                Ok(None) => {}
                Err(_) => return Locked::Proceed,
            }
            if self.clock.now().nanos_since(started) > 2 * ttl.as_nanos() as u64 {
                tracing::warn!(name = self.name(), key = %sk.full, "layercache: gave up waiting for another process's computation; computing here");
                return Locked::Proceed;
            }
            // Another process computes: wait for its value.
            sf.tier.pause(backoff).await;
            backoff = (backoff * 2).min(LOCK_POLL_MAX);
            match self.shared_get::<V>(sf, self.rendered(key)).await {
                Ok(found) => {
                    self.metrics.record_lock_wait();
                    return Locked::Found(found);
                }
                // The tier failed: compute rather than wait on it.
                Err(SharedMiss { key: None, .. }) => return Locked::Proceed,
                Err(_) => {}
            }
        }
    }

    /// Step 5 for the shared tier: store the computed value, or delete the
    /// unusable bytes it replaces when it is not cacheable.
    async fn write_shared(
        &self,
        sf: &SharedFn,
        sk: &SharedKey,
        stored: Option<(&V, Option<Duration>)>,
        generation: Guard,
        tags: &[String],
    ) {
        match stored {
            Some((v, ttl)) => {
                let stored = self.shared_put(sf, sk, v, generation, ttl).await;
                if stored && !tags.is_empty() {
                    // Record the key under each tag, kept as long as the entry.
                    let sets: Vec<String> = tags.iter().map(|t| sf.tier.tag_key(t)).collect();
                    let ttl = ttl.map(|t| t.saturating_add(self.stale.unwrap_or_default()));
                    let m = &self.metrics.shared;
                    let tagged = sf
                        .tier
                        .call(Some(m), sf.tier.timeout(), |s| {
                            s.add_to_tags(&sets, &sk.full, ttl)
                        })
                        .await;
                    if let Err(err) = tagged {
                        // A value missing from its tag sets would outlive a
                        // tag invalidation: take it out of the shared tier.
                        tracing::warn!(name = self.name(), %err, "layercache: could not record a shared entry under its tags; deleting it from the shared tier");
                        let keys = [sk.full.clone()];
                        if let Err(err) = sf
                            .tier
                            .call(Some(m), sf.tier.timeout(), |s| s.delete(&keys, None))
                            .await
                        {
                            tracing::warn!(name = self.name(), %err, "layercache: could not delete a shared entry missing from its tags; a tag invalidation may miss it until it expires");
                        }
                    }
                }
            }
            None if sk.corrupt => self.drop_corrupt(sf, sk).await,
            None => {}
        }
    }

    /// Step 4 begins: note the generation (for the write-back guard) and the time.
    fn begin(&self, generation: Guard) -> Computation<'_, K, V> {
        Computation {
            cache: self,
            generation,
            started: self.clock.now(),
        }
    }
}

impl<K: Key, V: CacheValue> Computation<'_, K, V> {
    /// Step 5 when a stale value stands in for a failed call: the origin's
    /// latency is recorded, nothing is stored.
    fn failed(self) {
        self.record_origin();
        self.cache.metrics.record_not_cached();
    }

    /// The origin's latency, in the stats (and the `metrics` facade).
    fn record_origin(&self) {
        let cache = self.cache;
        let nanos = cache.clock.now().nanos_since(self.started);
        if cache.metrics.enabled() {
            cache.metrics.origin_latency.record(nanos);
        }
        #[cfg(feature = "metrics")]
        crate::export::metrics::origin_duration(cache.name(), nanos);
    }

    /// Step 5: record the origin's latency and write the result back
    /// locally if it is cacheable; returns the value for the shared write.
    fn finish<'r, M: OutputMode<R, Value = V>, R>(
        self,
        key: K,
        r: &'r R,
        cache_if: fn(&R) -> bool,
        tags: &[String],
        tag: u64,
    ) -> Option<(&'r V, Option<Duration>)> {
        self.record_origin();
        let cache = self.cache;
        // `cache_if` vetoes storing a result (the guide's response filter).
        match M::cacheable(r).filter(|_| cache_if(r)) {
            Some(v) => {
                let ttl = min_ttl(cache.entry_ttl(M::is_negative(v)), M::lifetime(v));
                let local_ttl = min_ttl(ttl, cache.local_cap);
                cache.index_tags(&key, tags);
                if cache.local {
                    // No copy of a value that no local tier keeps (it may be huge).
                    cache.write_back_with_timeout(key, v.clone(), self.generation, local_ttl, tag);
                }
                Some((v, ttl))
            }
            None => {
                if cache.enabled {
                    cache.metrics.record_not_cached();
                }
                None
            }
        }
    }
}

/// First and longest pause between polls of the shared tier while another
/// process holds a key's lock.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(2);
const LOCK_POLL_MAX: Duration = Duration::from_millis(50);

/// The distributed lock's outcome after a shared miss.
enum Locked<V> {
    /// This process computes; it releases the lock after the write-back.
    Held(shared::HeldLock),
    /// The holder's value arrived in the shared tier.
    Found((V, Option<Duration>, u64)),
    /// Compute without the lock (no lock configured, a failing tier, or a
    /// holder that never delivered).
    Proceed,
}

/// Step 2's outcome for a caller that missed the local tier.
enum Flight<'a, K: Key, V: Value> {
    /// Look further and compute; land the leader when done.
    Lead(Leader<'a, K, V>),
    /// A flight landed between the miss and the join: its value (a hit).
    Answered(V),
    /// Wait for another caller's computation.
    Follow(std::sync::Arc<crate::flight::Flight<V>>),
    /// Compute without a flight (caching off, or the flight's own leader).
    Alone,
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

/// Lands a leader (if any) with a value found in the shared tier.
fn land<K: Key, V: Value>(leader: Option<Leader<'_, K, V>>, v: V) -> V {
    if let Some(leader) = leader {
        leader.land(|| Some(v.clone()));
    }
    v
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// Step 2: lead the key's computation, or follow the one in progress.
    fn join_flight(&self, key: &K, hash: u64) -> Flight<'_, K, V> {
        if !self.enabled {
            return Flight::Alone;
        }
        match self.flights.join(key, hash) {
            Join::Lead(leader) => {
                // A flight may have landed (and written back) between this
                // caller's miss and its join: look again before computing.
                match self.local_lookup(key, Some, false) {
                    Some(v) => {
                        leader.land(|| Some(v.clone()));
                        Flight::Answered(v)
                    }
                    None => Flight::Lead(leader),
                }
            }
            Join::Follow(flight) => Flight::Follow(flight),
            Join::Alone => Flight::Alone,
        }
    }

    /// Step 2 for code outside a `#[cached]` call (the manual cache's
    /// get-or-insert): `Ok` to compute (landing the leader, if any, with
    /// the value), `Err` with the value another caller computed. Blocks
    /// while another caller computes.
    pub(crate) fn flight_or_value(&self, key: &K) -> Result<Option<Leader<'_, K, V>>, V> {
        match self.join_flight(key, self.key_hash(key)) {
            Flight::Lead(leader) => Ok(Some(leader)),
            Flight::Answered(v) => Err(v),
            Flight::Follow(f) => match self.flights.follow(&f) {
                Followed::Value(v) => Err(self.coalesced(v)),
                Followed::Lead(leader) => Ok(Some(leader)),
                Followed::Alone => Ok(None),
            },
            Flight::Alone => Ok(None),
        }
    }

    /// [`FnCache::flight_or_value`] for async code.
    pub(crate) async fn flight_or_value_async(
        &self,
        key: &K,
    ) -> Result<Option<Leader<'_, K, V>>, V> {
        match self.join_flight(key, self.key_hash(key)) {
            Flight::Lead(leader) => Ok(Some(leader)),
            Flight::Answered(v) => Err(v),
            Flight::Follow(f) => match self.flights.follow_async(&f).await {
                Followed::Value(v) => Err(self.coalesced(v)),
                Followed::Lead(leader) => Ok(Some(leader)),
                Followed::Alone => Ok(None),
            },
            Flight::Alone => Ok(None),
        }
    }

    /// Whether the shared tier is asked before joining a flight: for
    /// `tier = "shared"`, where every call asks the shared tier anyway, a
    /// hit then costs no flight bookkeeping; concurrent misses still share
    /// one computation.
    fn shared_first(&self) -> bool {
        !self.local
    }

    /// A follower answered by the leader's value.
    fn coalesced(&self, v: V) -> V {
        self.metrics.record_coalesced();
        v
    }

    /// Ends a computation's flight: followers share the stored value,
    /// unless an invalidation raced it (then they compute themselves).
    fn land_computed(
        &self,
        leader: Option<Leader<'_, K, V>>,
        stored: Option<(&V, Option<Duration>)>,
        generation: Guard,
    ) {
        if let Some(leader) = leader {
            let current = self.is_current(generation);
            leader.land(|| stored.filter(|_| current).map(|(v, _)| v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local-only spec over `u64` keys, with every option at its default.
    fn local_spec(name: &str) -> FnSpec<u64> {
        FnSpec {
            timeout: Timeout::Never,
            tier: TierChoice::Local,
            ..FnSpec::new(name, name, crate::key::render_hashed::<u64>)
        }
    }

    #[test]
    fn a_version_only_moves_up_even_when_notices_arrive_out_of_order() {
        let v = AtomicU64::new(UNKNOWN_VERSION);
        raise_version(&v, 5);
        assert_eq!(
            v.load(SeqCst),
            5,
            "an unknown version takes the first one seen"
        );
        raise_version(&v, 9);
        raise_version(&v, 7);
        assert_eq!(
            v.load(SeqCst),
            9,
            "a late notice of an older bump is ignored"
        );
    }

    #[test]
    fn invalidating_one_key_voids_only_computations_of_that_key_s_slot() {
        let cache: FnCache<u64, u64> =
            FnCache::with_config(local_spec("guard_test"), &config::Config::default());
        let (a, b) = (
            1u64,
            (1..1000)
                .find(|k| {
                    cache.guard(cache.key_hash(k)).index != cache.guard(cache.key_hash(&1)).index
                })
                .unwrap(),
        );
        let ga = cache.guard(cache.key_hash(&a));
        let gb = cache.guard(cache.key_hash(&b));
        cache.invalidate_local(&a);
        cache.write_back(a, 10, ga, 0);
        cache.write_back(b, 20, gb, 0);
        assert_eq!(
            cache.peek(&a),
            None,
            "a computation that raced its key's invalidation is not kept"
        );
        assert_eq!(cache.peek(&b), Some(20), "another key's computation is");
        let gb = cache.guard(cache.key_hash(&b));
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
        let config = config::Config::builder().ttl_jitter(0.2).build();
        let spec = |jitter| FnSpec {
            timeout: Timeout::After(Duration::from_secs(100)),
            jitter,
            none_timeout: Some(Duration::from_secs(5)),
            ..local_spec("jitter_test")
        };
        let spread: FnCache<u64, u64> = FnCache::with_config(spec(None), &config);
        let ttls: Vec<f64> = (0..2000)
            .map(|_| spread.entry_ttl(false).unwrap().as_secs_f64())
            .collect();
        let (lo, hi) = ttls
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), t| (l.min(*t), h.max(*t)));
        assert!(lo >= 80.0 && hi <= 120.0, "within ±20 %: {lo}..{hi}");
        assert!(lo < 82.0 && hi > 118.0, "and spread over it: {lo}..{hi}");
        let negative = spread.entry_ttl(true).unwrap().as_secs_f64();
        assert!(
            (4.0..=6.0).contains(&negative),
            "none_timeout is jittered too: {negative}"
        );
        let fixed: FnCache<u64, u64> = FnCache::with_config(spec(Some(0.0)), &config);
        assert!(
            (0..100).all(|_| fixed.entry_ttl(false) == Some(Duration::from_secs(100))),
            "`jitter = 0` on the function wins over the configured default"
        );
    }

    #[test]
    fn the_tag_index_forgets_evicted_keys_and_a_tag_drops_what_remains() {
        let cache: FnCache<u64, u64> = FnCache::with_config(
            FnSpec {
                max_entries: Some(100),
                ..local_spec("tag_index_test")
            },
            &config::Config::default(),
        );
        let tags = ["t".to_string()];
        for k in 0..50_000u64 {
            cache.index_tags(&k, &tags);
            cache.write_back(k, k, cache.guard(cache.key_hash(&k)), 0);
        }
        let pairs = cache.tag_index.lock().unwrap().pairs;
        assert!(
            pairs <= 2 * 4 * TAG_INDEX_MIN,
            "stale keys are pruned as the tier evicts them: {pairs} indexed"
        );
        let live = cache.len();
        assert_eq!(cache.drop_tag(xxhash_rust::xxh3::xxh3_64(b"t")), live);
        assert_eq!(cache.len(), 0, "every live entry carried the tag");
        assert_eq!(cache.tag_index.lock().unwrap().pairs, 0);
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
