//! Factory timeouts (`soft_timeout_ms`, `hard_timeout_ms`), sync and async:
//! a slow origin answered by a stale value or by `Err(OriginTimeout)`, and
//! finishing in the background to store its value. Real time, in tens of
//! milliseconds: the origins sleep 600 ms; each bound asserted is the
//! deadline's distance from that. Across processes: `redis_fleet`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use layercache::{cached, OriginTimeout};

#[derive(Debug, Clone, PartialEq)]
enum ApiError {
    Timeout(Duration),
}

impl From<OriginTimeout> for ApiError {
    fn from(t: OriginTimeout) -> Self {
        ApiError::Timeout(t.after)
    }
}

const SLOW: Duration = Duration::from_millis(600);

/// Calls `f` every 10 ms until it returns `true`, for at most 3 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(3), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

static HARD_RUNS: AtomicU64 = AtomicU64::new(0);
#[cached(timeout = 60, hard_timeout_ms = 50)]
fn hard(id: u64) -> Result<u64, ApiError> {
    HARD_RUNS.fetch_add(1, SeqCst);
    std::thread::sleep(SLOW);
    Ok(id)
}

#[test]
fn a_hard_timeout_returns_origin_timeout_and_the_origin_still_stores_its_value() {
    let started = Instant::now();
    assert_eq!(hard(1), Err(ApiError::Timeout(Duration::from_millis(50))));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < SLOW - Duration::from_millis(100),
        "answered at the 50 ms deadline, not after the 600 ms origin: {waited:?}"
    );
    eventually("the background origin stored its value", || {
        hard(1) == Ok(1)
    });
    assert_eq!(
        HARD_RUNS.load(SeqCst),
        1,
        "one run: the late value was kept"
    );
}

static SOFT_RUNS: AtomicU64 = AtomicU64::new(0);
#[cached(timeout_ms = 100, stale_if_error = 60, soft_timeout_ms = 50)]
fn soft(id: u64) -> Result<u64, String> {
    let run = SOFT_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        std::thread::sleep(SLOW);
    }
    Ok(id * 100 + run)
}

#[test]
fn a_soft_timeout_answers_with_the_stale_value_while_the_origin_finishes() {
    assert_eq!(soft(1), Ok(101), "the first run is fast");
    std::thread::sleep(Duration::from_millis(120)); // expired, within stale_if_error
    let started = Instant::now();
    assert_eq!(soft(1), Ok(101), "the stale value, at the soft deadline");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < SLOW - Duration::from_millis(100),
        "{waited:?}"
    );
    eventually("the background run replaced the stale value", || {
        soft(1) == Ok(102)
    });
    // Without a stale value the soft deadline does not apply: the call waits.
    let started = Instant::now();
    assert_eq!(soft(2), Ok(203));
    assert!(started.elapsed() >= SLOW, "waited for the origin");
}

static ASYNC_RUNS: AtomicU64 = AtomicU64::new(0);
#[cached(
    timeout_ms = 100,
    stale_if_error = 60,
    soft_timeout_ms = 50,
    hard_timeout_ms = 200
)]
async fn async_both(id: u64) -> Result<u64, ApiError> {
    let run = ASYNC_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        tokio::time::sleep(SLOW).await;
    }
    Ok(id * 100 + run)
}

#[tokio::test]
async fn async_functions_take_the_stale_value_at_the_soft_deadline_and_time_out_at_the_hard_one() {
    assert_eq!(async_both(1).await, Ok(101));
    tokio::time::sleep(Duration::from_millis(120)).await;
    let started = Instant::now();
    assert_eq!(async_both(1).await, Ok(101), "stale at the soft deadline");
    assert!(started.elapsed() < SLOW - Duration::from_millis(100));
    // A new key has no stale value: the hard deadline answers.
    let started = Instant::now();
    assert_eq!(
        async_both(2).await,
        Err(ApiError::Timeout(Duration::from_millis(200)))
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < SLOW - Duration::from_millis(100),
        "{waited:?}"
    );
    let started = Instant::now();
    while async_both(2).await != Ok(203) || async_both(1).await != Ok(102) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "background runs stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cached(timeout = 60, hard_timeout_ms = 1000)]
fn explodes(id: u64) -> Result<u64, ApiError> {
    panic!("origin {id} exploded")
}

#[test]
fn a_panic_in_the_background_origin_reaches_the_waiting_caller() {
    let caught = std::panic::catch_unwind(|| explodes(7)).expect_err("the panic is resumed");
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, "origin 7 exploded");
}
