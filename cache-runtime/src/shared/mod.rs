//! The shared tier: a store every process of a fleet reads and writes
//! (Redis, Redis Cluster, memcached, SQLite or a directory; each backend is a
//! submodule, most behind a cargo feature), reached through the
//! [`SharedStore`] trait and guarded by a [`Tier`] that makes it fail-open.
//!
//! Every operation the pipeline sends to the store goes through
//! `Tier::call`, which
//!
//! - skips the store while the circuit breaker is open (a counted *skip*),
//! - bounds the operation by the tier's timeout (a counted *timeout*),
//! - counts every other failure by kind, and times every round trip.
//!
//! A failed shared operation never fails the call: the pipeline goes on to
//! the function and returns its value.
//!
//! The store's I/O runs on a small runtime owned by layercache (one
//! thread, `layercache-io`). Async callers poll the store's futures inline,
//! inside that runtime's context, so they work from any executor; sync
//! callers block on them with a thread-parking `block_on`, which neither
//! builds a runtime per call nor deadlocks inside a tokio runtime, because
//! the connection is driven by layercache's own thread. Async callers on a
//! multi-thread tokio runtime with I/O and timers instead get a connection
//! driven by their own runtime (`caller_runtime`), as a raw redis-rs user
//! would, so no other thread is involved per operation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, Timestamp};
use crate::config::{self, CacheType, Config};
use crate::metrics::Histogram;

pub mod filesystem;
#[cfg(feature = "memcached")]
#[cfg_attr(docsrs, doc(cfg(feature = "memcached")))]
pub mod memcached;
pub mod outbox;
pub mod polled;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "redis-cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
pub mod redis_cluster;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

/// A boxed, sendable future: what [`SharedStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong with a shared operation, as counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation took longer than the tier's timeout.
    Timeout,
    /// The connection could not be made or was lost.
    Connection,
    /// The server answered with an error.
    Server,
    /// Bytes under one of our keys did not verify or decode, or the key
    /// holds something the store cannot read as a value (Redis
    /// `WRONGTYPE`, a directory in a file's place): a miss for that key
    /// alone, overwritten by the next write, never a breaker failure.
    Corrupt,
    /// A value larger than the size limit was not written.
    Oversize,
    /// The circuit breaker was open: the store was not asked.
    Skipped,
    /// A value could not be encoded.
    Encode,
}

impl ErrorKind {
    /// A short name (`timeout`, `connection`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Server => "server",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Oversize => "oversize",
            ErrorKind::Skipped => "skipped",
            ErrorKind::Encode => "encode",
        }
    }

    /// Whether this failure says the store is unhealthy (feeds the breaker).
    fn is_health_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Server
        )
    }
}

/// A failed shared operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared tier {}: {message}", kind.as_str())]
pub struct SharedError {
    /// What kind of failure it was.
    pub kind: ErrorKind,
    /// What the store said.
    pub message: String,
}

impl SharedError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SharedError {
        SharedError {
            kind,
            message: message.into(),
        }
    }
}

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

/// Whether the invalidation bus delivers notices to this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BusStatus {
    /// Not subscribed yet.
    #[default]
    Starting,
    /// Subscribed: notices arrive.
    Up,
    /// Lost or refused: notices do not arrive (see [`BusHealth::reason`]).
    Down,
}

impl BusStatus {
    /// `starting`, `up` or `down` (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            BusStatus::Starting => "starting",
            BusStatus::Up => "up",
            BusStatus::Down => "down",
        }
    }
}

/// The invalidation bus's health, in [`TierStats::bus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BusHealth {
    /// Up, down or starting.
    pub status: BusStatus,
    /// Why the bus is down (the server's answer, no password); `None` otherwise.
    pub reason: Option<String>,
}

/// A handler of bus events.
pub type BusHandler = Arc<dyn Fn(BusEvent) + Send + Sync>;

/// A store shared by every process: the operations the pipeline needs.
///
/// Keys are full keys (with `CACHE_KEY_PREFIX`). Implementations do no
/// timeouts or retries of their own: [`Tier`] bounds every call.
pub trait SharedStore: Send + Sync + 'static {
    /// Where the store is, for logs (no password).
    fn describe(&self) -> String;
    /// The bytes under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>>;
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

/// Settings of the shared tier (part of [`Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// Longest a shared operation may take before the call goes on without it.
    pub timeout: Duration,
    /// Values whose encoding is larger are not written to the shared tier.
    pub max_value_size: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips the store before one probe is let through.
    pub breaker_cooldown: Duration,
    /// How often a store without publish/subscribe (filesystem, SQLite,
    /// memcached) is polled for invalidation notices: the bound on how long
    /// another process's local copy can outlive an invalidation
    /// (`CACHE_BUS_POLL_MS`, default 100 ms; see [`polled`]).
    pub bus_poll_interval: Duration,
    /// How values are encoded in the shared tier (`CACHE_CODEC`; see [`crate::codec`]).
    pub codec: crate::codec::CodecKind,
}

