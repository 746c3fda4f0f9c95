//! A `#[cached]` shared hit against raw redis-rs on the same `redis-server`
//! (started here on a free loopback port), with a 100-byte value.
//!
//! - `shared_hit_1c`: one caller, one call at a time. layercache with the
//!   local tier off (`tier = "shared"`): GET, envelope check, decode. Peer:
//!   raw redis-rs multiplexed `GET` + MessagePack decode of the bare value.
//!   Both async in the same multi-thread tokio runtime; the sync path
//!   (a blocking connection on the caller's thread) against a raw blocking
//!   `redis::Connection` is reported too.
//! - `shared_hit_64c`: 64 concurrent async callers; time per call, so
//!   throughput = 1 / time.
//!
//! Ratios (layercache / raw; lower is better) are printed at the end: from
//! criterion's means, then from alternating rounds (medians) for the sync
//! and async single caller and the 64 callers.
//!
//! Profiling: `REDIS_HIT_PROFILE=ours` (or `raw`) runs one side of the
//! 64-caller case for 5 s and exits, e.g. under `perf record`.

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

#[path = "support/report.rs"]
mod report;
use report::{mean_ns, output_dir};

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cached::{AsyncRedisCache, ConcurrentCachedAsync};
use criterion::{BenchmarkId, Criterion};
use layercache::{cached, CacheType, Config};
use redis::AsyncCommands;

const VALUE_LEN: usize = 100;
/// The raw side's key has the shape and length of layercache's
/// (`{CACHE_KEY_PREFIX}:{key_prefix}:{32 hex digits}`): what a raw redis-rs
/// user with namespaced keys sends, so both sides ask the server the same.
const RAW_KEY: &str = "bench:bench_raw:00000000000000000000000000000001";
const CALLERS: u64 = 64;
const BATCH: u64 = 200;

fn value() -> String {
    "v".repeat(VALUE_LEN)
}

#[cached(timeout = 3600, key_prefix = "bench_async", tier = "shared")]
async fn cached_async(id: u64) -> String {
    let _ = id;
    value()
}

#[cached(timeout = 3600, key_prefix = "bench_sync", tier = "shared")]
fn cached_sync(id: u64) -> String {
    let _ = id;
    value()
}

/// A shared-only function whose every call is a miss (fresh ids): GET,
/// the function, SET.
#[cached(timeout = 3600, key_prefix = "bench_miss", tier = "shared")]
async fn cached_fresh(id: u64) -> String {
    let _ = id;
    value()
}

static FRESH: AtomicU64 = AtomicU64::new(1 << 40);

fn fresh_id() -> u64 {
    FRESH.fetch_add(1, Relaxed)
}

/// One raw redis-rs miss and set: `GET` (nil), encode, `SET EX`.
async fn raw_miss_set(mut conn: redis::aio::MultiplexedConnection) {
    let key = format!("bench:bench_raw:{:032x}", fresh_id());
    let found: Option<Vec<u8>> = conn.get(&key).await.unwrap();
    assert!(found.is_none());
    let bytes = rmp_serde::to_vec(&value()).unwrap();
    let _: () = conn.set_ex(&key, bytes, 3600).await.unwrap();
}

/// The `cached` crate's Redis store: a hit of entry `id`.
async fn cc_hit(cc: &AsyncRedisCache<u64, String>, id: u64) {
    let v = cc.async_cache_get(&id).await.unwrap().expect("primed");
    assert_eq!(v.len(), VALUE_LEN);
}

/// The `cached` crate's Redis store: a miss and a set.
async fn cc_miss_set(cc: &AsyncRedisCache<u64, String>) {
    let id = fresh_id();
    assert!(cc.async_cache_get(&id).await.unwrap().is_none());
    cc.async_cache_set(id, value()).await.unwrap();
}

/// One `#[cached]` shared hit of entry `id` (each concurrent caller asks
/// for its own entry: callers of one key would share a GET through
/// single-flight, which raw redis-rs cannot do).
async fn cached_hit(id: u64) {
    assert_eq!(cached_async(id).await.len(), VALUE_LEN);
}

