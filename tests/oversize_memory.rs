//! A value far over the shared size limit costs about the limit, not its
//! size: the encoder stops at `max_value_size`, so a 64 MiB value against
//! the 1 MiB default raises peak memory by well under 4 MiB beyond the
//! value itself (measured by a counting global allocator), and is counted
//! as `oversize`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Old and new blocks may both be live during the copy.
        grew(new_size);
        let out = unsafe { System.realloc(ptr, layout, new_size) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
        out
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;
const VALUE: usize = 64 * MIB;

#[layercache::cached(timeout = 300, key_prefix = "huge", tier = "shared")]
fn huge(fill: u8) -> Vec<u8> {
    vec![fill; VALUE]
}

#[test]
fn a_64_mib_value_against_a_1_mib_limit_raises_peak_memory_by_less_than_4_mib() {
    let dir = std::env::temp_dir().join(format!("layercache-oversize-{}", std::process::id()));
    layercache::init(
        layercache::Config::builder()
            .cache_type(layercache::CacheType::Filesystem)
            .cache_dir(&dir)
            .max_value_size(MIB)
            .build(),
    )
    .unwrap();
    // Starts the shared tier, its runtime and its bus outside the measure.
    assert_eq!(huge_small(), 3);

    let baseline = CURRENT.load(Relaxed);
    PEAK.store(baseline, Relaxed);
    let started = Instant::now();
    let value = huge(7);
    let took = started.elapsed();
    let rise = PEAK.load(Relaxed) - baseline;
    assert_eq!(value.len(), VALUE);
    drop(value);

    let beyond_the_value = rise.saturating_sub(VALUE);
    println!(
        "64 MiB value, 1 MiB limit: peak rose {:.2} MiB beyond the value itself, in {took:?}",
        beyond_the_value as f64 / MIB as f64
    );
    assert!(
        beyond_the_value < 4 * MIB,
        "peak rose {beyond_the_value} bytes beyond the value"
    );
    let stats = layercache::stats();
    let f = stats.function("huge").expect("counted");
    assert_eq!(f.shared.oversize, 1, "counted as oversize");
    assert_eq!(f.shared.writes, 0, "not written");
    let _ = std::fs::remove_dir_all(dir);
}

#[layercache::cached(timeout = 300, key_prefix = "small", tier = "shared")]
fn huge_small() -> u64 {
    3
}