/// Default [`SharedSettings::timeout`]: 50 ms.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest [`SharedSettings::timeout`] accepted: 60 s (longer ones are cut to it).
pub const MAX_SHARED_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`SharedSettings::bus_poll_interval`]: 100 ms.
pub const DEFAULT_BUS_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default [`SharedSettings::max_value_size`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            timeout: DEFAULT_SHARED_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_millis(500),
            bus_poll_interval: DEFAULT_BUS_POLL_INTERVAL,
            codec: crate::codec::CodecKind::default(),
        }
    }
}

/// Per-function counters of the shared tier.
#[derive(Default)]
pub(crate) struct SharedMetrics {
    misses: AtomicU64,
    errors: [AtomicU64; 7],
    bytes_written: AtomicU64,
    writes: AtomicU64,
    pub(crate) latency: Histogram,
}

impl SharedMetrics {
    pub(crate) fn record_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn record_error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn record_write(&self, bytes: usize) {
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> SharedStats {
        let e = |k: ErrorKind| self.errors[k as usize].load(Relaxed);
        SharedStats {
            misses: self.misses.load(Relaxed),
            writes: self.writes.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            timeouts: e(ErrorKind::Timeout),
            connection_errors: e(ErrorKind::Connection),
            server_errors: e(ErrorKind::Server),
            corrupt: e(ErrorKind::Corrupt),
            oversize: e(ErrorKind::Oversize),
            skipped: e(ErrorKind::Skipped),
            encode_errors: e(ErrorKind::Encode),
            latency: self.latency.snapshot(),
        }
    }
}

/// One function's shared-tier counters at one moment (all zero for a
/// function that does not use a shared tier).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SharedStats {
    /// Shared lookups that found nothing usable (the function ran, or a
    /// local hit made the lookup unnecessary is *not* counted).
    pub misses: u64,
    /// Values written to the shared tier.
    pub writes: u64,
    /// Bytes written to the shared tier (envelopes included).
    pub bytes_written: u64,
    /// Operations cut off by the tier's timeout.
    pub timeouts: u64,
    /// Operations failed by a refused or lost connection.
    pub connection_errors: u64,
    /// Operations the server answered with an error.
    pub server_errors: u64,
    /// Stored bytes that failed verification or decoding (each also a miss; the key is rewritten).
    pub corrupt: u64,
    /// Values not written because they exceeded the size limit.
    pub oversize: u64,
    /// Operations skipped because the circuit breaker was open.
    pub skipped: u64,
    /// Values that could not be encoded (not written).
    pub encode_errors: u64,
    /// Time of shared round trips (hits, misses and writes; one in
    /// [`SHARED_SAMPLE_EVERY`] per thread, the first one included).
    pub latency: crate::metrics::LatencyStats,
}

impl SharedStats {
    /// Every failure, whatever its kind (skips included).
    pub fn errors(&self) -> u64 {
        self.timeouts
            + self.connection_errors
            + self.server_errors
            + self.corrupt
            + self.oversize
            + self.skipped
            + self.encode_errors
    }
}

/// Process-wide state of the shared tier, in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TierStats {
    /// Where the store is (no password).
    pub store: String,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Invalidation notices received from other processes.
    pub notices_received: u64,
    /// Times the bus subscription was lost and restored (local copies were dropped each time).
    pub resubscriptions: u64,
    /// Whether the invalidation bus has been subscribed at least once.
    pub bus_subscribed: bool,
    /// The invalidation bus now: up, or down and why.
    pub bus: BusHealth,
    /// Invalidations waiting in the outbox for the shared tier or the bus
    /// (see [`outbox`]).
    pub invalidations_pending: u64,
    /// Invalidations applied after having waited in the outbox.
    pub invalidations_replayed: u64,
    /// Times the outbox was full and collapsed into one clear.
    pub outbox_overflows: u64,
}

/// Skips the store for a cool-down after consecutive failures, then lets
/// one probe through per cool-down until one succeeds.
struct Breaker {
    failures: AtomicU32,
    /// Clock nanos until which the store is skipped; 0 when closed.
    open_until: AtomicU64,
    opens: AtomicU64,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn allow(&self, now: Timestamp) -> bool {
        let until = self.open_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        let now_ns = now.nanos_since(Timestamp::ZERO);
        if now_ns < until {
            return false;
        }
        // Half-open: the first caller past the cool-down probes; the others
        // keep skipping for another cool-down unless the probe succeeds.
        let next = now
            .saturating_add(self.cooldown)
            .nanos_since(Timestamp::ZERO);
        self.open_until
            .compare_exchange(until, next, Relaxed, Relaxed)
            .is_ok()
    }

    fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.open_until.load(Relaxed) != 0 && self.open_until.swap(0, Relaxed) != 0 {
            tracing::info!("layercache: shared tier answers again; circuit breaker closed");
        }
    }

    /// Records a failure; `true` when it opened the breaker.
    fn failure(&self, now: Timestamp, err: &SharedError) -> bool {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        n >= self.threshold && self.open(now, &format!("{n} consecutive failures, the last: {err}"))
    }

    /// Opens the breaker for a cool-down from `now`; `true` when it was closed.
    fn open(&self, now: Timestamp, why: &str) -> bool {
        let until = now
            .saturating_add(self.cooldown)
            .nanos_since(Timestamp::ZERO)
            .max(1);
        let was_closed = self.open_until.swap(until, Relaxed) == 0;
        if was_closed {
            self.opens.fetch_add(1, Relaxed);
            tracing::warn!(cooldown = ?self.cooldown, why, "layercache: circuit breaker open, calls go straight to the function");
        }
        was_closed
    }

    /// Opens the breaker now, whatever the count (the store did not come
    /// up at start-up).
    fn trip(&self, now: Timestamp, why: &str) {
        self.failures.store(self.threshold, Relaxed);
        self.open(now, why);
    }

    fn is_open(&self, now: Timestamp) -> bool {
        let until = self.open_until.load(Relaxed);
        until != 0 && now.nanos_since(Timestamp::ZERO) < until
    }
}

/// The shared tier of this process: a store, its timeout and breaker, the
/// runtime its I/O runs on, and the invalidation bus.
pub struct Tier {
    store: Arc<dyn SharedStore>,
    runtime: tokio::runtime::Handle,
    settings: SharedSettings,
    breaker: Breaker,
    key_prefix: String,
    clock: Clock,
    instance: String,
    notices_received: AtomicU64,
    resubscriptions: AtomicU64,
    /// Whether the bus has been subscribed at least once.
    subscribed: std::sync::atomic::AtomicBool,
    /// Invalidations waiting for the store.
    pub(crate) outbox: outbox::Outbox,
    /// Wakes the outbox's replay task early.
    outbox_wake: tokio::sync::Notify,
    bus: std::sync::Mutex<BusHealth>,
    /// Bumped each time the bus goes down, so a timer set for one outage
    /// does not act on the next.
    bus_epoch: AtomicU64,
    /// The server refused the subscription: notices are not published either.
    bus_refused: std::sync::atomic::AtomicBool,
    /// Whether some bus event (up or down) arrived.
    bus_answered: std::sync::atomic::AtomicBool,
    /// `bus.status == Down`, read without the lock on the miss path.
    bus_is_down: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("store", &self.store.describe())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The runtime the shared tier's I/O runs on: one worker thread, created on
/// first use and kept for the life of the process.
pub(crate) fn io_runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        // A current-thread runtime driven by one dedicated thread: the
        // connection's tasks, its socket and every timeout live there, with
        // none of a work-stealing pool's wake-up machinery.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("layercache: cannot start the I/O runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("layercache-io".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("layercache: cannot start the I/O thread");
        handle
    })
}

/// A lock held in the shared tier (`lock = true`). Released by
/// [`HeldLock::release`]; dropped without it (the function panicked, or the
/// call was cancelled), it is released in the background, so other
/// processes need not wait for its expiry.
pub(crate) struct HeldLock {
    tier: &'static Tier,
    key: String,
    token: String,
    released: bool,
}

impl HeldLock {
    /// Releases the lock (bounded by the tier's timeout).
    pub(crate) async fn release(mut self) {
        self.released = true;
        self.tier.unlock(&self.key, &self.token).await;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if !self.released {
            let (tier, key, token) = (
                self.tier,
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            tier.runtime
                .spawn(async move { tier.unlock(&key, &token).await });
        }
    }
}

/// Polls `F` inside the I/O runtime's context, so that the store's timers
/// and any task it spawns belong to that runtime whatever executor polls it.
struct InRuntime<'h, F> {
    handle: &'h tokio::runtime::Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _guard = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

impl Tier {
    /// A tier over `store`. Starts the bus subscription when the store has one.
    pub(crate) fn new(store: Arc<dyn SharedStore>, config: &Config) -> Tier {
        Tier {
            store,
            runtime: io_runtime().clone(),
            settings: config.shared().clone(),
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                opens: AtomicU64::new(0),
                threshold: config.shared().breaker_threshold.max(1),
                cooldown: config.shared().breaker_cooldown,
            },
            key_prefix: config.key_prefix().to_string(),
            clock: config.clock().clone(),
            instance: format!("{:016x}", instance_id()),
            notices_received: AtomicU64::new(0),
            resubscriptions: AtomicU64::new(0),
            subscribed: std::sync::atomic::AtomicBool::new(false),
            outbox: outbox::Outbox::default(),
            outbox_wake: tokio::sync::Notify::new(),
            bus: std::sync::Mutex::new(BusHealth::default()),
            bus_epoch: AtomicU64::new(0),
            bus_refused: std::sync::atomic::AtomicBool::new(false),
            bus_answered: std::sync::atomic::AtomicBool::new(false),
            bus_is_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The tier's settings.
    pub fn settings(&self) -> &SharedSettings {
        &self.settings
    }

    /// The global `CACHE_KEY_PREFIX` (without the trailing `:`).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// This process's id on the bus (notices it sent are not applied twice).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The full shared key of `stable` (`{CACHE_KEY_PREFIX}:{stable}`).
    pub fn full_key(&self, stable: &str) -> String {
        if self.key_prefix.is_empty() {
            stable.to_string()
        } else {
            let mut k = String::with_capacity(self.key_prefix.len() + 1 + stable.len());
            k.push_str(&self.key_prefix);
            k.push(':');
            k.push_str(stable);
            k
        }
    }

    /// Where a function's version number lives.
    pub(crate) fn version_key(&self, namespace: &str) -> String {
        format!("{RESERVED_PREFIX}version:{}:{namespace}", self.key_prefix)
    }

    /// The set of the full keys carrying `tag`.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        format!("{RESERVED_PREFIX}tag:{}:{tag}", self.key_prefix)
    }

