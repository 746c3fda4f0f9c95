//! Named manual caches (`sync::Cache::named`, `future::Cache::named`) and the
//! batch operations (`get_many`, `set_many`, `delete_many`), in one process
//! with an injected clock. Across processes over Redis: `redis_fleet`.

#[path = "support/mock_runtime.rs"]
mod mock_runtime;

use std::time::Duration;

use layercache::{future, sync};
use mock_runtime::clock;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

// One test: the clock is shared by the whole process, so the steps run in order.
#[test]
fn named_caches_keep_their_own_timeouts_and_keys_and_clear_only_their_own_entries() {
    let mock = clock();
    let sessions = sync::Cache::named("sessions")
        .timeout(Duration::from_secs(60))
        .build();
    let carts = sync::Cache::named("carts")
        .timeout(Duration::from_secs(10))
        .build();
    let global = sync::Cache::global();
    assert_eq!(sessions.name(), "sessions");

    sessions.set_default("k", "session".to_string());
    carts.set_default("k", "cart".to_string());
    global.set_default("k", "global".to_string());
    assert_eq!(sessions.get::<String>("k").as_deref(), Some("session"));
    assert_eq!(carts.get::<String>("k").as_deref(), Some("cart"));
    assert_eq!(global.get::<String>("k").as_deref(), Some("global"));

    mock.advance(Duration::from_secs(10));
    assert_eq!(carts.get::<String>("k"), None, "carts live 10 s");
    assert!(sessions.has("k") && global.has("k"));
    mock.advance(Duration::from_secs(20));
    assert_eq!(
        global.get::<String>("k"),
        None,
        "the global default is 30 s"
    );
    assert!(sessions.has("k"));
    mock.advance(Duration::from_secs(30));
    assert_eq!(sessions.get::<String>("k"), None, "sessions live 60 s");

    // The same name is the same cache, from either flavour and without build().
    sessions.set("s1", 1u32, Duration::ZERO);
    assert_eq!(sync::Cache::named("sessions").get::<u32>("s1"), Some(1));
    assert_eq!(
        block_on(future::Cache::named("sessions").get::<u32>("s1")),
        Some(1)
    );
    // A second build with other settings gets the first cache (and a warning).
    let again = sync::Cache::named("sessions")
        .timeout(Duration::from_secs(1))
        .build();
    again.set_default("s2", 2u32);
    mock.advance(Duration::from_secs(59));
    assert_eq!(
        again.get::<u32>("s2"),
        Some(2),
        "still the first timeout (60 s)"
    );

    // clear() on a named cache drops only its entries.
    carts.set("c1", 1u32, Duration::ZERO);
    global.set("g1", 1u32, Duration::ZERO);
    // s1, s2, and "k" when its expired entry was not evicted yet.
    assert!(sessions.clear() >= 2);
    assert_eq!(sessions.get::<u32>("s1"), None);
    assert_eq!(carts.get::<u32>("c1"), Some(1));
    assert_eq!(global.get::<u32>("g1"), Some(1));
    assert!(block_on(future::Cache::named("carts").clear()) >= 1);
    assert_eq!(carts.get::<u32>("c1"), None);
    assert_eq!(global.get::<u32>("g1"), Some(1));

    // The global clear empties every cache, named ones included.
    carts.set("c2", 2u32, Duration::ZERO);
    global.clear();
    assert_eq!(carts.get::<u32>("c2"), None);

    // A bound of its own.
    let small = sync::Cache::named("small").max_entries(64).build();
    for i in 0..1000u32 {
        small.set(&i.to_string(), i, Duration::ZERO);
    }
    let keys: Vec<String> = (0..1000u32).map(|i| i.to_string()).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let kept = small.get_many::<u32>(&keys).into_iter().flatten().count();
    assert!(
        (1..=128).contains(&kept),
        "a 64-entry bound kept {kept} of 1000"
    );

    // The batch operations, blocking and async, keep the order of their keys.
    let c = sync::Cache::global();
    c.set_many(&[("a", 1u64), ("b", 2), ("c", 3)], Duration::from_secs(5));
    assert_eq!(
        c.get_many::<u64>(&["c", "missing", "a", "b"]),
        vec![Some(3), None, Some(1), Some(2)]
    );
    assert_eq!(
        c.get_many::<String>(&["a"]),
        vec![None],
        "another type is a miss"
    );
    assert_eq!(c.delete_many(&["a", "missing", "b"]), 2);
    assert_eq!(
        c.get_many::<u64>(&["a", "b", "c"]),
        vec![None, None, Some(3)]
    );
    mock.advance(Duration::from_secs(5));
    assert_eq!(c.get::<u64>("c"), None, "set_many's timeout applies");
    let f = future::Cache::named("async_batch").build();
    block_on(async {
        f.set_many(
            &[("x", "1".to_string()), ("y", "2".to_string())],
            Duration::ZERO,
        )
        .await;
        assert_eq!(
            f.get_many::<String>(&["y", "x", "z"]).await,
            vec![Some("2".to_string()), Some("1".to_string()), None]
        );
        assert_eq!(f.delete_many(&["x", "y", "z"]).await, 2);
        assert_eq!(f.get_many::<String>(&["x"]).await, vec![None]);
    });
}
