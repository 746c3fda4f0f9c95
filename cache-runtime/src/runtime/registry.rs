//! The registry: every function cache of one [`Runtime`](super::Runtime),
//! and what the invalidations that span them do to their local tiers.

use std::sync::{RwLock, RwLockReadGuard};

use crate::metrics::FunctionStats;
use crate::shared;

/// What the registry needs of a function cache, whatever its key and value types.
pub(crate) trait Registered: Send + Sync {
    fn stats(&self) -> FunctionStats;
    fn reset_stats(&self);
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

/// The caches of one runtime, in registration order.
#[derive(Default)]
pub(crate) struct Registry {
    caches: RwLock<Vec<&'static dyn Registered>>,
}

impl Registry {
    /// Every cache registered so far.
    pub(crate) fn caches(&self) -> RwLockReadGuard<'_, Vec<&'static dyn Registered>> {
        // A panic while holding the lock cannot leave the Vec half-written; keep going.
        self.caches.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `cache`, warning when another cache already has its name.
    pub(crate) fn add(&self, cache: &'static dyn Registered) {
        let mut caches = self.caches.write().unwrap_or_else(|e| e.into_inner());
        let name = cache.stats().name;
        if caches.iter().any(|c| c.stats().name == name) {
            tracing::warn!(
                name,
                "layercache: two cached functions share one name; give them distinct key_prefix values so their keys and stats stay apart"
            );
        }
        caches.push(cache);
    }

    /// The shared caches on `namespace` (taken out of the lock, which is
    /// not held while they drop entries).
    pub(crate) fn on_namespace(&self, namespace: &str) -> Vec<&'static dyn Registered> {
        self.caches()
            .iter()
            .copied()
            .filter(|c| c.is_shared() && c.namespace() == namespace)
            .collect()
    }

    /// A namespace moved to `version` in this process (an `all =`
    /// invalidation, `clear()`, a notice, or the outbox replaying one):
    /// every cache on it adopts the number and drops its local entries, so
    /// two caches sharing a namespace (view caches and the manual cache
    /// share the empty one) never drift apart. Returns how many went.
    pub(crate) fn namespace_moved(&self, namespace: &str, version: u64) -> u64 {
        self.on_namespace(namespace)
            .into_iter()
            .map(|c| c.remote_invalidate_all(version))
            .sum()
    }

    /// The distinct namespaces of this process's shared caches.
    pub(crate) fn shared_namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .caches()
            .iter()
            .filter(|c| c.is_shared())
            .map(|c| c.namespace().to_string())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// A prefix notice from another process, on a store that cannot delete by
    /// prefix (memcached): the sender moved only the functions *it* has
    /// registered to new versions, so a function it never called would keep
    /// serving its old shared entries here. Move each of this process's
    /// shared functions the prefix covers to a new version too (with the
    /// usual notice): one bump per covered function per notice, in the
    /// background (the bus handler must not block the poll loop).
    pub(crate) fn retire_covered_functions(&self, prefix: &str) {
        let covered = self.covered_by(prefix);
        if covered.is_empty() {
            return;
        }
        let prefix = prefix.to_string();
        crate::shared::io_runtime().spawn(async move {
            bump_each_namespace(covered).await;
            tracing::debug!(
                prefix,
                "layercache: a prefix notice moved this process's covered functions to new versions (the store cannot delete by prefix)"
            );
        });
    }

    /// The shared caches whose stable keys `prefix` may cover.
    pub(crate) fn covered_by(&self, prefix: &str) -> Vec<&'static dyn Registered> {
        self.caches()
            .iter()
            .copied()
            .filter(|c| c.is_shared() && prefix_covers(prefix, c.namespace()))
            .collect()
    }

    /// Drops this process's local entries carrying `tag`.
    pub(crate) fn drop_tag_local(&self, tag: &str) -> u64 {
        let hash = xxhash_rust::xxh3::xxh3_64(tag.as_bytes());
        self.caches().iter().map(|c| c.drop_tag(hash)).sum()
    }

    /// Moves the functions of version group `group` to `version` in this
    /// process (their local entries go).
    pub(crate) fn group_bumped(&self, group: &str, version: u64) -> u64 {
        self.caches()
            .iter()
            .filter(|c| c.group() == Some(group))
            .map(|c| c.group_bumped(version))
            .sum()
    }
}

/// Whether stable keys of the function `namespace` (`{namespace}:...`, or
/// any key for the manual cache's empty namespace) can start with `prefix`.
pub(crate) fn prefix_covers(prefix: &str, namespace: &str) -> bool {
    if namespace.is_empty() {
        return true;
    }
    let ns = format!("{namespace}:");
    prefix.starts_with(&ns) || ns.starts_with(prefix)
}

/// Moves each namespace of `caches` to a new shared version, once: every
/// cache on a namespace adopts the number its first cache bumped to.
pub(crate) async fn bump_each_namespace(caches: Vec<&'static dyn Registered>) {
    let mut done = std::collections::HashSet::new();
    for cache in caches {
        if done.insert(cache.namespace().to_string()) {
            cache.invalidate_all_async().await;
        }
    }
}
