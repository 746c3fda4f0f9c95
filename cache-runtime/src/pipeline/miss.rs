//! Steps 2 to 5 of the pipeline, written once as async code: the flight,
//! the shared tier, the origin and the write-back.
//!
//! A sync call drives the same future on its own thread with
//! [`shared::block_on`]: without a shared tier nothing in it waits, so it
//! is ready at its first poll and no executor or parking is involved; with
//! one, the call blocks once for the whole miss instead of once per shared
//! operation. The two kinds of call differ only in how the origin runs and
//! how a follower waits (see [`Origin`]).

use std::future::Future;
use std::time::Duration;

use super::local::Generation;
use super::policy::min_ttl;
use super::shared_link::{Rendered, SharedMiss};
use super::strategies::Locked;
use super::{FnCache, Key, OutputMode, Value};
use crate::clock::Timestamp;
use crate::flight::{self, Flights, Followed, Join, Leader};
use crate::key::KeyError;
use crate::shared;
use crate::value::CacheValue;

/// How a call runs its origin and waits for another caller's computation:
/// the only differences between a sync and an async miss.
pub(crate) trait Origin<R> {
    /// Runs the origin as part of the flight `led` (see
    /// [`flight::run_led`]), inside `span`.
    fn run(self, led: Option<u64>, span: &tracing::Span) -> impl Future<Output = R>;

    /// Waits for the flight `f` to land, or to be handed to this caller.
    fn follow<'a, K: Key, V: Value>(
        flights: &'a Flights<K, V>,
        f: &crate::flight::Flight<V>,
    ) -> impl Future<Output = Followed<'a, K, V>>;
}

/// A sync function body: it runs on the caller's thread, inside the poll
/// that reaches it (so a panic unwinds through the caller as if there were
/// no cache), and a follower blocks the thread, as any sync call does.
pub(crate) struct Blocking<F>(pub(crate) F);

impl<R, F: FnOnce() -> R> Origin<R> for Blocking<F> {
    fn run(self, led: Option<u64>, span: &tracing::Span) -> impl Future<Output = R> {
        std::future::ready(span.in_scope(|| flight::run_led(led, self.0)))
    }

    fn follow<'a, K: Key, V: Value>(
        flights: &'a Flights<K, V>,
        f: &crate::flight::Flight<V>,
    ) -> impl Future<Output = Followed<'a, K, V>> {
        std::future::ready(flights.follow(f))
    }
}

/// An `async fn` body: awaited in the caller's task.
pub(crate) struct Awaited<Fut>(pub(crate) Fut);

impl<Fut: Future> Origin<Fut::Output> for Awaited<Fut> {
    fn run(self, led: Option<u64>, span: &tracing::Span) -> impl Future<Output = Fut::Output> {
        tracing::Instrument::instrument(flight::run_led_async(led, self.0), span.clone())
    }

    fn follow<'a, K: Key, V: Value>(
        flights: &'a Flights<K, V>,
        f: &crate::flight::Flight<V>,
    ) -> impl Future<Output = Followed<'a, K, V>> {
        flights.follow_async(f)
    }
}

/// A sync call's miss: [`miss`] driven on the caller's thread.
#[inline(never)]
pub(crate) fn compute<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: &[String],
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    // Pinned where it is built: moving the future (sized for the shared
    // tier's steps) into `block_on` would copy it on every miss.
    let mut miss = std::pin::pin!(miss::<M, K, R, _>(
        cache,
        key,
        cache_if,
        tags,
        Blocking(origin),
    ));
    if cache.shared.is_none() {
        // Nothing in a local-only miss waits: it completes in this poll,
        // without `block_on`'s bookkeeping (which keeps store connections
        // off the caller's runtime, and there is no store here).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(r) = miss.as_mut().poll(&mut cx) {
            return r;
        }
    }
    shared::block_on(miss)
}

