//! Factory timeouts during a fault: a call issued while redis-server is
//! paused (SIGSTOP: its connections stay open and nothing answers) still
//! answers within its soft or hard deadline plus the shared tier's timeout
//! (the shared read that comes first gives up after it), never after the
//! slow origin; the origin finishes in the background and its value is
//! served once it lands. Real time in tens of milliseconds, like
//! `factory_timeouts`: the origins sleep 600 ms, and each bound asserted is
//! its distance from that.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use layercache::{cached, CacheType, Config, OriginTimeout};
use redis_server::RedisServer;

/// The shared tier's timeout: how long the read before the origin may take
/// while Redis does not answer.
const TIER_TIMEOUT: Duration = Duration::from_millis(50);

/// How long the origins take once they are slow.
const SLOW: Duration = Duration::from_millis(600);

#[derive(Debug, Clone, PartialEq)]
enum ApiError {
    Timeout(Duration),
}

impl From<OriginTimeout> for ApiError {
    fn from(t: OriginTimeout) -> Self {
        ApiError::Timeout(t.after)
    }
}

/// The process's one Redis, `layercache::init` on it, and the lock that
/// keeps one test at a time pausing it.
fn server() -> (&'static RedisServer, MutexGuard<'static, ()>) {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = SERVER.get_or_init(|| {
        let server = RedisServer::start_unmonitored();
        layercache::init(
            Config::builder()
                .cache_type(CacheType::Redis)
                .redis_url(server.url())
                .key_prefix("factory_fault")
                .shared_timeout(TIER_TIMEOUT)
                .ttl_jitter(0.0)
                .build(),
        )
        .unwrap();
        server
    });
    (server, guard)
}

/// Resumes the paused server when dropped, so a failed assertion does not
/// leave it stopped for the next test.
struct Paused<'a>(&'a RedisServer);

impl<'a> Paused<'a> {
    fn new(server: &'a RedisServer) -> Self {
        server.pause();
        Paused(server)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

static SOFT_RUNS: AtomicU64 = AtomicU64::new(0);
#[cached(timeout_ms = 100, stale_if_error = 60, soft_timeout_ms = 100)]
fn soft_during_outage(id: u64) -> Result<u64, ApiError> {
    let run = SOFT_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        std::thread::sleep(SLOW);
    }
    Ok(id * 100 + run)
}

#[test]
fn a_soft_timeout_answers_with_the_stale_value_while_redis_is_paused() {
    let (server, _one) = server();
    assert_eq!(soft_during_outage(1), Ok(101), "the first run is fast");
    std::thread::sleep(Duration::from_millis(150)); // expired, within stale_if_error
    let paused = Paused::new(server);
    let started = Instant::now();
    assert_eq!(soft_during_outage(1), Ok(101), "the stale value");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < SLOW - Duration::from_millis(100),
        "answered at the soft deadline (100 ms) plus at most the tier's timeout (50 ms) \
         and scheduling, not after the 600 ms origin: {waited:?}"
    );
    drop(paused);
    let started = Instant::now();
    while soft_during_outage(1) != Ok(102) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the background run's value is served"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The background run, and at most one more if resubscribing after the
    // pause voided it (see the hard-timeout test).
    let runs = SOFT_RUNS.load(SeqCst);
    assert!((2..=3).contains(&runs), "{runs} runs");
}

static HARD_RUNS: AtomicU64 = AtomicU64::new(0);
#[cached(timeout = 60, hard_timeout_ms = 100)]
async fn hard_during_outage(id: u64) -> Result<u64, ApiError> {
    HARD_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(SLOW).await;
    Ok(id)
}

#[test]
fn a_hard_timeout_answers_err_on_time_while_redis_is_paused() {
    let (server, _one) = server();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(hard_during_outage_checks(server));
}

async fn hard_during_outage_checks(server: &RedisServer) {
    let paused = Paused::new(server);
    let started = Instant::now();
    assert_eq!(
        hard_during_outage(7).await,
        Err(ApiError::Timeout(Duration::from_millis(100)))
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < SLOW - Duration::from_millis(100),
        "answered at the hard deadline (100 ms) plus at most the tier's timeout (50 ms) \
         and scheduling, not after the 600 ms origin: {waited:?}"
    );
    drop(paused);
    let started = Instant::now();
    while hard_during_outage(7).await != Ok(7) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the background origin's value is served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Resubscribing after the pause drops local copies of shared entries
    // (notices sent meanwhile may be lost), which voids the run in flight:
    // one waiting call computes again for the others. Before runs in
    // flight handed over, every waiting call ran the origin (7 here).
    let runs = HARD_RUNS.load(SeqCst);
    assert!(
        (1..=2).contains(&runs),
        "the background run, and at most one more if the bus voided it: {runs} runs"
    );
}
