//! [`Tier`]: the store of this process behind a timeout, a circuit breaker,
//! the outbox and the bus's health.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::exec::{
    caller_runtime, in_block_on, io_runtime, sample_this_op, InRuntime, OP_BUDGET, OP_RUNTIME,
};
use super::outbox;
use super::store::{BoxFuture, BusHandler, SharedStore, RESERVED_PREFIX};
use crate::clock::{Clock, Timestamp};
use crate::config::{Config, SharedSettings};
use crate::error::{ErrorKind, SharedError};
use crate::metrics::{BusHealth, BusStatus, SharedMetrics, TierStats};

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

    /// Whether no failure has opened it: every call may go, and no clock
    /// reading is needed to say so.
    fn is_closed(&self) -> bool {
        self.open_until.load(Relaxed) == 0
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

    /// Where the store is, for logs (no password).
    pub(crate) fn describe(&self) -> String {
        self.store.describe()
    }

    /// Waits up to `budget` for the bus's first answer (up or refused).
    /// Without one the server is taken as down: the breaker opens, so the
    /// first calls skip the store until its probe rather than each wait.
    pub(crate) fn await_bus(&self, budget: Duration) {
        // Real time, not the configured clock: a mock clock never moves here.
        let waited = std::time::Instant::now();
        while !self.bus_answered.load(Relaxed) && waited.elapsed() < budget {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !self.subscribed.load(Relaxed) && !self.bus_refused() {
            // The server did not answer within one timeout, or refused the
            // connection (a refused subscription is an answer: the data path
            // may still work): this call has spent its shared budget, so skip
            // the store until the breaker's probe rather than wait again.
            self.breaker.trip(
                self.clock.now(),
                "the shared tier did not answer at start-up; the breaker's probe will try it again",
            );
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
        // The clock is read only where a reading is used: an open breaker,
        // a sampled latency, a failure.
        if !self.breaker.is_closed() && !self.breaker.allow(self.clock.now()) {
            if let Some(m) = metrics {
                m.record_error(ErrorKind::Skipped);
            }
            return Err(SharedError::new(ErrorKind::Skipped, "circuit breaker open"));
        }
        let started = match metrics {
            Some(_) if sample_this_op() => Some(self.clock.now()),
            _ => None,
        };
        // The operation is built in the caller's context, so a store can
        // pick a connection driven by the caller's own runtime (see
        // `caller_runtime`) and take over the budget (see `take_budget`);
        // otherwise the operation and its timer run in the I/O runtime's
        // context, which always has timers.
        let caller = caller_runtime();
        let on_caller = caller.is_some();
        OP_RUNTIME.with(|o| o.set(caller));
        OP_BUDGET.with(|b| b.set(Some(budget)));
        let mut fut = op(&*self.store);
        OP_RUNTIME.with(|o| o.set(None));
        let bounded_by_store = OP_BUDGET.with(|b| b.take()).is_none();
        let result = match self.done_inline(&mut fut) {
            Some(result) => result,
            None if bounded_by_store => fut.await,
            None => self.timed(on_caller, budget, fut).await,
        };
        match &result {
            Ok(_) => self.breaker.success(),
            Err(e) if e.kind.is_health_failure() => {
                if self.breaker.failure(self.clock.now(), e) && e.kind == ErrorKind::Timeout {
                    // Timeouts, not refusals: the connection may be up but
                    // deaf. Start a fresh one for the probe after the cool-down.
                    self.store.reset();
                }
            }
            Err(_) => {}
        }
        if let Some(m) = metrics {
            if let Some(started) = started {
                m.latency.record(self.clock.now().nanos_since(started));
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

    /// A sync caller's operation that the store did on this thread (see
    /// `in_block_on`), done at its first poll: it was bounded by the
    /// store's own socket timeouts and needs no timer. `None` otherwise.
    fn done_inline<T>(
        &self,
        fut: &mut BoxFuture<'_, Result<T, SharedError>>,
    ) -> Option<Result<T, SharedError>> {
        if !in_block_on() {
            return None;
        }
        let _guard = self.runtime.enter();
        match fut
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }

    /// `fut` cut off after `budget`, on the caller's runtime's timer
    /// (`on_caller`) or the I/O runtime's.
    async fn timed<T>(
        &self,
        on_caller: bool,
        budget: Duration,
        fut: BoxFuture<'_, Result<T, SharedError>>,
    ) -> Result<T, SharedError> {
        let timed = if on_caller {
            // The caller's runtime has timers (checked): keep the timer with
            // the connection, so no other thread is woken per operation.
            tokio::time::timeout(budget, fut)
        } else {
            let _guard = self.runtime.enter();
            tokio::time::timeout(budget, fut)
        };
        if on_caller {
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
        })
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

    /// Whether the store can slide an entry's expiry (see [`SharedStore::can_touch`]).
    pub(crate) fn can_touch(&self) -> bool {
        self.store.can_touch()
    }

    /// Whether the store can delete by prefix (see [`SharedStore::can_delete_prefix`]).
    pub(crate) fn can_delete_prefix(&self) -> bool {
        self.store.can_delete_prefix()
    }

    /// Publishes `notice` (best effort, bounded by the timeout).
    pub(crate) async fn publish(&self, notice: &str) -> Result<(), SharedError> {
        self.call(None, self.timeout(), |s| s.publish(notice)).await
    }

    /// Zeroes the counters [`Tier::stats`] reports (`layercache::reset_stats`).
    pub(crate) fn reset_counters(&self) {
        for counter in [
            &self.breaker.opens,
            &self.notices_received,
            &self.resubscriptions,
        ] {
            counter.store(0, Relaxed);
        }
        self.outbox.reset_counters();
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
    pub(crate) fn start_outbox<F>(
        &'static self,
        replay: impl Fn(&'static Tier, outbox::Pending) -> F + Send + 'static,
    ) where
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
        replay: impl Fn(&'static Tier, outbox::Pending) -> F,
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

#[cfg(test)]
mod tests {
    use super::*;

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
