//! The store the environment (`CACHE_TYPE` and its settings) names, opened
//! directly, not through a tier: what a fleet test's child process uses to
//! read, write or corrupt raw entries. A Redis store must be opened inside a
//! tokio runtime (enter it first).

use std::sync::Arc;

use layercache::shared::SharedStore;

/// Opens the store `Config::from_env()` describes, on a bus channel of its own.
pub fn open_from_env() -> Arc<dyn SharedStore> {
    let config = layercache::Config::from_env().expect("node environment");
    let settings = config.shared().clone();
    let channel = "__layercache__:bus:direct";
    match config.cache_type().as_str() {
        "filesystem" => Arc::new(
            layercache::shared::filesystem::FsStore::open(
                config.cache_dir().unwrap(),
                config.cache_threshold(),
                channel,
                &settings,
            )
            .unwrap(),
        ),
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(
            layercache::shared::sqlite::SqliteStore::open(
                config.sqlite_path().unwrap(),
                channel,
                &settings,
            )
            .unwrap(),
        ),
        #[cfg(feature = "memcached")]
        "memcached" => Arc::new(
            layercache::shared::memcached::MemcachedStore::open(
                config.memcached_servers(),
                channel,
                &settings,
            )
            .unwrap(),
        ),
        #[cfg(feature = "redis")]
        "redis" => Arc::new(
            layercache::shared::redis::RedisStore::open(
                config.redis_url(),
                channel.into(),
                &settings,
            )
            .unwrap(),
        ),
        #[cfg(feature = "redis-cluster")]
        "redis-cluster" => Arc::new(
            layercache::shared::redis_cluster::RedisClusterStore::open(
                config.redis_nodes(),
                channel.into(),
                &settings,
            )
            .unwrap(),
        ),
        other => panic!("no direct store for {other}"),
    }
}
