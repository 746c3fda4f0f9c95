//! memcached as the shared tier (`CACHE_TYPE=memcached`,
//! `CACHE_MEMCACHED_SERVERS`; cargo feature `memcached`), through the
//! tokio client of the `memcache` crate's `exp` module (the meta
//! protocol, memcached 1.6+): each command is written whole, in one
//! `write`, on a pooled connection of the runtime that polls it
//! (`memcached/conn.rs`), and concurrent reads share one multi-key
//! exchange (`memcached/batch.rs`). No operation takes a blocking thread.
//! Keys are spread over the servers by their xxh3 hash modulo the server
//! count, as in earlier releases: the same in every process and every build.
//!
//! - **Keys** of at most 200 printable ASCII bytes are used as they are;
//!   longer ones, and ones with spaces or control characters, are stored
//!   under `lc:h:{xxh3-128 of the key}` with the full key kept in the
//!   stored value, so a collision reads as a miss.
//! - **Values** carry a small header: the expiry in ms (memcached counts
//!   whole seconds, so the server's TTL is rounded up and the header
//!   decides) and, for hashed keys, the key. Values larger than the
//!   server's item size (`-I`, 1 MiB by default) fail to write, which the
//!   tier counts; start memcached with `-I` above `CACHE_MAX_VALUE_SIZE`.
//! - **Versions** are plain numbers: `add` then `incr`, in one exchange,
//!   atomic on the server. A version key that is missing (evicted, or its
//!   server restarted) reads as the current Unix time in ms (stored with
//!   `add`, so every process reads the same number), never as 0: numbers
//!   used before it was lost are not used again.
//! - **Prefix deletion is not possible** (memcached cannot list keys):
//!   [`SharedStore::can_delete_prefix`] is `false`, and the pipeline
//!   moves every function the prefix may cover to a new version instead.
//! - **Locks**: `add` with the lock's TTL; the server says whether it
//!   stored, so whoever stored holds the lock. Unlocking deletes only the
//!   item read with the holder's token (compare-and-swap on its CAS), so a
//!   lock that expired and was taken by another process is left alone.
//!   Tags: a set is a newline-separated list built with `add`, then
//!   `append` (never expires; an evicted set means its members expire by
//!   their own TTL instead); a member already listed is not appended
//!   again. When a set outgrows the item size, `append` fails and the
//!   pipeline deletes the value it could not record, so no value outlives
//!   a tag invalidation.
//! - **Server down or restarted**: a refused dial fails the operation at
//!   once and the tier fails open; an exchange that fails or is cut off by
//!   a timeout drops its connection, and a pooled connection the server
//!   closed is noticed before use, so the first operation after a restart
//!   dials afresh.

mod batch;
mod conn;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use memcache::exp::{
    Arithmetic, Delete, Error as McError, Get, GetResult, Meta, Op, OpResult, Set,
};
use tokio::runtime::Handle;

use self::conn::{Conn, Conns};
use super::exec::InRuntime;
use super::polled::PolledBus;
use super::{
    io_runtime, BoxFuture, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
};

const MAGIC: &[u8; 4] = b"LCM\x01";
/// magic, expires at (u64 LE ms, 0 = never), key length (u32 LE; 0 = key not hashed).
const HEADER: usize = 4 + 8 + 4;
/// Longest key used as it is (memcached's limit is 250 bytes).
const MAX_PLAIN_KEY: usize = 200;

/// The memcached store. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct MemcachedStore {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<String>,
    conns: Conns,
    /// Bounds a coalesced read no caller's timer covers (the tier's timeout).
    round_timeout: Duration,
    bus: PolledBus,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The key memcached sees, and whether it is a hash of `key`.
pub fn server_key(key: &str) -> (String, bool) {
    let plain = key.len() <= MAX_PLAIN_KEY
        && !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_graphic())
        && !key.starts_with("lc:h:");
    if plain {
        (key.to_string(), false)
    } else {
        (
            format!("lc:h:{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes())),
            true,
        )
    }
}

/// memcached's expiry for `ttl`: seconds, rounded up (the header holds the
/// exact time); beyond 30 days memcached wants a Unix time.
/// A TTL too long for memcached's signed 32-bit Unix time is "never" on
/// the server (the header's ms expiry still decides).
fn exptime(ttl: Option<Duration>) -> u32 {
    let Some(ttl) = ttl else { return 0 };
    let secs = u64::try_from(ttl.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    if secs > 30 * 24 * 3600 {
        let at = (now_ms() / 1000).saturating_add(secs);
        u32::try_from(at)
            .ok()
            .filter(|&at| at <= i32::MAX as u32)
            .unwrap_or(0)
    } else {
        secs as u32
    }
}

/// `ttl` in whole ms (at least 1), saturating.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn to_shared(err: McError) -> SharedError {
    let kind = kind_of(&err);
    SharedError::new(kind, format!("memcached: {err}"))
}