    /// Where the version of a group of functions (`versioned = "..."`) lives.
    pub(crate) fn group_key(&self, group: &str) -> String {
        format!("{RESERVED_PREFIX}group:{}:{group}", self.key_prefix)
    }

    /// Runs one store operation: breaker, timeout, error counting, latency.
    pub(crate) async fn call<'a, T>(
        &'a self,
        metrics: Option<&'a SharedMetrics>,
        budget: Duration,
        op: impl FnOnce(&'a dyn SharedStore) -> BoxFuture<'a, Result<T, SharedError>>,
    ) -> Result<T, SharedError> {
        let started = self.clock.now();
        if !self.breaker.allow(started) {
            if let Some(m) = metrics {
                m.record_error(ErrorKind::Skipped);
            }
            return Err(SharedError::new(ErrorKind::Skipped, "circuit breaker open"));
        }
        // The operation is built in the caller's context, so a store can
        // pick a connection driven by the caller's own runtime (see
        // `caller_runtime`); otherwise the operation and its timer run in the
        // I/O runtime's context, which always has timers.
        let caller = caller_runtime();
        let on_caller = caller.is_some();
        OP_RUNTIME.with(|o| o.set(caller));
        let fut = op(&*self.store);
        OP_RUNTIME.with(|o| o.set(None));
        let timed = if on_caller {
            // The caller's runtime has timers (checked): keep the timer with
            // the connection, so no other thread is woken per operation.
            tokio::time::timeout(budget, fut)
        } else {
            let _guard = self.runtime.enter();
            tokio::time::timeout(budget, fut)
        };
        let result = if on_caller {
            timed.await
        } else {
            InRuntime {
                handle: &self.runtime,
                fut: Box::pin(timed),
            }
            .await
        }
        .unwrap_or_else(|_| {
            Err(SharedError::new(
                ErrorKind::Timeout,
                format!("no answer within {budget:?}"),
            ))
        });
        let now = self.clock.now();
        match &result {
            Ok(_) => self.breaker.success(),
            Err(e) if e.kind.is_health_failure() => {
                if self.breaker.failure(now, e) && e.kind == ErrorKind::Timeout {
                    // Timeouts, not refusals: the connection may be up but
                    // deaf. Start a fresh one for the probe after the cool-down.
                    self.store.reset();
                }
            }
            Err(_) => {}
        }
        if let Some(m) = metrics {
            if sample_this_op() {
                m.latency.record(now.nanos_since(started));
            }
            if let Err(e) = &result {
                m.record_error(e.kind);
            }
        }
        if let Err(e) = &result {
            tracing::debug!(err = %e, "layercache: shared operation failed");
        }
        result
    }

    /// The tier's per-operation timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Waits `d` on a timer that exists wherever the caller runs: the
    /// caller's runtime when it has timers, else the I/O runtime's.
    pub(crate) async fn pause(&self, d: Duration) {
        if caller_runtime().is_some() {
            tokio::time::sleep(d).await;
        } else {
            let sleep = {
                let _guard = self.runtime.enter();
                tokio::time::sleep(d)
            };
            InRuntime {
                handle: &self.runtime,
                fut: Box::pin(sleep),
            }
            .await
        }
    }

    /// Takes the lock `key` for `ttl` (see [`SharedStore::try_lock`]);
    /// `Ok(Some)` with the held lock when taken.
    pub(crate) async fn try_lock(
        &'static self,
        metrics: &SharedMetrics,
        key: String,
        token: String,
        ttl: Duration,
    ) -> Result<Option<HeldLock>, SharedError> {
        let taken = self
            .call(Some(metrics), self.timeout(), |s| {
                s.try_lock(&key, &token, ttl)
            })
            .await?;
        Ok(taken.then_some(HeldLock {
            tier: self,
            key,
            token,
            released: false,
        }))
    }

    /// Releases the lock `key` if it still holds `token`.
    async fn unlock(&self, key: &str, token: &str) {
        if let Err(err) = self
            .call(None, self.timeout(), |s| s.unlock(key, token))
            .await
        {
            tracing::debug!(%err, key, "layercache: could not release a lock; it expires by itself");
        }
    }

    /// Whether the store can delete by prefix (see [`SharedStore::can_delete_prefix`]).
    pub(crate) fn can_delete_prefix(&self) -> bool {
        self.store.can_delete_prefix()
    }

    /// Publishes `notice` (best effort, bounded by the timeout).
    pub(crate) async fn publish(&self, notice: &str) -> Result<(), SharedError> {
        self.call(None, self.timeout(), |s| s.publish(notice)).await
    }

