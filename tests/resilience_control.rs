//! Issue 19's resilience and control options, in one process with an
//! injected clock: `stale_throttle` (a failing origin asked once per
//! period) and `timeout_by` (a lifetime per value). Across processes and
//! in the shared tier: `redis_fleet`.

#[path = "support/mock_runtime.rs"]
mod mock_runtime;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use layercache::{cached, entry};
use mock_runtime::clock;

static FAILING: AtomicBool = AtomicBool::new(false);
static THROTTLED_RUNS: AtomicU32 = AtomicU32::new(0);
static DEFAULT_RUNS: AtomicU32 = AtomicU32::new(0);

fn origin(runs: &AtomicU32) -> Result<u32, String> {
    let n = runs.fetch_add(1, SeqCst) + 1;
    if FAILING.load(SeqCst) {
        Err(format!("down (run {n})"))
    } else {
        Ok(n)
    }
}

#[cached(timeout = 1, stale_if_error = 600, stale_throttle = 2)]
fn throttled(id: u32) -> Result<u32, String> {
    let _ = id;
    origin(&THROTTLED_RUNS)
}

#[cached(timeout = 1, stale_if_error = 600)]
fn default_throttle(id: u32) -> Result<u32, String> {
    let _ = id;
    origin(&DEFAULT_RUNS)
}

fn ttl_by_parity(v: &u32) -> Duration {
    if v.is_multiple_of(2) {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(500)
    }
}

static CAPPED_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(timeout = 100, timeout_by = ttl_by_parity)]
fn capped(id: u32) -> u32 {
    CAPPED_RUNS.fetch_add(1, SeqCst);
    id
}

static UNCAPPED_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(timeout_by = |v: &u64| Duration::from_secs(*v))]
fn uncapped(secs: u64) -> u64 {
    UNCAPPED_RUNS.fetch_add(1, SeqCst);
    secs
}

static REPORT_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(timeout = 300, key = "{id}", force_refresh = fresh)]
fn report(id: u32, fresh: bool) -> u32 {
    let _ = fresh;
    id * 100 + REPORT_RUNS.fetch_add(1, SeqCst) + 1
}

static REFRESH_ALL: AtomicBool = AtomicBool::new(false);
fn refresh_all() -> bool {
    REFRESH_ALL.load(SeqCst)
}

static PRICE_RUNS: AtomicU32 = AtomicU32::new(0);
#[cached(timeout = 300, force_refresh = refresh_all)]
async fn price(id: u32) -> Option<u32> {
    Some(id * 100 + PRICE_RUNS.fetch_add(1, SeqCst) + 1)
}

// One test: the clock is shared by the whole process, so the steps run in order.
#[test]
fn a_failing_origin_is_asked_once_per_throttle_period_and_values_live_as_timeout_by_says() {
    let mock = clock();

    // ---- stale_throttle
    assert_eq!(throttled(1), Ok(1));
    assert_eq!(default_throttle(1), Ok(1));
    FAILING.store(true, SeqCst);
    mock.advance(Duration::from_secs(1)); // both expired: stale from now on
    let step = Duration::from_millis(100);
    for _ in 0..100 {
        mock.advance(step);
        assert_eq!(throttled(1), Ok(1), "the stale value answers every call");
        assert_eq!(default_throttle(1), Ok(1));
    }
    // 10 s of calls every 100 ms from t = 1.1 s: the origin ran at 1.1, 3.1,
    // 5.1, 7.1 and 9.1 s with a 2 s throttle; once with the default 30 s.
    assert_eq!(THROTTLED_RUNS.load(SeqCst) - 1, 5, "once per 2 s period");
    assert_eq!(DEFAULT_RUNS.load(SeqCst) - 1, 1, "once per default 30 s");
    let stats = layercache::stats();
    let f = stats.function("throttled").or_else(|| {
        stats
            .functions
            .iter()
            .find(|f| f.name.ends_with("::throttled"))
    });
    assert!(f.expect("throttled's stats").stale_hits >= 100);

    // The origin recovers: the next call after the period stores a fresh value.
    FAILING.store(false, SeqCst);
    mock.advance(Duration::from_secs(2));
    assert_eq!(
        throttled(1),
        Ok(7),
        "the origin runs once the period is over"
    );
    assert_eq!(throttled(1), Ok(7), "and its value is cached");

    // An invalidation during a throttle removes the stale value: the
    // failing origin is asked, and its error returned (no stale value).
    FAILING.store(true, SeqCst);
    mock.advance(Duration::from_secs(1));
    assert_eq!(throttled(1), Ok(7), "stale, throttled");
    assert!(entry!(throttled(1)).invalidate());
    assert!(throttled(1).is_err(), "nothing stale is left to serve");

    // ---- timeout_by, capped by timeout
    assert_eq!((capped(2), capped(3)), (2, 3));
    mock.advance(Duration::from_secs(5));
    capped(2);
    capped(3);
    assert_eq!(CAPPED_RUNS.load(SeqCst), 3, "2 lives 5 s, 3 longer");
    mock.advance(Duration::from_secs(95));
    capped(3);
    assert_eq!(
        CAPPED_RUNS.load(SeqCst),
        4,
        "500 s capped at timeout = 100 s"
    );

    // ---- timeout_by without timeout: not capped by the default (30 s)
    uncapped(60);
    uncapped(10);
    mock.advance(Duration::from_secs(45));
    uncapped(60);
    assert_eq!(UNCAPPED_RUNS.load(SeqCst), 2, "60 s > the 30 s default");
    uncapped(10);
    assert_eq!(UNCAPPED_RUNS.load(SeqCst), 3);
    mock.advance(Duration::from_secs(15));
    uncapped(60);
    assert_eq!(UNCAPPED_RUNS.load(SeqCst), 4);

    // ---- force_refresh: the function runs and its value replaces the entry
    assert_eq!(report(1, false), 101);
    assert_eq!(report(1, false), 101, "cached");
    assert_eq!(report(1, true), 102, "forced: runs again");
    assert_eq!(
        report(1, false),
        102,
        "and the forced value is the cached one"
    );
    assert_eq!(REPORT_RUNS.load(SeqCst), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(price(1)), Some(101));
    assert_eq!(rt.block_on(price(1)), Some(101));
    REFRESH_ALL.store(true, SeqCst);
    assert_eq!(
        rt.block_on(price(1)),
        Some(102),
        "a function as the condition"
    );
    REFRESH_ALL.store(false, SeqCst);
    assert_eq!(rt.block_on(price(1)), Some(102));
}
