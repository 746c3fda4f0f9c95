//! Redis as the shared tier (cargo feature `redis`), through redis-rs.
//!
//! Async callers' data goes over one multiplexed connection held by a
//! [`ConnectionManager`], which reconnects by itself after a restart (or
//! one driven by the caller's own runtime). Sync callers use a small pool
//! of blocking connections on their own thread (`redis/blocking.rs`).
//! Invalidation notices travel on a pub/sub channel with a connection of
//! its own, kept up by a loop that reconnects with backoff and reports each
//! re-subscription (notices may have been lost while it was down).

use std::time::Duration;

use std::sync::Arc;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncCommands, Client, RedisError};

use super::{
    BoxFuture, BusEvent, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
    RESERVED_PREFIX,
};

mod batch;
mod blocking;
pub(super) mod tls;

/// A connection driven by a caller's runtime.
struct Direct {
    cell: tokio::sync::OnceCell<MultiplexedConnection>,
    broken: std::sync::atomic::AtomicBool,
    client: Client,
    config: redis::AsyncConnectionConfig,
    /// Concurrent GETs coalesced into MGETs (see [`batch`]).
    batch: batch::Batch,
    /// The caller's runtime, which drives the connection and its rounds.
    runtime: tokio::runtime::Handle,
    /// Bounds a coalesced round (the tier's timeout).
    round_timeout: Duration,
}

/// The connection one operation uses.
enum Conn {
    Managed(ConnectionManager),
    Direct(Arc<Direct>),
}

