//! A Zipf-distributed read-through workload with a bound smaller than the
//! key space: hit ratio and throughput of a `#[cached(max_entries = ...)]`
//! function against raw moka and raw quick_cache at the same bound.
//!
//! 100 000 keys, Zipf s = 1.0 (a few keys are hot, most are cold), a bound
//! of 10 000 entries, 2 000 000 operations of which 10 % are writes (an
//! update stores a new value) and 90 % reads (a miss computes and stores
//! the value: the cache-aside pattern every variant runs). One thread, then
//! two threads sharing the cache.
//!
//! Then a uniform working set exactly the size of the bound: 10 000 keys
//! read once to warm up, then read again; every second read should hit
//! (`max_entries` keys fit), and the line shows each cache's hit ratio.
//!
//! `cargo bench --bench zipf`

#[path = "support/report.rs"]
mod report;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;
const BOUND: u64 = 10_000;
const OPS: usize = 2_000_000;
const WRITE_EVERY: usize = 10;

static LC_MISSES: AtomicU64 = AtomicU64::new(0);

#[layercache::cached(timeout = 3600, max_entries = 10000, key_prefix = "zipf")]
fn lc_value(k: u64) -> u64 {
    LC_MISSES.fetch_add(1, Relaxed);
    k.wrapping_mul(31)
}

static LC_SET_MISSES: AtomicU64 = AtomicU64::new(0);

#[layercache::cached(timeout = 3600, max_entries = 10000, key_prefix = "zipf_working_set")]
fn lc_working_set(k: u64) -> u64 {
    LC_SET_MISSES.fetch_add(1, Relaxed);
    k.wrapping_mul(31)
}

/// Hit ratio of the second pass over `BOUND` keys, each read once before:
/// whatever it misses, the bound did not hold.
fn working_set_equal_to_bound() -> Vec<serde_json::Value> {
    let quick = quick_cache::sync::Cache::<u64, u64>::new(BOUND as usize);
    let moka = moka::sync::Cache::<u64, u64>::new(BOUND);
    let pass = |read: &dyn Fn(u64) -> bool| (0..BOUND).filter(|&k| read(k)).count() as f64;
    let lc = |k| {
        let before = LC_SET_MISSES.load(Relaxed);
        black_box(lc_working_set(k));
        LC_SET_MISSES.load(Relaxed) == before
    };
    let qc = |k| {
        let hit = quick.get(&k).is_some();
        if !hit {
            quick.insert(k, k.wrapping_mul(31));
        }
        hit
    };
    let mk = |k| {
        let hit = moka.get(&k).is_some();
        if !hit {
            moka.insert(k, k.wrapping_mul(31));
        }
        hit
    };
    let variants: [(&str, &dyn Fn(u64) -> bool); 3] =
        [("layercache", &lc), ("moka", &mk), ("quick_cache", &qc)];
    println!("working set = bound: {BOUND} uniform keys, each read twice");
    variants
        .iter()
        .map(|(name, read)| {
            pass(*read);
            // moka admits and evicts in the background: let it settle first.
            moka.run_pending_tasks();
            let hit_ratio = pass(*read) / BOUND as f64;
            println!(
                "{name:<12} {:>9.2}% hits on the second pass",
                hit_ratio * 100.0
            );
            serde_json::json!({ "variant": name, "hit_ratio": hit_ratio })
        })
        .collect()
}