/// Steps 2 to 5 after a local miss.
pub(crate) async fn miss<M, K, R, O>(
    cache: &FnCache<K, M::Value>,
    mut key: K,
    cache_if: fn(&R) -> bool,
    tags: &[String],
    origin: O,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
    O: Origin<R>,
{
    let (mut generation, hash, mut rendered) = cache.noted_miss(&key);
    let mut miss = SharedMiss::default();
    if let (Some(link), Some(r)) = (&cache.shared, rendered.take_if(|_| cache.shared_first())) {
        let found = cache.shared_get::<M::Value>(link, r).await;
        match cache.settle(key, found, generation, tags) {
            Ok(v) => return M::from_cached(v),
            Err((k, m)) => (key, miss) = (k, m),
        }
    }
    let leader = match cache.join_flight(&key, hash) {
        Flight::Lead(leader) => Some(leader),
        Flight::Answered(v) => return M::from_cached(v),
        Flight::Follow(f) => match O::follow(&cache.flights, &f).await {
            Followed::Value(v) => return M::from_cached(cache.coalesced(v)),
            Followed::Lead(leader) => {
                // Taking over computes from now, having read nothing yet: an
                // invalidation while it waited (what may have voided the
                // leader's value) must not void this computation too.
                generation = cache.local.generation(hash);
                Some(leader)
            }
            Followed::Alone => None,
        },
        Flight::Alone => None,
    };
    if let (Some(link), Some(rendered)) = (&cache.shared, rendered) {
        let found = cache.shared_get::<M::Value>(link, rendered).await;
        match cache.settle(key, found, generation, tags) {
            Ok(v) => return M::from_cached(land(leader, v)),
            Err((k, m)) => (key, miss) = (k, m),
        }
    }
    // A key whose origin just failed takes its stale value (stale_throttle).
    if let Some(v) = cache.throttled(&key).await {
        return M::from_cached(land(leader, v));
    }
    let mut held = None;
    if let (Some(link), Some(sk)) = (&cache.shared, &miss.key) {
        match cache.lock_or_wait(link, &key, sk, None).await {
            Locked::Held(lock) => held = Some(lock),
            Locked::Found(hit) => {
                return M::from_cached(land(leader, cache.settle_hit(key, hit, generation, tags)))
            }
            Locked::Proceed => {}
        }
    }
    cache.metrics.record_miss();
    let computation = cache.begin(generation);
    let span = OriginSpan::new(cache.name());
    let led = leader.as_ref().map(Leader::id);
    let r = origin.run(led, &span.span).await;
    span.returned::<M, R>(&r);
    if M::is_error(&r) && cache.policy.stale.is_some() {
        if let Some(v) = cache.fail_safe(&key).await {
            cache.throttle(&key);
            computation.failed();
            release(held).await;
            return M::from_cached(land(leader, v));
        }
    }
    if !M::is_error(&r) {
        cache.unthrottle(&key);
    }
    let stored = computation.finish::<M, R>(key, &r, cache_if, tags, miss.tag);
    if let (Some(link), Some(sk)) = (&cache.shared, &miss.key) {
        cache.write_shared(link, sk, stored, generation, tags).await;
        release(held).await;
    }
    cache.land_computed(leader, stored, generation);
    r
}

/// Releases the shared lock, if this call holds one.
pub(crate) async fn release(held: Option<shared::HeldLock>) {
    if let Some(lock) = held {
        lock.release().await;
    }
}

/// The `layercache.origin` span of one origin call (a miss), named after
/// the function, with the call's `outcome` recorded when it ends:
///
/// - `"ok"`: a value to cache (`Ok`, `Some`, any plain value);
/// - `"err"`: an `Err` (for the view cache: a response that may not be
///   stored, which the layer hands back to the client untouched);
/// - `"none"`: a `None` (cached only with `cache_none = true`);
/// - `"panic"`: a sync function panicked (the span ends while unwinding);
/// - `"cancelled"`: an async call's future was dropped before it returned,
///   which is also how a panic in it ends once the executor has caught it.
struct OriginSpan {
    span: tracing::Span,
    recorded: bool,
}

impl OriginSpan {
    #[inline]
    fn new(function: &str) -> OriginSpan {
        OriginSpan {
            span: tracing::debug_span!(
                "layercache.origin",
                function,
                outcome = tracing::field::Empty
            ),
            recorded: false,
        }
    }

    /// The origin returned `r`: records the outcome and ends the span
    /// (the write-back that follows is not the origin's time).
    #[inline]
    fn returned<M: OutputMode<R>, R>(mut self, r: &R) {
        let outcome = if M::is_error(r) {
            "err"
        } else {
            match M::cacheable(r) {
                Some(v) if !M::is_negative(v) => "ok",
                _ => "none",
            }
        };
        self.span.record("outcome", outcome);
        self.recorded = true;
    }
}

impl Drop for OriginSpan {
    fn drop(&mut self) {
        if !self.recorded {
            let outcome = if std::thread::panicking() {
                "panic"
            } else {
                "cancelled"
            };
            self.span.record("outcome", outcome);
        }
    }
}

/// One run of the origin: started after a miss.
///
/// Dropped without [`Computation::finish`] while unwinding, it counts a
/// panic of the origin; dropped otherwise (a cancelled async call) it counts
/// nothing.
pub(super) struct Computation<'a, K, V> {
    cache: &'a FnCache<K, V>,
    generation: Generation,
    started: Timestamp,
}