impl Direct {
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let conn = self
            .cell
            .get_or_try_init(|| {
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
            })
            .await;
        if conn.is_err() {
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        conn.cloned()
    }

    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result {
            if e.is_unrecoverable_error() {
                self.broken
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        result
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Direct(d) => Box::pin(async move {
                let mut c = d.connection().await?;
                let r = c.req_packed_command(cmd).await;
                d.check(r)
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Direct(d) => Box::pin(async move {
                let mut c = d.connection().await?;
                let r = c.req_packed_commands(pipeline, offset, count).await;
                d.check(r)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Direct(d) => d.cell.get().map_or(0, |c| c.get_db()),
        }
    }
}

/// How one operation reaches the server.
enum Via<'a> {
    /// A sync caller's own blocking connection (no thread hop).
    Blocking(blocking::Lease<'a>),
    Async(Conn),
}

/// A command or pipeline, built once and sent by either kind of connection.
enum Req {
    One(redis::Cmd),
    Pipe(redis::Pipeline),
}

impl Req {
    fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut redis::Connection,
    ) -> redis::RedisResult<T> {
        match self {
            Req::One(cmd) => cmd.query(conn),
            Req::Pipe(pipe) => pipe.query(conn),
        }
    }

    async fn query_async<T: redis::FromRedisValue>(
        &self,
        conn: &mut Conn,
    ) -> redis::RedisResult<T> {
        match self {
            Req::One(cmd) => cmd.query_async(conn).await,
            Req::Pipe(pipe) => pipe.query_async(conn).await,
        }
    }
}

/// Connections kept for callers' runtimes.
const MAX_CALLER_CONNS: usize = 4;

/// Tells stores apart in [`HOT`] (an address could be reused).
static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The direct connection this thread used last: a worker thread serves one
/// runtime, so the common case needs neither the store's lock nor a
/// reference count shared with the other workers.
struct Hot {
    store: u64,
    runtime: tokio::runtime::Id,
    direct: Arc<Direct>,
}

thread_local! {
    static HOT: std::cell::RefCell<Option<Hot>> = const { std::cell::RefCell::new(None) };
}

/// The longest expiry sent to Redis, in ms (2^52 ms, about 140,000
/// years): Redis refuses a `PX` whose sum with the current time overflows
/// (`Duration::MAX` would), and Lua numbers hold integers exactly up to
/// 2^53. A longer TTL is "about forever", as in every store.
pub(super) const MAX_PX: u64 = 1 << 52;

/// `ttl` in whole ms for `PX` and `PEXPIRE`: at least 1, at most [`MAX_PX`].
pub(super) fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).map_or(MAX_PX, |ms| ms.clamp(1, MAX_PX))
}

/// Deletes `KEYS[1]` only while it still holds the caller's token `ARGV[1]`.
pub(super) const UNLOCK_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Adds `ARGV[1]` to each tag set in `KEYS`; a set lives at least as long
/// as its longest-lived member (`ARGV[2]` ms; -1 = forever). Works on any
/// Redis with Lua (no `PEXPIRE ... GT`, which needs 7.0).
pub(super) const ADD_TO_TAGS_SCRIPT: &str = "local want = tonumber(ARGV[2]) \
for _, set in ipairs(KEYS) do \
  local fresh = redis.call('EXISTS', set) == 0 \
  redis.call('SADD', set, ARGV[1]) \
  if want < 0 then redis.call('PERSIST', set) \
  else \
    local cur = redis.call('PTTL', set) \
    if fresh or (cur >= 0 and cur < want) then redis.call('PEXPIRE', set, want) end \
  end \
end \
return 0";

/// Unlinks every member of the tag set `KEYS[1]` (in batches, so a large
/// set does not overflow Lua's stack) and the set; returns the count.
const DELETE_TAG_SCRIPT: &str = "local m = redis.call('SMEMBERS', KEYS[1]) \
for i = 1, #m, 500 do redis.call('UNLINK', unpack(m, i, math.min(i + 499, #m))) end \
redis.call('UNLINK', KEYS[1]) return #m";

/// Keys `SCAN` returns per round trip during prefix invalidation.
pub(super) const SCAN_COUNT: usize = 500;

/// The Redis store.
pub struct RedisStore {
    /// This store's identity in [`HOT`].
    id: u64,
    client: Client,
    config: redis::aio::ConnectionManagerConfig,
    /// Driven by the I/O thread; replaced by [`SharedStore::reset`];
    /// cloned (an `Arc`) per operation.
    conn: std::sync::RwLock<ConnectionManager>,
    /// Connections driven by callers' own multi-thread runtimes (see
    /// `caller_runtime`), newest last, at most [`MAX_CALLER_CONNS`].
    caller_conns: std::sync::RwLock<Vec<(tokio::runtime::Id, Arc<Direct>)>>,
    /// Settings of the direct connections.
    direct_config: redis::AsyncConnectionConfig,
    /// Sync callers' connections.
    blocking: blocking::Pool,
    /// The tier's timeout, for coalesced GETs no caller's timer covers.
    round_timeout: Duration,
    channel: String,
    describe: String,
}

pub(super) fn classify(err: &RedisError) -> ErrorKind {
    if err.code() == Some("WRONGTYPE") {
        // Something not written by layercache (a list, a hash) under one
        // key: that key is unusable, the server is fine. A corrupt miss
        // (overwritten by the write-back's SET), never a breaker failure.
        ErrorKind::Corrupt
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
    {
        ErrorKind::Connection
    } else {
        ErrorKind::Server
    }
}

/// Whether the server refused us (ACL or password): retrying will not help.
pub(super) fn is_refusal(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
}

fn to_shared(err: RedisError) -> SharedError {
    let kind = classify(&err);
    if kind == ErrorKind::Connection {
        tls::report(&err);
    }
    SharedError::new(kind, redact(&err.to_string()))
}

/// `url` (or any text with URLs in it) without passwords, for logs and errors.
pub(super) fn redact(url: &str) -> String {
    crate::config::redact_passwords(url)
}

/// Escapes Redis glob characters so `text` matches only itself in `SCAN MATCH`.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStore {
    /// A store for `url` (`redis://[user[:password]@]host[:port][/db]`, or
    /// `rediss://` with the `tls` feature). Does not connect yet: the first
    /// operation does, and a failure there is a counted miss, not an error
    /// at start-up. Must be called inside the I/O runtime's context.
    pub fn open(
        url: &str,
        channel: String,
        settings: &SharedSettings,
    ) -> Result<RedisStore, SharedError> {
        Self::open_with_tls(url, channel, settings, &crate::RedisTls::default())
    }

    /// [`RedisStore::open`] trusting the CA and presenting the client
    /// certificate of `tls` on a `rediss://` URL (see
    /// [`RedisTls`](crate::RedisTls)).
    pub fn open_with_tls(
        url: &str,
        channel: String,
        settings: &SharedSettings,
        tls: &crate::RedisTls,
    ) -> Result<RedisStore, SharedError> {
        let client = tls::client(url, tls)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(100)) * 4))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(250))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(to_shared)?;
        let blocking = blocking::Pool::new(client.clone(), settings.timeout, blocking::pool_size());
        Ok(RedisStore {
            id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            config,
            conn: std::sync::RwLock::new(conn),
            caller_conns: std::sync::RwLock::new(Vec::new()),
            blocking,
            direct_config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(100)) * 4))
                .set_response_timeout(None),
            round_timeout: batch::round_timeout(settings.timeout),
            channel,
            describe: redact(url),
        })
    }

    /// The pub/sub channel of invalidation notices.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// How this operation reaches the server: a sync caller's blocking
    /// connection when one is free, else an async connection.
    fn via(&self) -> Via<'_> {
        if super::exec::in_block_on() {
            if let Some(lease) = self.blocking.lease() {
                return Via::Blocking(lease);
            }
        }
        Via::Async(self.conn())
    }

    /// Sends `req` the way [`RedisStore::via`] picks (decided now, in the
    /// caller's context; sent when polled).
    fn send<'a, T: redis::FromRedisValue + Send + 'a>(
        &'a self,
        req: Req,
    ) -> impl std::future::Future<Output = Result<T, SharedError>> + Send + 'a {
        let via = self.via();
        async move {
            match via {
                Via::Blocking(lease) => lease.run(|c| req.query(c)),
                Via::Async(mut conn) => req.query_async(&mut conn).await,
            }
            .map_err(to_shared)
        }
    }

    /// The connection for this operation: the caller's runtime's own when
    /// there may be one, else the I/O thread's.
    fn conn(&self) -> Conn {
        if let Some(direct) = self.caller_conn() {
            return Conn::Direct(direct);
        }
        Conn::Managed(self.conn.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// The caller's runtime's own connection: a plain multiplexed
    /// connection (the manager's per-request bookkeeping costs about a
    /// fifth of the throughput under many callers), connected on first use
    /// and replaced after it breaks.
    fn caller_conn(&self) -> Option<Arc<Direct>> {
        let id = super::operation_runtime()?;
        let found = self
            .caller_conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(i, d)| *i == id && !d.broken.load(std::sync::atomic::Ordering::Relaxed))
            .map(|(_, d)| d.clone());
        if let Some(direct) = found {
            HOT.with(|h| {
                *h.borrow_mut() = Some(Hot {
                    store: self.id,
                    runtime: id,
                    direct: direct.clone(),
                })
            });
            return Some(direct);
        }
        let mut conns = self.caller_conns.write().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(i, d)| *i != id || !d.broken.load(std::sync::atomic::Ordering::Relaxed));
        if let Some((_, d)) = conns.iter().find(|(i, _)| *i == id) {
            return Some(d.clone());
        }
        if conns.len() >= MAX_CALLER_CONNS {
            // Runtimes come and go (one per `#[tokio::test]`): drop the oldest.
            conns.remove(0);
        }
        // `operation_runtime` is only set inside the caller's runtime.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let direct = Arc::new(Direct {
            cell: tokio::sync::OnceCell::new(),
            broken: std::sync::atomic::AtomicBool::new(false),
            client: self.client.clone(),
            config: self.direct_config.clone(),
            batch: batch::Batch::default(),
            runtime,
            round_timeout: self.round_timeout,
        });
        conns.push((id, direct.clone()));
        Some(direct)
    }
}