/// `OPS` keys drawn from Zipf(s = 1.0) over `0..KEYS`, by inverse CDF.
fn zipf_keys(seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(KEYS as usize);
    let mut sum = 0.0;
    for rank in 1..=KEYS {
        sum += 1.0 / rank as f64;
        cdf.push(sum);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    // Ranks are shuffled onto keys so hot keys are not all small numbers.
    let mut key_of_rank: Vec<u64> = (0..KEYS).collect();
    rng.shuffle(&mut key_of_rank);
    (0..OPS)
        .map(|_| {
            let u = rng.f64() * sum;
            key_of_rank[cdf.partition_point(|&c| c < u).min(KEYS as usize - 1)]
        })
        .collect()
}

trait Variant: Sync {
    fn read(&self, k: u64) -> u64;
    fn write(&self, k: u64, v: u64);
    fn misses(&self) -> u64;
}

struct Layercache;
impl Variant for Layercache {
    fn read(&self, k: u64) -> u64 {
        lc_value(k)
    }
    fn write(&self, k: u64, v: u64) {
        layercache::entry!(lc_value(k)).put(v);
    }
    fn misses(&self) -> u64 {
        LC_MISSES.load(Relaxed)
    }
}

struct Moka(moka::sync::Cache<u64, u64>, AtomicU64);
impl Variant for Moka {
    fn read(&self, k: u64) -> u64 {
        self.0.get_with(k, || {
            self.1.fetch_add(1, Relaxed);
            k.wrapping_mul(31)
        })
    }
    fn write(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
    fn misses(&self) -> u64 {
        self.1.load(Relaxed)
    }
}

struct Quick(quick_cache::sync::Cache<u64, u64>, AtomicU64);
impl Variant for Quick {
    fn read(&self, k: u64) -> u64 {
        self.0
            .get_or_insert_with(&k, || {
                self.1.fetch_add(1, Relaxed);
                Ok::<_, ()>(k.wrapping_mul(31))
            })
            .unwrap_or(0)
    }
    fn write(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
    fn misses(&self) -> u64 {
        self.1.load(Relaxed)
    }
}

/// Runs the workload on `threads` threads (each its own key stream);
/// returns (reads, read misses, elapsed).
fn run(v: &dyn Variant, streams: &[Vec<u64>]) -> (u64, u64, Duration) {
    let misses_before = v.misses();
    let started = Instant::now();
    let reads: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .map(|keys| {
                s.spawn(move || {
                    let mut reads = 0;
                    for (i, &k) in keys.iter().enumerate() {
                        if i.is_multiple_of(WRITE_EVERY) {
                            v.write(k, k.wrapping_mul(31));
                        } else {
                            black_box(v.read(k));
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (reads, v.misses() - misses_before, started.elapsed())
}

fn main() {
    let streams_1 = vec![zipf_keys(1)];
    let streams_2 = vec![zipf_keys(2), zipf_keys(3)];
    println!(
        "zipf: {KEYS} keys, s = 1.0, bound {BOUND}, {OPS} ops per thread (10 % writes), read-through"
    );
    println!(
        "{:<12} {:>8} {:>10} {:>14} {:>12}",
        "variant", "threads", "hit ratio", "ops/s", "ops/s ratio"
    );
    let mut rows = Vec::new();
    for (threads, streams) in [(1usize, &streams_1), (2, &streams_2)] {
        let moka = Moka(
            moka::sync::Cache::builder()
                .max_capacity(BOUND)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            AtomicU64::new(0),
        );
        let quick = Quick(
            quick_cache::sync::Cache::new(BOUND as usize),
            AtomicU64::new(0),
        );
        // layercache's cache is one per function: clear it between runs.
        layercache::fn_cache!(lc_value).invalidate_all();
        let variants: [(&str, &dyn Variant); 3] = [
            ("layercache", &Layercache),
            ("moka", &moka),
            ("quick_cache", &quick),
        ];
        let mut measured = Vec::new();
        for (name, v) in variants {
            // Warm-up pass fills the cache; the measured pass follows.
            run(v, streams);
            let (reads, misses, elapsed) = run(v, streams);
            let ops = (streams.len() * OPS) as f64 / elapsed.as_secs_f64();
            let hit_ratio = 1.0 - misses as f64 / reads as f64;
            measured.push((name, hit_ratio, ops));
        }
        let ours = measured[0].2;
        for (name, hit_ratio, ops) in &measured {
            println!(
                "{:<12} {:>8} {:>9.1}% {:>14.0} {:>11.2}x",
                name,
                threads,
                hit_ratio * 100.0,
                ops,
                ours / ops
            );
            rows.push(serde_json::json!({
                "variant": name, "threads": threads, "hit_ratio": hit_ratio, "ops_per_s": ops,
            }));
        }
    }
    let working_set = working_set_equal_to_bound();
    report::write_results(
        "zipf",
        &serde_json::json!({
            "keys": KEYS, "bound": BOUND, "ops": OPS, "rows": rows, "working_set": working_set,
        }),
    );
}
