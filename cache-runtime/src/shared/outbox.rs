//! The outbox: invalidations that could not reach the shared tier or the
//! bus, kept until they can.
//!
//! An invalidation that fails (Redis paused, restarting, a cluster master
//! down, memcached unreachable) is not dropped: the caller returns at once
//! (fail-open) and the operation waits here, in order, to be replayed by a
//! background task as soon as the store answers. Until it has been
//! applied, this process does not trust a shared read the pending
//! operation covers: such a read is skipped (a counted miss) and the
//! function runs, so this process never serves the value it invalidated.
//!
//! Modelled on FusionCache's backplane auto-recovery: the queue is bounded,
//! an operation equal to one already pending replaces it (the older copy is
//! removed and the newer one queued last, so the order of distinct
//! operations is kept), and the queue is replayed front to back, stopping
//! at the first failure. Where FusionCache, when its queue is full, keeps
//! some items by a heuristic, this outbox collapses into a single clear of
//! every cache, which covers
//! every operation it replaces: an overflow costs hit rate, never
//! correctness. The overflow is logged at WARN.
//!
//! ## Staleness bound, per backend
//!
//! What another process can read after an invalidation issued during an
//! outage. The process that issued it never reads the old value: its shared
//! reads of the covered functions wait for the outbox (a miss each).
//!
//! | backend | after the store answers again | measured (`tests/`) |
//! |---|---|---|
//! | Redis | [`RETRY_INTERVAL`] (100 ms) + one timeout for the replay, or the bus resubscribing (at most 200 ms after the server is back; it drops every local copy of shared entries) | 1–25 ms after a pause, a restart or `CLIENT KILL TYPE pubsub`; a 40 s soak of pauses, kills, restarts and `FLUSHALL`: at most 55 ms past the outages |
//! | Redis Cluster | the same, for the master that holds the entry or the version | 1–3 ms after the master is resumed |
//! | memcached | [`RETRY_INTERVAL`] + one timeout + one poll of the bus (`CACHE_BUS_POLL_MS`, 100 ms by default); after a restart add up to 500 ms for the client to replace its dead pooled connections | about 60 ms after a pause, about 0.75 s after a restart (20 ms poll) |
//! | filesystem, SQLite | one poll of the bus (the store is a local file: no outage to outlast) | 10–25 ms (20 ms poll) |
//!
//! In every case, while a process's bus is down (Redis pub/sub lost or
//! refused), its local copies of shared entries live at most
//! `local_timeout`, or [`BUS_DOWN_LOCAL_TIMEOUT`](super::BUS_DOWN_LOCAL_TIMEOUT)
//! (5 s) when the function sets none; `stats().shared_tier.bus` says the bus
//! is down and why.
//!
//! Known limit: after a `FLUSHALL` (or a restart without data), a process
//! that re-reads a function's version (a new process, or one whose bus
//! alone reconnected) can use another version than processes that kept
//! theirs; invalidations then reach the entries of the version the
//! invalidating process knows (and, from the outbox, the store's), not
//! necessarily the other one, until the next `all =` or `clear()`.
//!
//! ## At exit
//!
//! Pending operations live in memory. Call
//! [`flush_invalidations`](crate::flush_invalidations) on shutdown: it
//! replays what it can within a deadline and logs at ERROR what could not be
//! applied.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// How often the outbox retries while operations are pending.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How many operations the outbox holds before it collapses into one clear.
pub const CAPACITY: usize = 1024;

/// One invalidation waiting for the shared tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Delete one entry (`{ns}:{suffix}`, stored under the function's
    /// versions at replay time) and tell other processes.
    Key {
        namespace: String,
        stable: String,
        group: Option<String>,
    },
    /// Move a namespace to a new version.
    All { namespace: String },
    /// Delete every entry whose stable key starts with `prefix`.
    Prefix { prefix: String },
    /// Delete every entry carrying `tag`.
    Tag { tag: String },
    /// Move a version group to a new version.
    Group { group: String },
    /// Move every namespace of this process to a new version and tell
    /// every process to drop its local copies.
    Clear,
}

impl Pending {
    /// Whether a shared read of a function in `namespace` (of `group`)
    /// may return what this operation is to remove.
    pub(crate) fn covers(&self, namespace: &str, group: Option<&str>) -> bool {
        match self {
            Pending::Key { namespace: ns, .. } | Pending::All { namespace: ns } => ns == namespace,
            Pending::Group { group: g } => Some(g.as_str()) == group,
            Pending::Prefix { .. } | Pending::Tag { .. } | Pending::Clear => true,
        }
    }
}