impl<K, V> Drop for Computation<'_, K, V> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cache.metrics.record_origin_panic();
        }
    }
}

/// Step 2's outcome for a caller that missed the local tier.
pub(super) enum Flight<'a, K: Key, V: Value> {
    /// Look further and compute; land the leader when done.
    Lead(Leader<'a, K, V>),
    /// A flight landed between the miss and the join: its value (a hit).
    Answered(V),
    /// Wait for another caller's computation.
    Follow(std::sync::Arc<crate::flight::Flight<V>>),
    /// Compute without a flight (caching off, or the flight's own leader).
    Alone,
}

/// Lands a leader (if any) with a value found in the shared tier.
pub(super) fn land<K: Key, V: Value>(leader: Option<Leader<'_, K, V>>, v: V) -> V {
    if let Some(leader) = leader {
        leader.land(|| Some(v.clone()));
    }
    v
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// After a local miss: the call's generation and, for a function with a
    /// shared tier, its rendered key (rendered once: it picks the generation
    /// slot and is the shared key).
    pub(super) fn noted_miss(
        &self,
        key: &K,
    ) -> (Generation, u64, Option<Result<Rendered, KeyError>>) {
        match &self.shared {
            Some(_) => {
                let rendered = self.rendered(key);
                let hash = rendered.as_ref().map_or(0, Rendered::tag);
                (self.local.generation(hash), hash, Some(rendered))
            }
            None => {
                let hash = self.key_hash(key);
                (self.local.generation(hash), hash, None)
            }
        }
    }

    /// Step 3's outcome: on a hit, the value (kept locally for the rest of
    /// its life); on a miss, the key back and what the write-back needs.
    pub(super) fn settle(
        &self,
        key: K,
        found: Result<(V, Option<Duration>, u64), SharedMiss>,
        generation: Generation,
        tags: &[String],
    ) -> Result<V, (K, SharedMiss)> {
        match found {
            Ok(hit) => Ok(self.settle_hit(key, hit, generation, tags)),
            Err(miss) => Err((key, miss)),
        }
    }

    /// A shared hit: keep it locally for the rest of its life.
    pub(super) fn settle_hit(
        &self,
        key: K,
        (v, remaining, tag): (V, Option<Duration>, u64),
        generation: Generation,
        tags: &[String],
    ) -> V {
        self.index_tags(&key, tags);
        self.backfill(key, || v.clone(), remaining, generation, tag);
        v
    }

    /// Step 4 begins: note the generation (the write-back checks it) and the time.
    pub(super) fn begin(&self, generation: Generation) -> Computation<'_, K, V> {
        Computation {
            cache: self,
            generation,
            started: self.local.clock.now(),
        }
    }

    /// Step 2: lead the key's computation, or follow the one in progress.
    pub(super) fn join_flight(&self, key: &K, hash: u64) -> Flight<'_, K, V> {
        if !self.enabled {
            return Flight::Alone;
        }
        match self.flights.join(key, hash) {
            Join::Lead(leader) => {
                // A flight may have landed (and written back) between this
                // caller's miss and its join: look again before computing.
                match self.local_lookup(key, Some, false) {
                    Some(v) => {
                        leader.land(|| Some(v.clone()));
                        Flight::Answered(v)
                    }
                    None => Flight::Lead(leader),
                }
            }
            Join::Follow(flight) => Flight::Follow(flight),
            Join::Alone => Flight::Alone,
        }
    }

    /// Step 2 for code outside a `#[cached]` call (the manual cache's
    /// get-or-insert): `Ok` to compute (landing the leader, if any, with
    /// the value), `Err` with the value another caller computed. Blocks
    /// while another caller computes.
    pub(crate) fn flight_or_value(&self, key: &K) -> Result<Option<Leader<'_, K, V>>, V> {
        match self.join_flight(key, self.key_hash(key)) {
            Flight::Lead(leader) => Ok(Some(leader)),
            Flight::Answered(v) => Err(v),
            Flight::Follow(f) => match self.flights.follow(&f) {
                Followed::Value(v) => Err(self.coalesced(v)),
                Followed::Lead(leader) => Ok(Some(leader)),
                Followed::Alone => Ok(None),
            },
            Flight::Alone => Ok(None),
        }
    }

    /// [`FnCache::flight_or_value`] for async code.
    pub(crate) async fn flight_or_value_async(
        &self,
        key: &K,
    ) -> Result<Option<Leader<'_, K, V>>, V> {
        match self.join_flight(key, self.key_hash(key)) {
            Flight::Lead(leader) => Ok(Some(leader)),
            Flight::Answered(v) => Err(v),
            Flight::Follow(f) => match self.flights.follow_async(&f).await {
                Followed::Value(v) => Err(self.coalesced(v)),
                Followed::Lead(leader) => Ok(Some(leader)),
                Followed::Alone => Ok(None),
            },
            Flight::Alone => Ok(None),
        }
    }

    /// Whether the shared tier is asked before joining a flight: for
    /// `tier = "shared"`, where every call asks the shared tier anyway, a
    /// hit then costs no flight bookkeeping; concurrent misses still share
    /// one computation.
    pub(super) fn shared_first(&self) -> bool {
        !self.local.on
    }

    /// A follower answered by the leader's value.
    pub(super) fn coalesced(&self, v: V) -> V {
        self.metrics.record_coalesced();
        v
    }

    /// Ends a computation's flight: followers share the stored value,
    /// unless an invalidation raced it (then they compute themselves).
    pub(super) fn land_computed(
        &self,
        leader: Option<Leader<'_, K, V>>,
        stored: Option<(&V, Option<Duration>)>,
        generation: Generation,
    ) {
        let Some(leader) = leader else { return };
        match stored {
            // An invalidation came while it ran: the value may predate it,
            // so no follower may take it. Ending the flight empty would send
            // every follower to the origin at once; handing it over lets one
            // of them compute again for the rest.
            Some(_) if !self.local.is_current(generation) => leader.hand_over(),
            _ => leader.land(|| stored.map(|(v, _)| v.clone())),
        }
    }
}

