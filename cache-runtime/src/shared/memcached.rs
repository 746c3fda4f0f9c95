//! memcached as the shared tier (`CACHE_TYPE=memcached`,
//! `CACHE_MEMCACHED_SERVERS`; cargo feature `memcached`), through the
//! `memcache` crate (ASCII protocol, one small r2d2 pool per server, keys
//! spread over the servers by their xxh3 hash: the same in every process
//! and every build, unlike the crate's default `DefaultHasher`).
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
//! - **Versions** are plain numbers: `add` then `incr`, atomic on the server.
//!   A version key that is missing (evicted, or its server restarted)
//!   reads as the current Unix time in ms (stored with `add`, so every
//!   process reads the same number), never as 0: numbers used before it
//!   was lost are not used again.
//! - **Prefix deletion is not possible** (memcached cannot list keys):
//!   [`SharedStore::can_delete_prefix`] is `false`, and the pipeline
//!   moves every function the prefix may cover to a new version instead.
//! - **Locks**: `add` with the lock's TTL, then a read to see whose token
//!   won (the client does not report whether `add` stored). Tags: a set is
//!   a newline-separated list built with `add` + `append` (never expires;
//!   an evicted set means its members expire by their own TTL instead); a
//!   member already listed is not appended again. When a set outgrows the
//!   item size, `append` fails and the pipeline deletes the value it could
//!   not record, so no value outlives a tag invalidation.
//! - **Server down or restarted**: calls fail fast (refused connections)
//!   and the tier fails open; after an I/O error the client is rebuilt
//!   (at most every 500 ms), because the pool does not notice dead
//!   connections by itself.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use memcache::{Client, ConnectionManager, MemcacheError, Url};

