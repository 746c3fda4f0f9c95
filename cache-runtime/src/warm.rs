//! Warm-up: prime a cached function for a list of arguments
//! before traffic arrives, with bounded parallelism, a report and progress
//! logged through `tracing`.
//!
//! ```
//! use layercache_runtime::try_warm_up_blocking;
//! # fn get_user(id: u64) -> Result<String, String> { Ok(format!("user {id}")) }
//! // `get_user` is a `#[cached]` function; each call loads one entry.
//! let report = try_warm_up_blocking(1..=100u64, 8, get_user);
//! assert_eq!((report.loaded, report.failed), (100, 0));
//! ```

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};

/// The result of a warm-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WarmUpReport {
    /// Calls that succeeded (their entries are now cached).
    pub loaded: u64,
    /// Calls that failed: a panic (caught), or an `Err` with the `try_` variants.
    pub failed: u64,
    /// Wall time of the whole warm-up.
    pub elapsed: Duration,
}

impl fmt::Display for WarmUpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warm-up: {} loaded, {} failed in {:.1?}",
            self.loaded, self.failed, self.elapsed
        )
    }
}

/// Counts outcomes and logs progress about every tenth of the way.
struct Progress {
    total: Option<u64>,
    loaded: AtomicU64,
    failed: AtomicU64,
    started: Instant,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        tracing::info!(total, "layercache: warm-up started");
        Progress {
            total,
            loaded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn record(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.loaded.fetch_add(1, Relaxed);
            }
            Err(err) => {
                self.failed.fetch_add(1, Relaxed);
                tracing::warn!(%err, "layercache: a warm-up call failed");
            }
        }
        let done = self.loaded.load(Relaxed) + self.failed.load(Relaxed);
        let step = self.total.map_or(1000, |t| (t / 10).max(1));
        if done.is_multiple_of(step) {
            tracing::info!(
                done,
                total = self.total,
                failed = self.failed.load(Relaxed),
                "layercache: warm-up progress"
            );
        }
    }

    fn finish(self) -> WarmUpReport {
        let report = WarmUpReport {
            loaded: self.loaded.into_inner(),
            failed: self.failed.into_inner(),
            elapsed: self.started.elapsed(),
        };
        tracing::info!(loaded = report.loaded, failed = report.failed, elapsed = ?report.elapsed, "layercache: warm-up done");
        report
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .map_or_else(
            || "the call panicked".into(),
            |m| format!("the call panicked: {m}"),
        )
}

/// Calls `call` for every item of `items`, at most `parallelism` at a time
/// (at least 1), on the current task. Each call is expected to be (or to
/// call) a cached function, so that its result is stored. A call that
/// panics is counted as failed (the panic is caught); use [`try_warm_up`]
/// to count `Err` results as failures too.
///
/// ```
/// # async fn get_profile(id: u64) -> String { format!("user {id}") }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let report = layercache_runtime::warm_up(1..=50u64, 8, get_profile).await;
/// assert_eq!(report.loaded, 50);
/// # });
/// ```
pub async fn warm_up<I, F, Fut>(items: I, parallelism: usize, call: F) -> WarmUpReport
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: std::future::Future,
{
    run_async(items, parallelism, call, |_| Ok(())).await
}

/// [`warm_up`] for a function returning `Result`: an `Err` counts as
/// failed (and is logged).
pub async fn try_warm_up<I, F, Fut, T, E>(items: I, parallelism: usize, call: F) -> WarmUpReport
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    run_async(items, parallelism, call, |r| {
        r.map(drop).map_err(|e| e.to_string())
    })
    .await
}

async fn run_async<I, F, Fut>(
    items: I,
    parallelism: usize,
    call: F,
    judge: impl Fn(Fut::Output) -> Result<(), String>,
) -> WarmUpReport
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: std::future::Future,
{
    let items = items.into_iter();
    let progress = Progress::new(exact_len(&items));
    let mut calls = futures_util::stream::iter(items)
        .map(|item| AssertUnwindSafe(call(item)).catch_unwind())
        .buffer_unordered(parallelism.max(1));
    while let Some(result) = calls.next().await {
        progress.record(result.map_err(panic_message).and_then(&judge));
    }
    progress.finish()
}

/// [`warm_up`] for sync functions: `parallelism` threads (at least 1) take
/// items in turn.
pub fn warm_up_blocking<I, F, R>(items: I, parallelism: usize, call: F) -> WarmUpReport
where
    I: IntoIterator,
    I::IntoIter: Send,
    I::Item: Send,
    F: Fn(I::Item) -> R + Sync,
{
    run_blocking(items, parallelism, call, |_| Ok(()))
}

/// [`warm_up_blocking`] for a function returning `Result`: an `Err`
/// counts as failed (and is logged).
pub fn try_warm_up_blocking<I, F, T, E>(items: I, parallelism: usize, call: F) -> WarmUpReport
where
    I: IntoIterator,
    I::IntoIter: Send,
    I::Item: Send,
    F: Fn(I::Item) -> Result<T, E> + Sync,
    E: fmt::Display,
{
    run_blocking(items, parallelism, call, |r| {
        r.map(drop).map_err(|e| e.to_string())
    })
}

fn run_blocking<I, F, R>(
    items: I,
    parallelism: usize,
    call: F,
    judge: impl Fn(R) -> Result<(), String> + Sync,
) -> WarmUpReport
where
    I: IntoIterator,
    I::IntoIter: Send,
    I::Item: Send,
    F: Fn(I::Item) -> R + Sync,
{
    let items = items.into_iter();
    let progress = Progress::new(exact_len(&items));
    let items = Mutex::new(items);
    std::thread::scope(|s| {
        for _ in 0..parallelism.max(1) {
            s.spawn(|| loop {
                let next = items.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(item) = next else { break };
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| call(item)));
                progress.record(result.map_err(panic_message).and_then(&judge));
            });
        }
    });
    progress.finish()
}

fn exact_len<I: Iterator>(items: &I) -> Option<u64> {
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo as u64),
        _ => None,
    }
}
