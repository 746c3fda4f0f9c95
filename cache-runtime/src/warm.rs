//! Warm-up: prime a cached function for a list of arguments
//! before traffic arrives, with bounded parallelism, a report, and
//! progress logged through `tracing` and given to a callback
//! ([`WarmUp::on_progress`], for a progress bar).
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

/// Where a running warm-up stands: what the [`WarmUp::on_progress`]
/// callback is given, once before the first call and after each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WarmUpProgress {
    /// Calls finished, the failed ones included (never decreases).
    pub done: u64,
    /// Calls that failed (of `done`).
    pub failed: u64,
    /// How many calls there are, when the items' iterator knows its exact
    /// length (a range, a `Vec`); `None` otherwise.
    pub total: Option<u64>,
    /// Time since the warm-up started.
    pub elapsed: Duration,
}

/// The callback of a warm-up without [`WarmUp::on_progress`].
fn no_progress(_: &WarmUpProgress) {}

/// Counts outcomes, reports each to the callback and logs progress about
/// every tenth of the way.
struct Progress<P> {
    total: Option<u64>,
    /// Loaded and failed, updated and reported under one lock so the
    /// callback sees counts in order even when threads finish together.
    counts: Mutex<(u64, u64)>,
    started: Instant,
    report: P,
}

impl<P: Fn(&WarmUpProgress)> Progress<P> {
    fn new(total: Option<u64>, report: P) -> Progress<P> {
        tracing::info!(total, "layercache: warm-up started");
        let progress = Progress {
            total,
            counts: Mutex::new((0, 0)),
            started: Instant::now(),
            report,
        };
        (progress.report)(&progress.snapshot(0, 0));
        progress
    }

    fn snapshot(&self, loaded: u64, failed: u64) -> WarmUpProgress {
        WarmUpProgress {
            done: loaded + failed,
            failed,
            total: self.total,
            elapsed: self.started.elapsed(),
        }
    }

    fn record(&self, outcome: Result<(), String>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => counts.0 += 1,
            Err(err) => {
                counts.1 += 1;
                tracing::warn!(%err, "layercache: a warm-up call failed");
            }
        }
        let now = self.snapshot(counts.0, counts.1);
        (self.report)(&now);
        let step = self.total.map_or(1000, |t| (t / 10).max(1));
        if now.done.is_multiple_of(step) {
            tracing::info!(
                done = now.done,
                total = self.total,
                failed = now.failed,
                "layercache: warm-up progress"
            );
        }
    }

    fn finish(self) -> WarmUpReport {
        let (loaded, failed) = self.counts.into_inner().unwrap_or_else(|e| e.into_inner());
        let report = WarmUpReport {
            loaded,
            failed,
            elapsed: self.started.elapsed(),
        };
        tracing::info!(loaded = report.loaded, failed = report.failed, elapsed = ?report.elapsed, "layercache: warm-up done");
        report
    }
}

/// A warm-up with options: the functions below with a progress callback.
///
/// ```
/// use layercache_runtime::WarmUp;
/// # fn get_user(id: u64) -> Result<String, String> { Ok(format!("user {id}")) }
/// let report = WarmUp::new(1..=300u64, 8)
///     .on_progress(|p| {
///         // e.g. an indicatif bar: bar.set_position(p.done)
///         assert!(p.done <= p.total.unwrap());
///     })
///     .try_run_blocking(get_user);
/// assert_eq!(report.loaded, 300);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a warm-up does nothing until one of its run methods is called"]
pub struct WarmUp<I, P = fn(&WarmUpProgress)> {
    items: I,
    parallelism: usize,
    progress: P,
}

impl<I: IntoIterator> WarmUp<I> {
    /// A warm-up calling the cached function for every item of `items`, at
    /// most `parallelism` (at least 1) calls at a time.
    pub fn new(items: I, parallelism: usize) -> WarmUp<I> {
        WarmUp {
            items,
            parallelism,
            progress: no_progress,
        }
    }
}

impl<I: IntoIterator, P: Fn(&WarmUpProgress)> WarmUp<I, P> {
    /// Calls `progress` before the first call and after every call, one
    /// at a time, with counts that never go back; the last has `done`
    /// equal to the number of items. It runs on the worker that finished
    /// the call, holding the others' reports back: keep it short (setting
    /// a progress bar's position is).
    pub fn on_progress<Q: Fn(&WarmUpProgress)>(self, progress: Q) -> WarmUp<I, Q> {
        WarmUp {
            items: self.items,
            parallelism: self.parallelism,
            progress,
        }
    }

    /// Runs the warm-up on the current task, as [`warm_up`] does.
    pub async fn run<F, Fut>(self, call: F) -> WarmUpReport
    where
        F: Fn(I::Item) -> Fut,
        Fut: std::future::Future,
    {
        self.run_async(call, |_| Ok(())).await
    }

