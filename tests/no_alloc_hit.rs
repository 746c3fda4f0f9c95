//! A local hit of a `Copy` value allocates nothing, whatever its
//! arguments (borrowed ones included): counted by a global allocator that
//! tallies this thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-local may be gone while a thread exits.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[layercache::cached(timeout = 300)]
fn square(x: u64) -> u64 {
    x * x
}

#[layercache::cached(timeout = 300, key_prefix = "no_alloc_pair")]
async fn pair(a: u32, b: u8) -> (u32, u8) {
    (a, b)
}

#[test]
fn a_sync_hit_of_a_copy_value_allocates_nothing() {
    for k in 0..64 {
        square(k);
    }
    // Warm: the thread's metrics slot and sampling state exist now.
    for k in 0..1000 {
        square(k % 64);
    }
    let before = allocations();
    let mut sum = 0;
    for k in 0..100_000u64 {
        sum += square(k % 64);
    }
    assert_eq!(allocations() - before, 0, "allocations on 100 000 hits");
    assert!(sum > 0);
    // The counter does see this thread's allocations: a miss stores an entry.
    let before = allocations();
    square(1_000_000);
    assert!(
        allocations() > before,
        "a miss allocates (the counter works)"
    );
}

#[test]
fn an_async_hit_of_a_copy_value_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for k in 0..1000u32 {
            pair(k % 16, 7).await;
        }
        let before = allocations();
        for k in 0..100_000u32 {
            assert_eq!(pair(k % 16, 7).await, (k % 16, 7));
        }
        assert_eq!(allocations() - before, 0, "allocations on 100 000 hits");
    });
}

#[layercache::cached(timeout = 300, key_prefix = "no_alloc_borrowed")]
fn weight(name: &str, ids: &[u32], scale: &u64) -> u64 {
    (name.len() + ids.len()) as u64 * scale
}

#[test]
fn a_hit_with_borrowed_arguments_builds_no_owned_key() {
    let names: Vec<String> = (0..16).map(|i| format!("user:{i:04}")).collect();
    let ids = [1u32, 2, 3];
    for name in &names {
        weight(name, &ids, &2);
    }
    let before = allocations();
    let mut sum = 0;
    for k in 0..100_000 {
        sum += weight(&names[k % 16], &ids, &2);
    }
    assert_eq!(allocations() - before, 0, "allocations on 100 000 hits");
    assert_eq!(sum, 100_000 * 24);
    let stats = layercache::stats();
    let f = stats.function("no_alloc_borrowed").unwrap();
    assert_eq!((f.local_hits, f.misses), (100_000, 16));
}

/// Hashes `(7u8,)` while it is itself being hashed (a re-entrant key hash).
struct HashesInside;

impl serde::Serialize for HashesInside {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = layercache::key::stable_hash(&(7u8,)).map_err(serde::ser::Error::custom)?;
        s.serialize_u128(inner)
    }
}

#[test]
fn hashing_a_key_allocates_nothing_once_the_thread_has_hashed_one() {
    use layercache::key::render_hashed_typed;
    let query = "rust cache layers".to_string();
    // Longer than the one-shot buffer: streams into the hashers.
    let long = "x".repeat(4096);
    let mut out = String::with_capacity(64);
    let hash_all = |out: &mut String| {
        out.clear();
        render_hashed_typed(&(7u64, &query), out, "(u64,&str)").unwrap();
        out.clear();
        render_hashed_typed(&(&long,), out, "(&str)").unwrap();
        out.clear();
        render_hashed_typed(&(HashesInside,), out, "(HashesInside)").unwrap();
    };
    // Warm: the thread's key buffer exists now.
    hash_all(&mut out);
    let before = allocations();
    for _ in 0..1000 {
        hash_all(&mut out);
    }
    assert_eq!(allocations() - before, 0, "allocations on 3 000 key hashes");
}
