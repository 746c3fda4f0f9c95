//! The contract every backend implements: [`SharedStore`], and the events
//! of its invalidation bus.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::SharedError;

/// A boxed, sendable future: what [`SharedStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the invalidation bus delivers to a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A notice published by some process.
    Message(String),
    /// The subscription is up. Notices sent before it (at start-up, or while
    /// a lost connection was down when `after_gap`) were missed.
    Subscribed {
        /// `true` when an earlier subscription was lost.
        after_gap: bool,
    },
    /// The subscription is lost or could not be made: notices from other
    /// processes are not arriving. Until the next `Subscribed`, local copies
    /// of shared entries live at most `local_timeout` (or
    /// [`BUS_DOWN_LOCAL_TIMEOUT`]).
    Down {
        /// What the server or the connection said (no password).
        reason: String,
        /// `true` when the server refused it (`NOPERM`, a wrong password):
        /// retrying will not help until an operator acts.
        refused: bool,
    },
}

/// How long a local copy of a shared entry lives while the invalidation bus
/// is down, for a function without `local_timeout`: 5 s.
pub const BUS_DOWN_LOCAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A handler of bus events.
pub type BusHandler = Arc<dyn Fn(BusEvent) + Send + Sync>;

/// A store shared by every process: the operations the pipeline needs.
///
/// Keys are full keys (with `CACHE_KEY_PREFIX`). Implementations do no
/// retries of their own, and no timeouts: [`Tier`](super::Tier) bounds
/// every call (the Redis store's coalesced GETs take the call's budget
/// over, so that one timer bounds a whole `MGET` round).
pub trait SharedStore: Send + Sync + 'static {
    /// Where the store is, for logs (no password).
    fn describe(&self) -> String;
    /// The bytes under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>>;
    /// The bytes under each of `keys`, in order, in one round trip where
    /// the store allows (`MGET` on Redis). A key the store cannot read as
    /// a value (a wrong type, unreadable bytes) is `None`, a miss for that
    /// key alone; the default asks for the keys concurrently.
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, SharedError>> {
        Box::pin(async move {
            let answers = futures_util::future::join_all(keys.iter().map(|k| self.get(k))).await;
            answers
                .into_iter()
                .map(|a| match a {
                    Err(e) if e.kind == crate::error::ErrorKind::Corrupt => Ok(None),
                    other => other,
                })
                .collect()
        })
    }
    /// The bytes under `key`, if any, and its expiry moved to `ttl` from
    /// now, in one operation: sliding expiration (`time_to_idle`). A store
    /// that cannot (the default) says so in [`SharedStore::can_touch`], and
    /// the pipeline never asks it; this default answers with an error.
    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let _ = (key, ttl);
        let what = self.describe();
        Box::pin(async move {
            Err(SharedError::new(
                crate::error::ErrorKind::Server,
                format!("{what} cannot move an entry's expiry on a read (`time_to_idle`)"),
            ))
        })
    }
    /// Whether [`SharedStore::get_and_touch`] works: `true` for Redis
    /// (`GETEX`, Redis 6.2 or later), Redis Cluster, memcached (the meta
    /// get's `T` flag) and SQLite (`UPDATE … RETURNING`); `false` by default
    /// and for the filesystem store. A function with `time_to_idle` on a
    /// store that cannot keeps its entries in-process (logged as an error).
    fn can_touch(&self) -> bool {
        false
    }
    /// Stores `value` under `key`, expiring after `ttl` (never when `None`).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>>;
    /// Deletes `keys` and, when given, publishes `notice` on the bus, in one
    /// round trip where the store allows. Returns how many keys existed.
    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>>;
    /// Deletes every key that starts with `prefix` (a literal prefix: the
    /// store escapes any pattern characters), without blocking the server
    /// (`SCAN` + `UNLINK` in batches for Redis, never `KEYS`). Keys under
    /// [`RESERVED_PREFIX`] are kept.
    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>>;
    /// Whether [`SharedStore::delete_prefix`] works. A store that cannot
    /// list its keys (memcached) says `false`, and prefix invalidation
    /// moves every function the prefix may cover to a new version instead.
    fn can_delete_prefix(&self) -> bool {
        true
    }
    /// The number stored under `key`, 0 when there is none.
    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>>;
    /// Raises the number under `key` and returns the new one. A missing key
    /// starts from the current Unix time in ms, so a lost version key can
    /// never bring back numbers used before it was lost.
    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>>;
    /// Publishes `notice` to every subscribed process.
    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>>;
    /// Subscribes to the bus, forever: delivers every notice to `handler`,
    /// delivers [`BusEvent::Subscribed`] each time the subscription is
    /// (re)established, and reconnects by itself after a lost connection.
    /// Returns `None` when the store has no bus.
    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>>;
    /// Drops the current connection and starts a new one on the next
    /// operation: called when operations keep timing out on a connection
    /// that is up but no longer answers.
    fn reset(&self) {}
    /// Takes the lock `key` for `ttl` unless someone holds it, marking it
    /// with `token`; `true` when taken. Stores without locks always answer
    /// `true` (every process computes, as without `lock = true`).
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        let _ = (key, token, ttl);
        Box::pin(async { Ok(true) })
    }
    /// Adds `member` (a full key) to each tag set in `sets`, which expire
    /// no sooner than `ttl` (never when `None`).
    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let _ = (sets, member, ttl);
        Box::pin(async { Ok(()) })
    }
    /// Deletes every key in the tag set `set`, and the set; returns how
    /// many keys it named.
    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let _ = set;
        Box::pin(async { Ok(0) })
    }
    /// Releases the lock `key` if it still holds `token` (a lock that
    /// expired and was taken by another process is left alone).
    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let _ = (key, token);
        Box::pin(async { Ok(()) })
    }
}

/// Keys and channels layercache keeps for itself (function versions, the
/// bus); prefix invalidation never deletes them.
pub const RESERVED_PREFIX: &str = "__layercache__:";
