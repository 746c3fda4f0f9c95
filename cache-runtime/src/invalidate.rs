//! The registry of every function cache in the process, and the
//! operations that span them: prefix invalidation, clear, stats.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::metrics::{FunctionStats, Stats};
use crate::pipeline::{FnCache, FnSpec, Key, Value};
use crate::shared::outbox::Pending;
use crate::shared::{self, BusEvent, BusHandler, Notice, SharedError, Tier};

/// What the registry needs of a function cache, whatever its key and value types.
trait Registered: Send + Sync {
    fn stats(&self) -> FunctionStats;
    fn namespace(&self) -> &str;
    fn is_shared(&self) -> bool;
    /// Everywhere: local, shared (new version) and, by notice, other processes.
    fn invalidate_all(&self) -> u64;
    /// [`Registered::invalidate_all`] for async code.
    fn invalidate_all_async(&self) -> shared::BoxFuture<'_, u64>;
    /// This process's local tier only.
    fn invalidate_all_local(&self) -> u64;
    fn invalidate_prefix_local(&self, prefix: &str) -> u64;
    fn drop_tagged(&self, tag: u64) -> u64;
    fn remote_invalidate_all(&self, version: u64) -> u64;
    fn forget_shared_state(&self) -> u64;
    fn group(&self) -> Option<&str>;
    fn group_bumped(&self, version: u64) -> u64;
    fn drop_tag(&self, tag_hash: u64) -> u64;
    fn bus_down_cap(&self) -> std::time::Duration;
    /// The function's and its group's shared versions as this process knows them.
    fn known_versions(&self) -> Option<(u64, u64)>;
}

