//! The runtime's side of the invalidation bus: notices from other
//! processes applied to this runtime's caches, and the outbox's replay.

use std::sync::Arc;

use super::registry::Registered;
use super::Runtime;
use crate::shared::outbox::Pending;
use crate::shared::{self, BusEvent, BusHandler, Notice, SharedError, Tier};

/// Applies invalidation notices from other processes to this process's
/// local tiers.
pub(crate) fn bus_handler(rt: &'static Runtime, tier: &'static Tier) -> BusHandler {
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
                    rt.registry()
                        .on_namespace(namespace)
                        .into_iter()
                        .map(|c| c.drop_tagged(tag))
                        .sum()
                }
                Notice::All { namespace, version } => {
                    rt.registry().namespace_moved(namespace, version)
                }
                Notice::Group { group, version } => rt.registry().group_bumped(group, version),
                Notice::Tag { tag } => rt.registry().drop_tag_local(tag),
                Notice::Prefix { prefix } => {
                    let dropped = rt
                        .registry()
                        .caches()
                        .iter()
                        .map(|c| c.invalidate_prefix_local(prefix))
                        .sum();
                    if !tier.can_delete_prefix() {
                        rt.registry().retire_covered_functions(prefix);
                    }
                    dropped
                }
                Notice::Clear => rt
                    .registry()
                    .caches()
                    .iter()
                    .map(|c| c.invalidate_all_local())
                    .sum(),
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
            let dropped: u64 = rt
                .registry()
                .caches()
                .iter()
                .map(|c| c.forget_shared_state())
                .sum();
            if after_gap || dropped > 0 {
                tracing::info!(dropped, after_gap, "layercache: invalidation bus subscribed; dropped local copies of shared entries");
            }
        }
        BusEvent::Down { reason, refused } => {
            if let Some(epoch) = tier.bus_down(reason, refused) {
                expire_local_copies_while_down(rt, tier, epoch);
            }
        }
    })
}

/// The bus just went down (outage `epoch`): new local copies of shared
/// entries are capped at write time, and the copies made before now are
/// dropped once each function's cap (`local_timeout`, or
/// [`BUS_DOWN_LOCAL_TIMEOUT`](shared::BUS_DOWN_LOCAL_TIMEOUT)) has passed,
/// unless the bus came back meanwhile (which drops them anyway).
fn expire_local_copies_while_down(rt: &'static Runtime, tier: &'static Tier, epoch: u64) {
    let mut caps: Vec<(std::time::Duration, &'static dyn Registered)> = rt
        .registry()
        .caches()
        .iter()
        .filter(|c| c.is_shared())
        .map(|c| (c.bus_down_cap(), *c))
        .collect();
    if caps.is_empty() {
        return;
    }
    caps.sort_by_key(|(cap, _)| *cap);
    // The configured clock, as local expiry uses: a mock clock moves these
    // deadlines too. It is read every few milliseconds of real time, which
    // costs nothing next to an outage.
    let clock = tier.clock().clone();
    let started = clock.now();
    shared::io_runtime().spawn(async move {
        for (cap, cache) in caps {
            let due = started.saturating_add(cap);
            while clock.now() < due {
                if tier.bus_epoch() != epoch || !tier.bus_is_down() {
                    return;
                }
                tokio::time::sleep(CAP_CHECK_EVERY).await;
            }
            if tier.bus_epoch() != epoch || !tier.bus_is_down() {
                return;
            }
            cache.invalidate_all_local();
        }
    });
}

/// How often an outage's cap is compared with the clock.
const CAP_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

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
async fn bump_namespace(
    rt: &'static Runtime,
    tier: &'static Tier,
    namespace: &str,
) -> Result<(), SharedError> {
    let key = tier.version_key(namespace);
    let now_ms = tier.clock().unix_millis();
    let version = tier
        .call_direct(tier.timeout(), |s| s.bump_version(&key, now_ms))
        .await?;
    rt.registry().namespace_moved(namespace, version);
    tell(
        tier,
        Notice::All { namespace, version }.encode(tier.instance()),
    )
    .await
}

/// Applies one invalidation from the outbox (see [`shared::outbox`]).
pub(crate) async fn replay(
    rt: &'static Runtime,
    tier: &'static Tier,
    op: Pending,
) -> Result<(), SharedError> {
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
            let mut versions: Vec<(u64, u64)> = rt
                .registry()
                .on_namespace(&namespace)
                .into_iter()
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
        Pending::All { namespace } => bump_namespace(rt, tier, &namespace).await,
        Pending::Prefix { prefix } => {
            if tier.can_delete_prefix() {
                let budget = (tier.timeout() * 100).max(std::time::Duration::from_secs(5));
                let full = tier.full_key(&prefix);
                tier.call_direct(budget, |s| s.delete_prefix(&full)).await?;
            } else {
                for ns in rt.registry().shared_namespaces() {
                    if super::registry::prefix_covers(&prefix, &ns) {
                        bump_namespace(rt, tier, &ns).await?;
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
            rt.registry().group_bumped(&group, version);
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
            for ns in rt.registry().shared_namespaces() {
                bump_namespace(rt, tier, &ns).await?;
            }
            tell(tier, Notice::Clear.encode(tier.instance())).await
        }
    }
}
