//! The moka local store behind the same pipeline (cargo feature `moka`).
#![cfg(feature = "moka")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use layercache::{cache_invalidate, cached, entry, fn_cache, Config, LocalStoreKind};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(key_prefix = "moka_search", key = "{q}:{page}", max_entries = 32)]
fn search(q: &str, page: u32) -> String {
    CALLS.fetch_add(1, SeqCst);
    format!("{q}/{page}")
}

#[cache_invalidate(prefix = "moka_search:{q}:")]
fn reindex(q: &str) {}

#[test]
fn the_moka_store_caches_invalidates_and_bounds_like_the_default() {
    layercache::init(Config::builder().local_store(LocalStoreKind::Moka).build()).unwrap();
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
