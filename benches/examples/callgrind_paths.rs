//! One hot path, called N times after a warm-up, for counting its
//! instructions under callgrind: `scripts/callgrind.sh` zeroes the counters
//! when the measured calls start (`measure_start`) and dumps them when they
//! end (`measure_end`), so start-up, warm-up and exit are left out; it
//! divides by N and subtracts the `empty` path (the loop alone).
//!
//!     callgrind_paths --list            # name, needs Redis (yes/no), what it measures
//!     callgrind_paths <path> <N>        # CALLGRIND_REDIS_URL=redis://... for shared paths
//!
//! Only the public API and macros are used, so the same source builds at an
//! older commit (`scripts/callgrind.sh --base <rev>` copies it there).
//! Every path checks afterwards, from `layercache::stats()`, that its calls
//! really were the hits or misses it names: a shared timeout under valgrind
//! would otherwise be measured as a miss without anyone noticing.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use layercache::{cached, CacheType, Config};

/// Distinct keys the local hit paths cycle through; N is a multiple of it,
/// so the N and 2N runs touch every key equally often.
const LOCAL_KEYS: u64 = 1024;
/// Distinct keys the shared hit paths cycle through.
const SHARED_KEYS: u64 = 64;
/// Bound of the local miss paths' caches: small, so the measured misses run
/// in steady state (each one evicts an entry) and memory does not grow with N.
const MISS_MAX_ENTRIES: u64 = 1024;
/// The large value of the `&str` path.
const PAGE: usize = 1024;
/// The shared paths' value, as in `benches/redis_hit.rs`.
const SHARED_VALUE_LEN: usize = 100;

/// A measured path: its name, whether it needs Redis, what it is.
struct Path {
    name: &'static str,
    redis: bool,
    about: &'static str,
}

const PATHS: &[Path] = &[
    Path {
        name: "empty",
        redis: false,
        about: "the loop alone (subtracted from every path)",
    },
    Path {
        name: "local_hit_u64",
        redis: false,
        about: "#[cached] fn(u64) -> u64, sync local hit",
    },
    Path {
        name: "local_hit_u64_nometrics",
        redis: false,
        about: "the same with Config::metrics(false)",
    },
    Path {
        name: "local_hit_u64_async",
        redis: false,
        about: "the same async, current-thread tokio runtime",
    },
    Path {
        name: "local_hit_str_1k",
        redis: false,
        about: "#[cached] fn(&str) -> Vec<u8> (1 KiB), sync local hit",
    },
    Path {
        name: "local_miss_u64",
        redis: false,
        about: "sync local-only miss, new key per call, max_entries = 1024 (each miss evicts one)",
    },
    Path {
        name: "local_miss_u64_max_bytes",
        redis: false,
        about: "local_miss_u64 bounded by max_bytes (about 1024 entries) instead of max_entries",
    },
    Path {
        name: "local_miss_1k",
        redis: false,
        about: "sync local-only miss of fn(u64) -> Vec<u8> (1 KiB), max_entries = 1024",
    },
    Path {
        name: "local_miss_1k_max_bytes",
        redis: false,
        about: "the same bounded by max_bytes (about 1024 entries): the cost of weighing",
    },
    Path {
        name: "local_miss_u64_async",
        redis: false,
        about: "the same async",
    },
    Path {
        name: "shared_hit_sync",
        redis: true,
        about: "tier = \"shared\" fn(u64) -> String (100 B), sync hit",
    },
    Path {
        name: "shared_hit_async",
        redis: true,
        about: "the same async",
    },
    Path {
        name: "shared_miss_sync",
        redis: true,
        about: "tier = \"shared\", new key each call: GET, origin, SET; sync",
    },
    Path {
        name: "shared_miss_async",
        redis: true,
        about: "the same async",
    },
    Path {
        name: "cached_crate_hit_u64",
        redis: false,
        about: "peer: the cached crate's #[cached(ttl_secs)] fn(u64) -> u64 hit",
    },
    Path {
        name: "cached_crate_hit_str_1k",
        redis: false,
        about: "peer: the cached crate, &str argument (String key), 1 KiB Vec<u8>",
    },
    Path {
        name: "quick_cache_get",
        redis: false,
        about: "floor: raw quick_cache::sync::Cache<u64, u64>::get",
    },
    Path {
        name: "quick_cache_get_clock",
        redis: false,
        about: "floor: the same + Instant::now()",
    },
    Path {
        name: "quick_cache_get_str_1k",
        redis: false,
        about: "floor: quick_cache get by &str, 1 KiB Vec<u8> clone + Instant::now()",
    },
    Path {
        name: "redis_get_sync",
        redis: true,
        about: "floor: raw redis-rs blocking GET + MessagePack decode (100 B)",
    },
    Path {
        name: "redis_get_async",
        redis: true,
        about: "floor: raw redis-rs multiplexed GET + decode, current-thread runtime",
    },
];