    pub(crate) fn stats(&self) -> TierStats {
        TierStats {
            store: self.store.describe(),
            breaker_open: self.breaker.is_open(self.clock.now()),
            breaker_opens: self.breaker.opens.load(Relaxed),
            notices_received: self.notices_received.load(Relaxed),
            resubscriptions: self.resubscriptions.load(Relaxed),
            bus_subscribed: self.subscribed.load(Relaxed),
            bus: self.bus_health(),
            invalidations_pending: self.outbox.pending(),
            invalidations_replayed: self.outbox.replayed(),
            outbox_overflows: self.outbox.overflows(),
        }
    }

    fn bus_health(&self) -> BusHealth {
        self.bus.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether notices from other processes are not arriving now.
    pub(crate) fn bus_is_down(&self) -> bool {
        self.bus_is_down.load(Relaxed)
    }

    /// Whether the server refused the subscription (publishing is refused too).
    pub(crate) fn bus_refused(&self) -> bool {
        self.bus_refused.load(Relaxed)
    }

    /// The bus came up: clears any down state.
    pub(crate) fn bus_up(&self) {
        self.bus_answered.store(true, Relaxed);
        self.bus_refused.store(false, Relaxed);
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        if bus.status == BusStatus::Down {
            tracing::info!(store = %self.store.describe(), "layercache: invalidation bus up again");
        }
        *bus = BusHealth {
            status: BusStatus::Up,
            reason: None,
        };
        self.bus_is_down.store(false, Relaxed);
    }

    /// The bus went down for `reason`. Returns the outage's epoch when it
    /// was up (or starting) before, `None` when it was already down.
    pub(crate) fn bus_down(&self, reason: String, refused: bool) -> Option<u64> {
        self.bus_answered.store(true, Relaxed);
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        let was_refused = self.bus_refused.swap(refused, Relaxed);
        if refused && (!was_refused || bus.reason.as_deref() != Some(reason.as_str())) {
            // Once per reason: retrying every second would flood the log.
            tracing::error!(
                store = %self.store.describe(),
                %reason,
                "layercache: the invalidation bus refused this process (give the user pub/sub rights on the channel, or fix the password); invalidations from other processes will not reach it, so its local copies of shared entries live at most local_timeout (5 s when unset)"
            );
        }
        let newly = bus.status != BusStatus::Down;
        *bus = BusHealth {
            status: BusStatus::Down,
            reason: Some(reason),
        };
        self.bus_is_down.store(true, Relaxed);
        newly.then(|| self.bus_epoch.fetch_add(1, Relaxed) + 1)
    }

    /// The current outage's epoch (see [`Tier::bus_down`]).
    pub(crate) fn bus_epoch(&self) -> u64 {
        self.bus_epoch.load(Relaxed)
    }

    /// Queues an invalidation that could not be applied now and wakes the
    /// replay task.
    pub(crate) fn defer(&self, op: outbox::Pending) {
        tracing::debug!(
            ?op,
            "layercache: invalidation queued in the outbox until the shared tier answers"
        );
        self.outbox.push(op);
        self.outbox_wake.notify_one();
    }

    /// Starts the task that replays the outbox with `replay`, every
    /// [`outbox::RETRY_INTERVAL`] while operations are pending.
    pub(crate) fn start_outbox<F>(&'static self, replay: fn(&'static Tier, outbox::Pending) -> F)
    where
        F: Future<Output = Result<(), SharedError>> + Send + 'static,
    {
        self.runtime.spawn(async move {
            loop {
                if self.outbox.pending() == 0 {
                    self.outbox_wake.notified().await;
                }
                tokio::time::sleep(outbox::RETRY_INTERVAL).await;
                while let Some((seq, op)) = self.outbox.front() {
                    match replay(self, op).await {
                        Ok(()) => self.outbox.applied(seq),
                        Err(err) => {
                            tracing::debug!(%err, pending = self.outbox.pending(), "layercache: the outbox waits for the shared tier");
                            break;
                        }
                    }
                }
            }
        });
    }

