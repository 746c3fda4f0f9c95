//! Every shared backend passes the same conformance suite
//! (`tests/support/conformance.rs`), against a real server or real files.

#[path = "support/conformance.rs"]
mod conformance;

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
mod redis {
    use std::sync::Arc;

    use layercache::shared::redis::RedisStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, Backend};
    use super::redis_server::RedisServer;

    fn store(url: &str) -> Arc<RedisStore> {
        Arc::new(
            RedisStore::open(url, "__layercache__:bus:conf".into(), &SharedSettings::default())
                .unwrap(),
        )
    }

    fn open() -> Backend {
        let server = RedisServer::start_unmonitored();
        Backend {
            store: store(&server.url()),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(server),
        }
    }

    fn open_down() -> Backend {
        let mut server = RedisServer::start_unmonitored();
        let url = server.url();
        server.stop();
        Backend {
            store: store(&url),
            max_value_size: 0,
            guard: Box::new(server),
        }
    }

    conformance_suite!(open, open_down);
}