fn kind_of(err: &McError) -> ErrorKind {
    match err {
        McError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            ErrorKind::Timeout
        }
        McError::Io(_) => ErrorKind::Connection,
        McError::Timeout { .. } => ErrorKind::Timeout,
        // Written, then the connection failed or timed out before the answer.
        McError::Ambiguous { source, .. } => kind_of(source),
        _ => ErrorKind::Server,
    }
}

/// An answer the client did not give (one result per operation is its promise).
fn missing_answer() -> SharedError {
    SharedError::new(ErrorKind::Server, "memcached: a batch came back short")
}

/// Runs `f` with the connection of the runtime polling this future, or of
/// layercache's I/O runtime (entered for every poll) when none is.
async fn on_conn<T, Fut>(conns: &Conns, f: impl FnOnce(Arc<Conn>) -> Fut) -> Result<T, SharedError>
where
    Fut: Future<Output = Result<T, SharedError>>,
{
    match Handle::try_current() {
        Ok(handle) => f(conns.of(&handle)).await,
        Err(_) => {
            let handle = io_runtime();
            InRuntime {
                handle,
                fut: Box::pin(f(conns.of(handle))),
            }
            .await
        }
    }
}

/// The stored version number in `raw` (0 when it is not one).
fn parse_version(raw: Option<Vec<u8>>) -> u64 {
    raw.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// The value of a get, when it hit.
fn hit(got: GetResult) -> Option<Vec<u8>> {
    if got.hit() {
        got.value
    } else {
        None
    }
}

/// The value of a `Get` answer in a batch, when it hit.
fn hit_value(result: Option<Result<OpResult, McError>>) -> Result<Option<Vec<u8>>, SharedError> {
    match result.ok_or_else(missing_answer)?.map_err(to_shared)? {
        OpResult::Get(got) => Ok(hit(got)),
        _ => Err(SharedError::new(
            ErrorKind::Server,
            "memcached: a get answered as another operation",
        )),
    }
}

impl MemcachedStore {
    /// A store over `servers` (`host:port` each), with its invalidation
    /// log on `channel`. Connects on the first operation.
    pub fn open(
        servers: &[String],
        channel: &str,
        settings: &SharedSettings,
    ) -> Result<MemcachedStore, SharedError> {
        if servers.is_empty() {
            return Err(SharedError::new(
                ErrorKind::Connection,
                "memcached: no server given",
            ));
        }
        Ok(MemcachedStore {
            inner: Arc::new(Inner {
                servers: servers.to_vec(),
                conns: Conns::new(servers, settings.timeout),
                round_timeout: settings.timeout.max(Duration::from_millis(1)),
                bus: PolledBus::new(channel, settings.bus_poll_interval),
            }),
        })
    }

    /// Runs `f` on this operation's connection (see [`on_conn`]).
    fn op<'a, T, Fut>(
        &'a self,
        f: impl FnOnce(Arc<Conn>) -> Fut + Send + 'a,
    ) -> BoxFuture<'a, Result<T, SharedError>>
    where
        T: Send + 'a,
        Fut: Future<Output = Result<T, SharedError>> + Send + 'a,
    {
        Box::pin(on_conn(&self.inner.conns, f))
    }
}

/// The stored bytes of `value` under `key`.
fn wrap(key: &str, hashed: bool, value: &[u8], ttl: Option<Duration>) -> Vec<u8> {
    let expires_at = ttl.map_or(0, |t| now_ms().saturating_add(ttl_ms(t)));
    let stored_key: &[u8] = if hashed { key.as_bytes() } else { b"" };
    let mut out = Vec::with_capacity(HEADER + stored_key.len() + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&expires_at.to_le_bytes());
    out.extend_from_slice(&(stored_key.len() as u32).to_le_bytes());
    out.extend_from_slice(stored_key);
    out.extend_from_slice(value);
    out
}

/// The value in `stored` if it is ours, for `key`, and alive.
fn unwrap(key: &str, hashed: bool, stored: Vec<u8>) -> Option<Vec<u8>> {
    unwrap_checked(key, hashed, stored, true)
}

/// [`unwrap`], the header's ms expiry checked only when `check_expiry`: a
/// read that touched the item renewed its life on the server, which the
/// header (written with the item) cannot follow.
fn unwrap_checked(
    key: &str,
    hashed: bool,
    mut stored: Vec<u8>,
    check_expiry: bool,
) -> Option<Vec<u8>> {
    if stored.len() < HEADER || &stored[..4] != MAGIC {
        return None;
    }
    let expires_at = u64::from_le_bytes(stored[4..12].try_into().ok()?);
    let key_len = u32::from_le_bytes(stored[12..16].try_into().ok()?) as usize;
    let stored_key = stored.get(HEADER..HEADER.checked_add(key_len)?)?;
    let key_ok = if hashed {
        stored_key == key.as_bytes()
    } else {
        key_len == 0
    };
    if !key_ok || (check_expiry && expires_at != 0 && expires_at <= now_ms()) {
        return None;
    }
    stored.drain(..HEADER + key_len);
    Some(stored)
}