impl RedisStore {
    /// A GET on the hot path: this thread's last direct connection when it
    /// is for this store and runtime, connected and not broken, coalesced
    /// with other callers' GETs when the connection is busy (see [`batch`]).
    /// Nothing is cloned for a GET that joins a round.
    fn hot_get<'a>(
        &self,
        runtime: tokio::runtime::Id,
        key: &'a str,
    ) -> Option<BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>>> {
        HOT.with(|h| match &*h.borrow() {
            Some(hot)
                if hot.store == self.id
                    && hot.runtime == runtime
                    && !hot.direct.broken.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                let conn = hot.direct.cell.get()?;
                Some(batch::get(&hot.direct, conn, key))
            }
            _ => None,
        })
    }
}

/// The single-key commands the Redis and the Redis Cluster stores send
/// alike (one key is one slot, so a cluster routes each to one node): each
/// built once; the async senders here are the cluster store's, the Redis
/// store sends them through `RedisStore::send`.
pub(super) mod single_key {
    use std::time::Duration;

    #[cfg(feature = "redis-cluster")]
    use redis::{aio::ConnectionLike, RedisResult};
    use redis::{Cmd, Pipeline};

    use super::UNLOCK_SCRIPT;

    /// `GET key`, read by [`version_of`].
    pub(in crate::shared) fn read_version_cmd(key: &str) -> Cmd {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        cmd
    }

