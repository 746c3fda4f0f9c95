//! The moka local store behind the same pipeline (cargo feature `moka`).
#![cfg(feature = "moka")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Once;

use layercache::{cache_invalidate, cached, entry, fn_cache, Config, LocalStoreKind};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(key_prefix = "moka_search", key = "{q}:{page}", max_entries = 32)]
fn search(q: &str, page: u32) -> String {
    CALLS.fetch_add(1, SeqCst);
    format!("{q}/{page}")
}

#[cache_invalidate(prefix = "moka_search:{q}:")]
fn reindex(q: &str) {}

/// Every test of this binary runs on moka: the first to start sets it up.
fn init_moka() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        layercache::init(Config::builder().local_store(LocalStoreKind::Moka).build()).unwrap();
    });
}

#[cached(key_prefix = "moka_blob", max_bytes = 1048576)]
fn blob(id: u64, len: usize) -> Vec<u8> {
    vec![id as u8; len]
}

#[test]
fn the_moka_store_caches_invalidates_and_bounds_like_the_default() {
    init_moka();
    assert_eq!(search("a", 1), "a/1");
    assert_eq!(search("a", 1), "a/1");
    assert_eq!(search("a", 2), "a/2");
    assert_eq!(search("b", 1), "b/1");
    assert_eq!(CALLS.load(SeqCst), 3);
    reindex("a");
    assert!(!entry!(search("a", 1)).is_cached());
    assert!(!entry!(search("a", 2)).is_cached());
    assert!(entry!(search("b", 1)).is_cached());
    for page in 0..500 {
        search("c", page);
    }
    let s = fn_cache!(search).stats();
    assert!(s.entries <= 32, "{} entries over a bound of 32", s.entries);
    assert!(s.evictions > 0);
}

#[test]
fn the_moka_store_holds_max_bytes_through_10_000_inserts_of_mixed_sizes() {
    init_moka();
    let cache = fn_cache!(blob);
    for id in 0..10_000u64 {
        // 10 B to 64 KiB: most small, one in 64 large.
        let len = if id % 64 == 0 {
            65_536
        } else {
            10 + (id as usize * 97) % 4_000
        };
        blob(id, len);
        if id % 100 == 99 {
            // moka bounds in its maintenance, which `weight` runs.
            let weight = cache.weight();
            assert!(
                weight <= 1 << 20,
                "{weight} bytes after insert {id} over 1 MiB"
            );
        }
    }
    let s = cache.stats();
    assert!(s.evictions > 0);
    assert!(
        cache.weight() > 1 << 19,
        "the bound is used: {} bytes",
        cache.weight()
    );
}
