//! A bad environment is reported (naming the variable) and never panics a call.

use layercache::{cached, CacheType, Config};

#[cached]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn an_invalid_environment_is_a_clear_error_up_front_and_defaults_on_first_use() {
    std::env::set_var("CACHE_TYPE", "rediss");
    let err = Config::from_env().unwrap_err();
    assert_eq!(err.variable(), "CACHE_TYPE");
    assert!(err.to_string().contains("CACHE_TYPE=\"rediss\""), "{err}");

    // A cached call does not panic: the runtime logs the error and uses the defaults.
    assert_eq!(square(4), 16);
    assert_eq!(square(4), 16);
    assert_eq!(layercache::config().cache_type(), CacheType::Simple);
    let stats = layercache::stats();
    let s = stats.function("env_invalid::square").unwrap();
    assert_eq!((s.hits, s.misses), (1, 1));
}
