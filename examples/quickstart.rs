//! The guide's first chapters in one run, on the embedded (in-process)
//! default: no server needed.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use layercache::{cache_invalidate, cached, entry, fn_cache, sync::Cache, WarmUp};
use serde::{Deserialize, Serialize};

/// Guide 2.2.1: an expensive function, cached for 5 minutes.
#[cached(timeout = 300)]
fn get_expensive_data() -> String {
    std::thread::sleep(Duration::from_millis(300)); // a slow query
    "expensive result".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

/// Guide 4.1: a key prefix names the function's keys and its metrics.
#[cached(timeout = 300, key_prefix = "user_profile")]
fn get_user_profile(user_id: u64) -> Result<Profile, String> {
    std::thread::sleep(Duration::from_millis(50));
    if user_id == 0 {
        return Err("no such user".into()); // errors are never cached
    }
    Ok(Profile {
        id: user_id,
        name: format!("user {user_id}"),
    })
}

/// Guide 4.1: a key template, `search:{query}:page:{page}`.
#[cached(timeout = 60, key_prefix = "search", key = "{query}:page:{page}")]
fn search(query: &str, page: u32) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(20));
    (1..=3)
        .map(|i| format!("{query} hit {i} on page {page}"))
        .collect()
}

/// Guide 5.1: an update drops exactly the entry it makes stale, after it succeeds.
#[cache_invalidate(get_user_profile(user_id))]
fn update_user(user_id: u64, name: &str) -> Result<(), String> {
    println!("    (database: user {user_id} renamed to {name:?})");
    Ok(())
}

/// Guide 5.1: drop every page of one query.
#[cache_invalidate(prefix = "search:{query}:")]
fn reindex(query: &str) {}

/// Guide 7.1-7.3: a slow report many requests want at once (single-flight
/// is always on), spread expiries (jitter), and lookups of ids that do not
/// exist (negative caching).
#[cached(timeout = 120, key_prefix = "daily_report", jitter = 0.1)]
fn daily_report(day: u32) -> String {
    std::thread::sleep(Duration::from_millis(200));
    format!("report for day {day}")
}

#[cached(
    timeout = 300,
    key_prefix = "find_user",
    cache_none = true,
    none_timeout = 30
)]
fn find_user(id: u64) -> Option<String> {
    std::thread::sleep(Duration::from_millis(20)); // the database says "no such user"
    (id < 1000).then(|| format!("user {id}"))
}

/// Guide 4.3: prices loaded before traffic arrives; a few are missing.
#[cached(timeout = 600, key_prefix = "price")]
fn product_price(id: u64) -> Result<u64, String> {
    std::thread::sleep(Duration::from_millis(15));
    if id % 100 == 99 {
        return Err(format!("no price for product {id}")); // counted, not fatal
    }
    Ok(id * 3 + 99)
}

