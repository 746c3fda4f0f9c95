//! Protection strategies on the in-process tier, timed by an injected
//! clock: TTL jitter (guide 7.3, cache avalanche) and negative caching
//! (guide 7.2, cache penetration). The clock is shared by the whole test
//! binary, so tests that move it hold `CLOCK_LOCK`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use layercache::{cached, entry, fn_cache, Clock, Config, MockClock};

fn clock() -> &'static MockClock {
    static MOCK: OnceLock<MockClock> = OnceLock::new();
    MOCK.get_or_init(|| {
        let (clock, mock) = Clock::mock();
        layercache::init(Config::builder().clock(clock).build()).unwrap();
        mock
    })
}

static CLOCK_LOCK: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------- jitter

#[cached(timeout = 100, jitter = 0.1, max_entries = 20000)]
fn jittered(id: u32) -> u32 {
    id
}

#[cached(timeout = 100, max_entries = 20000)]
fn unjittered(id: u32) -> u32 {
    id
}

const N: u32 = 10_000;

fn alive(f: impl Fn(u32) -> bool) -> usize {
    (0..N).filter(|i| f(*i)).count()
}

#[test]
fn jitter_spreads_expiries_over_plus_minus_ten_percent_and_none_outside() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for i in 0..N {
        jittered(i);
        unjittered(i);
    }
    let jit = |i| entry!(jittered(i)).is_cached();
    let flat = |i| entry!(unjittered(i)).is_cached();
    let mut seen = Vec::new();
    let mut at = Duration::ZERO;
    for (t_ms, min, max) in [
        (89_999, N as usize, N as usize), // nothing expires before 90 s
        (92_000, 8_500, 9_500),           // ~10 % in [90, 92)
        (100_000, 4_500, 5_500),          // ~half before 100 s
        (108_000, 500, 1_500),            // ~10 % after 108 s
        (110_001, 0, 0),                  // nothing lives past 110 s
    ] {
        let t = Duration::from_millis(t_ms);
        mock.advance(t - at);
        at = t;
        let n = alive(jit);
        seen.push((t_ms, n));
        assert!(
            (min..=max).contains(&n),
            "at {t_ms} ms {n} jittered entries alive, expected {min}..={max}: {seen:?}"
        );
    }
    // Without jitter every entry expired at exactly 100 s.
    assert_eq!(alive(flat), 0);
    println!("jittered entries alive (ms, count): {seen:?}");
}

#[cached(timeout = 100, max_entries = 20000)]
fn flat_again(id: u32) -> u32 {
    id
}

#[test]
fn without_jitter_every_entry_expires_at_the_same_instant() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for i in 0..N {
        flat_again(i);
    }
    mock.advance(Duration::from_millis(99_999));
    assert_eq!(alive(|i| entry!(flat_again(i)).is_cached()), N as usize);
    mock.advance(Duration::from_millis(2));
    assert_eq!(alive(|i| entry!(flat_again(i)).is_cached()), 0);
}

// ---------------------------------------------------------------- negative caching

static FIND_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300, cache_none = true, none_timeout = 5)]
fn find_user(id: u64) -> Option<String> {
    FIND_CALLS.fetch_add(1, SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[test]
fn a_missing_id_runs_the_function_once_per_none_timeout() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for _ in 0..1000 {
        assert_eq!(find_user(404), None);
    }
    assert_eq!(FIND_CALLS.load(SeqCst), 1, "1000 calls, one origin call");
    assert_eq!(
        entry!(find_user(404)).get(),
        Some(None),
        "a cached None is an entry, not a miss"
    );
    assert_eq!(entry!(find_user(405)).get(), None, "a miss is not an entry");

    assert_eq!(find_user(7).as_deref(), Some("user 7"));
    assert_eq!(FIND_CALLS.load(SeqCst), 2);

    mock.advance(Duration::from_millis(5_001));
    assert_eq!(find_user(404), None);
    assert_eq!(
        FIND_CALLS.load(SeqCst),
        3,
        "the None expired after none_timeout"
    );
    assert_eq!(find_user(7).as_deref(), Some("user 7"));
    assert_eq!(
        FIND_CALLS.load(SeqCst),
        3,
        "a Some lives for the function's timeout"
    );
    let s = fn_cache!(find_user).stats();
    assert_eq!(s.misses, 3);
    assert_eq!(s.hits, 1000, "999 + 1 calls answered: {s:?}");
}

static PLAIN_FIND_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300)]
fn find_without_negative_caching(id: u64) -> Option<String> {
    PLAIN_FIND_CALLS.fetch_add(1, SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[test]
fn without_cache_none_a_none_is_not_cached() {
    for _ in 0..10 {
        assert_eq!(find_without_negative_caching(404), None);
    }
    assert_eq!(PLAIN_FIND_CALLS.load(SeqCst), 10);
}

// ---------------------------------------------------------------- fail-safe

static PRICE_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PRICE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 10, stale_if_error = 60)]
fn price(id: u64) -> Result<u64, String> {
    PRICE_CALLS.fetch_add(1, SeqCst);
    if PRICE_FAILS.load(SeqCst) {
        Err("pricing service down".into())
    } else {
        Ok(id * 10)
    }
}

#[cached(timeout = 10)]
fn price_without_fail_safe(id: u64) -> Result<u64, String> {
    if PRICE_FAILS.load(SeqCst) {
        Err("pricing service down".into())
    } else {
        Ok(id * 10)
    }
}

#[test]
fn an_error_within_stale_if_error_returns_the_expired_value_and_is_counted() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    PRICE_FAILS.store(false, SeqCst);
    assert_eq!(price(1), Ok(10));
    assert_eq!(price_without_fail_safe(1), Ok(10));
    mock.advance(Duration::from_secs(11)); // both expired
    PRICE_FAILS.store(true, SeqCst);
    assert_eq!(price(1), Ok(10), "the stale value stands in for the error");
    assert_eq!(
        price_without_fail_safe(1),
        Err("pricing service down".into()),
        "without stale_if_error the error reaches the caller"
    );
    let calls = PRICE_CALLS.load(SeqCst);
    assert_eq!(price(1), Ok(10), "still failing, still stale");
    assert_eq!(
        PRICE_CALLS.load(SeqCst),
        calls + 1,
        "the function is asked every time"
    );
    let s = fn_cache!(price).stats();
    assert_eq!(s.stale_hits, 2, "{s:?}");
    assert_eq!(s.not_cached, 2, "an error is never stored");

    mock.advance(Duration::from_secs(60)); // 71 s after the write: past the window
    assert_eq!(price(1), Err("pricing service down".into()));
    assert_eq!(
        price(2),
        Err("pricing service down".into()),
        "nothing stale for a new key"
    );

    PRICE_FAILS.store(false, SeqCst);
    assert_eq!(price(1), Ok(10));
    entry!(price(1)).invalidate();
    PRICE_FAILS.store(true, SeqCst);
    assert_eq!(
        price(1),
        Err("pricing service down".into()),
        "an invalidated value is never served stale"
    );
    PRICE_FAILS.store(false, SeqCst);
}
