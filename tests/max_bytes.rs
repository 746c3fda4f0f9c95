//! `max_bytes`: the byte bound of a function's local tier and of a named
//! cache, each entry weighed by the estimate of `layercache::local::weigh`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use layercache::{cached, entry, fn_cache, sync::Cache};

const MIB: u64 = 1 << 20;

static BLOB_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(key_prefix = "max_bytes_blob", max_bytes = 1048576)]
fn blob(id: u64, len: usize) -> Vec<u8> {
    BLOB_CALLS.fetch_add(1, SeqCst);
    vec![id as u8; len]
}

#[cached(key_prefix = "max_bytes_both", max_bytes = 1048576, max_entries = 100)]
fn small(id: u64) -> String {
    format!("value {id}")
}

/// 10,000 sizes from 10 B to 64 KiB, spread evenly over their logarithm
/// (most entries small, a few large), the same on every run.
fn mixed_sizes() -> impl Iterator<Item = usize> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..10_000).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let fraction = (state >> 11) as f64 / (1u64 << 53) as f64;
        (10.0 * 6553.6f64.powf(fraction)) as usize
    })
}

#[test]
fn a_function_with_max_bytes_stays_under_it_through_10_000_inserts_of_mixed_sizes() {
    let cache = fn_cache!(blob);
    let mut largest = 0;
    for (id, len) in mixed_sizes().enumerate() {
        blob(id as u64, len);
        let weight = cache.weight();
        assert!(weight <= MIB, "{weight} bytes after insert {id} over 1 MiB");
        largest = largest.max(len);
    }
    assert!(largest > 60_000, "the sizes reach 64 KiB ({largest})");
    let stats = cache.stats();
    assert!(stats.evictions > 0, "the bound evicted entries");
    assert!(
        cache.weight() > MIB / 2,
        "the bound is used, not emptied: {} bytes",
        cache.weight()
    );

    // Recent small entries stay: written after the flood, each then hits.
    let calls = BLOB_CALLS.load(SeqCst);
    for id in 0..20 {
        blob(1_000_000 + id, 100);
    }
    for id in 0..20 {
        assert!(entry!(blob(1_000_000 + id, 100)).is_cached(), "entry {id}");
        blob(1_000_000 + id, 100);
    }
    assert_eq!(BLOB_CALLS.load(SeqCst), calls + 20, "the second calls hit");
}

#[test]
fn max_bytes_with_max_entries_holds_both_bounds() {
    let cache = fn_cache!(small);
    for id in 0..1_000 {
        small(id);
    }
    assert!(
        cache.len() <= 100,
        "{} entries over a bound of 100",
        cache.len()
    );
    assert!(cache.weight() <= MIB);
    assert!(
        cache.len() >= 50,
        "small entries fill the entry bound: {}",
        cache.len()
    );
}

#[test]
fn a_named_cache_with_max_bytes_stays_under_it_through_10_000_inserts_of_mixed_sizes() {
    let pages = Cache::named("max_bytes_pages").max_bytes(MIB).build();
    for (id, len) in mixed_sizes().enumerate() {
        pages.set(
            &format!("page:{id}"),
            "x".repeat(len),
            Duration::from_secs(60),
        );
        let weight = pages.weight();
        assert!(weight <= MIB, "{weight} bytes after set {id} over 1 MiB");
    }
    assert!(pages.weight() > MIB / 2, "{} bytes", pages.weight());
    for id in 0..20 {
        pages.set(
            &format!("recent:{id}"),
            "y".repeat(100),
            Duration::from_secs(60),
        );
    }
    for id in 0..20 {
        assert_eq!(
            pages
                .get::<String>(&format!("recent:{id}"))
                .map(|v| v.len()),
            Some(100),
            "recent:{id}"
        );
    }
}

#[test]
fn a_function_without_max_bytes_weighs_one_per_entry() {
    #[cached(key_prefix = "max_bytes_unbounded")]
    fn plain(id: u64) -> Vec<u8> {
        vec![0; id as usize * 1000]
    }
    for id in 0..10 {
        plain(id);
    }
    assert_eq!(fn_cache!(plain).weight(), 10);
}