    /// Runs the warm-up on the current task, an `Err` counted as failed, as
    /// [`try_warm_up`] does.
    pub async fn try_run<F, Fut, T, E>(self, call: F) -> WarmUpReport
    where
        F: Fn(I::Item) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        self.run_async(call, |r| r.map(drop).map_err(|e| e.to_string()))
            .await
    }

    /// Runs the warm-up on `parallelism` threads, as [`warm_up_blocking`] does.
    pub fn run_blocking<F, R>(self, call: F) -> WarmUpReport
    where
        I::IntoIter: Send,
        I::Item: Send,
        F: Fn(I::Item) -> R + Sync,
        P: Sync,
    {
        self.run_threads(call, |_| Ok(()))
    }

    /// Runs the warm-up on `parallelism` threads, an `Err` counted as
    /// failed, as [`try_warm_up_blocking`] does.
    pub fn try_run_blocking<F, T, E>(self, call: F) -> WarmUpReport
    where
        I::IntoIter: Send,
        I::Item: Send,
        F: Fn(I::Item) -> Result<T, E> + Sync,
        E: fmt::Display,
        P: Sync,
    {
        self.run_threads(call, |r| r.map(drop).map_err(|e| e.to_string()))
    }

    async fn run_async<F, Fut>(
        self,
        call: F,
        judge: impl Fn(Fut::Output) -> Result<(), String>,
    ) -> WarmUpReport
    where
        F: Fn(I::Item) -> Fut,
        Fut: std::future::Future,
    {
        let items = self.items.into_iter();
        let progress = Progress::new(exact_len(&items), self.progress);
        let mut calls = futures_util::stream::iter(items)
            .map(|item| AssertUnwindSafe(call(item)).catch_unwind())
            .buffer_unordered(self.parallelism.max(1));
        while let Some(result) = calls.next().await {
            progress.record(result.map_err(panic_message).and_then(&judge));
        }
        progress.finish()
    }

    fn run_threads<F, R>(
        self,
        call: F,
        judge: impl Fn(R) -> Result<(), String> + Sync,
    ) -> WarmUpReport
    where
        I::IntoIter: Send,
        I::Item: Send,
        F: Fn(I::Item) -> R + Sync,
        P: Sync,
    {
        let items = self.items.into_iter();
        let progress = Progress::new(exact_len(&items), self.progress);
        let items = Mutex::new(items);
        std::thread::scope(|s| {
            for _ in 0..self.parallelism.max(1) {
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
    WarmUp::new(items, parallelism).run(call).await
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
    WarmUp::new(items, parallelism).try_run(call).await
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
    WarmUp::new(items, parallelism).run_blocking(call)
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
    WarmUp::new(items, parallelism).try_run_blocking(call)
}

fn exact_len<I: Iterator>(items: &I) -> Option<u64> {
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Every progress report of a run, in the order the callback saw them.
    fn recorded(reports: Mutex<Vec<WarmUpProgress>>) -> Vec<WarmUpProgress> {
        reports.into_inner().unwrap()
    }

    /// The reports start at zero, count one call each, never go back, and
    /// end where the report does.
    fn assert_monotonic_to(reports: &[WarmUpProgress], report: &WarmUpReport, total: Option<u64>) {
        assert_eq!(reports.len() as u64, report.loaded + report.failed + 1);
        for (i, p) in reports.iter().enumerate() {
            assert_eq!(p.done, i as u64, "one report per call, in order: {p:?}");
            assert_eq!(p.total, total);
        }
        for pair in reports.windows(2) {
            assert!(pair[1].failed >= pair[0].failed, "{pair:?}");
            assert!(pair[1].elapsed >= pair[0].elapsed, "{pair:?}");
        }
        let last = reports.last().unwrap();
        assert_eq!(
            (last.done, last.failed),
            (report.loaded + report.failed, report.failed)
        );
    }

    #[test]
    fn blocking_progress_reaches_the_total_in_order_and_counts_failures() {
        let reports = Mutex::new(Vec::new());
        let report = WarmUp::new(0..300u64, 4)
            .on_progress(|p| reports.lock().unwrap().push(*p))
            .try_run_blocking(|id| {
                if id == 5 {
                    panic!("a broken loader");
                }
                if id.is_multiple_of(7) {
                    Err(format!("no row {id}"))
                } else {
                    Ok(id)
                }
            });
        assert_eq!(
            (report.loaded, report.failed),
            (256, 44),
            "43 errors and a panic"
        );
        let reports = recorded(reports);
        assert_monotonic_to(&reports, &report, Some(300));
        assert_eq!(reports.last().unwrap().done, 300);
    }

    #[test]
    fn async_progress_reaches_the_total_in_order_and_counts_failures() {
        let reports = Mutex::new(Vec::new());
        let report = pollster::block_on(
            WarmUp::new(vec![1u64, 2, 3, 4, 5, 6], 3)
                .on_progress(|p| reports.lock().unwrap().push(*p))
                .try_run(|id| async move {
                    if id % 2 == 0 {
                        Err("even")
                    } else {
                        Ok(id)
                    }
                }),
        );
        assert_eq!((report.loaded, report.failed), (3, 3));
        assert_monotonic_to(&recorded(reports), &report, Some(6));
    }

    #[test]
    fn progress_without_a_known_length_still_counts_every_call() {
        let reports = Mutex::new(Vec::new());
        let report = WarmUp::new((0..50u64).filter(|n| n % 5 != 0), 2)
            .on_progress(|p| reports.lock().unwrap().push(*p))
            .run_blocking(|n| n * 2);
        assert_eq!((report.loaded, report.failed), (40, 0));
        assert_monotonic_to(&recorded(reports), &report, None);
    }

    #[test]
    fn an_empty_warm_up_reports_once_at_zero_of_zero() {
        let reports = Mutex::new(Vec::new());
        let report = pollster::block_on(
            WarmUp::new(Vec::<u64>::new(), 4)
                .on_progress(|p| reports.lock().unwrap().push(*p))
                .run(|n| async move { n }),
        );
        let reports = recorded(reports);
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].done, reports[0].total), (0, Some(0)));
        assert_eq!(report.loaded, 0);
    }
}
