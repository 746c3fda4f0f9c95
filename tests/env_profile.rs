//! Without `init`, the first cached call reads `layercache.toml` from the
//! working directory: the profile `CACHE_ENV` names, under the
//! environment's variables (guide 7.5).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use layercache::{cached, CacheType};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn square(x: u64) -> u64 {
    CALLS.fetch_add(1, SeqCst);
    x * x
}

#[test]
fn the_first_cached_call_reads_the_profile_in_the_working_directory_under_the_environment() {
    let dir = std::env::temp_dir().join(format!("layercache-env-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("layercache.toml"),
        r#"
[development]
CACHE_TYPE = "simple"

[testing]
CACHE_TYPE = "null"
CACHE_NO_NULL_WARNING = true
CACHE_DEFAULT_TIMEOUT = 600
CACHE_KEY_PREFIX = "from_file"
"#,
    )
    .unwrap();
    // Edition 2021: set_var is safe; this binary has a single test, so no thread reads concurrently.
    std::env::set_current_dir(&dir).unwrap();
    std::env::set_var("CACHE_ENV", "testing");
    std::env::set_var("CACHE_KEY_PREFIX", "from_env");

    square(2);
    square(2);

    let config = layercache::config();
    assert_eq!(
        config.cache_type(),
        CacheType::Null,
        "the [testing] profile"
    );
    assert_eq!(config.default_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(config.key_prefix(), "from_env", "the environment wins");
    assert_eq!(CALLS.load(SeqCst), 2, "null cache from the profile");
    std::fs::remove_dir_all(&dir).unwrap();
}
