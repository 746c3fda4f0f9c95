//! Memory per local entry: bytes allocated per entry beyond its key and
//! value (a `u64 -> u64` entry: 16 bytes of payload), at 1 000 000
//! entries, for a `#[cached]` function, raw quick_cache and raw moka, and
//! the `cached` crate's TTL store. A counting global allocator measures
//! live heap bytes.
//!
//! `cargo bench --bench memory`

#[path = "support/report.rs"]
mod report;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use cached::Cached;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ENTRIES: u64 = 1_000_000;
const PAYLOAD: f64 = 16.0;

#[layercache::cached(timeout = 3600, max_entries = 2000000, key_prefix = "memory")]
fn lc_value(k: u64) -> u64 {
    k.wrapping_mul(31)
}

/// Live bytes allocated by `fill` (whatever it keeps alive is returned and
/// dropped after the measurement).
fn measure<T>(fill: impl FnOnce() -> T) -> (f64, T) {
    let before = LIVE.load(Relaxed);
    let kept = fill();
    let after = LIVE.load(Relaxed);
    ((after - before) as f64 / ENTRIES as f64, kept)
}

fn main() {
    println!(
        "memory: live heap bytes per entry at {ENTRIES} u64 -> u64 entries (payload 16 bytes)"
    );
    println!(
        "{:<22} {:>12} {:>16}",
        "store", "bytes/entry", "beyond payload"
    );
    let mut rows = Vec::new();
    let mut row = |name: &str, per_entry: f64| {
        println!(
            "{:<22} {:>12.1} {:>16.1}",
            name,
            per_entry,
            per_entry - PAYLOAD
        );
        rows.push(serde_json::json!({
            "store": name, "bytes_per_entry": per_entry, "overhead": per_entry - PAYLOAD,
        }));
    };

    // The function's cache (and its metrics) exist from the first call:
    // count them too, as a user would pay them.
    let (lc, ()) = measure(|| {
        for k in 0..ENTRIES {
            std::hint::black_box(lc_value(k));
        }
    });
    assert_eq!(layercache::fn_cache!(lc_value).len(), ENTRIES);
    row("layercache", lc);
    layercache::fn_cache!(lc_value).invalidate_all();

    let (qc, cache) = measure(|| {
        let cache = quick_cache::sync::Cache::<u64, u64>::new(2 * ENTRIES as usize);
        for k in 0..ENTRIES {
            cache.insert(k, k.wrapping_mul(31));
        }
        cache
    });
    assert_eq!(cache.len() as u64, ENTRIES);
    drop(cache);
    row("quick_cache", qc);

    let (mk, cache) = measure(|| {
        let cache = moka::sync::Cache::<u64, u64>::builder()
            .max_capacity(2 * ENTRIES)
            .time_to_live(Duration::from_secs(3600))
            .build();
        for k in 0..ENTRIES {
            cache.insert(k, k.wrapping_mul(31));
        }
        cache.run_pending_tasks();
        cache
    });
    assert_eq!(cache.entry_count(), ENTRIES);
    drop(cache);
    row("moka", mk);

    let (cc, cache) = measure(|| {
        let mut cache =
            cached::LruTtlCache::<u64, u64>::new(2 * ENTRIES as usize, Duration::from_secs(3600));
        for k in 0..ENTRIES {
            cache.cache_set(k, k.wrapping_mul(31));
        }
        cache
    });
    assert_eq!(cache.cache_size() as u64, ENTRIES);
    drop(cache);
    row("cached_crate (LruTtl)", cc);

    report::write_results(
        "memory",
        &serde_json::json!({ "entries": ENTRIES, "payload": PAYLOAD, "rows": rows }),
    );
}
