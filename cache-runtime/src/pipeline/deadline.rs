//! Factory timeouts (FusionCache's): `soft_timeout_ms` and
//! `hard_timeout_ms`.
//!
//! After a local miss, the whole miss pipeline (flight, shared tier, lock,
//! origin, write-back in both tiers) runs in the background, and the caller
//! waits for it:
//!
//! - past the **soft** timeout, if a stale value is available (within
//!   `stale_if_error`), the caller takes it;
//! - past the **hard** timeout, the caller takes a stale value if there is
//!   one, or else the function's `Err(OriginTimeout.into())`.
//!
//! Either way the pipeline goes on: its value is stored in both tiers when
//! the origin answers, so the next caller (in any process) finds it. This
//! is why such a function's arguments must be owned and its body `Send +
//! 'static` (the macro checks it): the body outlives the call.
//!
//! A sync function's pipeline runs on a thread of its own (a panic in it
//! reaches the caller when the caller is still waiting); an async one's is
//! a task on the caller's tokio runtime, or on layercache's I/O runtime
//! when the caller is not on one.

use std::future::Future;
use std::time::Duration;

use super::miss::{compute, miss, Awaited};
use super::{FnCache, Key, OutputMode};
use crate::value::CacheValue;

/// A function's factory timeouts, as generated code passes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadlines {
    /// Past it, a stale value answers (`soft_timeout_ms`).
    pub soft: Option<Duration>,
    /// Past it, the call stops waiting (`hard_timeout_ms`).
    pub hard: Option<Duration>,
}

/// The error a function with `hard_timeout_ms` returns when its origin has
/// not answered in time and no stale value is available: its error type
/// must implement `From<OriginTimeout>`.
///
/// With `#[cached(timeout = 60, hard_timeout_ms = 2000)]` on a
/// `fn rate(pair: String) -> Result<f64, ApiError>`:
///
/// ```
/// use layercache_runtime::OriginTimeout;
///
/// #[derive(Debug, Clone)]
/// enum ApiError {
///     Timeout(OriginTimeout),
///     Status(u16),
/// }
///
/// impl From<OriginTimeout> for ApiError {
///     fn from(t: OriginTimeout) -> Self {
///         ApiError::Timeout(t)
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cached function `{function}` did not answer within {after:?} (hard_timeout_ms)")]
pub struct OriginTimeout {
    /// The function's cache name.
    pub function: &'static str,
    /// The hard timeout that passed.
    pub after: Duration,
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// A stale value, counted, if one is within `stale_if_error`: the
    /// answer once `deadline` ("soft" or "hard") has passed.
    async fn stale_after(&self, key: &K, deadline: &'static str) -> Option<V> {
        let v = self.stale_value(key).await?;
        self.metrics.record_stale_hit();
        tracing::debug!(
            name = self.name(),
            deadline,
            "layercache: the function is slow; serving a stale value while it finishes"
        );
        Some(v)
    }

    /// The hard deadline passed with no stale value.
    fn timed_out<R>(&'static self, after: Duration, on_timeout: fn(OriginTimeout) -> R) -> R {
        tracing::warn!(name = self.name(), ?after, "layercache: the function did not answer within hard_timeout_ms; it goes on in the background");
        on_timeout(OriginTimeout {
            function: self.name(),
            after,
        })
    }
}

/// A panic of the background pipeline, to resume in a caller still waiting.
type Panic = Box<dyn std::any::Any + Send>;

/// The pipeline of a sync function with factory timeouts: the miss runs on
/// a thread of its own while the caller waits at most as `deadlines` say.
#[allow(clippy::too_many_arguments)] // what generated code passes, in one call
pub fn get_or_compute_bounded<M, K, R>(
    cache: &'static FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    deadlines: Deadlines,
    on_timeout: fn(OriginTimeout) -> R,
    origin: impl FnOnce() -> R + Send + 'static,
) -> R
where
    M: OutputMode<R> + 'static,
    M::Value: CacheValue,
    K: Key,
    R: Send + 'static,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    let tags = tags(&key);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<R, Panic>>(1);
    // The job sits where the caller can take it back if no thread starts.
    let job = std::sync::Arc::new(std::sync::Mutex::new(Some((key.clone(), tags, origin))));
    let run = {
        let job = job.clone();
        move || {
            let taken = job.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((key, tags, origin)) = taken {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compute::<M, K, R>(cache, key, cache_if, &tags, origin)
                }));
                if r.is_err() {
                    cache.metrics.record_origin_panic();
                }
                let _ = tx.send(r);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("layercache-origin".into())
        .spawn(run)
    {
        tracing::warn!(name = cache.name(), error = %e, "layercache: no thread for the function's deadlines; it runs on the caller's, without them");
        let (key, tags, origin) = job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("no thread took the job");
        return compute::<M, K, R>(cache, key, cache_if, &tags, origin);
    }
    let answer = |r: Result<R, Panic>| r.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let started = std::time::Instant::now();
    for (deadline, which) in [(deadlines.soft, "soft"), (deadlines.hard, "hard")] {
        let Some(deadline) = deadline else { continue };
        match rx.recv_timeout(deadline.saturating_sub(started.elapsed())) {
            Ok(r) => return answer(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(v) = crate::shared::block_on(cache.stale_after(&key, which)) {
            return M::from_cached(v);
        }
        if which == "hard" {
            return cache.timed_out(deadline, on_timeout);
        }
    }
    match rx.recv() {
        Ok(r) => answer(r),
        Err(_) => unreachable!("the origin thread ended without an answer"),
    }
}

/// [`get_or_compute_bounded`] for an `async fn`: the miss is a task on the
/// caller's tokio runtime (or layercache's I/O runtime off one).
#[allow(clippy::too_many_arguments)] // what generated code passes, in one call
pub async fn get_or_compute_async_bounded<M, K, R>(
    cache: &'static FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    deadlines: Deadlines,
    on_timeout: fn(OriginTimeout) -> R,
    origin: impl Future<Output = R> + Send + 'static,
) -> R
where
    M: OutputMode<R> + 'static,
    M::Value: CacheValue,
    K: Key,
    R: Send + 'static,
{
    if let Some(v) = cache.local_get(&key, Some) {
        return M::from_cached(v);
    }
    let tags = tags(&key);
    let handle = tokio::runtime::Handle::try_current()
        .unwrap_or_else(|_| crate::shared::io_runtime().clone());
    let background_key = key.clone();
    let mut task = handle.spawn(async move {
        miss::<M, K, R, _>(cache, background_key, cache_if, &tags, Awaited(origin)).await
    });
    let answer = |r: Result<R, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            cache.metrics.record_origin_panic();
            std::panic::resume_unwind(e.into_panic())
        }
        Err(e) => panic!("layercache: the function's task was cancelled: {e}"),
    };
    let started = tokio::time::Instant::now();
    for (deadline, which) in [(deadlines.soft, "soft"), (deadlines.hard, "hard")] {
        let Some(deadline) = deadline else { continue };
        // Made inside the runtime's context, so its time driver fires it
        // whatever executor polls this call.
        let sleep = {
            let _in = handle.enter();
            tokio::time::sleep_until(started + deadline)
        };
        match futures_util::future::select(&mut task, std::pin::pin!(sleep)).await {
            futures_util::future::Either::Left((r, _)) => return answer(r),
            futures_util::future::Either::Right(((), _)) => {}
        }
        if let Some(v) = cache.stale_after(&key, which).await {
            return M::from_cached(v);
        }
        if which == "hard" {
            return cache.timed_out(deadline, on_timeout);
        }
    }
    answer(task.await)
}