impl<K: Key, V: Value> Registered for FnCache<K, V> {
    fn stats(&self) -> FunctionStats {
        FnCache::stats(self)
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
        FnCache::invalidate_prefix(self, prefix)
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

/// Applies invalidation notices from other processes to this process's
/// local tiers.
pub(crate) fn bus_handler(tier: &'static Tier) -> BusHandler {
    Arc::new(move |event| match event {
        BusEvent::Message(text) => {
            let Some((from, notice)) = Notice::decode(&text) else {
                tracing::debug!(text, "layercache: ignoring an unknown bus message");
                return;
            };
            if from == tier.instance() {
                return; // applied locally when it was sent
            }
            tier.count_notice();
            let dropped: u64 = match notice {
                Notice::Key { namespace, stable } => {
                    let tag = xxhash_rust::xxh3::xxh3_64(stable.as_bytes());
                    registry()
                        .iter()
                        .filter(|c| c.is_shared() && c.namespace() == namespace)
                        .map(|c| c.drop_tagged(tag))
                        .sum()
                }
                Notice::All { namespace, version } => registry()
                    .iter()
                    .filter(|c| c.is_shared() && c.namespace() == namespace)
                    .map(|c| c.remote_invalidate_all(version))
                    .sum(),
                Notice::Group { group, version } => group_bumped(group, version),
                Notice::Tag { tag } => drop_tag_local(tag),
                Notice::Prefix { prefix } => {
                    let dropped = registry()
                        .iter()
                        .map(|c| c.invalidate_prefix_local(prefix))
                        .sum();
                    if !tier.can_delete_prefix() {
                        retire_covered_functions(prefix);
                    }
                    dropped
                }
                Notice::Clear => registry().iter().map(|c| c.invalidate_all_local()).sum(),
            };
            tracing::trace!(text, dropped, "layercache: invalidation notice applied");
        }
        BusEvent::Subscribed { after_gap } => {
            tier.mark_subscribed();
            if after_gap {
                tier.count_resubscription();
            }
            // Notices sent before this subscription were missed: local copies
            // of shared entries may be stale, and versions may have moved.
            let dropped: u64 = registry().iter().map(|c| c.forget_shared_state()).sum();
            if after_gap || dropped > 0 {
                tracing::info!(dropped, after_gap, "layercache: invalidation bus subscribed; dropped local copies of shared entries");
            }
        }
        BusEvent::Down { reason, refused } => {
            if let Some(epoch) = tier.bus_down(reason, refused) {
                expire_local_copies_while_down(tier, epoch);
            }
        }
    })
}

/// The bus just went down (outage `epoch`): new local copies of shared
/// entries are capped at write time, and the copies made before now are
/// dropped once each function's cap (`local_timeout`, or
/// [`BUS_DOWN_LOCAL_TIMEOUT`](shared::BUS_DOWN_LOCAL_TIMEOUT)) has passed,
/// unless the bus came back meanwhile (which drops them anyway).
fn expire_local_copies_while_down(tier: &'static Tier, epoch: u64) {
    let mut caps: Vec<(std::time::Duration, &'static dyn Registered)> = registry()
        .iter()
        .filter(|c| c.is_shared())
        .map(|c| (c.bus_down_cap(), *c))
        .collect();
    if caps.is_empty() {
        return;
    }
    caps.sort_by_key(|(cap, _)| *cap);
    let started = tokio::time::Instant::now();
    shared::io_runtime().spawn(async move {
        for (cap, cache) in caps {
            tokio::time::sleep_until(started + cap).await;
            if tier.bus_epoch() != epoch || !tier.bus_is_down() {
                return;
            }
            cache.invalidate_all_local();
        }
    });
}

/// A namespace moved to `version` in this process (an `all =`
/// invalidation, `clear()`, or the outbox replaying one): every cache on
/// it adopts the number and drops its local entries, so two caches sharing
/// a namespace (view caches and the manual cache share the empty one)
/// never drift apart.
pub(crate) fn namespace_moved(namespace: &str, version: u64) {
    for c in registry()
        .iter()
        .filter(|c| c.is_shared() && c.namespace() == namespace)
    {
        c.remote_invalidate_all(version);
    }
}

/// Publishes `notice`, unless the server refused this process the bus.
async fn tell(tier: &'static Tier, notice: String) -> Result<(), SharedError> {
    if tier.bus_refused() {
        return Ok(());
    }
    tier.call_direct(tier.timeout(), |s| s.publish(&notice))
        .await
}

/// Moves `namespace` to a new version in the shared tier and here, and tells
/// other processes.
async fn bump_namespace(tier: &'static Tier, namespace: &str) -> Result<(), SharedError> {
    let key = tier.version_key(namespace);
    let now_ms = tier.clock().unix_millis();
    let version = tier
        .call_direct(tier.timeout(), |s| s.bump_version(&key, now_ms))
        .await?;
    namespace_moved(namespace, version);
    tell(
        tier,
        Notice::All { namespace, version }.encode(tier.instance()),
    )
    .await
}

/// The distinct namespaces of this process's shared caches.
fn shared_namespaces() -> Vec<String> {
    let mut namespaces: Vec<String> = registry()
        .iter()
        .filter(|c| c.is_shared())
        .map(|c| c.namespace().to_string())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

/// Applies one invalidation from the outbox (see [`shared::outbox`]).
pub(crate) async fn replay(tier: &'static Tier, op: Pending) -> Result<(), SharedError> {
    match op {
        Pending::Key {
            namespace,
            stable,
            group,
        } => {
            // The entry is stored under the versions the store holds now.
            let version_key = tier.version_key(&namespace);
            let version = tier
                .call_direct(tier.timeout(), |s| s.read_version(&version_key))
                .await?;
            let group_version = match &group {
                Some(g) => {
                    let key = tier.group_key(g);
                    tier.call_direct(tier.timeout(), |s| s.read_version(&key))
                        .await?
                }
                None => 0,
            };
            // And under the versions this process's caches still use (the
            // store's may be gone: a FLUSHALL, or a restart without data).
            let mut versions: Vec<(u64, u64)> = registry()
                .iter()
                .filter(|c| c.is_shared() && c.namespace() == namespace)
                .filter_map(|c| c.known_versions())
                .collect();
            versions.push((version, group_version));
            versions.sort_unstable();
            versions.dedup();
            let keys: Vec<String> = versions
                .into_iter()
                .map(|(v, g)| {
                    let mut full = tier.full_key(&stable);
                    if v != 0 {
                        full.push_str(&format!(":v{v}"));
                    }
                    if g != 0 {
                        full.push_str(&format!(":g{g}"));
                    }
                    full
                })
                .collect();
            let notice = (!tier.bus_refused()).then(|| {
                Notice::Key {
                    namespace: &namespace,
                    stable: &stable,
                }
                .encode(tier.instance())
            });
            tier.call_direct(tier.timeout(), |s| s.delete(&keys, notice.as_deref()))
                .await
                .map(drop)
        }
        Pending::All { namespace } => bump_namespace(tier, &namespace).await,
        Pending::Prefix { prefix } => {
            if tier.can_delete_prefix() {
                let budget = (tier.timeout() * 100).max(std::time::Duration::from_secs(5));
                let full = tier.full_key(&prefix);
                tier.call_direct(budget, |s| s.delete_prefix(&full)).await?;
            } else {
                for ns in shared_namespaces() {
                    if prefix_covers(&prefix, &ns) {
                        bump_namespace(tier, &ns).await?;
                    }
                }
            }
            tell(
                tier,
                Notice::Prefix { prefix: &prefix }.encode(tier.instance()),
            )
            .await
        }
        Pending::Tag { tag } => {
            let set = tier.tag_key(&tag);
            tier.call_direct(tier.timeout() * 10, |s| s.delete_tag(&set))
                .await?;
            tell(tier, Notice::Tag { tag: &tag }.encode(tier.instance())).await
        }
        Pending::Group { group } => {
            let key = tier.group_key(&group);
            let now_ms = tier.clock().unix_millis();
            let version = tier
                .call_direct(tier.timeout(), |s| s.bump_version(&key, now_ms))
                .await?;
            group_bumped(&group, version);
            tell(
                tier,
                Notice::Group {
                    group: &group,
                    version,
                }
                .encode(tier.instance()),
            )
            .await
        }
        Pending::Clear => {
            for ns in shared_namespaces() {
                bump_namespace(tier, &ns).await?;
            }
            tell(tier, Notice::Clear.encode(tier.instance())).await
        }
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
    let left = tier.flush_outbox(deadline, replay).await;
    for op in &left {
        tracing::error!(?op, store = %tier.stats().store, "layercache: an invalidation could not reach the shared tier before shutdown; other processes may read the old value until it expires");
    }
    left.len() as u64
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
    let shared_tier = crate::config::config()
        .cache_type()
        .is_shared()
        .then(shared::tier)
        .flatten()
        .map(Tier::stats);
    Stats {
        functions,
        shared_tier,
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
    crate::config::config()
        .cache_type()
        .is_shared()
        .then(shared::tier)
        .flatten()
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
        let covered: Vec<&'static dyn Registered> = registry()
            .iter()
            .copied()
            .filter(|c| c.is_shared() && prefix_covers(prefix, c.namespace()))
            .collect();
        // One bump per namespace (each covered cache adopts it).
        let mut done = std::collections::HashSet::new();
        for cache in covered {
            if done.insert(cache.namespace().to_string()) {
                cache.invalidate_all_async().await;
            }
        }
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

/// A prefix notice from another process, on a store that cannot delete by
/// prefix (memcached): the sender moved only the functions *it* has
/// registered to new versions, so a function it never called would keep
/// serving its old shared entries here. Move each of this process's
/// shared functions the prefix covers to a new version too (with the
/// usual notice): one bump per covered function per notice, in the
/// background (the bus handler must not block the poll loop).
fn retire_covered_functions(prefix: &str) {
    let covered: Vec<&'static dyn Registered> = registry()
        .iter()
        .copied()
        .filter(|c| c.is_shared() && prefix_covers(prefix, c.namespace()))
        .collect();
    if covered.is_empty() {
        return;
    }
    let prefix = prefix.to_string();
    shared::io_runtime().spawn(async move {
        let mut done = std::collections::HashSet::new();
        for cache in covered {
            if done.insert(cache.namespace().to_string()) {
                cache.invalidate_all_async().await;
            }
        }
        tracing::debug!(
            prefix,
            "layercache: a prefix notice moved this process's covered functions to new versions (the store cannot delete by prefix)"
        );
    });
}

/// Whether stable keys of the function `namespace` (`{namespace}:...`, or
/// any key for the manual cache's empty namespace) can start with `prefix`.
fn prefix_covers(prefix: &str, namespace: &str) -> bool {
    if namespace.is_empty() {
        return true;
    }
    let ns = format!("{namespace}:");
    prefix.starts_with(&ns) || ns.starts_with(prefix)
}

/// Drops this process's local entries carrying `tag`.
fn drop_tag_local(tag: &str) -> u64 {
    let hash = xxhash_rust::xxh3::xxh3_64(tag.as_bytes());
    registry().iter().map(|c| c.drop_tag(hash)).sum()
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
        || drop_tag_local(tag),
        |tier| invalidate_tag_shared(tier, tag),
    )
}

/// [`invalidate_tag`] for async code.
pub async fn invalidate_tag_async(tag: &str) -> u64 {
    everywhere_async(
        || drop_tag_local(tag),
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

/// Moves the functions of version group `group` to `version` in this
/// process (their local entries go).
fn group_bumped(group: &str, version: u64) -> u64 {
    registry()
        .iter()
        .filter(|c| c.group() == Some(group))
        .map(|c| c.group_bumped(version))
        .sum()
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
            group_bumped(group, version);
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
    let caches: Vec<&'static dyn Registered> = registry().iter().copied().collect();
    let mut bumped = std::collections::HashSet::new();
    let mut removed = 0;
    for c in caches {
        removed += if c.is_shared() && bumped.insert(c.namespace().to_string()) {
            c.invalidate_all()
        } else {
            c.invalidate_all_local()
        };
    }
    tracing::debug!(removed, "layercache: cleared");
    removed
}
