//! A `#[cached]` hit on the in-process tier against its peers, in one run:
//! the `cached` crate's `#[cached]` with a TTL, raw quick_cache and raw moka,
//! at 1 and 2 threads. Prints the ratios at the end (`layercache / peer`:
//! below 1.0 is faster than the peer).
//!
//! `cargo bench --bench local_hit` (scripts/test.sh runs a short version).

#[path = "support/report.rs"]
mod report;
use report::{mean_ns, output_dir};

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};

const KEYS: u64 = 1024;
/// The large value: 1 KiB, cloned out of every cache on a hit.
const BIG: usize = 1024;

#[layercache::cached(timeout = 300)]
fn lc_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached::proc_macro::cached(ttl_secs = 300)]
fn cc_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// The `cached` crate's sharded store (`#[concurrent_cached]`).
#[cached::macros::concurrent_cached(ttl_secs = 300)]
fn ccs_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn page(x: u64) -> Vec<u8> {
    vec![x as u8; BIG]
}

#[layercache::cached(timeout = 300)]
fn lc_page(x: u64) -> Vec<u8> {
    page(x)
}

#[cached::proc_macro::cached(ttl_secs = 300)]
fn cc_page(x: u64) -> Vec<u8> {
    page(x)
}

#[cached::macros::concurrent_cached(ttl_secs = 300)]
fn ccs_page(x: u64) -> Vec<u8> {
    page(x)
}

type Peer = (&'static str, Box<dyn Fn(u64) -> u64 + Sync>);

/// Small values (`u64`).
fn peers() -> Vec<Peer> {
    let qc = quick_cache::sync::Cache::<u64, u64>::new(KEYS as usize * 2);
    let moka = moka::sync::Cache::<u64, u64>::builder()
        .max_capacity(KEYS * 2)
        .time_to_live(Duration::from_secs(300))
        .build();
    for k in 0..KEYS {
        lc_square(k);
        cc_square(k);
        ccs_square(k);
        qc.insert(k, k.wrapping_mul(k));
        moka.insert(k, k.wrapping_mul(k));
    }
    vec![
        ("layercache", Box::new(lc_square)),
        ("cached_crate", Box::new(cc_square)),
        ("cached_crate_sharded", Box::new(ccs_square)),
        (
            "quick_cache_raw",
            Box::new(move |k| qc.get(&k).unwrap_or(0)),
        ),
        ("moka_raw", Box::new(move |k| moka.get(&k).unwrap_or(0))),
    ]
}

/// 1 KiB values (`Vec<u8>`, cloned on every hit by every peer).
fn big_peers() -> Vec<Peer> {
    let qc = quick_cache::sync::Cache::<u64, Vec<u8>>::new(KEYS as usize * 2);
    let moka = moka::sync::Cache::<u64, Vec<u8>>::builder()
        .max_capacity(KEYS * 2)
        .time_to_live(Duration::from_secs(300))
        .build();
    for k in 0..KEYS {
        lc_page(k);
        cc_page(k);
        ccs_page(k);
        qc.insert(k, page(k));
        moka.insert(k, page(k));
    }
    let len = |v: Vec<u8>| v.len() as u64;
    vec![
        ("layercache", Box::new(move |k| len(lc_page(k)))),
        ("cached_crate", Box::new(move |k| len(cc_page(k)))),
        ("cached_crate_sharded", Box::new(move |k| len(ccs_page(k)))),
        (
            "quick_cache_raw",
            Box::new(move |k| qc.get(&k).map_or(0, len)),
        ),
        ("moka_raw", Box::new(move |k| moka.get(&k).map_or(0, len))),
    ]
}

/// Time per operation with `threads` threads each doing `iters` hits.
fn run_threads(threads: usize, iters: u64, f: &(dyn Fn(u64) -> u64 + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut k = t as u64 * 7;
                    for _ in 0..iters {
                        black_box(f(black_box(k % KEYS)));
                        k = k.wrapping_add(1);
                    }
                    start.elapsed()
                })
            })
            .collect();
        barrier.wait();
        // Throughput view: the slowest thread's time for `iters` ops per thread,
        // reported per op of one thread (so "no slower at 2 threads" compares like with like).
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .configure_from_args();
    let families = [("small", peers()), ("1k", big_peers())];
    for (size, peers) in &families {
        for threads in [1usize, 2] {
            let group_name = format!("local_hit_{size}_{threads}t");
            let mut group = c.benchmark_group(&group_name);
            for (name, f) in peers {
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter_custom(|iters| run_threads(threads, iters, f.as_ref()))
                });
            }
            group.finish();
        }
    }
    c.final_summary();

    println!("\nlocal hit, time per hit per thread (lower is better); ratio = layercache / peer");
    println!(
        "{:<6} {:<8} {:<21} {:>10} {:>10} {:>8}",
        "value", "threads", "peer", "peer ns", "ours ns", "ratio"
    );
    let mut rows = Vec::new();
    for (size, peers) in &families {
        for threads in [1usize, 2] {
            let group = format!("local_hit_{size}_{threads}t");
            let Some(ours) = mean_ns(&group, "layercache") else {
                println!(
                    "(no estimates under {}; run without --test)",
                    output_dir().display()
                );
                return;
            };
            rows.push(serde_json::json!({
                "value": size, "threads": threads, "peer": "layercache", "ns": ours,
            }));
            for (peer, _) in peers.iter().skip(1) {
                if let Some(theirs) = mean_ns(&group, peer) {
                    println!(
                        "{:<6} {:<8} {:<21} {:>10.1} {:>10.1} {:>7.2}x",
                        size,
                        threads,
                        peer,
                        theirs,
                        ours,
                        ours / theirs
                    );
                    rows.push(serde_json::json!({
                        "value": size, "threads": threads, "peer": peer, "ns": theirs,
                    }));
                }
            }
        }
    }
    report::write_results("local_hit", &serde_json::json!({ "rows": rows }));
}