use super::polled::PolledBus;
use super::{
    run_blocking, BoxFuture, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
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
    timeout: Duration,
    client: RwLock<Arc<Client>>,
    /// Unix ms of the last rebuild of the client.
    rebuilt_at: AtomicU64,
    bus: PolledBus,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn hash_key(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
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

fn build_client(servers: &[String], timeout: Duration) -> Result<Client, SharedError> {
    let io_timeout = timeout.max(Duration::from_millis(100));
    let mut pools = Vec::with_capacity(servers.len());
    for server in servers {
        let url = Url::parse(&format!(
            "memcache://{server}?protocol=ascii&tcp_nodelay=true&timeout={}",
            io_timeout.as_secs_f64()
        ))
        .map_err(|e| {
            SharedError::new(
                ErrorKind::Connection,
                format!("memcached server {server}: {e}"),
            )
        })?;
        // Unchecked: no connection is made until the first operation, so a
        // server that is down at start-up is a counted miss, not an error.
        let pool = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(io_timeout)
            .build_unchecked(ConnectionManager::new(url));
        pools.push(pool);
    }
    let mut client = Client::with_pools(pools).map_err(to_shared)?;
    client.hash_function = hash_key;
    Ok(client)
}

fn to_shared(err: MemcacheError) -> SharedError {
    let kind = match &err {
        MemcacheError::IOError(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            ErrorKind::Timeout
        }
        MemcacheError::IOError(_) | MemcacheError::PoolError(_) => ErrorKind::Connection,
        _ => ErrorKind::Server,
    };
    SharedError::new(kind, format!("memcached: {err}"))
}

impl MemcachedStore {
    /// A store over `servers` (`host:port` each), with its invalidation
    /// log on `channel`. Connects on the first operation.
    pub fn open(
        servers: &[String],
        channel: &str,
        settings: &SharedSettings,
    ) -> Result<MemcachedStore, SharedError> {
        let client = build_client(servers, settings.timeout)?;
        Ok(MemcachedStore {
            inner: Arc::new(Inner {
                servers: servers.to_vec(),
                timeout: settings.timeout,
                client: RwLock::new(Arc::new(client)),
                rebuilt_at: AtomicU64::new(0),
                bus: PolledBus::new(channel, settings.bus_poll_interval),
            }),
        })
    }

    /// Runs `f` with the client on the blocking pool; rebuilds the client
    /// after a connection error.
    fn with<'a, T: Send + 'static>(
        &self,
        f: impl FnOnce(&Client) -> Result<T, MemcacheError> + Send + 'static,
    ) -> BoxFuture<'a, Result<T, SharedError>> {
        let inner = self.inner.clone();
        Box::pin(run_blocking(move || {
            let client = inner
                .client
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            f(&client).map_err(|e| {
                // A connection that timed out or misread an answer has an
                // answer still to come (a paused server wakes up): back in
                // the pool it would hand that answer to the next request.
                let desynced = matches!(
                    e,
                    MemcacheError::ParseError(_) | MemcacheError::ClientError(_)
                );
                let err = to_shared(e);
                if desynced || err.kind == ErrorKind::Timeout {
                    inner.rebuild_now();
                } else if err.kind == ErrorKind::Connection {
                    inner.rebuild();
                }
                err
            })
        }))
    }
}

impl Inner {
    fn rebuild(&self) {
        let now = now_ms();
        let last = self.rebuilt_at.load(Relaxed);
        if now.saturating_sub(last) < 500
            || self
                .rebuilt_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        self.rebuild_now();
    }

    /// Replaces the client (and its pools) now: cheap, connections are made lazily.
    fn rebuild_now(&self) {
        self.rebuilt_at.store(now_ms(), Relaxed);
        match build_client(&self.servers, self.timeout) {
            Ok(client) => {
                *self.client.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(client);
                tracing::debug!(
                    "layercache: rebuilt the memcached client after a connection error"
                );
            }
            Err(err) => tracing::warn!(%err, "layercache: cannot rebuild the memcached client"),
        }
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
fn unwrap(key: &str, hashed: bool, mut stored: Vec<u8>) -> Option<Vec<u8>> {
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
    if !key_ok || (expires_at != 0 && expires_at <= now_ms()) {
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
        let key = key.to_string();
        self.with(move |c| {
            let (sk, hashed) = server_key(&key);
            Ok(c.get::<Vec<u8>>(&sk)?.and_then(|v| unwrap(&key, hashed, v)))
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let key = key.to_string();
        self.with(move |c| {
            let (sk, hashed) = server_key(&key);
            c.set(&sk, &wrap(&key, hashed, &value, ttl)[..], exptime(ttl))
        })
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let owned = keys.to_vec();
        let deleted = self.with(move |c| {
            let mut n = 0;
            for key in &owned {
                let (sk, hashed) = server_key(key);
                // Only a live entry of this key counts (and is deleted).
                let live = c.get::<Vec<u8>>(&sk)?.and_then(|v| unwrap(key, hashed, v));
                if c.delete(&sk)? && live.is_some() {
                    n += 1;
                }
            }
            Ok(n)
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
        let key = key.to_string();
        self.with(move |c| {
            let sk = server_key(&key).0;
            let parse = |v: Vec<u8>| -> u64 {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            if let Some(raw) = c.get::<Vec<u8>>(&sk)? {
                return Ok(parse(raw));
            }
            // Missing: never written, or lost (memcached evicts any item,
            // and a restarted server forgets its share of the keys). 0 could
            // bring back entries written under an old version 0, so start
            // from now, as `bump_version` does: `add` stores only when the
            // key is still missing, and every process reads back the winner.
            let now = now_ms();
            c.add(&sk, now, 0)?;
            Ok(c.get::<Vec<u8>>(&sk)?.map_or(now, parse))
        })
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let key = key.to_string();
        self.with(move |c| {
            let sk = server_key(&key).0;
            // Stores only when missing; then the server increments atomically.
            c.add(&sk, now_ms, 0)?;
            c.increment(&sk, 1)
        })
    }

    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        self.inner.bus.publish(Arc::new(self.clone()), notice)
    }

    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>> {
        Some(self.inner.bus.subscribe(Arc::new(self.clone()), handler))
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        let (key, token) = (key.to_string(), token.to_string());
        self.with(move |c| {
            let sk = server_key(&key).0;
            c.add(&sk, token.as_str(), exptime(Some(ttl)))?;
            Ok(c.get::<String>(&sk)?.as_deref() == Some(token.as_str()))
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (key, token) = (key.to_string(), token.to_string());
        self.with(move |c| {
            let sk = server_key(&key).0;
            if c.get::<String>(&sk)?.as_deref() == Some(token.as_str()) {
                c.delete(&sk)?;
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
        let (sets, member) = (sets.to_vec(), member.to_string());
        self.with(move |c| {
            let line = format!("{member}\n");
            for set in &sets {
                let sk = server_key(set).0;
                // A member already listed is not appended again: a set grows
                // by distinct keys, not by writes (two processes appending
                // the same new member at once may list it twice; harmless).
                let listed: Option<String> = c.get(&sk)?;
                if listed.is_some_and(|l| l.lines().any(|m| m == member)) {
                    continue;
                }
                c.add(&sk, "", 0)?;
                c.append(&sk, line.as_str())?;
            }
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let set = set.to_string();
        self.with(move |c| {
            let sk = server_key(&set).0;
            let members: String = c.get(&sk)?.unwrap_or_default();
            let mut n = 0;
            let mut seen = std::collections::HashSet::new();
            for m in members.lines().filter(|m| !m.is_empty()) {
                if seen.insert(m) {
                    c.delete(&server_key(m).0)?;
                    n += 1;
                }
            }
            c.delete(&sk)?;
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
