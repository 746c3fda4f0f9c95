//! Opens the store a [`Config`] names: the one place that maps each
//! `CACHE_TYPE` to its backend.

use std::sync::Arc;

#[cfg(feature = "redis")]
use super::exec::io_runtime;
use super::filesystem;
#[cfg(feature = "memcached")]
use super::memcached;
#[cfg(feature = "redis")]
use super::redis;
#[cfg(feature = "redis-cluster")]
use super::redis_cluster;
#[cfg(feature = "sqlite")]
use super::sqlite;
use super::store::{SharedStore, RESERVED_PREFIX};
use crate::config::{CacheType, Config};
use crate::error::{ErrorKind, SharedError};

/// Builds the store `config` asks for (`None` for in-process only).
pub(crate) fn build_store(config: &Config) -> Result<Option<Arc<dyn SharedStore>>, SharedError> {
    let channel = format!("{RESERVED_PREFIX}bus:{}", config.key_prefix());
    match config.cache_type() {
        CacheType::Simple | CacheType::Null => Ok(None),
        CacheType::Filesystem => {
            let dir = config.cache_dir().ok_or_else(|| {
                SharedError::new(ErrorKind::Server, "CACHE_TYPE=filesystem needs CACHE_DIR")
            })?;
            let store = filesystem::FsStore::open(
                dir,
                config.cache_threshold(),
                &channel,
                config.shared(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "sqlite")]
        CacheType::Sqlite => {
            let path = config.sqlite_path().ok_or_else(|| {
                SharedError::new(
                    ErrorKind::Server,
                    "CACHE_TYPE=sqlite needs CACHE_SQLITE_PATH",
                )
            })?;
            let store = sqlite::SqliteStore::open(path, &channel, config.shared())?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "redis")]
        CacheType::Redis => {
            let _guard = io_runtime().enter();
            let store = redis::RedisStore::open_with_tls(
                config.redis_url(),
                channel,
                config.shared(),
                config.redis_tls(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "redis-cluster")]
        CacheType::RedisCluster => {
            let store = redis_cluster::RedisClusterStore::open_with_tls(
                config.redis_nodes(),
                channel,
                config.shared(),
                config.redis_tls(),
            )?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(feature = "memcached")]
        CacheType::Memcached => {
            let store = memcached::MemcachedStore::open(
                config.memcached_servers(),
                &channel,
                config.shared(),
            )?;
            Ok(Some(Arc::new(store)))
        }
    }
}
