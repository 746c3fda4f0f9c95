//! A service as a user writes it: `#[cached]` functions configured from the
//! environment (`CACHE_TYPE=redis`, `CACHE_REDIS_URL=rediss://…`,
//! `CACHE_REDIS_CA_CERT`, …). The tests drive it over stdin, one command a
//! line, one answer a line; logs go to stderr.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use layercache::{cache_invalidate, cached};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(timeout = 300, key_prefix = "profile")]
fn profile(id: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("user-{id}")
}

#[cache_invalidate(profile(id))]
fn update(id: u64) {
    let _ = id;
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "layercache=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let parts: Vec<&str> = line.split_whitespace().collect();
        let reply = match parts.as_slice() {
            ["get", id] => {
                let before = RUNS.load(SeqCst);
                let started = Instant::now();
                let value = profile(id.parse().expect("id"));
                format!(
                    "ok {value} runs={} us={}",
                    RUNS.load(SeqCst) - before,
                    started.elapsed().as_micros()
                )
            }
            ["update", id] => {
                update(id.parse().expect("id"));
                "ok".to_string()
            }
            ["stats"] => {
                let stats = layercache::stats();
                let f = stats.function("profile");
                let tier = stats.shared_tier.clone().unwrap_or_default();
                format!(
                    "stats shared_hits={} errors={} bus={}",
                    f.map_or(0, |f| f.shared_hits),
                    f.map_or(0, |f| f.shared.errors()),
                    tier.bus_subscribed
                )
            }
            ["wait_bus"] => {
                let started = Instant::now();
                loop {
                    let up = layercache::stats()
                        .shared_tier
                        .is_some_and(|t| t.bus_subscribed);
                    if up || started.elapsed() > Duration::from_secs(5) {
                        break format!("bus {up}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            _ => format!("error unknown command {line:?}"),
        };
        writeln!(out, "{reply}").expect("stdout");
        out.flush().expect("stdout");
    }
}