    /// Runs one store operation for the outbox: bounded by the timeout and
    /// counted by the breaker, but not skipped while it is open (the replay
    /// is the breaker's probe, and it runs in the background).
    pub(crate) async fn call_direct<'a, T>(
        &'a self,
        budget: Duration,
        op: impl FnOnce(&'a dyn SharedStore) -> BoxFuture<'a, Result<T, SharedError>>,
    ) -> Result<T, SharedError> {
        let fut = {
            let _guard = self.runtime.enter();
            tokio::time::timeout(budget, op(&*self.store))
        };
        let result = InRuntime {
            handle: &self.runtime,
            fut: Box::pin(fut),
        }
        .await
        .unwrap_or_else(|_| {
            Err(SharedError::new(
                ErrorKind::Timeout,
                format!("no answer within {budget:?}"),
            ))
        });
        match &result {
            Ok(_) => self.breaker.success(),
            Err(e) if e.kind.is_health_failure() => {
                if self.breaker.failure(self.clock.now(), e) && e.kind == ErrorKind::Timeout {
                    self.store.reset();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Replays the outbox now, for at most `deadline`; returns what is
    /// still pending.
    pub(crate) async fn flush_outbox<F>(
        &'static self,
        deadline: Duration,
        replay: fn(&'static Tier, outbox::Pending) -> F,
    ) -> Vec<outbox::Pending>
    where
        F: Future<Output = Result<(), SharedError>> + Send + 'static,
    {
        let started = std::time::Instant::now();
        while let Some((seq, op)) = self.outbox.front() {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match self.call_direct_bounded(left, replay(self, op)).await {
                Ok(()) => self.outbox.applied(seq),
                Err(_) => {
                    // Retry until the deadline: the store may be restarting.
                    let pause =
                        outbox::RETRY_INTERVAL.min(deadline.saturating_sub(started.elapsed()));
                    self.pause(pause).await;
                }
            }
        }
        self.outbox.snapshot()
    }

    /// `fut` cut off after `budget`.
    async fn call_direct_bounded<T>(
        &self,
        budget: Duration,
        fut: impl Future<Output = Result<T, SharedError>>,
    ) -> Result<T, SharedError> {
        let timed = {
            let _guard = self.runtime.enter();
            tokio::time::timeout(budget, fut)
        };
        InRuntime {
            handle: &self.runtime,
            fut: Box::pin(timed),
        }
        .await
        .unwrap_or_else(|_| Err(SharedError::new(ErrorKind::Timeout, "flush deadline")))
    }

    pub(crate) fn count_notice(&self) {
        self.notices_received.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_resubscription(&self) {
        self.resubscriptions.fetch_add(1, Relaxed);
    }

    pub(crate) fn mark_subscribed(&self) {
        self.subscribed.store(true, Relaxed);
        self.bus_up();
    }

    /// Deletes every key starting with `full_prefix` in the background
    /// (on the I/O thread), logging the outcome.
    pub(crate) fn spawn_prefix_delete(&'static self, full_prefix: String) {
        self.runtime.spawn(async move {
            let budget = (self.timeout() * 100).max(Duration::from_secs(5));
            match tokio::time::timeout(budget, self.store.delete_prefix(&full_prefix)).await {
                Ok(Ok(n)) => tracing::debug!(prefix = full_prefix, deleted = n, "layercache: swept entries of an old version"),
                Ok(Err(err)) => tracing::warn!(prefix = full_prefix, %err, "layercache: could not sweep entries of an old version"),
                Err(_) => tracing::warn!(prefix = full_prefix, "layercache: sweeping entries of an old version timed out"),
            }
        });
    }

    /// Starts the bus subscription on the I/O runtime.
    pub(crate) fn start_bus(&self, handler: BusHandler) {
        if let Some(task) = self.store.subscribe(handler) {
            self.runtime.spawn(task);
        }
    }
}

/// Runs `fut` to completion on this thread, parking between wake-ups.
///
/// Used by sync cached functions: the store's futures are driven by the
/// I/O runtime's thread, so parking here cannot deadlock even inside a
/// tokio runtime (it blocks that worker for at most the tier's timeout,
/// as any blocking I/O in a sync function would).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    // While this thread blocks, no connection driven by its own runtime may
    // be used: that runtime's worker is the one being blocked.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(BLOCKING.with(|b| b.replace(true)));
    // Unconstrained: inside a tokio task, an exhausted cooperative budget
    // would make every poll return Pending and park this thread forever
    // (the wake-up goes to the task this thread is blocking).
    let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
    // A future ready at its first poll (a sync miss without a shared tier)
    // needs no waker: pollster would allocate one per call.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
        return v;
    }
    pollster::block_on(fut)
}

thread_local! {
    /// Set while [`block_on`] runs on this thread.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The caller's own tokio runtime, when a store may drive a connection on
/// it instead of on the I/O thread: an async caller (not inside
/// [`block_on`]) on a multi-thread runtime other than the I/O one. Requests
/// then go to a connection task on the caller's workers, saving two thread
/// hand-offs per operation; a current-thread runtime is left out because
/// a sync call blocking it would starve its own connection.
pub(crate) fn caller_runtime() -> Option<tokio::runtime::Id> {
    if BLOCKING.with(|b| b.get()) {
        return None;
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let id = handle.id();
    // The answer for the runtime this thread saw last, without a lock.
    if let Some((last, usable)) = LAST_RUNTIME.with(|l| l.get()) {
        if last == id {
            return usable.then_some(id);
        }
    }
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread
        || id == io_runtime().id()
    {
        LAST_RUNTIME.with(|l| l.set(Some((id, false))));
        return None;
    }
    // Whether each runtime has the drivers is asked once; a few recent
    // runtimes are remembered (a test suite makes one per test).
    type Seen = std::sync::Mutex<Vec<(tokio::runtime::Id, bool)>>;
    static SEEN: Seen = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let usable = match seen.iter().find(|(i, _)| *i == id) {
        Some((_, usable)) => *usable,
        None => {
            let usable = runtime_has_io_and_time();
            if seen.len() >= 16 {
                seen.remove(0);
            }
            seen.push((id, usable));
            usable
        }
    };
    LAST_RUNTIME.with(|l| l.set(Some((id, usable))));
    usable.then_some(id)
}

thread_local! {
    /// The runtime this thread last asked `caller_runtime` about, and the answer.
    static LAST_RUNTIME: std::cell::Cell<Option<(tokio::runtime::Id, bool)>> =
        const { std::cell::Cell::new(None) };
    /// While a store operation is being built: the caller's runtime, if the
    /// store may use a connection on it.
    static OP_RUNTIME: std::cell::Cell<Option<tokio::runtime::Id>> =
        const { std::cell::Cell::new(None) };
    /// Counts this thread's shared operations, to sample their latency.
    static OP_TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// For a store building an operation: the caller's runtime whose own
/// connection it may use (decided once per operation by `Tier::call`).
pub fn operation_runtime() -> Option<tokio::runtime::Id> {
    OP_RUNTIME.with(|o| o.get())
}

/// One shared operation in [`SHARED_SAMPLE_EVERY`] (per thread) has its
/// latency recorded: the histogram's atomics are shared by every thread.
pub const SHARED_SAMPLE_EVERY: u32 = 8;

fn sample_this_op() -> bool {
    OP_TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % SHARED_SAMPLE_EVERY == 1
    })
}

/// Whether the current runtime has the I/O and time drivers a connection
/// needs. Tokio only says so by panicking, so ask once per runtime with the
/// panic caught and its message kept quiet.
fn runtime_has_io_and_time() -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        drop(tokio::time::sleep(Duration::ZERO));
        #[cfg(feature = "redis")]
        {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            socket.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(socket).map(drop)
        }
        #[cfg(not(feature = "redis"))]
        Ok::<(), std::io::Error>(())
    });
    std::panic::set_hook(hook);
    matches!(probe, Ok(Ok(())))
}

/// A random id for this process on the bus.
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The process's shared tier, built from the configuration on first use;
/// `None` when the configuration has no shared tier (or it could not be
/// built, which is logged).
pub fn tier() -> Option<&'static Tier> {
    static TIER: OnceLock<Option<&'static Tier>> = OnceLock::new();
    *TIER.get_or_init(|| {
        let config = config::config();
        let store = match build_store(config) {
            Ok(Some(store)) => store,
            Ok(None) => return None,
            Err(err) => {
                tracing::error!(%err, "layercache: cannot set up the shared tier; caching in-process only");
                return None;
            }
        };
        let tier: &'static Tier = Box::leak(Box::new(Tier::new(store, config)));
        tracing::info!(store = %tier.store.describe(), timeout = ?tier.settings.timeout, "layercache: shared tier ready");
        if tier.key_prefix.is_empty() {
            tracing::warn!("layercache: CACHE_KEY_PREFIX is empty, so prefix invalidation matches every key of the shared database, not only this application's; set a prefix when the database is shared");
        }
        tier.start_bus(crate::invalidate::bus_handler(tier));
        tier.start_outbox(crate::invalidate::replay);
        // Give the bus one timeout to come up before the first call caches
        // anything: the first subscription drops local copies of shared
        // entries (notices before it were missed), which is free now and a
        // wasted local copy later.
        // Real time, not the configured clock: a mock clock never moves here.
        let waited = std::time::Instant::now();
        while !tier.bus_answered.load(Relaxed) && waited.elapsed() < tier.settings.timeout {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !tier.subscribed.load(Relaxed) && !tier.bus_refused() {
            // The server did not answer within one timeout, or refused the
            // connection (a refused subscription is an answer: the data path
            // may still work): this call has spent its shared budget, so skip
            // the store until the breaker's probe rather than wait again.
            tier.breaker.trip(tier.clock.now(), "the shared tier did not answer at start-up; the breaker's probe will try it again");
        }
        Some(tier)
    })
}

/// Runs the blocking store I/O `f` on the blocking pool of the runtime
/// polling this future (the caller's, or layercache's I/O runtime), never
/// on an async worker. A panic in `f` is a server error, not a panic of
/// the caller.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SharedError> + Send + 'static,
) -> Result<T, SharedError> {
    let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| io_runtime().clone());
    handle.spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SharedError::new(
            ErrorKind::Server,
            format!("a blocking store operation failed: {e}"),
        ))
    })
}