impl SharedStore for MemcachedStore {
    fn describe(&self) -> String {
        format!("memcached://{}", self.inner.servers.join(","))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let round_timeout = self.inner.round_timeout;
        self.op(move |conn| async move {
            let (sk, hashed) = server_key(key);
            let raw = batch::get(conn, &sk, round_timeout).await?;
            Ok(raw.and_then(|v| unwrap(key, hashed, v)))
        })
    }

    /// A meta get with the `T` flag: memcached's expiry is whole seconds
    /// (rounded up, plus one), so a touched entry may outlive
    /// `time_to_idle` by up to two seconds; the envelope's absolute expiry
    /// still decides `timeout`.
    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        self.op(move |conn| async move {
            let (sk, hashed) = server_key(key);
            let client = conn.client().await.map_err(to_shared)?;
            let get = Get::new(&sk).touch_raw(exptime(Some(ttl)));
            let got = client.run(get).await.map_err(to_shared)?;
            Ok(hit(got).and_then(|v| unwrap_checked(key, hashed, v, false)))
        })
    }

    fn can_touch(&self) -> bool {
        true
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        self.op(move |conn| async move {
            let (sk, hashed) = server_key(key);
            let client = conn.client().await.map_err(to_shared)?;
            let set = Set::new(&sk, wrap(key, hashed, &value, ttl)).ttl_raw(exptime(ttl));
            let stored = client.run(set).await.map_err(to_shared)?;
            if stored.applied() {
                Ok(())
            } else {
                Err(SharedError::new(
                    ErrorKind::Server,
                    format!(
                        "memcached: the server did not store {sk} ({:?})",
                        stored.status
                    ),
                ))
            }
        })
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (owned, inner) = (keys.to_vec(), self.inner.clone());
        let deleted: BoxFuture<'static, Result<u64, SharedError>> = Box::pin(async move {
            on_conn(&inner.conns, |conn| async move {
                let client = conn.client().await.map_err(to_shared)?;
                // Each key is read, then deleted, in one exchange per
                // server: only a live entry of this key counts.
                let mut ops = Vec::with_capacity(owned.len() * 2);
                for key in &owned {
                    let sk = server_key(key).0;
                    ops.push(Op::from(Get::new(&sk)));
                    ops.push(Op::from(Delete::new(&sk)));
                }
                let mut results = client.run_batch(ops).await.map_err(to_shared)?.into_iter();
                let mut n = 0;
                for key in &owned {
                    let hashed = server_key(key).1;
                    let live = hit_value(results.next())?
                        .and_then(|v| unwrap(key, hashed, v))
                        .is_some();
                    let gone = results
                        .next()
                        .ok_or_else(missing_answer)?
                        .map_err(to_shared)?;
                    if live && gone.as_mutation().is_some_and(|m| m.applied()) {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
        });
        self.inner.bus.delete_then_publish(
            Arc::new(self.clone()),
            (!keys.is_empty()).then_some(deleted),
            notice,
        )
    }

    fn can_delete_prefix(&self) -> bool {
        false
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let _ = prefix;
        Box::pin(async {
            Err(SharedError::new(
                ErrorKind::Server,
                "memcached cannot list keys, so it cannot delete by prefix (functions move to a new version instead)",
            ))
        })
    }

    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let sk = server_key(key).0;
            let got = client.run(Get::new(&sk)).await.map_err(to_shared)?;
            if got.hit() {
                return Ok(parse_version(hit(got)));
            }
            // Missing: never written, or lost (memcached evicts any item,
            // and a restarted server forgets its share of the keys). 0 could
            // bring back entries written under an old version 0, so start
            // from now, as `bump_version` does: `add` stores only when the
            // key is still missing, and every process reads back the winner.
            let now = now_ms();
            let ops = [
                Op::from(Set::new(&sk, now.to_string()).add()),
                Op::from(Get::new(&sk)),
            ];
            let mut results = client.run_batch(ops).await.map_err(to_shared)?.into_iter();
            results
                .next()
                .ok_or_else(missing_answer)?
                .map_err(to_shared)?;
            Ok(hit_value(results.next())?.map_or(now, |v| parse_version(Some(v))))
        })
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let sk = server_key(key).0;
            // Stores only when missing; then the server increments atomically.
            let ops = [
                Op::from(Set::new(&sk, now_ms.to_string()).add()),
                Op::from(Arithmetic::new(&sk)),
            ];
            let mut results = client.run_batch(ops).await.map_err(to_shared)?.into_iter();
            results
                .next()
                .ok_or_else(missing_answer)?
                .map_err(to_shared)?;
            let bumped = results
                .next()
                .ok_or_else(missing_answer)?
                .map_err(to_shared)?;
            bumped
                .as_arithmetic()
                .filter(|a| a.applied())
                .and_then(|a| a.value)
                .ok_or_else(|| {
                    SharedError::new(
                        ErrorKind::Server,
                        format!("memcached: {sk} vanished before its increment"),
                    )
                })
        })
    }

    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        self.inner.bus.publish(Arc::new(self.clone()), notice)
    }

    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>> {
        Some(self.inner.bus.subscribe(Arc::new(self.clone()), handler))
    }

    fn reset(&self) {
        self.inner.conns.clear();
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let add = Set::new(server_key(key).0, token)
                .add()
                .ttl_raw(exptime(Some(ttl)));
            Ok(client.run(add).await.map_err(to_shared)?.applied())
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let sk = server_key(key).0;
            let held = client
                .run(Get::new(&sk).meta(Meta::NONE.cas()))
                .await
                .map_err(to_shared)?;
            if let (true, Some(cas)) = (
                held.hit() && held.value.as_deref() == Some(token.as_bytes()),
                held.item.cas,
            ) {
                // Only the item read: a lock re-taken since keeps its holder.
                client
                    .run(Delete::new(&sk).compare_cas(cas))
                    .await
                    .map_err(to_shared)?;
            }
            Ok(())
        })
    }

    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let _ = ttl;
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let line = format!("{member}\n");
            for set in sets {
                let sk = server_key(set).0;
                // A member already listed is not appended again: a set grows
                // by distinct keys, not by writes (two processes appending
                // the same new member at once may list it twice; harmless).
                let listed = client.run(Get::new(&sk)).await.map_err(to_shared)?;
                let known = listed.hit()
                    && listed
                        .value
                        .as_deref()
                        .is_some_and(|l| l.split(|&b| b == b'\n').any(|m| m == member.as_bytes()));
                if known {
                    continue;
                }
                let added = client
                    .run(Set::new(&sk, &line).add())
                    .await
                    .map_err(to_shared)?;
                if !added.applied() {
                    let appended = client
                        .run(Set::new(&sk, &line).append())
                        .await
                        .map_err(to_shared)?;
                    if !appended.applied() {
                        return Err(SharedError::new(
                            ErrorKind::Server,
                            format!(
                                "memcached: cannot append to the tag set {sk} ({:?})",
                                appended.status
                            ),
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        self.op(move |conn| async move {
            let client = conn.client().await.map_err(to_shared)?;
            let sk = server_key(set).0;
            let listed = client.run(Get::new(&sk)).await.map_err(to_shared)?;
            let members = hit(listed).unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            let mut ops = Vec::new();
            for m in members.split(|&b| b == b'\n').filter(|m| !m.is_empty()) {
                if seen.insert(m) {
                    let m = String::from_utf8_lossy(m);
                    ops.push(Delete::new(server_key(&m).0));
                }
            }
            let n = ops.len() as u64;
            ops.push(Delete::new(&sk));
            // Every member and the set in one exchange per server.
            for result in client.run_many(ops).await.map_err(to_shared)? {
                result.map_err(to_shared)?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_spaced_keys_are_hashed_and_the_envelope_keeps_the_full_key() {
        assert_eq!(server_key("user:42"), ("user:42".to_string(), false));
        for k in [
            "with space",
            "line\nbreak",
            "",
            &"k".repeat(251),
            "lc:h:forged",
        ] {
            let (sk, hashed) = server_key(k);
            assert!(
                hashed && sk.len() <= 250 && sk.starts_with("lc:h:"),
                "{k:?}"
            );
        }
        let stored = wrap("a b", true, b"v", None);
        assert_eq!(unwrap("a b", true, stored.clone()), Some(b"v".to_vec()));
        assert_eq!(unwrap("a c", true, stored), None, "a collision is a miss");
        assert_eq!(unwrap("k", false, b"garbage".to_vec()), None);
    }

    #[test]
    fn ttls_round_up_to_seconds_and_long_ones_become_unix_times() {
        assert_eq!(exptime(None), 0);
        assert_eq!(exptime(Some(Duration::from_millis(10))), 2);
        assert_eq!(exptime(Some(Duration::from_secs(60))), 61);
        assert!(exptime(Some(Duration::from_secs(40 * 24 * 3600))) > 1_000_000_000);
        assert_eq!(
            exptime(Some(Duration::MAX)),
            0,
            "beyond 2038: never, the header decides"
        );
        let stored = wrap("k", false, b"v", Some(Duration::MAX));
        assert_eq!(unwrap("k", false, stored), Some(b"v".to_vec()));
    }
}