/// Warms 400 prices, 8 at a time, behind a progress bar. The bar draws on
/// stderr only when it is a terminal; otherwise (CI, a pipe) the same
/// progress reports are printed as a line per quarter.
fn warm_prices() {
    const PRODUCTS: u64 = 400;
    let bar = ProgressBar::new(PRODUCTS).with_style(
        ProgressStyle::with_template("  {bar:40} {pos:>3}/{len} prices warmed, {msg} [{elapsed}]")
            .expect("a valid template"),
    );
    let report = WarmUp::new(0..PRODUCTS, 8)
        .on_progress(|p| {
            bar.set_position(p.done);
            bar.set_message(format!("{} failed", p.failed));
            if bar.is_hidden() && p.done > 0 && p.done % (PRODUCTS / 4) == 0 {
                println!(
                    "  {:>3}/{PRODUCTS} prices warmed, {} failed",
                    p.done, p.failed
                );
            }
        })
        .try_run_blocking(product_price);
    bar.finish_and_clear();
    println!("  {report}");
    let _ = timed("product_price(7) after the warm-up: hit", || {
        product_price(7)
    });
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    println!(
        "  {label:<44} {:>9.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    value
}

fn main() {
    // Optional: configure in code; without it the environment is read
    // (CACHE_TYPE=simple|redis|null, CACHE_REDIS_URL, CACHE_DEFAULT_TIMEOUT,
    // CACHE_KEY_PREFIX), over the CACHE_ENV profile of a layercache.toml in
    // the working directory, if there is one. With CACHE_TYPE=redis
    // (`--features redis`), run it twice: the second process gets the slow
    // values from Redis.
    let config = layercache::Config::from_env().unwrap_or_else(|err| {
        eprintln!("invalid cache configuration: {err}");
        std::process::exit(2);
    });
    println!(
        "layercache quickstart (CACHE_TYPE={})\n",
        config.cache_type()
    );
    if config.cache_type().is_shared() {
        println!(
            "shared tier: {} (run me again: the second process reads the first one's values)\n",
            config.redis_url()
        );
    }
    layercache::init(config).expect("first and only init");

    println!("1. An expensive function made cheap (guide 2.2)");
    let _ = timed(
        "first call runs the body (a 300 ms query)",
        get_expensive_data,
    );
    let _ = timed("second call is a cache hit", get_expensive_data);

    println!("\n2. Keys: arguments, prefixes and templates (guide 4.1)");
    let _ = timed("get_user_profile(42): miss", || get_user_profile(42));
    let _ = timed("get_user_profile(42): hit", || get_user_profile(42));
    let _ = timed("get_user_profile(7): another key, a miss", || {
        get_user_profile(7)
    });
    let _ = timed("get_user_profile(0): Err, never cached", || {
        get_user_profile(0)
    });
    let _ = timed("search(\"rust\", 1): miss", || search("rust", 1));
    let _ = timed("search(\"rust\", 2): miss", || search("rust", 2));
    let _ = timed("search(\"rust\", 1): hit", || search("rust", 1));
    println!("  stable keys:");
    println!("    {}", entry!(get_user_profile(42)).stable_key().unwrap());
    println!("    {}", entry!(search("rust", 1)).stable_key().unwrap());
    println!(
        "    {}   (values are escaped)",
        entry!(search("c++: *all*", 1)).stable_key().unwrap()
    );

    println!("\n3. Manual cache operations (guide 2.3)");
    let cache = Cache::global();
    let data = cache.get::<String>("my_key");
    println!("  cache.get(\"my_key\")          -> {data:?}");
    cache.set(
        "my_key",
        "computed once".to_string(),
        Duration::from_secs(300),
    );
    println!("  cache.set(\"my_key\", .., 300 s)");
    println!(
        "  cache.get(\"my_key\")          -> {:?}",
        cache.get::<String>("my_key")
    );
    cache.delete("my_key");
    println!(
        "  cache.delete(\"my_key\"); get -> {:?}",
        cache.get::<String>("my_key")
    );

    println!("\n4. Invalidation (guide 5.1)");
    update_user(42, "Ada").unwrap();
    println!(
        "  user_profile(42) cached after update? {}",
        entry!(get_user_profile(42)).is_cached()
    );
    println!(
        "  user_profile(7) still cached?          {}",
        entry!(get_user_profile(7)).is_cached()
    );
    reindex("rust");
    println!(
        "  search pages left after reindex(\"rust\"): {}",
        fn_cache!(search).len()
    );
    let _ = timed("get_user_profile(42) after the update: miss", || {
        get_user_profile(42)
    });

    println!("\n5. Protection: stampede, penetration, avalanche (guide 7)");
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(|| daily_report(1)))
        .collect();
    for t in threads {
        t.join().expect("report thread");
    }
    let report = fn_cache!(daily_report).stats();
    println!(
        "  16 threads asked for a cold report: {} computation(s), {} waited for it, {:.0} ms in all",
        report.misses,
        report.coalesced,
        started.elapsed().as_secs_f64() * 1e3
    );
    for _ in 0..100 {
        find_user(404_404);
    }
    println!(
        "  100 lookups of a missing user: {} database query (the None is cached for 30 s)",
        fn_cache!(find_user).stats().misses
    );

    println!("\n6. Warm-up with progress (guide 4.3)");
    warm_prices();

    println!("\n7. Hit-rate metrics (guide 6.1)");
    let stats = layercache::stats();
    print!("{stats}");
    let profile = stats.function("user_profile").expect("called above");
    println!(
        "\n  user_profile: {} hits, {} misses, hit rate {:.0}%, mean origin time {:.1} ms",
        profile.hits,
        profile.misses,
        profile.hit_rate() * 100.0,
        profile.origin_latency.mean_ns as f64 / 1e6
    );
    println!(
        "  as JSON for a stats endpoint: {}",
        serde_json::to_string(profile).unwrap()
    );
}
