//! Sliding expiration (`time_to_idle`) in the shared tier, on a real
//! redis-server: reads move an entry's expiry (`GETEX … PX`), so one
//! process reading keeps it for the others; an unread entry goes; the
//! envelope's absolute expiry still caps it at `timeout`.
//!
//! Two functions with one `key_prefix` and key template share their
//! entries as two processes running one function would (`tier = "shared"`:
//! no local copies, every call asks Redis).
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use layercache::{cached, CacheType, Config};
use redis_server::{RedisServer, RespValue};

/// The process's one Redis, and `layercache::init` on it.
fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = RedisServer::start_unmonitored();
        layercache::init(
            Config::builder()
                .cache_type(CacheType::Redis)
                .redis_url(server.url())
                .key_prefix("tti")
                .ttl_jitter(0.0)
                .build(),
        )
        .unwrap();
        server
    })
}

fn pttl(key: &str) -> i64 {
    match server().command(&[b"PTTL", key.as_bytes()]) {
        RespValue::Int(ms) => ms,
        other => panic!("PTTL answered {other:?}"),
    }
}

static WRITER: AtomicUsize = AtomicUsize::new(0);
#[cached(
    key_prefix = "session",
    key = "{id}",
    tier = "shared",
    time_to_idle = 1
)]
fn writer_session(id: u64) -> u64 {
    WRITER.fetch_add(1, SeqCst);
    id * 10
}

static READER: AtomicUsize = AtomicUsize::new(0);
#[cached(
    key_prefix = "session",
    key = "{id}",
    tier = "shared",
    time_to_idle = 1
)]
fn reader_session(id: u64) -> u64 {
    READER.fetch_add(1, SeqCst);
    id * 10
}

#[cached(key_prefix = "unread", key = "{id}", tier = "shared", time_to_idle = 1)]
fn unread(id: u64) -> u64 {
    id
}

static CAPPED: AtomicUsize = AtomicUsize::new(0);
#[cached(
    key_prefix = "capped",
    tier = "shared",
    timeout_ms = 600,
    time_to_idle_ms = 500
)]
fn capped(id: u64) -> u64 {
    CAPPED.fetch_add(1, SeqCst);
    id
}

#[test]
fn a_reader_keeps_a_shared_entry_alive_for_the_process_that_wrote_it() {
    server();
    assert_eq!(writer_session(1), 10);
    assert!(pttl("tti:session:1") <= 1000, "stored for its idle time");
    let started = Instant::now();
    // 2.5 idle periods of reads by "process B".
    while started.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(reader_session(1), 10);
    }
    assert_eq!(READER.load(SeqCst), 0, "every read was a shared hit");
    let left = pttl("tti:session:1");
    assert!(
        left > 0 && left <= 1000,
        "PTTL {left} ms after the last read"
    );
    assert_eq!(writer_session(1), 10);
    assert_eq!(
        WRITER.load(SeqCst),
        1,
        "the writer finds its entry still there"
    );
}

#[test]
fn an_unread_shared_entry_expires_after_its_idle_time() {
    server();
    unread(2);
    assert!(pttl("tti:unread:2") > 0);
    let started = Instant::now();
    while pttl("tti:unread:2") != -2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an unread entry outlived its 1 s idle time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn timeout_caps_a_shared_entry_however_often_it_is_read() {
    server();
    let started = Instant::now();
    // Reads every 50 ms keep the Redis key alive, but the envelope expires
    // 600 ms after each write: over 1.3 s the value is computed again.
    while started.elapsed() < Duration::from_millis(1300) {
        assert_eq!(capped(7), 7);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        CAPPED.load(SeqCst) >= 2,
        "a read entry outlived its timeout ({} computations)",
        CAPPED.load(SeqCst)
    );
}
