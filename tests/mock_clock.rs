//! Expiry decided by an injected clock: no sleeping, exact boundaries.

#[path = "support/mock_runtime.rs"]
mod mock_runtime;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use layercache::{cached, fn_cache};
use mock_runtime::clock;

static FIVE_MIN: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 300)]
fn five_minutes(x: u32) -> u32 {
    FIVE_MIN.fetch_add(1, SeqCst);
    x
}

static FOREVER: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 0)]
fn forever(x: u32) -> u32 {
    FOREVER.fetch_add(1, SeqCst);
    x
}

static DEFAULTED: AtomicUsize = AtomicUsize::new(0);
#[cached]
fn defaulted(x: u32) -> u32 {
    DEFAULTED.fetch_add(1, SeqCst);
    x
}

// One test: the clock is shared by the whole process, so the steps run in order.
#[test]
fn entries_expire_exactly_at_their_timeout_and_timeout_zero_never_expires() {
    let mock = clock();
    five_minutes(1);
    forever(1);
    defaulted(1);

    mock.advance(Duration::from_secs(29));
    defaulted(1);
    assert_eq!(
        DEFAULTED.load(SeqCst),
        1,
        "29 s < the configured default of 30 s"
    );
    mock.advance(Duration::from_secs(1));
    defaulted(1);
    assert_eq!(DEFAULTED.load(SeqCst), 2, "expired at 30 s");

    mock.advance(Duration::from_secs(269)); // t = 299 s
    five_minutes(1);
    assert_eq!(FIVE_MIN.load(SeqCst), 1, "still fresh at 299 s");
    mock.advance(Duration::from_secs(1)); // t = 300 s
    five_minutes(1);
    assert_eq!(FIVE_MIN.load(SeqCst), 2, "expired at 300 s");
    assert_eq!(fn_cache!(five_minutes).stats().expired, 1);

    mock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    forever(1);
    assert_eq!(FOREVER.load(SeqCst), 1, "timeout = 0 never expires");

    let manual = layercache::sync::Cache::global();
    manual.set("session", 5u8, Duration::from_secs(10));
    manual.set_default("config", 6u8);
    mock.advance(Duration::from_secs(10));
    assert_eq!(
        manual.get::<u8>("session"),
        None,
        "manual entries expire too"
    );
    assert_eq!(
        manual.get::<u8>("config"),
        Some(6),
        "default timeout is 30 s"
    );
}
