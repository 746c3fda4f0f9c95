//! Cache stampede (guide 7.1): 1000 concurrent async callers of one cold
//! key whose function takes 20 ms. How many times does the function run,
//! and how long until every caller has its value?
//!
//! layercache (single-flight is always on) against the `cached` crate's
//! `#[cached]` without and with `sync_writes = "by_key"` (its per-key write
//! lock), on one multi-thread tokio runtime with 2 workers. Each round uses
//! a fresh key; the median of the rounds is reported.
//!
//! `cargo bench --bench stampede`

#[path = "support/report.rs"]
mod report;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const CALLERS: usize = 1000;
const ROUNDS: u64 = 7;
const ORIGIN: Duration = Duration::from_millis(20);

static LC_RUNS: AtomicU64 = AtomicU64::new(0);
static CC_RUNS: AtomicU64 = AtomicU64::new(0);
static CC_LOCKED_RUNS: AtomicU64 = AtomicU64::new(0);

#[layercache::cached(timeout = 300)]
async fn lc_report(id: u64) -> u64 {
    LC_RUNS.fetch_add(1, Relaxed);
    tokio::time::sleep(ORIGIN).await;
    id * 2
}

#[cached::proc_macro::cached(ttl_secs = 300)]
async fn cc_report(id: u64) -> u64 {
    CC_RUNS.fetch_add(1, Relaxed);
    tokio::time::sleep(ORIGIN).await;
    id * 2
}

#[cached::proc_macro::cached(ttl_secs = 300, sync_writes = "by_key")]
async fn cc_locked_report(id: u64) -> u64 {
    CC_LOCKED_RUNS.fetch_add(1, Relaxed);
    tokio::time::sleep(ORIGIN).await;
    id * 2
}

/// One round: `CALLERS` tasks call `f(key)` at once; returns (origin runs, wall time).
async fn round<F, Fut>(key: u64, runs: &AtomicU64, f: F) -> (u64, Duration)
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let before = runs.load(Relaxed);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(async move { f(key).await }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), key * 2, "every caller gets the value");
    }
    (runs.load(Relaxed) - before, started.elapsed())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "stampede: {CALLERS} concurrent callers of one cold key, origin {ORIGIN:?}, median of {ROUNDS} rounds"
    );
    println!("{:<34} {:>14} {:>12}", "variant", "origin calls", "wall ms");
    let mut rows = Vec::new();
    for variant in ["layercache", "cached_crate", "cached_crate_sync_writes"] {
        let (mut calls, mut walls) = (Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            let key = 1000 + r;
            let (n, wall) = rt.block_on(async {
                match variant {
                    "layercache" => round(key, &LC_RUNS, lc_report).await,
                    "cached_crate" => round(key, &CC_RUNS, cc_report).await,
                    _ => round(key, &CC_LOCKED_RUNS, cc_locked_report).await,
                }
            });
            calls.push(n);
            walls.push(wall.as_micros() as u64);
        }
        let (n, wall_us) = (median(calls.clone()), median(walls));
        println!(
            "{:<34} {:>14} {:>12.1}",
            variant,
            n,
            wall_us as f64 / 1000.0
        );
        rows.push(serde_json::json!({
            "variant": variant,
            "origin_calls": n,
            "origin_calls_max": calls.iter().max(),
            "wall_ms": wall_us as f64 / 1000.0,
        }));
    }
    report::write_results(
        "stampede",
        &serde_json::json!({ "callers": CALLERS, "origin_ms": ORIGIN.as_millis() as u64, "rows": rows }),
    );
}
