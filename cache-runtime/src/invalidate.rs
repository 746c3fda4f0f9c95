//! The operations that span every function cache of the process's runtime
//! (its registry lives in `runtime`): prefix, tag and version-group
//! invalidation, clear, flushing the outbox, stats; and the slots generated
//! code keeps its cache in.

use std::any::{Any, TypeId};
use std::sync::{OnceLock, RwLockReadGuard};

use crate::metrics::{FunctionStats, Stats};
use crate::pipeline::{FnCache, FnSpec, Key, Value};
use crate::runtime::{self, bump_each_namespace, Registered};
use crate::shared::outbox::Pending;
use crate::shared::{self, Notice, Tier};

impl<K: Key, V: Value> Registered for FnCache<K, V> {
    fn stats(&self) -> FunctionStats {
        FnCache::stats(self)
    }
    fn reset_stats(&self) {
        FnCache::reset_stats(self)
    }
    fn namespace(&self) -> &str {
        FnCache::namespace(self)
    }
    fn is_shared(&self) -> bool {
        FnCache::is_shared(self)
    }
    fn invalidate_all(&self) -> u64 {
        FnCache::invalidate_all(self)
    }
    fn invalidate_all_async(&self) -> shared::BoxFuture<'_, u64> {
        Box::pin(FnCache::invalidate_all_async(self))
    }
    fn invalidate_all_local(&self) -> u64 {
        FnCache::invalidate_all_local(self)
    }
    fn invalidate_prefix_local(&self, prefix: &str) -> u64 {
        FnCache::invalidate_prefix_local(self, prefix)
    }
    fn drop_tagged(&self, tag: u64) -> u64 {
        FnCache::drop_tagged(self, tag)
    }
    fn remote_invalidate_all(&self, version: u64) -> u64 {
        FnCache::remote_invalidate_all(self, version)
    }
    fn forget_shared_state(&self) -> u64 {
        FnCache::forget_shared_state(self)
    }
    fn group(&self) -> Option<&str> {
        FnCache::group(self)
    }
    fn group_bumped(&self, version: u64) -> u64 {
        FnCache::group_bumped(self, version)
    }
    fn drop_tag(&self, tag_hash: u64) -> u64 {
        FnCache::drop_tag(self, tag_hash)
    }
    fn bus_down_cap(&self) -> std::time::Duration {
        FnCache::bus_down_cap(self)
    }
    fn known_versions(&self) -> Option<(u64, u64)> {
        FnCache::known_versions(self)
    }
}

/// Applies the invalidations still waiting in the outbox (see
/// [`shared::outbox`]), for at most `deadline`; returns how many could not
/// be applied, each logged at ERROR. Call it on shutdown, after the last
/// request was served: pending invalidations live only in memory, and one
/// that never reaches the shared tier leaves other processes reading the
/// old value until it expires.
///
/// Without a shared tier, or with nothing pending, it returns 0 at once.
///
/// ```
/// let unapplied = layercache_runtime::flush_invalidations(std::time::Duration::from_secs(2));
/// assert_eq!(unapplied, 0);
/// ```
pub fn flush_invalidations(deadline: std::time::Duration) -> u64 {
    shared::block_on(flush_invalidations_async(deadline))
}

/// [`flush_invalidations`] for async code.
pub async fn flush_invalidations_async(deadline: std::time::Duration) -> u64 {
    let Some(tier) = shared_tier() else {
        return 0;
    };
    if tier.outbox.pending() == 0 {
        return 0;
    }
    let left = runtime::global().flush_outbox(tier, deadline).await;
    for op in &left {
        tracing::error!(?op, store = %tier.stats().store, "layercache: an invalidation could not reach the shared tier before shutdown; other processes may read the old value until it expires");
    }
    left.len() as u64
}

/// The caches of the process's runtime.
fn registry() -> RwLockReadGuard<'static, Vec<&'static dyn Registered>> {
    runtime::global().registry().caches()
}

/// Creates, leaks and registers a function cache.
pub(crate) fn register<K: Key, V: Value>(cache: FnCache<K, V>) -> &'static FnCache<K, V> {
    let cache: &'static FnCache<K, V> = Box::leak(Box::new(cache));
    cache.runtime().registry().add(cache);
    cache
}

