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

use super::*;

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

/// The pipeline for a sync function: local tier, shared tier, `origin`, write-back.
#[inline]
pub fn get_or_compute<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    // Tags are rendered only now, after a local miss: a hit never pays for them.
    let tags = tags(&key);
    compute::<M, K, R>(cache, key, cache_if, &tags, origin)
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
    shared::block_on(miss::<M, K, R, _>(
        cache,
        key,
        cache_if,
        tags,
        Blocking(origin),
    ))
}

/// The pipeline for an `async fn`: local tier, shared tier, `origin.await`, write-back.
pub async fn get_or_compute_async<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl Future<Output = R>,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    let tags = tags(&key);
    miss::<M, K, R, _>(cache, key, cache_if, &tags, Awaited(origin)).await
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
    let (generation, hash, mut rendered) = cache.miss_guard(&key);
    let mut miss = SharedMiss::default();
    if let (Some(sf), Some(r)) = (&cache.shared, rendered.take_if(|_| cache.shared_first())) {
        let found = cache.shared_get::<M::Value>(sf, r).await;
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
            Followed::Lead(leader) => Some(leader),
            Followed::Alone => None,
        },
        Flight::Alone => None,
    };
    if let (Some(sf), Some(rendered)) = (&cache.shared, rendered) {
        let found = cache.shared_get::<M::Value>(sf, rendered).await;
        match cache.settle(key, found, generation, tags) {
            Ok(v) => return M::from_cached(land(leader, v)),
            Err((k, m)) => (key, miss) = (k, m),
        }
    }
    let mut held = None;
    if let (Some(sf), Some(sk)) = (&cache.shared, &miss.key) {
        match cache.lock_or_wait(sf, &key, sk).await {
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
    if M::is_error(&r) && cache.stale.is_some() {
        if let Some(v) = cache.fail_safe(&key).await {
            computation.failed();
            release(held).await;
            return M::from_cached(land(leader, v));
        }
    }
    let stored = computation.finish::<M, R>(key, &r, cache_if, tags, miss.tag);
    if let (Some(sf), Some(sk)) = (&cache.shared, &miss.key) {
        cache.write_shared(sf, sk, stored, generation, tags).await;
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
