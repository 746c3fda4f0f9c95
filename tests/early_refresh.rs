//! XFetch (`xfetch = beta`): a hot key is refreshed in the background once
//! per expiry period, shortly before it expires, and its callers never
//! meet an expired entry. Real time in milliseconds: entries live 300 ms,
//! the function takes 20 ms, calls come every 2 ms for 1.5 s. Across three
//! processes with `lock = true`: `redis_fleet`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use layercache::cached;

const LIFE: Duration = Duration::from_millis(300);
static STARTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(timeout_ms = 300, key_prefix = "xfetch_hot", xfetch = 2.0)]
fn hot(id: u64) -> u64 {
    STARTS.lock().unwrap().push(Instant::now());
    std::thread::sleep(Duration::from_millis(20));
    id * 1000 + RUNS.fetch_add(1, SeqCst) + 1
}

#[test]
fn a_hot_key_is_refreshed_once_per_expiry_period_and_never_expires_for_its_callers() {
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let v = hot(1);
        assert!(v >= last, "values only move forward: {v} after {last}");
        last = v;
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let a refresh started by the last calls land.
    std::thread::sleep(Duration::from_millis(50));
    let stats = layercache::stats();
    let s = stats.function("xfetch_hot").expect("stats");
    assert_eq!(s.misses, 1, "only the first call missed: {s:?}");
    assert_eq!(s.expired, 0, "no caller met an expired entry: {s:?}");
    let starts = STARTS.lock().unwrap().clone();
    let refreshes = starts.len() - 1;
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("{refreshes} refreshes in 1.5 s; gaps between runs: {gaps:?}");
    assert!(
        refreshes >= 4,
        "at least one refresh per 300 ms period over 1.5 s: {refreshes}"
    );
    // Each refresh replaces the entry, so one refresh per entry is one per
    // period. XFetch's lead is random (a draw can come early in an entry's
    // life), so a gap may be short; but no period passes without a refresh
    // (a gap over the 300 ms life plus the 20 ms run would let the entry
    // expire), and refreshing every entry twice would double the count.
    assert!(
        gaps.iter().all(|g| *g < LIFE + Duration::from_millis(20)),
        "a refresh in every period, before expiry: {gaps:?}"
    );
    assert!(
        refreshes <= 12,
        "about one refresh per period (5-8 in 1.5 s), not more: {refreshes}"
    );
}
