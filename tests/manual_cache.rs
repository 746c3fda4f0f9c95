//! The manual cache (guide 2.3): get / set / delete / clear, prefix delete
//! and get-or-insert, blocking and async, sharing one keyspace with functions.

use std::time::Duration;

use layercache::{cached, entry, future, sync};

const MINUTE: Duration = Duration::from_secs(60);

#[cached(key_prefix = "manual_fn")]
fn double(x: u32) -> u32 {
    x * 2
}

// One test: `clear` empties every cache of the process and the counters are
// process-wide, so the steps run in order.
#[test]
fn the_manual_cache_follows_the_guides_operations() {
    let cache = sync::Cache::global();
    assert_eq!(cache.get::<String>("my_key"), None);
    cache.set("my_key", "expensive".to_string(), MINUTE);
    assert_eq!(cache.get::<String>("my_key").as_deref(), Some("expensive"));
    assert!(cache.has("my_key"));
    assert_eq!(
        cache.get::<u32>("my_key"),
        None,
        "read as another type: a miss, not a wrong value"
    );

    cache.set("user:1", 1u32, MINUTE);
    cache.set("user:2", 2u32, MINUTE);
    cache.set("users_total", 2u32, MINUTE);
    assert_eq!(cache.delete_prefix("user:"), 2);
    assert_eq!(cache.get::<u32>("users_total"), Some(2));

    let mut runs = 0;
    for _ in 0..3 {
        let v = cache.get_or_insert_with("computed", MINUTE, || {
            runs += 1;
            vec![1u8, 2, 3]
        });
        assert_eq!(v, vec![1, 2, 3]);
    }
    assert_eq!(runs, 1);

    assert!(cache.delete("my_key"));
    assert!(!cache.delete("my_key"));

    double(21);
    assert!(entry!(double(21)).is_cached());
    assert!(
        cache.clear() >= 3,
        "clear drops manual entries and function entries"
    );
    assert!(!entry!(double(21)).is_cached());
    assert_eq!(cache.get::<u32>("users_total"), None);

    let stats = layercache::stats();
    let manual = stats.function(layercache::MANUAL_CACHE_NAME).unwrap();
    // hits: my_key, users_total, computed x2; misses: my_key (before set), my_key as u32,
    // computed (first), users_total (after clear)
    assert_eq!((manual.hits, manual.misses), (4, 4));

    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(the_async_manual_cache_has_the_same_operations());
}

async fn the_async_manual_cache_has_the_same_operations() {
    let cache = future::Cache::global();
    cache
        .set("async:page", "<h1>hi</h1>".to_string(), MINUTE)
        .await;
    assert_eq!(
        cache.get::<String>("async:page").await.as_deref(),
        Some("<h1>hi</h1>")
    );
    let n = cache
        .get_or_insert_with("async:n", MINUTE, async { 41u64 + 1 })
        .await;
    assert_eq!(n, 42);
    assert!(cache.delete("async:page").await);
    assert_eq!(cache.delete_prefix("async:").await, 1);
    assert!(!cache.has("async:n").await);
}
