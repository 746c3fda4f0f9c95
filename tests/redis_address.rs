//! `CACHE_REDIS_HOST`, `CACHE_REDIS_PORT`, `CACHE_REDIS_DB` and
//! `CACHE_REDIS_PASSWORD` instead of a URL, against a real redis-server
//! that requires a password full of URL characters.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use layercache::{cached, CacheType, Config};
use redis_server::{RedisServer, RespValue};

const PASSWORD: &str = "p@ss:w/rd %#?";

#[cached(timeout = 300, key_prefix = "price")]
fn price(id: u64) -> u64 {
    id * 3
}

/// The keys of database `db`, read with the URL the configuration built.
fn keys(url: &str, db: u8) -> Vec<String> {
    let url = format!("{}{db}", url.trim_end_matches(char::is_numeric));
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("KEYS").arg("*").query(&mut conn).unwrap()
}

#[test]
fn the_guides_redis_parts_reach_the_password_protected_database_they_name() {
    let server = RedisServer::start_unmonitored();
    assert_eq!(
        server.command(&[b"CONFIG", b"SET", b"requirepass", PASSWORD.as_bytes()]),
        RespValue::Simple("OK".into())
    );
    let port = server.port().to_string();
    let config = Config::from_lookup(|name| match name {
        "CACHE_TYPE" => Some("redis".into()),
        "CACHE_REDIS_HOST" => Some("127.0.0.1".into()),
        "CACHE_REDIS_PORT" => Some(port.clone()),
        "CACHE_REDIS_DB" => Some("3".into()),
        "CACHE_REDIS_PASSWORD" => Some(PASSWORD.into()),
        "CACHE_KEY_PREFIX" => Some("parts".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.cache_type(), CacheType::Redis);
    assert!(!format!("{config:?}").contains("p@ss"), "{config:?}");
    let url = config.redis_url().to_string();
    layercache::init(config).unwrap();

    assert_eq!(price(7), 21);

    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = loop {
        let found: Vec<String> = keys(&url, 3)
            .into_iter()
            .filter(|k| k.starts_with("parts:price:"))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(stored.len(), 1, "the value is in database 3");
    assert!(keys(&url, 0).is_empty(), "nothing in database 0");
    let tier = layercache::stats().shared_tier.expect("a shared tier");
    assert!(
        !tier.store.contains("p%40ss"),
        "stats show no password: {}",
        tier.store
    );
}