    /// The version in a version key's value; 0 when missing or not a
    /// number (the next bump then moves it to a fresh, time-based number).
    pub(in crate::shared) fn version_of(raw: Option<String>) -> u64 {
        raw.and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The version under `key`.
    #[cfg(feature = "redis-cluster")]
    pub(in crate::shared) async fn read_version(
        conn: &mut impl ConnectionLike,
        key: &str,
    ) -> RedisResult<u64> {
        Ok(version_of(read_version_cmd(key).query_async(conn).await?))
    }

    /// `SET key now NX` then `INCR key`, in one round trip; answers `(new,)`.
    pub(in crate::shared) fn bump_version_pipe(key: &str, now_ms: u64) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(now_ms)
            .arg("NX")
            .ignore()
            .cmd("INCR")
            .arg(key);
        pipe
    }

    /// Raises the version under `key`; the new one.
    #[cfg(feature = "redis-cluster")]
    pub(in crate::shared) async fn bump_version(
        conn: &mut impl ConnectionLike,
        key: &str,
        now_ms: u64,
    ) -> RedisResult<u64> {
        let (v,): (u64,) = bump_version_pipe(key, now_ms).query_async(conn).await?;
        Ok(v)
    }

    /// `SET key token NX PX ttl`: a value when the lock was taken.
    pub(in crate::shared) fn try_lock_cmd(key: &str, token: &str, ttl: Duration) -> Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(super::px(ttl));
        cmd
    }

    /// Whether the lock was taken.
    #[cfg(feature = "redis-cluster")]
    pub(in crate::shared) async fn try_lock(
        conn: &mut impl ConnectionLike,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> RedisResult<bool> {
        let taken: Option<String> = try_lock_cmd(key, token, ttl).query_async(conn).await?;
        Ok(taken.is_some())
    }

    /// Compare and delete in one step: never releases another holder's lock.
    pub(in crate::shared) fn unlock_cmd(key: &str, token: &str) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(UNLOCK_SCRIPT).arg(1).arg(key).arg(token);
        cmd
    }

    /// Releases the lock `key` if it still holds `token`.
    #[cfg(feature = "redis-cluster")]
    pub(in crate::shared) async fn unlock(
        conn: &mut impl ConnectionLike,
        key: &str,
        token: &str,
    ) -> RedisResult<()> {
        unlock_cmd(key, token)
            .query_async::<i64>(conn)
            .await
            .map(drop)
    }
}

