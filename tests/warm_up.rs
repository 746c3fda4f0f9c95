//! Warm-up (guide 4.3): priming a cached function for many arguments with
//! bounded parallelism, a report, and failures counted rather than fatal.
//! In-process configuration; the two-process case is in `redis_fleet.rs`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use layercache::{cached, fn_cache, try_warm_up, warm_up_blocking};

/// Tracks how many calls run at once.
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    const fn new() -> Gauge {
        Gauge {
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        }
    }
    fn enter(&self) {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
}

static ASYNC_GAUGE: Gauge = Gauge::new();
static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300, key_prefix = "warm_async")]
async fn profile(id: u64) -> Result<String, String> {
    ASYNC_GAUGE.enter();
    ASYNC_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    ASYNC_GAUGE.leave();
    if id.is_multiple_of(10) {
        Err(format!("no profile {id}"))
    } else {
        Ok(format!("user {id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_warm_up_loads_every_entry_at_most_n_at_a_time_and_counts_failures() {
    let report = try_warm_up(0..200u64, 8, |id| async move {
        if id == 7 {
            panic!("a broken loader for {id}");
        }
        profile(id).await
    })
    .await;
    assert_eq!(report.failed, 20 + 1, "20 errors and one panic: {report}");
    assert_eq!(report.loaded, 179, "{report}");
    let max = ASYNC_GAUGE.max.load(SeqCst);
    assert!(max <= 8, "parallelism bound: {max}");
    assert!(max >= 2, "calls overlapped: {max}");
    let runs = ASYNC_RUNS.load(SeqCst);
    for id in (1..200u64).filter(|id| !id.is_multiple_of(10) && *id != 7) {
        assert_eq!(profile(id).await, Ok(format!("user {id}")));
    }
    assert_eq!(
        ASYNC_RUNS.load(SeqCst),
        runs,
        "every loaded entry is a hit now"
    );
    assert_eq!(fn_cache!(profile).len(), 179);
}

static SYNC_GAUGE: Gauge = Gauge::new();

#[cached(timeout = 300, key_prefix = "warm_sync")]
fn product(id: u64) -> u64 {
    SYNC_GAUGE.enter();
    std::thread::sleep(Duration::from_millis(2));
    SYNC_GAUGE.leave();
    id * 3
}

#[test]
fn blocking_warm_up_runs_on_n_threads_and_reports() {
    let report = warm_up_blocking(0..100u64, 4, product);
    assert_eq!((report.loaded, report.failed), (100, 0));
    assert!(report.elapsed > Duration::ZERO);
    let max = SYNC_GAUGE.max.load(SeqCst);
    assert!(
        (2..=4).contains(&max),
        "4 threads at most, overlapping: {max}"
    );
    assert_eq!(fn_cache!(product).len(), 100);
    assert!(report
        .to_string()
        .starts_with("warm-up: 100 loaded, 0 failed in"));
}