/// Builds the store `config` asks for (`None` for in-process only).
fn build_store(config: &Config) -> Result<Option<Arc<dyn SharedStore>>, SharedError> {
    let channel = format!("{RESERVED_PREFIX}bus:{}", config.key_prefix());
    match config.cache_type() {
        CacheType::Simple | CacheType::Null => Ok(None),
        CacheType::Filesystem => {
            let dir = config.cache_dir().ok_or_else(|| {
                SharedError::new(ErrorKind::Server, "CACHE_TYPE=filesystem needs CACHE_DIR")
            })?;
            let store = filesystem::FsStore::open(
                dir,
                config.cache_threshold(),
                &channel,
                config.shared(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "sqlite")]
        CacheType::Sqlite => {
            let path = config.sqlite_path().ok_or_else(|| {
                SharedError::new(
                    ErrorKind::Server,
                    "CACHE_TYPE=sqlite needs CACHE_SQLITE_PATH",
                )
            })?;
            let store = sqlite::SqliteStore::open(path, &channel, config.shared())?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "redis")]
        CacheType::Redis => {
            let _guard = io_runtime().enter();
            let store = redis::RedisStore::open_with_tls(
                config.redis_url(),
                channel,
                config.shared(),
                config.redis_tls(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "redis-cluster")]
        CacheType::RedisCluster => {
            let store = redis_cluster::RedisClusterStore::open_with_tls(
                config.redis_nodes(),
                channel,
                config.shared(),
                config.redis_tls(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "memcached")]
        CacheType::Memcached => {
            let store = memcached::MemcachedStore::open(
                config.memcached_servers(),
                &channel,
                config.shared(),
            )?;
            Ok(Some(Arc::new(store)))
        }
    }
}

/// An invalidation notice on the bus:
/// `1\t{instance}\t{op}\t{namespace}\t{argument}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice<'a> {
    /// Drop the local copy of one stable key of a function.
    Key { namespace: &'a str, stable: &'a str },
    /// Drop every local copy of a function; its shared version is now `version`.
    All { namespace: &'a str, version: u64 },
    /// Drop local copies whose stable key starts with `prefix`.
    Prefix { prefix: &'a str },
    /// Drop every local copy carrying `tag`.
    Tag { tag: &'a str },
    /// Drop every local copy of the functions of a version group; its
    /// version is now `version`.
    Group { group: &'a str, version: u64 },
    /// Drop every local copy.
    Clear,
}

impl Notice<'_> {
    pub(crate) fn encode(&self, instance: &str) -> String {
        match self {
            Notice::Key { namespace, stable } => format!("1\t{instance}\tk\t{namespace}\t{stable}"),
            Notice::All { namespace, version } => {
                format!("1\t{instance}\ta\t{namespace}\t{version}")
            }
            Notice::Prefix { prefix } => format!("1\t{instance}\tp\t\t{prefix}"),
            Notice::Group { group, version } => format!("1\t{instance}\tg\t{group}\t{version}"),
            Notice::Tag { tag } => format!("1\t{instance}\tt\t\t{tag}"),
            Notice::Clear => format!("1\t{instance}\tc\t\t"),
        }
    }

    /// The notice and the instance that sent it; `None` for anything else.
    pub(crate) fn decode(text: &str) -> Option<(&str, Notice<'_>)> {
        let mut parts = text.splitn(5, '\t');
        if parts.next()? != "1" {
            return None;
        }
        let instance = parts.next()?;
        let op = parts.next()?;
        let namespace = parts.next()?;
        let arg = parts.next()?;
        let notice = match op {
            "k" => Notice::Key {
                namespace,
                stable: arg,
            },
            "a" => Notice::All {
                namespace,
                version: arg.parse().ok()?,
            },
            "p" => Notice::Prefix { prefix: arg },
            "t" => Notice::Tag { tag: arg },
            "g" => Notice::Group {
                group: namespace,
                version: arg.parse().ok()?,
            },
            "c" => Notice::Clear,
            _ => return None,
        };
        Some((instance, notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_ignored() {
        for n in [
            Notice::Key {
                namespace: "user",
                stable: "user:42",
            },
            Notice::All {
                namespace: "a::b",
                version: 17,
            },
            Notice::Prefix { prefix: "search:r" },
            Notice::Clear,
        ] {
            let text = n.encode("abc");
            assert_eq!(Notice::decode(&text), Some(("abc", n)));
        }
        for bad in [
            "",
            "2\tx\tk\tn\ts",
            "1\tx\tz\tn\ts",
            "1\tx\ta\tn\tNaN",
            "1\tx",
        ] {
            assert_eq!(Notice::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bus_health_serializes_as_a_status_and_a_reason() {
        let down = BusHealth {
            status: BusStatus::Down,
            reason: Some("NOPERM".into()),
        };
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            r#"{"status":"down","reason":"NOPERM"}"#
        );
        for s in [BusStatus::Starting, BusStatus::Up, BusStatus::Down] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_lets_one_probe_through_after_the_cooldown() {
        let (clock, mock) = Clock::mock();
        let b = Breaker {
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            threshold: 3,
            cooldown: Duration::from_millis(500),
        };
        let err = SharedError::new(ErrorKind::Connection, "refused");
        for _ in 0..2 {
            assert!(b.allow(clock.now()));
            b.failure(clock.now(), &err);
        }
        assert!(b.allow(clock.now()), "two failures: still closed");
        b.failure(clock.now(), &err);
        assert!(!b.allow(clock.now()), "third failure opens it");
        assert!(b.is_open(clock.now()));
        mock.advance(Duration::from_millis(501));
        assert!(b.allow(clock.now()), "one probe after the cool-down");
        assert!(!b.allow(clock.now()), "only one");
        b.success();
        assert!(b.allow(clock.now()) && b.allow(clock.now()), "closed again");
        assert_eq!(b.opens.load(Relaxed), 1);
        b.trip(clock.now(), "test");
        assert!(!b.allow(clock.now()), "tripped at once");
        assert_eq!(b.opens.load(Relaxed), 2);
    }
}