#[cached(timeout = 300, key_prefix = "cg_hit_u64")]
fn hit_u64(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached(timeout = 300, key_prefix = "cg_hit_u64_async")]
async fn hit_u64_async(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached(timeout = 300, key_prefix = "cg_hit_str_1k")]
fn hit_str_1k(name: &str) -> Vec<u8> {
    vec![name.len() as u8; PAGE]
}

#[cached(timeout = 300, key_prefix = "cg_miss_u64", max_entries = 1024)]
fn miss_u64(x: u64) -> u64 {
    x.wrapping_mul(x)
}

// About 40 bytes an entry (key, Stored<u64>, the value's varint): 1024 entries.
#[cached(timeout = 300, key_prefix = "cg_miss_u64_bytes", max_bytes = 40960)]
fn miss_u64_max_bytes(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached(timeout = 300, key_prefix = "cg_miss_1k", max_entries = 1024)]
fn miss_1k(x: u64) -> Vec<u8> {
    vec![x as u8; PAGE]
}

// About 1,090 bytes an entry: 1024 entries.
#[cached(timeout = 300, key_prefix = "cg_miss_1k_bytes", max_bytes = 1116160)]
fn miss_1k_max_bytes(x: u64) -> Vec<u8> {
    vec![x as u8; PAGE]
}

#[cached(timeout = 300, key_prefix = "cg_miss_u64_async", max_entries = 1024)]
async fn miss_u64_async(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached(timeout = 3600, key_prefix = "cg_shared_sync", tier = "shared")]
fn shared_sync(id: u64) -> String {
    shared_value(id)
}

#[cached(timeout = 3600, key_prefix = "cg_shared_async", tier = "shared")]
async fn shared_async(id: u64) -> String {
    shared_value(id)
}