/// The slot the generated wrapper of a free function keeps its cache in:
/// typed, so a call finds its cache with one load and no type check.
/// (A `static` cannot name the type parameters of an enclosing `impl`, so
/// methods use a [`CacheSlot`].)
pub struct FnSlot<K: 'static, V: 'static> {
    /// The cache once made: a call finds it with one load and a test (a
    /// `OnceLock` also tests its state first, one instruction more of a hit).
    ready: once_cell::race::OnceRef<'static, FnCache<K, V>>,
    /// Makes it once, when threads race to the first call.
    made: OnceLock<&'static FnCache<K, V>>,
}

impl<K, V> FnSlot<K, V> {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FnSlot {
            ready: once_cell::race::OnceRef::new(),
            made: OnceLock::new(),
        }
    }
}

impl<K: Key, V: Value> FnSlot<K, V> {
    /// The cache in this slot, created on first use from `spec`.
    #[inline]
    pub fn get_or_init(&'static self, spec: impl FnOnce() -> FnSpec<K>) -> &'static FnCache<K, V> {
        match self.ready.get() {
            Some(cache) => cache,
            None => self.init(spec),
        }
    }

    #[cold]
    fn init(&'static self, spec: impl FnOnce() -> FnSpec<K>) -> &'static FnCache<K, V> {
        let cache = *self
            .made
            .get_or_init(|| register(FnCache::<K, V>::new(spec())));
        // Err: another thread published the same cache first.
        let _ = self.ready.set(cache);
        cache
    }
}

/// The slot the generated wrapper of a method or a generic function keeps
/// its caches in: a `static` in a generic function, or in a method of a
/// generic `impl`, cannot name the type parameters, so one untyped slot
/// serves every instantiation, each with a cache of its own.
///
/// The caches form a list that only grows (caches live as long as the
/// process): a call walks it without a lock, comparing its instantiation
/// (the `TypeId`s of the function's type arguments, and the cache's own
/// type) with each entry's; a function has a handful of instantiations,
/// and the first is found with the same loads as a typed slot plus one
/// comparison. A new instantiation is linked at the end through a
/// `OnceLock`, so two threads racing to add the same one create one cache.
pub struct CacheSlot {
    first: OnceLock<Instance>,
}

/// One instantiation's cache in a [`CacheSlot`].
struct Instance {
    /// The type arguments' `TypeId`s (none for a method of a plain `impl`).
    types: Box<[TypeId]>,
    cache: &'static (dyn Any + Send + Sync),
    next: OnceLock<&'static Instance>,
}

impl Instance {
    /// This entry's cache, if it is the one of `types` with keys `K` and values `V`.
    #[inline]
    fn holds<K: Key, V: Value>(&self, types: &[TypeId]) -> Option<&'static FnCache<K, V>> {
        if *self.types != *types {
            return None;
        }
        self.cache.downcast_ref::<FnCache<K, V>>()
    }
}

impl CacheSlot {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        CacheSlot {
            first: OnceLock::new(),
        }
    }

    /// Links the cache of `types` at the end of the list, unless another
    /// thread linked it first.
    #[cold]
    fn add<K: Key, V: Value>(
        &'static self,
        types: &[TypeId],
        spec: impl FnOnce() -> FnSpec<K>,
    ) -> &'static FnCache<K, V> {
        let mut spec = Some(spec);
        // Runs at most once: when it does, the entry it makes is the one returned.
        let mut make = || {
            let spec = spec.take().expect("one cache is made");
            Instance {
                types: types.into(),
                cache: register(FnCache::<K, V>::new(spec())),
                next: OnceLock::new(),
            }
        };
        let mut node: &'static Instance = self.first.get_or_init(&mut make);
        loop {
            if let Some(cache) = node.holds::<K, V>(types) {
                return cache;
            }
            node = node.next.get_or_init(|| Box::leak(Box::new(make())));
        }
    }
}

