//! `CACHE_TYPE=null` (here set through `init`): caching is off, every call
//! runs the function and counts as a miss; invalidation is harmless.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use layercache::{cache_invalidate, cached, entry, CacheType, Config};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(key_prefix = "null_square")]
fn square(x: u64) -> u64 {
    CALLS.fetch_add(1, SeqCst);
    x * x
}

#[cache_invalidate(square(x))]
fn touch(x: u64) {}

#[test]
fn null_mode_runs_the_function_on_every_call_and_counts_misses() {
    layercache::init(Config::builder().cache_type(CacheType::Null).build()).unwrap();
    for _ in 0..5 {
        assert_eq!(square(3), 9);
    }
    touch(3);
    entry!(square(3)).put(10);
    assert_eq!(square(3), 9, "put is ignored when caching is off");
    assert_eq!(CALLS.load(SeqCst), 6);

    let manual = layercache::sync::Cache::global();
    manual.set("k", 1u32, std::time::Duration::from_secs(60));
    assert_eq!(manual.get::<u32>("k"), None);

    let stats = layercache::stats();
    let s = stats.function("null_square").unwrap();
    assert_eq!((s.hits, s.misses, s.entries), (0, 6, 0));
    assert_eq!(s.hit_rate(), 0.0);
}
