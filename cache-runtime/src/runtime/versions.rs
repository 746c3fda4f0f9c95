//! Keeps this process on the shared versions the store holds.
//!
//! A function's shared keys carry its namespace's version (and its group's),
//! read once and then moved by notices. A store that loses those numbers
//! without a restart the bus would notice (a `FLUSHALL`, a failover to a
//! replica that lagged) leaves processes that started before on their old
//! number while a process that starts after reads none: a key invalidation
//! from one then deletes only its own version's entry, and the others go on
//! reading theirs until it expires. So every [`CHECK_EVERY`], each version
//! this process uses is compared with the store's:
//!
//! - the store's is higher (a bump whose notice was lost): adopt it and drop
//!   the local copies, as the notice would have;
//! - the store's is lower or gone: move the namespace (or group) to a new
//!   version for the whole fleet, with a notice, as an `all =` invalidation
//!   does. Entries under the old number were lost with it anyway.
//!
//! This bounds how long two processes can disagree on a version by one
//! interval plus a round trip. A check costs one read per namespace and
//! group in use, skipped while the circuit breaker is open.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Runtime;
use crate::shared::outbox::Pending;
use crate::shared::Tier;

/// How often the versions in use are compared with the store's: 1 s.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Starts the periodic check on the I/O runtime.
pub(crate) fn start(rt: &'static Runtime, tier: &'static Tier) {
    crate::shared::io_runtime().spawn(async move {
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            check(rt, tier).await;
        }
    });
}

/// What one version number identifies: a function namespace or a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Namespace(String),
    Group(String),
}

/// The highest version this process uses for each namespace and group.
fn in_use(rt: &Runtime) -> BTreeMap<Owner, u64> {
    let mut known = BTreeMap::new();
    for cache in rt.registry().caches().iter().filter(|c| c.is_shared()) {
        let Some((version, group_version)) = cache.known_versions() else {
            continue; // not read yet: the next call reads the store's
        };
        let mut note = |owner, v: u64| {
            let slot = known.entry(owner).or_insert(v);
            *slot = (*slot).max(v);
        };
        note(Owner::Namespace(cache.namespace().to_string()), version);
        if let Some(group) = cache.group() {
            note(Owner::Group(group.to_string()), group_version);
        }
    }
    known
}

/// One comparison of every version in use with the store's.
pub(crate) async fn check(rt: &'static Runtime, tier: &'static Tier) {
    for (owner, used) in in_use(rt) {
        let key = match &owner {
            Owner::Namespace(ns) => tier.version_key(ns),
            Owner::Group(group) => tier.group_key(group),
        };
        let Ok(stored) = tier
            .call(None, tier.timeout(), |s| s.read_version(&key))
            .await
        else {
            return; // the store is down or the breaker open: next time
        };
        if stored > used {
            tracing::debug!(
                ?owner,
                used,
                stored,
                "layercache: adopting a shared version whose notice was lost"
            );
            match &owner {
                Owner::Namespace(ns) => rt.registry().namespace_moved(ns, stored),
                Owner::Group(group) => rt.registry().group_bumped(group, stored),
            };
        } else if stored < used {
            tracing::warn!(?owner, used, stored, "layercache: the shared tier lost a version number (flushed, or failed over); moving the fleet to a new one");
            let op = match owner {
                Owner::Namespace(namespace) => Pending::All { namespace },
                Owner::Group(group) => Pending::Group { group },
            };
            if let Err(err) = super::bus::replay(rt, tier, op.clone()).await {
                tracing::debug!(%err, "layercache: could not move to a new version; it waits in the outbox");
                tier.defer(op);
            }
        }
    }
}