#[cached::proc_macro::cached(ttl_secs = 300)]
fn cc_hit_u64(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cached::proc_macro::cached(ttl_secs = 300, key = "String", convert = r#"{ name.to_string() }"#)]
fn cc_hit_str_1k(name: &str) -> Vec<u8> {
    vec![name.len() as u8; PAGE]
}

fn shared_value(id: u64) -> String {
    let _ = id;
    "v".repeat(SHARED_VALUE_LEN)
}

/// Runs `f(0..warm + calls)` on this thread, the last `calls` between the markers.
#[inline(never)]
fn drive(warm: u64, calls: u64, mut f: impl FnMut(u64) -> u64) {
    // One loop, so `f` is inlined into one call site, as in a real caller.
    for seq in 0..warm + calls {
        if seq == warm {
            measure_start();
        }
        black_box(f(black_box(seq)));
    }
    measure_end();
}

/// Entering it zeroes callgrind's counters (`--zero-before`): the
/// measured calls start here. Not inlined, so callgrind sees the call; its
/// body differs from `measure_end`'s so the compiler cannot merge the two.
#[inline(never)]
fn measure_start() {
    black_box("start");
}

/// Entering it dumps callgrind's counters (`--dump-before`): the measured
/// calls end here.
#[inline(never)]
fn measure_end() {
    black_box("end");
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// [`drive`] inside one `block_on` of the current-thread runtime `rt`, so
/// each call is polled on this thread. The markers are plain functions:
/// an async one would be entered again on every poll.
#[inline(never)]
fn drive_async<F: Future<Output = u64>>(
    rt: &tokio::runtime::Runtime,
    warm: u64,
    calls: u64,
    mut f: impl FnMut(u64) -> F,
) {
    rt.block_on(async {
        for seq in 0..warm + calls {
            if seq == warm {
                measure_start();
            }
            black_box(f(black_box(seq)).await);
        }
        measure_end();
    });
}

fn init_local(metrics: bool) {
    layercache::init(
        Config::builder()
            .cache_type(CacheType::Simple)
            .metrics(metrics)
            .build(),
    )
    .expect("first init");
}

fn redis_url() -> String {
    std::env::var("CALLGRIND_REDIS_URL")
        .expect("CALLGRIND_REDIS_URL=redis://127.0.0.1:PORT for the shared paths")
}

fn init_shared() {
    layercache::init(
        Config::builder()
            .cache_type(CacheType::Redis)
            .redis_url(redis_url())
            .key_prefix("cg")
            // Valgrind slows the process ~50x: the default 50 ms budget
            // would turn some hits into timed-out misses.
            .shared_timeout(Duration::from_secs(5))
            .build(),
    )
    .expect("first init");
}

/// Panics unless function `name` counted at least `calls` of `kind`
/// (`local_hits`, `shared_hits` or `misses`) and no shared error.
fn check(name: &str, kind: &str, calls: u64) {
    let stats = layercache::stats();
    let f = stats
        .function(name)
        .unwrap_or_else(|| panic!("{name}: no stats"));
    let counted = match kind {
        "local_hits" => f.local_hits,
        "shared_hits" => f.shared_hits,
        _ => f.misses,
    };
    assert!(
        counted >= calls,
        "{name}: {counted} {kind} for {calls} measured calls"
    );
    assert_eq!(f.shared.errors(), 0, "{name}: shared errors");
}

fn run(path: &str, calls: u64) {
    let local_warm = 2 * LOCAL_KEYS;
    let miss_warm = 4 * MISS_MAX_ENTRIES;
    let shared_warm = 2 * SHARED_KEYS;
    match path {
        "empty" => drive(local_warm, calls, |seq| seq % LOCAL_KEYS),
        "local_hit_u64" | "local_hit_u64_nometrics" => {
            let metrics = path == "local_hit_u64";
            init_local(metrics);
            drive(local_warm, calls, |seq| hit_u64(seq % LOCAL_KEYS));
            if metrics {
                check("cg_hit_u64", "local_hits", calls);
            }
        }
        "local_hit_u64_async" => {
            init_local(true);
            drive_async(&current_thread(), local_warm, calls, |seq| {
                hit_u64_async(seq % LOCAL_KEYS)
            });
            check("cg_hit_u64_async", "local_hits", calls);
        }
        "local_hit_str_1k" => {
            init_local(true);
            let names = str_keys();
            drive(local_warm, calls, |seq| {
                hit_str_1k(&names[(seq % LOCAL_KEYS) as usize]).len() as u64
            });
            check("cg_hit_str_1k", "local_hits", calls);
        }
        "local_miss_u64" => {
            init_local(true);
            drive(miss_warm, calls, miss_u64);
            check("cg_miss_u64", "misses", calls);
        }
        "local_miss_u64_max_bytes" => {
            init_local(true);
            drive(miss_warm, calls, miss_u64_max_bytes);
            check("cg_miss_u64_bytes", "misses", calls);
        }
        "local_miss_1k" => {
            init_local(true);
            drive(miss_warm, calls, |x| miss_1k(x).len() as u64);
            check("cg_miss_1k", "misses", calls);
        }
        "local_miss_1k_max_bytes" => {
            init_local(true);
            drive(miss_warm, calls, |x| miss_1k_max_bytes(x).len() as u64);
            check("cg_miss_1k_bytes", "misses", calls);
        }
        "local_miss_u64_async" => {
            init_local(true);
            drive_async(&current_thread(), miss_warm, calls, miss_u64_async);
            check("cg_miss_u64_async", "misses", calls);
        }
        "shared_hit_sync" => {
            init_shared();
            drive(shared_warm, calls, |seq| {
                shared_sync(seq % SHARED_KEYS).len() as u64
            });
            check("cg_shared_sync", "shared_hits", calls);
        }
        "shared_hit_async" => {
            init_shared();
            drive_async(&current_thread(), shared_warm, calls, |seq| async move {
                shared_async(seq % SHARED_KEYS).await.len() as u64
            });
            check("cg_shared_async", "shared_hits", calls);
        }
        "shared_miss_sync" => {
            init_shared();
            drive(shared_warm, calls, |seq| shared_sync(seq).len() as u64);
            check("cg_shared_sync", "misses", calls);
        }
        "shared_miss_async" => {
            init_shared();
            drive_async(&current_thread(), shared_warm, calls, |seq| async move {
                shared_async(seq).await.len() as u64
            });
            check("cg_shared_async", "misses", calls);
        }
        "cached_crate_hit_u64" => drive(local_warm, calls, |seq| cc_hit_u64(seq % LOCAL_KEYS)),
        "cached_crate_hit_str_1k" => {
            let names = str_keys();
            drive(local_warm, calls, |seq| {
                cc_hit_str_1k(&names[(seq % LOCAL_KEYS) as usize]).len() as u64
            });
        }
        "quick_cache_get" | "quick_cache_get_clock" => {
            let clock = path == "quick_cache_get_clock";
            let qc = quick_cache::sync::Cache::<u64, u64>::new(LOCAL_KEYS as usize * 2);
            for k in 0..LOCAL_KEYS {
                qc.insert(k, k.wrapping_mul(k));
            }
            drive(local_warm, calls, |seq| {
                let v = qc.get(&(seq % LOCAL_KEYS)).unwrap_or(0);
                if clock {
                    black_box(Instant::now());
                }
                v
            });
        }
        "quick_cache_get_str_1k" => {
            let names = str_keys();
            let qc = quick_cache::sync::Cache::<String, Vec<u8>>::new(LOCAL_KEYS as usize * 2);
            for name in &names {
                qc.insert(name.clone(), vec![name.len() as u8; PAGE]);
            }
            drive(local_warm, calls, |seq| {
                let v = qc.get(names[(seq % LOCAL_KEYS) as usize].as_str());
                black_box(Instant::now());
                v.map_or(0, |v| v.len() as u64)
            });
        }
        "redis_get_sync" => {
            let client = redis::Client::open(redis_url()).expect("redis URL");
            let mut conn = client.get_connection().expect("connect to Redis");
            let keys = raw_keys();
            for key in &keys {
                let _: () = redis::Commands::set(&mut conn, key, raw_value()).expect("SET");
            }
            drive(shared_warm, calls, |seq| {
                let key = &keys[(seq % SHARED_KEYS) as usize];
                let bytes: Vec<u8> = redis::Commands::get(&mut conn, key).expect("GET");
                decode(&bytes)
            });
        }
        "redis_get_async" => {
            let client = redis::Client::open(redis_url()).expect("redis URL");
            // The connection's driver task lives on this runtime: the loop must use it too.
            let rt = current_thread();
            let conn = rt
                .block_on(client.get_multiplexed_async_connection())
                .expect("connect to Redis");
            let keys = raw_keys();
            rt.block_on(async {
                let mut conn = conn.clone();
                for key in &keys {
                    let _: () = redis::AsyncCommands::set(&mut conn, key, raw_value())
                        .await
                        .expect("SET");
                }
            });
            drive_async(&rt, shared_warm, calls, |seq| {
                let mut conn = conn.clone();
                let key = &keys[(seq % SHARED_KEYS) as usize];
                async move {
                    let bytes: Vec<u8> = redis::AsyncCommands::get(&mut conn, key)
                        .await
                        .expect("GET");
                    decode(&bytes)
                }
            });
        }
        other => {
            eprintln!("unknown path {other}; see --list");
            std::process::exit(2);
        }
    }
}

/// The `&str` paths' keys, built before the loop so the loop measures lookups only.
fn str_keys() -> Vec<String> {
    (0..LOCAL_KEYS).map(|i| format!("user:{i:04}")).collect()
}

/// Keys shaped like layercache's shared keys, so both sides send the same bytes.
fn raw_keys() -> Vec<String> {
    (0..SHARED_KEYS)
        .map(|i| format!("cg:cg_raw:{i:032x}"))
        .collect()
}

fn raw_value() -> Vec<u8> {
    rmp_serde::to_vec(&shared_value(0)).expect("encode")
}

fn decode(bytes: &[u8]) -> u64 {
    rmp_serde::from_slice::<String>(bytes)
        .expect("decode")
        .len() as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for p in PATHS {
                let redis = if p.redis { "yes" } else { "no" };
                println!("{}\t{redis}\t{}", p.name, p.about);
            }
        }
        [path, calls] => run(path, calls.parse().expect("N: a number of calls")),
        _ => {
            eprintln!("usage: callgrind_paths --list | <path> <N>");
            std::process::exit(2);
        }
    }
}