impl SharedStore for RedisStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        if let Some(runtime) = super::operation_runtime() {
            if let Some(sent) = self.hot_get(runtime, key) {
                return sent;
            }
        }
        // The hot paths: no request built, no wrapper future per call.
        match self.via() {
            Via::Blocking(lease) => Box::pin(async move {
                lease
                    .run(|c| redis::Commands::get(c, key))
                    .map_err(to_shared)
            }),
            Via::Async(Conn::Managed(mut c)) => {
                Box::pin(async move { c.get(key).await.map_err(to_shared) })
            }
            Via::Async(Conn::Direct(d)) => Box::pin(async move {
                let mut c = d.connection().await.map_err(to_shared)?;
                d.check(c.get(key).await).map_err(to_shared)
            }),
        }
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, SharedError>> {
        if keys.is_empty() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        // One MGET; a key of another type answers nil (a miss), not an error.
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        Box::pin(self.send(Req::One(cmd)))
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        // Redis 6.2 or later; an older server answers an error, counted as such.
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(key).arg("PX").arg(px(ttl));
        Box::pin(self.send(Req::One(cmd)))
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(px(ttl));
        }
        Box::pin(self.send(Req::One(cmd)))
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        if keys.is_empty() && notice.is_none() {
            // Nothing to send (an empty pipeline is an error to redis-rs).
            return Box::pin(async { Ok(0) });
        }
        let mut pipe = redis::pipe();
        if !keys.is_empty() {
            pipe.cmd("UNLINK").arg(keys);
        }
        if let Some(notice) = notice {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(notice).ignore();
        }
        if keys.is_empty() {
            let sent = self.send::<()>(Req::Pipe(pipe));
            return Box::pin(async move { sent.await.map(|()| 0) });
        }
        let sent = self.send::<(u64,)>(Req::Pipe(pipe));
        Box::pin(async move { sent.await.map(|(n,)| n) })
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            let pattern = format!("{}*", escape_glob(prefix));
            let mut cursor: u64 = 0;
            let mut deleted = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut conn)
                    .await
                    .map_err(to_shared)?;
                let keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| !k.starts_with(RESERVED_PREFIX.as_bytes()))
                    .collect();
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await
                        .map_err(to_shared)?;
                    deleted += n;
                }
                if next == 0 {
                    return Ok(deleted);
                }
                cursor = next;
            }
        })
    }

    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let sent = self.send(Req::One(single_key::read_version_cmd(key)));
        Box::pin(async move { sent.await.map(single_key::version_of) })
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let sent = self.send(Req::Pipe(single_key::bump_version_pipe(key, now_ms)));
        Box::pin(async move { sent.await.map(|(v,): (u64,)| v) })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        let sent = self.send(Req::One(single_key::try_lock_cmd(key, token, ttl)));
        Box::pin(async move { sent.await.map(|taken: Option<String>| taken.is_some()) })
    }

    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADD_TO_TAGS_SCRIPT)
            .arg(sets.len())
            .arg(sets)
            .arg(member);
        match ttl {
            Some(ttl) => cmd.arg(px(ttl)),
            None => cmd.arg(-1),
        };
        let sent = self.send::<i64>(Req::One(cmd));
        Box::pin(async move { sent.await.map(drop) })
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        // Bulk, with a longer budget than one socket timeout: always async.
        let mut conn = self.conn();
        Box::pin(async move {
            redis::cmd("EVAL")
                .arg(DELETE_TAG_SCRIPT)
                .arg(1)
                .arg(set)
                .query_async::<u64>(&mut conn)
                .await
                .map_err(to_shared)
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let sent = self.send::<i64>(Req::One(single_key::unlock_cmd(key, token)));
        Box::pin(async move { sent.await.map(drop) })
    }

    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(notice);
        Box::pin(self.send::<()>(Req::One(cmd)))
    }

    fn reset(&self) {
        // Inside the I/O runtime's context: the new manager's tasks live there.
        let _guard = super::io_runtime().enter();
        self.blocking.reset();
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                *self.conn.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                let mut conns = self.caller_conns.write().unwrap_or_else(|e| e.into_inner());
                // Threads' hot copies see the flag and come back for a new one.
                for (_, d) in conns.iter() {
                    d.broken.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                conns.clear();
                tracing::info!(store = %self.describe, "layercache: replaced a Redis connection that stopped answering");
            }
            Err(err) => tracing::warn!(%err, "layercache: cannot replace the Redis connection"),
        }
    }

    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>> {
        let client = self.client.clone();
        let channel = self.channel.clone();
        Some(Box::pin(subscription_loop(client, channel, handler)))
    }
}