/// One raw redis-rs `GET` + decode of the same-sized value.
async fn raw_hit(mut conn: redis::aio::MultiplexedConnection) {
    let bytes: Vec<u8> = conn.get(RAW_KEY).await.unwrap();
    assert_eq!(decode(&bytes).len(), VALUE_LEN);
}

fn decode(bytes: &[u8]) -> String {
    rmp_serde::from_slice::<String>(bytes).expect("decode")
}

/// Runs `measure(true)` (layercache) and `measure(false)` (raw) in turn,
/// `rounds` times each; returns the median of each side.
fn alternate(rounds: usize, mut measure: impl FnMut(bool) -> Duration) -> (Duration, Duration) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first, so neither always follows the other.
        let first = round.is_multiple_of(2);
        let a = measure(first);
        let b = measure(!first);
        let (o, t) = if first { (a, b) } else { (b, a) };
        ours.push(o);
        theirs.push(t);
    }
    ours.sort();
    theirs.sort();
    (ours[ours.len() / 2], theirs[theirs.len() / 2])
}

/// Runs `iters` calls of `f` spread over `CALLERS` tasks (each passes its
/// index); returns the wall time.
async fn concurrent<F, Fut>(iters: u64, f: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let per_task = iters.div_ceil(CALLERS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|task| {
            let f = f.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    f(task).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Report per requested iteration so criterion's mean is time per call.
    started
        .elapsed()
        .mul_f64(iters as f64 / (per_task * CALLERS) as f64)
}

fn main() {
    // No MONITOR here: it makes the server format every command and would
    // dominate the measurement. INFO commandstats still shows every KEYS.
    let server = redis_server::RedisServer::start_unmonitored();
    layercache::init(
        Config::builder()
            .cache_type(CacheType::Redis)
            .redis_url(server.url())
            .key_prefix("bench")
            .shared_timeout(Duration::from_secs(1))
            .build(),
    )
    .expect("first init");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let raw = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    let encoded = rmp_serde::to_vec(&value()).unwrap();
    rt.block_on(async {
        let mut raw = raw.clone();
        let _: () = raw.set(RAW_KEY, &encoded).await.unwrap();
        // Prime the shared entries (first calls write them).
        for id in 0..CALLERS {
            assert_eq!(cached_async(id).await, value());
        }
    });
    assert_eq!(cached_sync(1), value());
    let mut sync_conn = client.get_connection().unwrap();
    let cc: &'static AsyncRedisCache<u64, String> = Box::leak(Box::new(
        rt.block_on(
            AsyncRedisCache::<u64, String>::builder("bench_cc")
                .ttl(Duration::from_secs(3600))
                .connection_string(&server.url())
                .build(),
        )
        .expect("the cached crate's Redis store"),
    ));
    rt.block_on(async {
        for id in 0..CALLERS {
            cc.async_cache_set(id, value()).await.unwrap();
        }
    });

    // Profiling aid: `REDIS_HIT_PROFILE=ours|raw` runs one side of the
    // 64-caller case for 5 s (run the binary under `perf record`) and exits.
    if let Ok(side) = std::env::var("REDIS_HIT_PROFILE") {
        let ours = side == "ours";
        let until = Instant::now() + Duration::from_secs(5);
        let mut calls = 0u64;
        let mut spent = Duration::ZERO;
        while Instant::now() < until {
            let iters = CALLERS * 256;
            spent += if ours {
                rt.block_on(concurrent(iters, cached_hit))
            } else {
                let raw = raw.clone();
                rt.block_on(concurrent(iters, move |_| raw_hit(raw.clone())))
            };
            calls += iters;
        }
        println!("{side}: {:.0} calls/s", calls as f64 / spent.as_secs_f64());
        return;
    }

    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .configure_from_args();

    let mut group = c.benchmark_group("shared_hit_1c");
    group.bench_function(BenchmarkId::from_parameter("layercache_async"), |b| {
        b.to_async(&rt).iter(|| cached_hit(1))
    });
    group.bench_function(BenchmarkId::from_parameter("raw_async"), |b| {
        b.to_async(&rt).iter(|| raw_hit(raw.clone()))
    });
    group.bench_function(BenchmarkId::from_parameter("cached_crate_redis"), |b| {
        b.to_async(&rt).iter(|| cc_hit(cc, 1))
    });
    group.bench_function(BenchmarkId::from_parameter("layercache_sync"), |b| {
        b.iter(|| assert_eq!(cached_sync(1).len(), VALUE_LEN))
    });
    group.bench_function(BenchmarkId::from_parameter("raw_sync"), |b| {
        b.iter(|| {
            let bytes: Vec<u8> = redis::Commands::get(&mut sync_conn, RAW_KEY).unwrap();
            assert_eq!(decode(&bytes).len(), VALUE_LEN)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("shared_hit_64c");
    group.bench_function(BenchmarkId::from_parameter("layercache_async"), |b| {
        b.iter_custom(|iters| rt.block_on(concurrent(iters, cached_hit)))
    });
    group.bench_function(BenchmarkId::from_parameter("raw_async"), |b| {
        b.iter_custom(|iters| {
            let raw = raw.clone();
            rt.block_on(concurrent(iters, move |_| raw_hit(raw.clone())))
        })
    });
    group.bench_function(BenchmarkId::from_parameter("cached_crate_redis"), |b| {
        b.iter_custom(|iters| rt.block_on(concurrent(iters, move |id| cc_hit(cc, id))))
    });
    group.finish();

    let mut group = c.benchmark_group("shared_miss_set_1c");
    group.bench_function(BenchmarkId::from_parameter("layercache_async"), |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(cached_fresh(fresh_id()).await.len(), VALUE_LEN);
        })
    });
    group.bench_function(BenchmarkId::from_parameter("raw_async"), |b| {
        b.to_async(&rt).iter(|| raw_miss_set(raw.clone()))
    });
    group.bench_function(BenchmarkId::from_parameter("cached_crate_redis"), |b| {
        b.to_async(&rt).iter(|| cc_miss_set(cc))
    });
    group.finish();
    c.final_summary();

    // Round trips on a 2-core VM are dominated by how fast sleeping threads
    // wake, which drifts over seconds; criterion measures one side after the
    // other. Alternate short batches of both sides instead and compare medians.
    let rounds = if std::env::args().any(|a| a == "--test") {
        2
    } else {
        61
    };
    let one_caller = alternate(rounds, |ours| {
        rt.block_on(async {
            let conn = raw.clone();
            let t = Instant::now();
            for _ in 0..BATCH {
                if ours {
                    cached_hit(1).await;
                } else {
                    raw_hit(conn.clone()).await;
                }
            }
            t.elapsed() / BATCH as u32
        })
    });
    let sync_caller = alternate(rounds, |ours| {
        let t = Instant::now();
        for _ in 0..BATCH {
            if ours {
                assert_eq!(cached_sync(1).len(), VALUE_LEN);
            } else {
                let bytes: Vec<u8> = redis::Commands::get(&mut sync_conn, RAW_KEY).unwrap();
                assert_eq!(decode(&bytes).len(), VALUE_LEN);
            }
        }
        t.elapsed() / BATCH as u32
    });
    let many_callers = alternate(rounds, |ours| {
        let iters = CALLERS * 32;
        if ours {
            rt.block_on(concurrent(iters, cached_hit)) / iters as u32
        } else {
            let raw = raw.clone();
            rt.block_on(concurrent(iters, move |_| raw_hit(raw.clone()))) / iters as u32
        }
    });

    let stats = layercache::stats();
    for name in ["bench_async", "bench_sync"] {
        if let Some(f) = stats.function(name) {
            assert_eq!(
                f.shared.errors(),
                0,
                "{name}: shared errors during the benchmark"
            );
            assert!(
                f.shared_hits > 0,
                "{name}: the benchmark measured shared hits"
            );
        }
    }

    println!("\nshared hit, 100-byte value, same redis-server; ratio = layercache / raw redis-rs (lower is better)");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "case", "raw", "layercache", "ratio"
    );
    let rows = [
        (
            "1 caller, async: time per call",
            "shared_hit_1c",
            "layercache_async",
            "raw_async",
        ),
        (
            "1 caller, sync: time per call",
            "shared_hit_1c",
            "layercache_sync",
            "raw_sync",
        ),
        (
            "64 callers, async: time per call",
            "shared_hit_64c",
            "layercache_async",
            "raw_async",
        ),
    ];
    let mut results = Vec::new();
    for (group, peer) in [
        ("shared_hit_1c", "layercache_async"),
        ("shared_hit_1c", "raw_async"),
        ("shared_hit_1c", "cached_crate_redis"),
        ("shared_hit_1c", "layercache_sync"),
        ("shared_hit_1c", "raw_sync"),
        ("shared_hit_64c", "layercache_async"),
        ("shared_hit_64c", "raw_async"),
        ("shared_hit_64c", "cached_crate_redis"),
        ("shared_miss_set_1c", "layercache_async"),
        ("shared_miss_set_1c", "raw_async"),
        ("shared_miss_set_1c", "cached_crate_redis"),
    ] {
        if let Some(ns) = mean_ns(group, peer) {
            results.push(serde_json::json!({ "group": group, "peer": peer, "ns": ns }));
        }
    }
    let rows = [
        rows[0],
        rows[1],
        rows[2],
        (
            "1 caller vs cached crate's Redis",
            "shared_hit_1c",
            "layercache_async",
            "cached_crate_redis",
        ),
        (
            "64 callers vs cached crate's Redis",
            "shared_hit_64c",
            "layercache_async",
            "cached_crate_redis",
        ),
        (
            "miss + set, 1 caller",
            "shared_miss_set_1c",
            "layercache_async",
            "raw_async",
        ),
        (
            "miss + set vs cached crate's Redis",
            "shared_miss_set_1c",
            "layercache_async",
            "cached_crate_redis",
        ),
    ];
    for (label, group, ours, theirs) in rows {
        match (mean_ns(group, ours), mean_ns(group, theirs)) {
            (Some(o), Some(t)) => println!(
                "{label:<34} {:>9.1} us {:>9.1} us {:>7.2}x",
                t / 1000.0,
                o / 1000.0,
                o / t
            ),
            _ => println!("{label:<34} (no estimates; run without --test)"),
        }
    }
    println!("\nalternating rounds ({rounds} x both sides), medians:");
    let (o, t) = one_caller;
    println!(
        "1 caller, async: raw {:.1} us, layercache {:.1} us per call = {:.2}x (bar: at most 1.1x)",
        t.as_secs_f64() * 1e6,
        o.as_secs_f64() * 1e6,
        o.as_secs_f64() / t.as_secs_f64()
    );
    let (o, t) = sync_caller;
    println!(
        "1 caller, sync: raw blocking {:.1} us, layercache {:.1} us per call = {:.2}x (bar: at most 1.5x)",
        t.as_secs_f64() * 1e6,
        o.as_secs_f64() * 1e6,
        o.as_secs_f64() / t.as_secs_f64()
    );
    let (o, t) = many_callers;
    println!(
        "64 callers, async throughput: raw {:.0} calls/s, layercache {:.0} calls/s = {:.2}x of raw (bar: at least 1.0x)",
        1.0 / t.as_secs_f64(),
        1.0 / o.as_secs_f64(),
        t.as_secs_f64() / o.as_secs_f64()
    );
    let (o1, t1) = one_caller;
    let (o64, t64) = many_callers;
    let (os, ts) = sync_caller;
    report::write_results(
        "redis_hit",
        &serde_json::json!({
            "rows": results,
            "alternating": {
                "rounds": rounds,
                "one_caller_ours_ns": o1.as_nanos() as f64,
                "one_caller_raw_ns": t1.as_nanos() as f64,
                "sync_caller_ours_ns": os.as_nanos() as f64,
                "sync_caller_raw_ns": ts.as_nanos() as f64,
                "many_callers_ours_ns": o64.as_nanos() as f64,
                "many_callers_raw_ns": t64.as_nanos() as f64,
            },
        }),
    );
    assert_eq!(server.command_calls("keys"), 0, "KEYS was sent");
}