/// The bounded queue and its counters.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Each operation with the number it was queued under.
    queue: Mutex<VecDeque<(u64, Pending)>>,
    next: AtomicU64,
    /// Mirrors the queue's length, so the read path checks it without the lock.
    pending: AtomicU64,
    replayed: AtomicU64,
    overflows: AtomicU64,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Pending)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `op` last, replacing an equal pending one.
    pub(crate) fn push(&self, op: Pending) {
        let mut q = self.lock();
        q.retain(|(_, p)| *p != op);
        let seq = self.next.fetch_add(1, Relaxed);
        if q.len() >= CAPACITY {
            self.overflows.fetch_add(1, Relaxed);
            tracing::warn!(
                capacity = CAPACITY,
                "layercache: the invalidation outbox is full; its pending invalidations collapse into one clear of every cache, replayed when the shared tier answers"
            );
            q.clear();
            q.push_back((seq, Pending::Clear));
        } else {
            q.push_back((seq, op));
        }
        self.pending.store(q.len() as u64, Relaxed);
    }

    /// The oldest pending operation and its number, left in place.
    pub(crate) fn front(&self) -> Option<(u64, Pending)> {
        self.lock().front().cloned()
    }

    /// Removes operation number `seq` after it was applied (a newer copy
    /// that replaced it meanwhile stays: it was queued after the replay began).
    pub(crate) fn applied(&self, seq: u64) {
        let mut q = self.lock();
        if let Some(at) = q.iter().position(|(s, _)| *s == seq) {
            q.remove(at);
            self.replayed.fetch_add(1, Relaxed);
        }
        self.pending.store(q.len() as u64, Relaxed);
    }

    /// Whether a shared read of a function in `namespace` must wait for
    /// the outbox.
    #[inline]
    pub(crate) fn blocks(&self, namespace: &str, group: Option<&str>) -> bool {
        self.pending.load(Relaxed) != 0
            && self.lock().iter().any(|(_, p)| p.covers(namespace, group))
    }

    /// Operations waiting now.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Relaxed)
    }

    /// Operations applied after having waited.
    /// Zeroes the replayed and overflow counts (not what is pending).
    pub(crate) fn reset_counters(&self) {
        self.replayed.store(0, Relaxed);
        self.overflows.store(0, Relaxed);
    }

    pub(crate) fn replayed(&self) -> u64 {
        self.replayed.load(Relaxed)
    }

    /// Times the outbox was full.
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows.load(Relaxed)
    }

    /// What is still pending, oldest first (for the shutdown report).
    pub(crate) fn snapshot(&self) -> Vec<Pending> {
        self.lock().iter().map(|(_, p)| p.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stable: &str) -> Pending {
        Pending::Key {
            namespace: "user".into(),
            stable: stable.into(),
            group: None,
        }
    }

    #[test]
    fn an_operation_equal_to_a_pending_one_replaces_it_and_goes_last() {
        let o = Outbox::default();
        o.push(key("user:1"));
        o.push(key("user:2"));
        o.push(key("user:1"));
        assert_eq!(o.snapshot(), vec![key("user:2"), key("user:1")]);
        assert_eq!(o.pending(), 2);
        let (seq, op) = o.front().unwrap();
        assert_eq!(op, key("user:2"));
        o.applied(seq);
        assert_eq!(o.front().map(|(_, p)| p), Some(key("user:1")));
        assert_eq!(o.replayed(), 1);
        // A copy queued while the older one was being replayed stays.
        let (seq, _) = o.front().unwrap();
        o.push(key("user:1"));
        o.applied(seq);
        assert_eq!(o.snapshot(), vec![key("user:1")]);
    }

    #[test]
    fn a_full_outbox_collapses_into_one_clear_that_covers_everything() {
        let o = Outbox::default();
        for i in 0..CAPACITY {
            o.push(key(&format!("user:{i}")));
        }
        assert_eq!(o.overflows(), 0);
        o.push(key("user:last"));
        assert_eq!(o.snapshot(), vec![Pending::Clear]);
        assert_eq!(o.overflows(), 1);
        assert!(o.blocks("anything", None));
    }

    #[test]
    fn only_pending_operations_of_a_namespace_or_of_everything_block_its_reads() {
        let o = Outbox::default();
        assert!(!o.blocks("user", None));
        o.push(key("user:1"));
        assert!(o.blocks("user", None));
        assert!(!o.blocks("search", None));
        o.push(Pending::Group {
            group: "catalog".into(),
        });
        assert!(o.blocks("item", Some("catalog")));
        assert!(!o.blocks("item", Some("other")));
        o.push(Pending::Tag { tag: "t".into() });
        assert!(o.blocks("search", None));
    }
}
