//! Coherence across processes: the time from an invalidation in one
//! process (A) to the other process's (B) local miss, over 1000
//! invalidations, on a real `redis-server` started here on a free port.
//!
//! B warms 1000 keys of a `#[cached]` function (local copies), then
//! watches each key's local entry in turn; A invalidates the keys one by
//! one (`DEL` + a pub/sub notice) and waits for B to report each drop.
//! Both processes read the same wall clock, so the difference of the two
//! timestamps is the delay.
//!
//! `cargo bench --features redis --bench coherence`

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;
#[path = "support/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use layercache::{cached, entry};

const KEYS: u64 = 1000;

#[cached(timeout = 3600, key_prefix = "coherence")]
fn value(k: u64) -> u64 {
    k.wrapping_mul(31)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// B: warm, wait for the bus, then report each key's drop as `SEEN k ns`.
fn watcher() {
    for k in 0..KEYS {
        value(k);
    }
    let started = Instant::now();
    while !layercache::stats()
        .shared_tier
        .is_some_and(|t| t.bus_subscribed)
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no bus");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    for k in 0..KEYS {
        let deadline = Instant::now() + Duration::from_secs(5);
        while entry!(value(k)).get().is_some() {
            assert!(Instant::now() < deadline, "key {k} was never dropped");
            std::hint::spin_loop();
        }
        writeln!(out, "SEEN {k} {}", now_ns()).unwrap();
        out.flush().unwrap();
    }
}

fn main() {
    if std::env::var_os("COHERENCE_WATCHER").is_some() {
        watcher();
        return;
    }
    let redis = redis_server::RedisServer::start_unmonitored();
    // A and B: this process and a child, configured alike through the environment.
    std::env::set_var("CACHE_TYPE", "redis");
    std::env::set_var("CACHE_REDIS_URL", redis.url());
    std::env::set_var("CACHE_KEY_PREFIX", "coherence");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("COHERENCE_WATCHER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");
    // Bring A's own tier up before timing.
    value(u64::MAX);
    let mut delays_us = Vec::with_capacity(KEYS as usize);
    for k in 0..KEYS {
        let sent = now_ns();
        entry!(value(k)).invalidate();
        let line = lines.next().expect("the watcher answers").unwrap();
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("SEEN"));
        assert_eq!(parts.next(), Some(k.to_string().as_str()));
        let seen: u128 = parts.next().unwrap().parse().unwrap();
        delays_us.push(seen.saturating_sub(sent) as f64 / 1000.0);
    }
    child.wait().unwrap();
    delays_us.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| delays_us[((delays_us.len() - 1) as f64 * p).round() as usize];
    println!(
        "coherence: invalidation in A -> local miss in B over {KEYS} invalidations (Redis pub/sub): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    report::write_results(
        "coherence",
        &serde_json::json!({ "invalidations": KEYS, "p50_us": q(0.5), "p99_us": q(0.99), "max_us": q(1.0) }),
    );
}