/// The cache of a method behind `slot`, created on first use from `spec`.
///
/// One slot normally holds one cache. A `#[cached]` method in a generic
/// `impl` shares one slot between instantiations; each instantiation then
/// gets its own cache, told apart by its type.
#[inline]
pub fn slot_cache<K: Key, V: Value>(
    slot: &'static CacheSlot,
    spec: impl FnOnce() -> FnSpec<K>,
) -> &'static FnCache<K, V> {
    instance_cache(slot, &[], spec)
}

/// The cache of one instantiation of a generic function behind `slot`:
/// `types` are the `TypeId`s of its type arguments, in order. Created on
/// first use from `spec`, whose namespace names the type arguments.
#[inline]
pub fn instance_cache<K: Key, V: Value>(
    slot: &'static CacheSlot,
    types: &[TypeId],
    spec: impl FnOnce() -> FnSpec<K>,
) -> &'static FnCache<K, V> {
    let mut node = slot.first.get();
    while let Some(instance) = node {
        if let Some(cache) = instance.holds::<K, V>(types) {
            return cache;
        }
        node = instance.next.get().copied();
    }
    slot.add(types, spec)
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
    let shared_tier = shared_tier().map(Tier::stats);
    Stats {
        functions,
        shared_tier,
    }
}

/// Zeroes every counter [`stats`] reports: each function's (hits,
/// misses, evictions, latencies, shared-tier counts) and the shared tier's
/// process totals (breaker openings, notices, resubscriptions, replayed
/// invalidations, outbox overflows). Cached entries stay; `entries` and
/// what is pending are states, not counts, and are not changed. Counts
/// made while it runs may land before or after the reset.
///
/// For measuring a period (a benchmark round, a test, a deploy):
///
/// ```
/// use std::time::Duration;
/// use layercache_runtime::{reset_stats, stats, sync::Cache, MANUAL_CACHE_NAME};
///
/// let cache = Cache::global();
/// cache.set("greeting", "hello".to_string(), Duration::from_secs(60));
/// let _: Option<String> = cache.get("greeting");
/// reset_stats();
/// let _: Option<String> = cache.get("greeting");
/// let s = stats();
/// let manual = s.function(MANUAL_CACHE_NAME).unwrap();
/// assert_eq!((manual.hits, manual.misses), (1, 0), "only the read after the reset");
/// ```
pub fn reset_stats() {
    reset_runtime_stats(runtime::global());
}

/// [`reset_stats`] for the caches and tier of `runtime`.
pub(crate) fn reset_runtime_stats(runtime: &'static runtime::Runtime) {
    for cache in runtime.registry().caches().iter() {
        cache.reset_stats();
    }
    if let Some(tier) = runtime.tier() {
        tier.reset_counters();
    }
}

/// Drops every entry, of every function and of the manual cache, whose
/// stable key starts with `prefix` (the global `CACHE_KEY_PREFIX` is not
/// part of what is matched). Returns how many local entries went.
///
/// With a shared tier, the matching shared keys are deleted too (`SCAN
/// MATCH` with the prefix's glob characters escaped, `UNLINK` in batches;
/// never `KEYS`), and other processes are told to drop their local copies.
/// This walks the shared keyspace, so it is O(keys); dropping all of one
/// function is O(1) with `all =`. It blocks for the scan; from async code
/// use [`invalidate_prefix_async`].
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
    everywhere(
        || invalidate_prefix_local(prefix),
        |tier| invalidate_prefix_shared(tier, prefix),
    )
}

/// [`invalidate_prefix`] for async code.
pub async fn invalidate_prefix_async(prefix: &str) -> u64 {
    if prefix.is_empty() {
        tracing::warn!("layercache: refusing to invalidate the empty prefix (it would drop everything); call clear() for that");
        return 0;
    }
    everywhere_async(
        || invalidate_prefix_local(prefix),
        |tier| invalidate_prefix_shared(tier, prefix),
    )
    .await
}

