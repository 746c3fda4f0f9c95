//! Without `init`, the first cached call reads the guide's variables.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use layercache::{cached, fn_cache, CacheType};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn square(x: u64) -> u64 {
    CALLS.fetch_add(1, SeqCst);
    x * x
}

#[test]
fn the_environment_configures_the_runtime_on_first_use() {
    // Edition 2021: set_var is safe; this binary has a single test, so no thread reads concurrently.
    std::env::set_var("CACHE_TYPE", "null");
    std::env::set_var("CACHE_DEFAULT_TIMEOUT", "42");
    std::env::set_var("CACHE_KEY_PREFIX", "envtest");
    square(2);
    square(2);
    let config = layercache::config();
    assert_eq!(config.cache_type(), CacheType::Null);
    assert_eq!(
        config.default_timeout(),
        Some(std::time::Duration::from_secs(42))
    );
    assert_eq!(config.key_prefix(), "envtest");
    assert_eq!(CALLS.load(SeqCst), 2, "null cache from the environment");
    assert_eq!(
        fn_cache!(square).timeout(),
        Some(std::time::Duration::from_secs(42))
    );
    assert!(
        layercache::init(layercache::Config::default()).is_err(),
        "too late to init"
    );
}