/// How long the bus may stay quiet before its connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the connection is replaced.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Delivers the messages of an established subscription to `handler`
/// until the connection is lost or stops answering pings.
pub(super) async fn listen(pubsub: redis::aio::PubSub, handler: &BusHandler) {
    use futures_util::future::Either;
    use futures_util::StreamExt as _;
    let (mut sink, mut messages) = pubsub.split();
    loop {
        // A connection can stay open and still go deaf: after a
        // quiet spell, ask the server to answer.
        let next = std::pin::pin!(messages.next());
        let quiet = std::pin::pin!(tokio::time::sleep(PING_EVERY));
        match futures_util::future::select(next, quiet).await {
            Either::Left((Some(msg), _)) => match msg.get_payload::<String>() {
                Ok(text) => handler(BusEvent::Message(text)),
                Err(err) => {
                    tracing::debug!(%err, "layercache: ignoring a bus message that is not text")
                }
            },
            Either::Left((None, _)) => return,
            Either::Right(_) => {
                let pong = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Keeps a subscription to `channel` up for the life of the process.
async fn subscription_loop(client: Client, channel: String, handler: BusHandler) {
    let mut backoff = Duration::from_millis(20);
    let mut ever_subscribed = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(20);
                tracing::debug!(
                    channel,
                    after_gap = ever_subscribed,
                    "layercache: invalidation bus subscribed"
                );
                handler(BusEvent::Subscribed {
                    after_gap: ever_subscribed,
                });
                ever_subscribed = true;
                listen(pubsub, &handler).await;
                tracing::warn!(
                    channel,
                    "layercache: invalidation bus connection lost; reconnecting (local copies of shared entries live at most local_timeout meanwhile)"
                );
                handler(BusEvent::Down {
                    reason: "connection lost".into(),
                    refused: false,
                });
            }
            Ok(Err(err)) => {
                tls::report(&err);
                tracing::debug!(%err, channel, "layercache: cannot subscribe to the invalidation bus yet");
                let refused = is_refusal(&err);
                handler(BusEvent::Down {
                    refused,
                    reason: redact(&err.to_string()),
                });
                if refused {
                    // An operator must act: ask again now and then, not five
                    // times a second from every process of the fleet.
                    tokio::time::sleep(REFUSED_RETRY).await;
                }
            }
            Err(_) => {
                tracing::debug!(
                    channel,
                    "layercache: subscribing to the invalidation bus timed out"
                );
                handler(BusEvent::Down {
                    reason: "subscribing timed out".into(),
                    refused: false,
                });
            }
        }
        tokio::time::sleep(backoff).await;
        // Short: until the bus is back, other processes' invalidations do
        // not reach this one, so the retry interval adds to its staleness
        // bound after an outage (a refused connection costs the server nothing).
        backoff = (backoff * 2).min(MAX_BUS_BACKOFF);
    }
}

/// The longest wait between two subscription attempts.
const MAX_BUS_BACKOFF: Duration = Duration::from_millis(200);
/// The wait after the server refused the subscription (ACL, password).
const REFUSED_RETRY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped_for_scan_match() {
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_glob("plain:key"), "plain:key");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:pw@host/1"),
            "rediss://user:***@host/1"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn the_reserved_prefix_is_not_a_glob() {
        assert_eq!(escape_glob(RESERVED_PREFIX), RESERVED_PREFIX);
    }
}