impl<K: Key, V: CacheValue> Computation<'_, K, V> {
    /// Step 5 when a stale value stands in for a failed call: the origin's
    /// latency is recorded, nothing is stored.
    pub(super) fn failed(self) {
        self.record_origin();
        self.cache.metrics.record_not_cached();
    }

    /// The origin's latency, in the stats (and the `metrics` facade).
    fn record_origin(&self) {
        let cache = self.cache;
        let nanos = cache.local.clock.now().nanos_since(self.started);
        cache.controls.note_origin(nanos);
        if cache.metrics.enabled() {
            cache.metrics.origin_latency.record(nanos);
        }
        #[cfg(feature = "metrics")]
        crate::metrics::origin_duration_to_facade(cache.name(), nanos);
    }

    /// Step 5: record the origin's latency and write the result back
    /// locally if it is cacheable; returns the value for the shared write.
    pub(super) fn finish<'r, M: OutputMode<R, Value = V>, R>(
        self,
        key: K,
        r: &'r R,
        cache_if: fn(&R) -> bool,
        tags: &[String],
        tag: u64,
    ) -> Option<(&'r V, Option<Duration>)> {
        self.record_origin();
        let cache = self.cache;
        // `cache_if` vetoes storing a result (the guide's response filter).
        match M::cacheable(r).filter(|_| cache_if(r)) {
            Some(v) => {
                let default = cache.policy.entry_ttl(M::is_negative(v));
                let ttl = min_ttl(cache.controls.ttl_of(v, default), M::lifetime(v));
                let local_ttl = min_ttl(ttl, cache.policy.local_cap);
                cache.index_tags(&key, tags);
                if cache.local.on {
                    // No copy of a value that no local tier keeps (it may be huge).
                    cache.write_back_with_timeout(key, v.clone(), self.generation, local_ttl, tag);
                }
                Some((v, ttl))
            }
            None => {
                if cache.enabled {
                    cache.metrics.record_not_cached();
                }
                None
            }
        }
    }
}