/// An invalidation in every tier: `local` here, then `remote` (when there
/// is a shared tier), then `local` again, since reads during the round trip
/// may have fetched and kept old values. Returns what the first pass dropped.
fn everywhere<F: std::future::Future<Output = ()>>(
    local: impl Fn() -> u64,
    remote: impl FnOnce(&'static Tier) -> F,
) -> u64 {
    let removed = local();
    if let Some(tier) = shared_tier() {
        shared::block_on(remote(tier));
        local();
    }
    removed
}

/// [`everywhere`] for async code.
async fn everywhere_async<F: std::future::Future<Output = ()>>(
    local: impl Fn() -> u64,
    remote: impl FnOnce(&'static Tier) -> F,
) -> u64 {
    let removed = local();
    if let Some(tier) = shared_tier() {
        remote(tier).await;
        local();
    }
    removed
}

fn invalidate_prefix_local(prefix: &str) -> u64 {
    let removed = registry()
        .iter()
        .map(|c| c.invalidate_prefix_local(prefix))
        .sum();
    tracing::debug!(prefix, removed, "layercache: prefix invalidated locally");
    removed
}

fn shared_tier() -> Option<&'static Tier> {
    runtime::global().tier()
}

async fn invalidate_prefix_shared(tier: &'static Tier, prefix: &str) {
    // A scan walks the keyspace: give it far more than one round trip.
    let budget = (tier.timeout() * 100).max(std::time::Duration::from_secs(5));
    let full = tier.full_key(prefix);
    if !tier.can_delete_prefix() {
        // The store cannot find the keys (memcached): move every function
        // the prefix may cover to a new version, which retires all of its
        // shared entries (more than the prefix, never fewer). Functions
        // this process never called are moved by the processes that have
        // them, when the notice below reaches them.
        bump_each_namespace(runtime::global().registry().covered_by(prefix)).await;
        tracing::debug!(
            prefix,
            "layercache: prefix invalidated by new versions (the store cannot delete by prefix)"
        );
    } else if let Err(err) = tier.call(None, budget, |s| s.delete_prefix(&full)).await {
        tracing::debug!(prefix, %err, "layercache: could not delete a prefix in the shared tier; it waits in the outbox");
        tier.defer(Pending::Prefix {
            prefix: prefix.to_string(),
        });
        return;
    }
    if tier.bus_refused() {
        return;
    }
    let notice = Notice::Prefix { prefix }.encode(tier.instance());
    if let Err(err) = tier.publish(&notice).await {
        tracing::debug!(prefix, %err, "layercache: could not tell other processes about a prefix invalidation; it waits in the outbox");
        tier.defer(Pending::Prefix {
            prefix: prefix.to_string(),
        });
    }
}

/// Drops every entry carrying `tag` (declared with `#[cached(tags =
/// ["user:{user_id}"])]`), of any function, in every tier and process:
/// the local entries here, the shared keys recorded under the tag (a
/// Redis set per tag, deleted by one script), and other processes' local
/// copies through a notice. Returns how many local entries went. Costs
/// O(entries carrying the tag). Blocks for the round trip; from async code
/// use [`invalidate_tag_async`].
///
/// ```
/// // No function has used the tag in this process: nothing to drop.
/// assert_eq!(layercache_runtime::invalidate_tag("user:42"), 0);
/// ```
pub fn invalidate_tag(tag: &str) -> u64 {
    everywhere(
        || runtime::global().registry().drop_tag_local(tag),
        |tier| invalidate_tag_shared(tier, tag),
    )
}

/// [`invalidate_tag`] for async code.
pub async fn invalidate_tag_async(tag: &str) -> u64 {
    everywhere_async(
        || runtime::global().registry().drop_tag_local(tag),
        |tier| invalidate_tag_shared(tier, tag),
    )
    .await
}

async fn invalidate_tag_shared(tier: &'static Tier, tag: &str) {
    let set = tier.tag_key(tag);
    match tier
        .call(None, tier.timeout() * 10, |s| s.delete_tag(&set))
        .await
    {
        Ok(n) => tracing::debug!(
            tag,
            deleted = n,
            "layercache: shared entries of a tag deleted"
        ),
        Err(err) => {
            tracing::debug!(tag, %err, "layercache: could not delete a tag's shared entries; it waits in the outbox");
            tier.defer(Pending::Tag {
                tag: tag.to_string(),
            });
            return;
        }
    }
    if tier.bus_refused() {
        return;
    }
    let notice = Notice::Tag { tag }.encode(tier.instance());
    if let Err(err) = tier.publish(&notice).await {
        tracing::debug!(tag, %err, "layercache: could not tell other processes about a tag invalidation; it waits in the outbox");
        tier.defer(Pending::Tag {
            tag: tag.to_string(),
        });
    }
}

/// Drops every entry of every function declared `versioned = "{group}"`,
/// in every tier and process, in O(1): the group's version, part of each
/// of their shared keys, moves up (versioned keys), so
/// old entries become unreachable and expire by themselves. Returns how
/// many local entries went.
///
/// Functions of the group this process has not called yet read the new
/// version on first use. Entries without a timeout (`timeout = 0`) stay
/// in the shared tier under the old version until evicted.
///
/// Functions join a group with `#[cached(versioned = "catalog")]` (see
/// the `layercache` crate); here no function of the group has been
/// called yet, so nothing local is dropped:
///
/// ```
/// assert_eq!(layercache_runtime::bump_version("catalog"), 0);
/// ```
pub fn bump_version(group: &str) -> u64 {
    everywhere(
        || group_bumped_local(group),
        |tier| bump_version_shared(tier, group),
    )
}

/// [`bump_version`] for async code.
pub async fn bump_version_async(group: &str) -> u64 {
    everywhere_async(
        || group_bumped_local(group),
        |tier| bump_version_shared(tier, group),
    )
    .await
}

fn group_bumped_local(group: &str) -> u64 {
    registry()
        .iter()
        .filter(|c| c.group() == Some(group))
        .map(|c| c.invalidate_all_local())
        .sum()
}

async fn bump_version_shared(tier: &'static Tier, group: &str) {
    let key = tier.group_key(group);
    let now_ms = tier.clock().unix_millis();
    match tier
        .call(None, tier.timeout(), |s| s.bump_version(&key, now_ms))
        .await
    {
        Ok(version) => {
            runtime::global().registry().group_bumped(group, version);
            if tier.bus_refused() {
                return;
            }
            let notice = Notice::Group { group, version }.encode(tier.instance());
            if let Err(err) = tier.publish(&notice).await {
                tracing::debug!(group, %err, "layercache: could not tell other processes about a version bump; it waits in the outbox");
                tier.defer(Pending::Group {
                    group: group.to_string(),
                });
            }
        }
        Err(err) => {
            tracing::debug!(group, %err, "layercache: could not bump a version group in the shared tier; it waits in the outbox");
            tier.defer(Pending::Group {
                group: group.to_string(),
            });
        }
    }
}

/// Drops every entry of every cached function and of the manual cache
/// (Flask-Caching's `cache.clear()`). Returns how many local entries went.
///
/// With a shared tier, every namespace this process has used moves to a
/// new shared version, once (O(1) each; every cache on a namespace adopts
/// the same number, fleet-wide), and other processes drop their copies.
/// When the shared tier cannot be reached, the bumps wait in the outbox.
pub fn clear() -> u64 {
    let mut removed = 0;
    for (cache, bump) in clear_plan() {
        removed += if bump {
            cache.invalidate_all()
        } else {
            cache.invalidate_all_local()
        };
    }
    tracing::debug!(removed, "layercache: cleared");
    removed
}

/// [`clear`] for async code: it awaits the shared tier instead of blocking
/// the executor's thread while it answers.
pub async fn clear_async() -> u64 {
    let mut removed = 0;
    for (cache, bump) in clear_plan() {
        removed += if bump {
            cache.invalidate_all_async().await
        } else {
            cache.invalidate_all_local()
        };
    }
    tracing::debug!(removed, "layercache: cleared");
    removed
}

/// Every registered cache, and whether clearing it bumps its namespace's
/// shared version (the first shared cache of each namespace does; the
/// others on it adopt that number, so only their local tiers are emptied).
fn clear_plan() -> Vec<(&'static dyn Registered, bool)> {
    let mut bumped = std::collections::HashSet::new();
    registry()
        .iter()
        .map(|c| {
            (
                *c,
                c.is_shared() && bumped.insert(c.namespace().to_string()),
            )
        })
        .collect()
}
