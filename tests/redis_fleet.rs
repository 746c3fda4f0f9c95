//! The shared tier across OS processes, against a real `redis-server`
//! started on a free loopback port.
//!
//! This is a `harness = false` test: run without arguments it is the
//! *parent*, which starts Redis and spawns copies of this same binary as
//! *nodes* (`LAYERCACHE_NODE=1`), each configured through the environment
//! exactly as a service would be (`CACHE_TYPE=redis`, `CACHE_REDIS_URL`, …).
//! The parent drives the nodes over stdin/stdout, one command per line,
//! and checks what they answer. Every scenario ends by checking the
//! server's `MONITOR` capture for a `KEYS` command.

#[path = "support/fleet_node.rs"]
mod fleet_node;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/scenarios.rs"]
mod scenarios;
#[path = "support/slow_link.rs"]
mod slow_link;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_node::NodeProcess;
use redis_server::{RedisServer, RespValue, SilentServer};

// ---------------------------------------------------------------- node side

mod node {
    use std::io::{BufRead, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Instant;

    use layercache::{cache_invalidate, cached, entry};

    pub static PROFILE_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static SEARCH_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static SHARED_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static BIG_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static FIND_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static LOCKED_RUNS: AtomicU64 = AtomicU64::new(0);
    pub static NEWS_RUNS: AtomicU64 = AtomicU64::new(0);

    /// The "database" all nodes share: one file per user.
    fn db() -> PathBuf {
        PathBuf::from(std::env::var("LAYERCACHE_DB_DIR").expect("LAYERCACHE_DB_DIR"))
    }

    fn read_user(id: u64) -> String {
        std::fs::read_to_string(db().join(id.to_string())).unwrap_or_else(|_| format!("user-{id}"))
    }

    #[cached(timeout = 300, key_prefix = "user_profile")]
    pub fn get_user_profile(user_id: u64) -> String {
        PROFILE_RUNS.fetch_add(1, SeqCst);
        read_user(user_id)
    }

    #[cache_invalidate(get_user_profile(user_id))]
    pub fn update_user(user_id: u64, name: &str) {
        std::fs::write(db().join(user_id.to_string()), name).expect("write db");
    }

    #[cached(timeout = 300, key_prefix = "search", key = "{query}:page:{page}")]
    pub fn search(query: &str, page: u32) -> Vec<String> {
        SEARCH_RUNS.fetch_add(1, SeqCst);
        vec![format!("{query} result {page}")]
    }

    #[cache_invalidate(all = search)]
    pub fn reindex() {}

    #[cache_invalidate(prefix = "search:{query}:")]
    pub fn reindex_query(query: &str) {
        let _ = query;
    }

    /// Negative caching with a short life for `None`, and jittered timeouts.
    #[cached(
        timeout = 300,
        key_prefix = "find_user",
        cache_none = true,
        none_timeout_ms = 300,
        jitter = 0.1
    )]
    pub fn find_user(id: u64) -> Option<String> {
        FIND_RUNS.fetch_add(1, SeqCst);
        (id < 100).then(|| read_user(id))
    }

    /// A slow report computed by one process of the fleet at a time.
    #[cached(
        timeout = 300,
        key_prefix = "locked",
        lock = true,
        lock_timeout_ms = 800
    )]
    pub fn locked_report(id: u64) -> String {
        LOCKED_RUNS.fetch_add(1, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        format!("report {id}")
    }

    pub static RETYPED_RUNS: AtomicU64 = AtomicU64::new(0);

    /// Two functions under one `key_prefix` whose arguments encode alike
    /// (as a function whose argument type changed in a rolling deploy).
    #[cached(timeout = 300, key_prefix = "one_name")]
    pub fn one_name_u64(x: u64) -> String {
        RETYPED_RUNS.fetch_add(1, SeqCst);
        format!("u64 {x}")
    }

    #[cached(timeout = 300, key_prefix = "one_name")]
    pub fn one_name_i64(x: i64) -> String {
        RETYPED_RUNS.fetch_add(1, SeqCst);
        format!("i64 {x}")
    }

    /// The same with a template: one readable key, told apart by the envelope.
    #[cached(timeout = 300, key_prefix = "one_template", key = "{x}")]
    pub fn one_template_u64(x: u64) -> String {
        RETYPED_RUNS.fetch_add(1, SeqCst);
        format!("u64 {x}")
    }

    #[cached(timeout = 300, key_prefix = "one_template", key = "{x}")]
    pub fn one_template_i64(x: i64) -> String {
        RETYPED_RUNS.fetch_add(1, SeqCst);
        format!("i64 {x}")
    }

    pub static GENERIC_RUNS: AtomicU64 = AtomicU64::new(0);

    /// What a type argument of `generic_label` must be.
    pub trait LabelArg:
        layercache::CacheKeyType
        + std::hash::Hash
        + Eq
        + Clone
        + Send
        + Sync
        + serde::Serialize
        + std::fmt::Debug
    {
    }
    impl<
            T: layercache::CacheKeyType
                + std::hash::Hash
                + Eq
                + Clone
                + Send
                + Sync
                + serde::Serialize
                + std::fmt::Debug,
        > LabelArg for T
    {
    }

    /// A user type, named by its module path.
    #[derive(Clone, Debug, Hash, PartialEq, Eq, serde::Serialize, layercache::CacheKeyType)]
    pub struct Sku(pub u64);

    /// One cache per instantiation, in every tier.
    #[cached(timeout = 300, key_prefix = "generic")]
    pub fn generic_label<T: LabelArg>(x: T) -> String {
        GENERIC_RUNS.fetch_add(1, SeqCst);
        format!("{x:?}")
    }

    #[cache_invalidate(generic_label(x))]
    pub fn touch_generic<T: LabelArg>(x: T) {
        let _ = x;
    }

    /// `generic_label`'s instantiation named `ty`, called with `id`:
    /// `u64` and `i64` (whose ids 2 and 1 encode alike) and `sku`.
    fn with_generic(ty: &str, id: u64, f: &dyn Fn(&dyn Fn() -> String) -> String) -> String {
        match ty {
            "u64" => f(&|| generic_label(id)),
            "i64" => f(&|| generic_label(id as i64)),
            "sku" => f(&|| generic_label(Sku(id))),
            other => format!("error unknown type {other}"),
        }
    }

    fn generic_command(action: &str, ty: &str, id: u64) -> String {
        match (action, ty) {
            ("call", _) => with_generic(ty, id, &|call| timed(&GENERIC_RUNS, call)),
            ("key", "u64") => format!(
                "key {}",
                entry!(generic_label(id)).shared_key().unwrap_or_default()
            ),
            ("key", "i64") => format!(
                "key {}",
                entry!(generic_label(id as i64))
                    .shared_key()
                    .unwrap_or_default()
            ),
            ("key", "sku") => format!(
                "key {}",
                entry!(generic_label(Sku(id)))
                    .shared_key()
                    .unwrap_or_default()
            ),
            ("touch", "u64") => {
                touch_generic(id);
                "ok".to_string()
            }
            _ => format!("error unknown generic command {action} {ty}"),
        }
    }

    /// The same without the lock, for comparison.
    #[cached(timeout = 300, key_prefix = "unlocked")]
    pub fn unlocked_report(id: u64) -> String {
        LOCKED_RUNS.fetch_add(1, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        format!("report {id}")
    }

    pub static FLAKY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Panics while holding the lock when `FLAKY` is set.
    #[cached(
        timeout = 300,
        key_prefix = "locked_flaky",
        lock = true,
        lock_timeout = 5
    )]
    pub fn locked_flaky(id: u64) -> u64 {
        LOCKED_RUNS.fetch_add(1, SeqCst);
        if FLAKY.load(SeqCst) {
            panic!("the origin broke while holding the lock");
        }
        id
    }

    /// A holder that dies: the process exits while holding the lock.
    pub fn die_holding_lock(id: u64) -> String {
        std::thread::spawn(move || locked_report(id));
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::process::exit(0);
    }

    pub static QUOTES_FAIL: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Fail-safe: an error within 5 s of expiry gets the stale value.
    #[cached(timeout_ms = 200, key_prefix = "quote", stale_if_error = 5)]
    pub fn quote(id: u64) -> Result<String, String> {
        FIND_RUNS.fetch_add(1, SeqCst);
        if QUOTES_FAIL.load(SeqCst) {
            Err("quote service down".into())
        } else {
            Ok(format!("quote {id}"))
        }
    }

    /// Two functions in one version group.
    #[cached(timeout = 300, key_prefix = "catalog_item", versioned = "catalog")]
    pub fn catalog_item(id: u64) -> String {
        FIND_RUNS.fetch_add(1, SeqCst);
        format!("item {id}")
    }

    #[cached(timeout = 300, key_prefix = "catalog_price", versioned = "catalog")]
    pub fn catalog_price(id: u64) -> u64 {
        FIND_RUNS.fetch_add(1, SeqCst);
        id * 100
    }

    /// No local tier and a slow function: concurrent misses share one run.
    #[cached(timeout = 300, key_prefix = "shared_slow", tier = "shared")]
    pub fn shared_slow(id: u64) -> u64 {
        FIND_RUNS.fetch_add(1, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        id
    }

    /// Refresh-ahead with the lock: one process of the fleet refreshes.
    #[cached(
        timeout_ms = 400,
        key_prefix = "news",
        refresh_ahead = 0.5,
        lock = true
    )]
    pub fn news(id: u64) -> String {
        let n = NEWS_RUNS.fetch_add(1, SeqCst) + 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
        format!("news {id} #{n}")
    }

    /// Two functions whose entries carry the user's tag.
    #[cached(timeout = 300, key_prefix = "tag_profile", tags = ["user:{user_id}"])]
    pub fn tagged_profile(user_id: u64) -> String {
        FIND_RUNS.fetch_add(1, SeqCst);
        format!("profile {user_id}")
    }

    #[cached(timeout = 300, key_prefix = "tag_orders", tags = ["user:{user_id}"])]
    pub fn tagged_orders(user_id: u64) -> Vec<u64> {
        FIND_RUNS.fetch_add(1, SeqCst);
        vec![user_id]
    }

    #[cache_invalidate(tag = "user:{user_id}")]
    pub fn touch_user(user_id: u64) {
        let _ = user_id;
    }

    /// No local tier: every call asks Redis.
    #[cached(timeout = 300, key_prefix = "shared_only", tier = "shared")]
    pub fn shared_only(id: u64) -> (u64, String) {
        SHARED_RUNS.fetch_add(1, SeqCst);
        (id, format!("value {id}"))
    }

    /// Same key shape, another value type: its envelopes must not decode as `shared_only`'s.
    #[cached(timeout = 300, key_prefix = "other_type", tier = "shared")]
    pub fn other_type(id: u64) -> Vec<u8> {
        vec![id as u8; 3]
    }

    pub static HOT_RUNS: AtomicU64 = AtomicU64::new(0);

    /// A hot key with XFetch: lives 300 ms, takes 20 ms to compute.
    #[cached(timeout_ms = 300, key_prefix = "xhot", xfetch = 2.0, lock = true)]
    pub fn hot(id: u64) -> u64 {
        HOT_RUNS.fetch_add(1, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        id
    }

    /// Calls `hot(1)` every 2 ms for `ms`: how often it ran here, and
    /// how many of the calls missed or met an expired entry.
    fn hammer_hot(ms: u64) -> String {
        let before = HOT_RUNS.load(SeqCst);
        let stats = || {
            let s = layercache::stats();
            let f = s.function("xhot").cloned().unwrap_or_default();
            (f.misses, f.expired)
        };
        let (misses, expired) = stats();
        let started = Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(ms) {
            hot(1);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (misses_after, expired_after) = stats();
        format!(
            "runs={} misses={} expired={}",
            HOT_RUNS.load(SeqCst) - before,
            misses_after - misses,
            expired_after - expired
        )
    }

    pub static FORCED_RUNS: AtomicU64 = AtomicU64::new(0);

    #[cached(timeout = 300, key_prefix = "forced", key = "{id}", force_refresh = fresh)]
    pub fn forced(id: u64, fresh: bool) -> u64 {
        let _ = fresh;
        id * 1000 + FORCED_RUNS.fetch_add(1, SeqCst) + 1
    }

    pub static SOFT_RUNS: AtomicU64 = AtomicU64::new(0);

    /// Fast on its first run in a process, 400 ms on every later one.
    #[cached(
        timeout_ms = 300,
        key_prefix = "soft",
        stale_if_error = 60,
        soft_timeout_ms = 100
    )]
    pub fn soft_quote(id: u64) -> Result<u64, String> {
        let run = SOFT_RUNS.fetch_add(1, SeqCst) + 1;
        if run > 1 {
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        Ok(id * 1000 + run)
    }

    pub static BY_VALUE_RUNS: AtomicU64 = AtomicU64::new(0);

    /// Even values live 60 s, odd ones 600 s (capped by `timeout` at 300 s).
    fn lifetime_of(v: &u64) -> std::time::Duration {
        std::time::Duration::from_secs(if v.is_multiple_of(2) { 60 } else { 600 })
    }

    #[cached(timeout = 300, key_prefix = "by_value", timeout_by = lifetime_of)]
    pub fn by_value(id: u64) -> u64 {
        BY_VALUE_RUNS.fetch_add(1, SeqCst);
        id
    }

    /// Over the 1 MiB default limit.
    #[cached(timeout = 300, key_prefix = "big")]
    pub fn big(id: u64) -> String {
        BIG_RUNS.fetch_add(1, SeqCst);
        "x".repeat(2 << 20) + &id.to_string()
    }

    /// Lives 400 ms in every tier.
    #[cached(timeout_ms = 400, key_prefix = "short")]
    pub fn short(id: u64) -> u64 {
        SHARED_RUNS.fetch_add(1, SeqCst);
        id * 2
    }

    /// Lives 300 s in Redis, but local copies only 100 ms.
    #[cached(timeout = 300, local_timeout_ms = 100, key_prefix = "capped")]
    pub fn capped(id: u64) -> u64 {
        SHARED_RUNS.fetch_add(1, SeqCst);
        id * 3
    }

    /// A self-describing value (`deserialize_any`), which bincode could not decode.
    #[cached(timeout = 300, key_prefix = "json")]
    pub fn json(id: u64) -> serde_json::Value {
        BIG_RUNS.fetch_add(1, SeqCst);
        serde_json::json!({ "id": id })
    }

    /// No local tier, async: from a multi-thread runtime this goes over a
    /// connection driven by that runtime.
    #[cached(timeout = 300, key_prefix = "shared_async", tier = "shared")]
    pub async fn shared_async(id: u64) -> (u64, String) {
        SHARED_RUNS.fetch_add(1, SeqCst);
        (id, format!("value {id}"))
    }

    /// Called once at start-up to bring the shared tier up.
    #[cached(timeout = 1, key_prefix = "warmup")]
    pub fn warmup(id: u64) -> u64 {
        id
    }

    #[cached(timeout = 300, key_prefix = "async_profile")]
    pub async fn get_profile_async(user_id: u64) -> String {
        PROFILE_RUNS.fetch_add(1, SeqCst);
        read_user(user_id)
    }

    fn stats_line(name: &str) -> String {
        let stats = layercache::stats();
        let Some(f) = stats.function(name) else {
            return format!("stats {name} none");
        };
        let tier = stats.shared_tier.clone().unwrap_or_default();
        format!(
            "stats smisses={} encode={} local={} shared={} misses={} corrupt={} timeouts={} connection={} skipped={} oversize={} writes={} bytes={} notices={} resubscriptions={} breaker_opens={} lock_waits={} stale_hits={} refresh_starts={} expired={}",
            f.shared.misses,
            f.shared.encode_errors,
            f.local_hits,
            f.shared_hits,
            f.misses,
            f.shared.corrupt,
            f.shared.timeouts,
            f.shared.connection_errors,
            f.shared.skipped,
            f.shared.oversize,
            f.shared.writes,
            f.shared.bytes_written,
            tier.notices_received,
            tier.resubscriptions,
            tier.breaker_opens,
            f.lock_waits,
            f.stale_hits,
            f.refreshes_started,
            f.expired,
        )
    }

    fn timed<T: std::fmt::Debug>(runs: &AtomicU64, f: impl FnOnce() -> T) -> String {
        let before = runs.load(SeqCst);
        let started = Instant::now();
        let v = f();
        let us = started.elapsed().as_micros();
        format!("ok {v:?} runs={} us={us}", runs.load(SeqCst) - before)
    }

    pub fn run() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stdin = std::io::stdin();
        let mut out = std::io::stdout();
        for line in stdin.lock().lines() {
            let line = line.expect("stdin");
            let parts: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| parts[i].parse::<u64>().expect("number");
            let reply = match parts.as_slice() {
                ["get", _] => timed(&PROFILE_RUNS, || get_user_profile(n(1))),
                // A sync cached function called from inside a tokio runtime.
                ["get_in_rt", _] => {
                    let id = n(1);
                    timed(&PROFILE_RUNS, || {
                        rt.block_on(async { get_user_profile(id) })
                    })
                }
                // Many sync calls from one tokio task: they must not exhaust
                // the task's cooperative budget and park forever.
                ["loop_in_task", _] => {
                    let n = n(1);
                    timed(&SHARED_RUNS, || {
                        rt.block_on(async move {
                            tokio::spawn(async move {
                                (0..n).map(|i| shared_only(i % 4).0).sum::<u64>()
                            })
                            .await
                            .unwrap()
                        })
                    })
                }
                ["mt_shared", _] => {
                    let id = n(1);
                    timed(&SHARED_RUNS, || {
                        mt.block_on(async move { tokio::spawn(shared_async(id)).await.unwrap().0 })
                    })
                }
                // `n` concurrent tasks on the multi-thread runtime, each
                // asking for its own key; answers how many got their own value.
                ["mt_burst", _] => {
                    let count = n(1);
                    timed(&SHARED_RUNS, || {
                        mt.block_on(async move {
                            let tasks: Vec<_> = (0..count)
                                .map(|id| tokio::spawn(shared_async(id)))
                                .collect();
                            let mut right = 0u64;
                            for (id, task) in tasks.into_iter().enumerate() {
                                if task.await.unwrap() == (id as u64, format!("value {id}")) {
                                    right += 1;
                                }
                            }
                            right
                        })
                    })
                }
                ["shared_async", _] => {
                    let id = n(1);
                    timed(&SHARED_RUNS, || rt.block_on(shared_async(id)).0)
                }
                ["aget", _] => {
                    let id = n(1);
                    timed(&PROFILE_RUNS, || rt.block_on(get_profile_async(id)))
                }
                ["update", _, name] => {
                    update_user(n(1), name);
                    "ok".to_string()
                }
                ["search", q, _] => {
                    let page = n(2) as u32;
                    timed(&SEARCH_RUNS, || search(q, page))
                }
                ["reindex"] => {
                    reindex();
                    "ok".to_string()
                }
                ["reindex_query", q] => {
                    reindex_query(q);
                    "ok".to_string()
                }
                ["shared_only", _] => timed(&SHARED_RUNS, || shared_only(n(1))),
                ["find", _] => timed(&FIND_RUNS, || find_user(n(1))),
                ["quote", _] => timed(&FIND_RUNS, || quote(n(1))),
                ["item", _] => timed(&FIND_RUNS, || catalog_item(n(1))),
                ["tprofile", _] => timed(&FIND_RUNS, || tagged_profile(n(1))),
                ["torders", _] => timed(&FIND_RUNS, || tagged_orders(n(1))),
                ["touch_user", _] => {
                    touch_user(n(1));
                    "ok".to_string()
                }
                ["news", _] => timed(&NEWS_RUNS, || news(n(1))),
                ["news_runs"] => format!("runs {}", NEWS_RUNS.load(SeqCst)),
                // 32 threads call a cold shared-only key at once.
                ["shared_burst", _] => {
                    let id = n(1);
                    timed(&FIND_RUNS, || {
                        let start = std::sync::Barrier::new(32);
                        std::thread::scope(|s| {
                            for _ in 0..32 {
                                s.spawn(|| {
                                    start.wait();
                                    assert_eq!(shared_slow(id), id);
                                });
                            }
                        });
                    })
                }
                ["sync_threads", _] => {
                    // More sync threads than the blocking pool holds (at
                    // most 16), each on its own key: the rest take the
                    // async path.
                    let base = n(1);
                    timed(&SHARED_RUNS, || {
                        let start = std::sync::Barrier::new(32);
                        std::thread::scope(|s| {
                            for t in 0..32 {
                                let start = &start;
                                s.spawn(move || {
                                    start.wait();
                                    for _ in 0..20 {
                                        assert_eq!(shared_only(base + t).0, base + t);
                                    }
                                });
                            }
                        });
                    })
                }
                ["price", _] => timed(&FIND_RUNS, || catalog_price(n(1))),
                ["bump", group] => format!("bumped {}", layercache::bump_version(group)),
                ["warm", _] => {
                    let report = layercache::warm_up_blocking(0..n(1), 8, get_user_profile);
                    format!("warmed {} {}", report.loaded, report.failed)
                }
                ["quotes_fail", on] => {
                    QUOTES_FAIL.store(*on == "on", SeqCst);
                    "ok".to_string()
                }
                ["one_name_u64", _] => timed(&RETYPED_RUNS, || one_name_u64(n(1))),
                ["one_name_i64", _] => timed(&RETYPED_RUNS, || one_name_i64(n(1) as i64)),
                ["one_template_u64", _] => timed(&RETYPED_RUNS, || one_template_u64(n(1))),
                ["one_template_i64", _] => timed(&RETYPED_RUNS, || one_template_i64(n(1) as i64)),
                ["generic", ty, _] => generic_command("call", ty, n(2)),
                ["key", "generic", ty, _] => generic_command("key", ty, n(3)),
                ["touch_generic", ty, _] => generic_command("touch", ty, n(2)),
                ["locked", _] => timed(&LOCKED_RUNS, || locked_report(n(1))),
                ["unlocked", _] => timed(&LOCKED_RUNS, || unlocked_report(n(1))),
                ["die_holding_lock", _] => die_holding_lock(n(1)),
                ["flaky", on] => {
                    FLAKY.store(*on == "on", SeqCst);
                    "ok".to_string()
                }
                ["locked_flaky", _] => {
                    let id = n(1);
                    match std::panic::catch_unwind(|| timed(&LOCKED_RUNS, || locked_flaky(id))) {
                        Ok(reply) => reply,
                        Err(_) => "ok panicked runs=1 us=0".to_string(),
                    }
                }
                ["other_type", _] => timed(&SHARED_RUNS, || other_type(n(1))),
                ["short", _] => timed(&SHARED_RUNS, || short(n(1))),
                ["capped", _] => timed(&SHARED_RUNS, || capped(n(1))),
                ["big", _] => timed(&BIG_RUNS, || big(n(1)).len()),
                ["by_value", _] => timed(&BY_VALUE_RUNS, || by_value(n(1))),
                ["soft", _] => timed(&SOFT_RUNS, || soft_quote(n(1))),
                ["xhot", _] => timed(&HOT_RUNS, || hot(n(1))),
                ["hammer_hot", _] => hammer_hot(n(1)),
                ["forced", _, fresh] => timed(&FORCED_RUNS, || forced(n(1), *fresh == "true")),
                ["json", _] => timed(&BIG_RUNS, || json(n(1)).to_string()),
                ["key", "shared_only", _] => {
                    format!(
                        "key {}",
                        entry!(shared_only(n(2))).shared_key().unwrap_or_default()
                    )
                }
                ["key", "other_type", _] => {
                    format!(
                        "key {}",
                        entry!(other_type(n(2))).shared_key().unwrap_or_default()
                    )
                }
                ["key", "json", _] => {
                    format!(
                        "key {}",
                        entry!(json(n(2))).shared_key().unwrap_or_default()
                    )
                }
                ["key", "by_value", _] => {
                    format!(
                        "key {}",
                        entry!(by_value(n(2))).shared_key().unwrap_or_default()
                    )
                }
                ["key", "big", _] => {
                    format!("key {}", entry!(big(n(2))).shared_key().unwrap_or_default())
                }
                ["mget_u64", k] => format!("{:?}", layercache::sync::Cache::global().get::<u64>(k)),
                ["mhas", k] => format!("{}", layercache::sync::Cache::global().has(k)),
                ["mdel", k] => format!("{}", layercache::sync::Cache::global().delete(k)),
                // The async manual clear on a current-thread runtime, with a
                // task ticking every millisecond beside it: how many ticks ran
                // while the clear waited for the shared tier.
                ["aclear_ticks"] => {
                    let local = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    local.block_on(async {
                        let ticks = std::sync::Arc::new(AtomicU64::new(0));
                        let counter = ticks.clone();
                        let ticker = tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                                counter.fetch_add(1, SeqCst);
                            }
                        });
                        tokio::task::yield_now().await;
                        let (before, started) = (ticks.load(SeqCst), Instant::now());
                        layercache::future::Cache::global().clear().await;
                        let waited = started.elapsed();
                        ticker.abort();
                        format!(
                            "ticks {} waited_ms {}",
                            ticks.load(SeqCst) - before,
                            waited.as_millis()
                        )
                    })
                }
                ["aget_manual", k] => format!(
                    "{:?}",
                    rt.block_on(layercache::future::Cache::global().get::<String>(k))
                ),
                // Start the shared tier and wait for its invalidation bus, so
                // scenarios do not race the first subscription (which drops
                // local copies made before it).
                ["wait_bus"] => {
                    let _ = warmup(0);
                    let started = Instant::now();
                    loop {
                        let up = layercache::stats()
                            .shared_tier
                            .is_some_and(|t| t.bus_subscribed);
                        if up || started.elapsed() > std::time::Duration::from_secs(10) {
                            break format!("bus {up}");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
                ["stats", name] => stats_line(name),
                ["quit"] => return,
                _ => crate::fleet_node::manual_cache_command(&parts)
                    .unwrap_or_else(|| format!("error unknown command {line:?}")),
            };
            writeln!(out, "{reply}").unwrap();
            out.flush().unwrap();
        }
    }
}

// -------------------------------------------------------------- parent side

/// A node process and its command channel.
/// The fleet binaries' node process; this binary adds how it starts
/// its nodes and reads their answers.
type Node = NodeProcess;

/// What a node answered to a call: `ok <value> runs=<n> us=<micros>`.
#[derive(Debug)]
struct Call {
    value: String,
    runs: u64,
    elapsed: Duration,
}

impl Node {
    /// A node whose shared tier is up, its invalidation bus subscribed.
    fn spawn(name: &'static str, url: &str, db: &std::path::Path, extra: &[(&str, &str)]) -> Node {
        let mut node = Node::start(name, url, db, extra);
        assert_eq!(
            node.send("wait_bus"),
            "bus true",
            "node {name}: no invalidation bus"
        );
        node
    }

    /// A node left alone until its first call (for servers that never answer).
    fn start(name: &'static str, url: &str, db: &std::path::Path, extra: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("LAYERCACHE_NODE", "1")
            .env("CACHE_TYPE", "redis")
            .env("CACHE_REDIS_URL", url)
            .env("CACHE_KEY_PREFIX", "fleet")
            .env("LAYERCACHE_DB_DIR", db)
            .env_remove("CACHE_SHARED_TIMEOUT_MS")
            .env_remove("CACHE_DEFAULT_TIMEOUT")
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        NodeProcess::start_command(name, cmd, false)
    }

    fn call(&mut self, line: &str) -> Call {
        let reply = self.send(line);
        self.parse_call(&reply)
    }

    fn parse_call(&self, reply: &str) -> Call {
        let rest = reply
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("node {}: unexpected reply {reply:?}", self.name));
        let (value, tail) = rest.rsplit_once(" runs=").expect("runs=");
        let (runs, us) = tail.split_once(" us=").expect("us=");
        Call {
            value: value.to_string(),
            runs: runs.parse().unwrap(),
            elapsed: Duration::from_micros(us.parse().unwrap()),
        }
    }

    fn key(&mut self, function: &str, id: u64) -> String {
        let reply = self.send(&format!("key {function} {id}"));
        let key = reply.strip_prefix("key ").unwrap().to_string();
        assert!(!key.is_empty(), "no shared key for {function}({id})");
        key
    }
}

/// A new directory: unique per process (its id) and per call (a counter).
fn temp_db(name: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "layercache-fleet-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every millisecond until it returns `Some`, for at most `limit`.
fn within<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some((v, started.elapsed()));
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ----------------------------------------------------------------- scenarios

fn a_value_computed_by_one_process_is_served_to_another_and_an_update_reaches_both() {
    let server = RedisServer::start();
    let db = temp_db("share");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);

    let first = a.call("get 1");
    assert_eq!((first.value.as_str(), first.runs), ("\"user-1\"", 1));
    let from_b = b.call("get 1");
    assert_eq!(
        (from_b.value.as_str(), from_b.runs),
        ("\"user-1\"", 0),
        "B must get A's value from Redis without running the function"
    );
    assert_eq!(b.stat("user_profile", "shared"), 1);
    // B now serves it from its own local tier.
    assert_eq!(b.call("get 1").runs, 0);
    assert_eq!(b.stat("user_profile", "local"), 1);
    assert_eq!(a.call("get 1").runs, 0, "A's local copy");

    // B updates: A's next call runs the function again and sees the new value.
    b.send("update 1 alice");
    let (call, waited) = within(Duration::from_millis(50), || {
        let c = a.call("get 1");
        (c.runs == 1).then_some(c)
    })
    .expect("A still served its old copy 50 ms after B's update");
    assert_eq!(call.value, "\"alice\"");
    println!("    A saw B's update after {waited:?}");
    assert!(a.stat("user_profile", "notices") >= 1);
    // And B's own next call is served by Redis (A wrote it back), not the function.
    let again = b.call("get 1");
    assert_eq!((again.value.as_str(), again.runs), ("\"alice\"", 0));

    // Async functions take the same path.
    assert_eq!(a.call("aget 7").runs, 1);
    assert_eq!(b.call("aget 7").runs, 0);
    // A sync cached function called inside a tokio runtime does not deadlock,
    // nor does a long run of them in one task.
    assert_eq!(b.call("get_in_rt 8").runs, 1);
    assert_eq!(a.call("get_in_rt 8").runs, 0);
    let many = b.call("loop_in_task 500");
    assert_eq!(
        many.value,
        format!("{}", (0..500u64).map(|i| i % 4).sum::<u64>())
    );
    server.assert_no_keys_command();
}

fn all_and_prefix_invalidations_reach_every_process() {
    let server = RedisServer::start();
    let db = temp_db("all");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    for (q, p) in [("rust", 1), ("rust", 2), ("go", 1), ("rust*", 1)] {
        assert_eq!(a.call(&format!("search {q} {p}")).runs, 1);
        assert_eq!(
            b.call(&format!("search {q} {p}")).runs,
            0,
            "B reads A's {q} {p}"
        );
    }

    // prefix = "search:{query}:" with query = rust drops rust 1 and 2 only,
    // in Redis and in A's local tier (the `*` of "rust*" is escaped, not a glob).
    b.send("reindex_query rust");
    let (_, waited) = within(Duration::from_millis(50), || {
        (a.call("search rust 1").runs == 1).then_some(())
    })
    .expect("A kept its rust 1 copy after B's prefix invalidation");
    println!("    prefix invalidation reached A after {waited:?}");
    assert_eq!(a.call("search rust 2").runs, 1);
    assert_eq!(a.call("search go 1").runs, 0, "go is outside the prefix");
    assert_eq!(
        a.call("search rust* 1").runs,
        0,
        "`rust*` is not matched by `rust`"
    );
    let remaining = server.keys_matching("fleet:search:*");
    assert!(
        remaining.iter().any(|k| k.contains("go:page:1")),
        "{remaining:?}"
    );

    // all = search: a new version; every copy everywhere is gone at once.
    b.send("reindex");
    let (_, waited) = within(Duration::from_millis(50), || {
        (a.call("search go 1").runs == 1).then_some(())
    })
    .expect("A kept its go 1 copy after B's `all =` invalidation");
    println!("    `all =` invalidation reached A after {waited:?}");
    assert_eq!(a.call("search rust* 1").runs, 1);
    // B, which never held `search go 1` under the new version, reads A's write-back.
    assert_eq!(b.call("search go 1").runs, 0);
    let version = server.get_raw("__layercache__:version:fleet:search");
    assert!(version.is_some(), "the version lives in Redis");
    server.assert_no_keys_command();
}

fn calls_keep_their_values_while_redis_is_down_and_shared_hits_resume_after_a_restart() {
    let mut server = RedisServer::start();
    let db = temp_db("restart");
    let env = [("CACHE_SHARED_TIMEOUT_MS", "50")];
    let mut a = Node::spawn("A", &server.url(), &db, &env);
    let mut b = Node::spawn("B", &server.url(), &db, &env);
    assert_eq!(a.call("shared_only 1").runs, 1);
    assert_eq!(b.call("shared_only 1").runs, 0);
    assert_eq!(a.call("get 5").runs, 1, "a local copy in A");
    // The connection a multi-thread runtime drives works like the I/O thread's.
    assert_eq!(a.call("mt_shared 1").runs, 1);
    assert_eq!(b.call("shared_async 1").runs, 0);
    assert_eq!(a.call("mt_shared 1").runs, 0);

    server.stop();
    let budget = Duration::from_millis(50 + 100); // timeout + origin (~0) + scheduling slack
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let c = a.call(&format!("shared_only {}", 100 + i % 3));
        assert_eq!(
            c.value,
            format!("({}, \"value {}\")", 100 + i % 3, 100 + i % 3)
        );
        assert_eq!(c.runs, 1, "Redis is down: the function answers");
        slowest = slowest.max(c.elapsed);
        assert!(
            c.elapsed < budget,
            "call {i} took {:?} with Redis down",
            c.elapsed
        );
    }
    println!("    slowest call with Redis down: {slowest:?}");
    let errors = a.stat("shared_only", "connection") + a.stat("shared_only", "timeouts");
    assert!(errors >= 1, "failures are counted");
    assert!(
        a.stat("shared_only", "skipped") >= 1,
        "the breaker opened and skipped the store"
    );
    assert!(a.stat("shared_only", "breaker_opens") >= 1);

    server.restart();
    let restarted = Instant::now();
    let mut id = 1000;
    let resumed = within(Duration::from_secs(2), || {
        id += 1;
        a.call(&format!("shared_only {id}"));
        (b.call(&format!("shared_only {id}")).runs == 0).then_some(())
    });
    let (_, after) = resumed.expect("no shared hit within 2 s of the restart");
    println!(
        "    shared hits resumed {after:?} after the restart ({:?} total)",
        restarted.elapsed()
    );
    assert!(b.stat("shared_only", "shared") >= 2);
    // The multi-thread runtime's connection comes back too.
    let resumed = within(Duration::from_secs(2), || {
        id += 1;
        b.call(&format!("shared_async {id}"));
        (a.call(&format!("mt_shared {id}")).runs == 0).then_some(())
    });
    assert!(
        resumed.is_some(),
        "the multi-thread runtime's connection did not recover within 2 s"
    );

    // A's bus subscription dropped with the server: once it is back, A
    // drops its local copies (notices may have been lost meanwhile).
    within(Duration::from_secs(3), || {
        (a.stat("user_profile", "resubscriptions") >= 1).then_some(())
    })
    .expect("A did not resubscribe to the invalidation bus");
    assert_eq!(
        a.call("get 5").runs,
        1,
        "A's local copy was dropped on resubscription"
    );
    server.assert_no_keys_command();
}

fn a_sync_shared_call_during_a_pause_returns_within_the_timeout_and_counts_an_error() {
    let server = RedisServer::start();
    let db = temp_db("sync_pause");
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "50")],
    );
    // Two calls: the second is a shared hit over a pooled blocking connection.
    assert_eq!(a.call("shared_only 1").runs, 1);
    assert_eq!(a.call("shared_only 1").runs, 0);

    server.pause();
    let c = a.call("shared_only 1");
    server.resume();
    println!(
        "    a sync call against the paused server took {:?}",
        c.elapsed
    );
    assert_eq!(c.value, "(1, \"value 1\")");
    assert_eq!(
        c.runs, 1,
        "the paused server did not answer: the function ran"
    );
    let budget = Duration::from_millis(50 + 100); // timeout + scheduling slack
    assert!(
        c.elapsed < budget,
        "the call took {:?} against a 50 ms timeout",
        c.elapsed
    );
    assert!(
        a.stat("shared_only", "timeouts") >= 1,
        "the timeout was counted"
    );
    // The timed-out connection was dropped, not reused: a late answer to
    // the paused GET cannot be read as the next command's.
    let resumed = within(Duration::from_secs(2), || {
        (a.call("shared_only 1").runs == 0).then_some(())
    });
    assert!(
        resumed.is_some(),
        "shared hits did not resume after the pause"
    );
    server.assert_no_keys_command();
}

fn concurrent_async_shared_calls_during_a_pause_return_within_the_timeout() {
    let server = RedisServer::start();
    let db = temp_db("mget_pause");
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "50")],
    );
    const CALLERS: u64 = 64;
    a.call(&format!("mt_burst {CALLERS}"));
    // Coalesced GETs carry no timer of their own: their round's must
    // answer each of them within its timeout.
    server.pause();
    let c = a.call(&format!("mt_burst {CALLERS}"));
    server.resume();
    println!(
        "    {CALLERS} async calls against the paused server took {:?}",
        c.elapsed
    );
    assert_eq!(
        c.value,
        CALLERS.to_string(),
        "every caller got its own value"
    );
    assert_eq!(
        c.runs, CALLERS,
        "the paused server did not answer: the function ran"
    );
    let budget = Duration::from_millis(50 + 150); // timeout + scheduling slack
    assert!(
        c.elapsed < budget,
        "the burst took {:?} against a 50 ms timeout",
        c.elapsed
    );
    assert!(
        a.stat("shared_async", "timeouts") >= 1,
        "the timeouts were counted"
    );
    server.assert_no_keys_command();
}

fn the_sync_connection_pool_reconnects_after_a_restart_without_a_failed_call() {
    let mut server = RedisServer::start();
    let db = temp_db("sync_restart");
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "200")],
    );
    // Pooled blocking connections to the first server.
    assert_eq!(a.call("shared_only 1").runs, 1);
    assert_eq!(a.call("shared_only 1").runs, 0);

    server.restart();
    // The pooled connection finds its server gone and the call is retried
    // on a fresh one: a miss (the server restarted empty), not an error.
    assert_eq!(a.call("shared_only 2").runs, 1);
    let failures = a.stat("shared_only", "connection") + a.stat("shared_only", "timeouts");
    assert_eq!(failures, 0, "no call failed across the restart");
    // A write-back racing the bus's re-subscription (which drops what the
    // gap may have made stale) is not kept: hits resume within a few calls.
    let resumed = within(Duration::from_secs(2), || {
        (a.call("shared_only 2").runs == 0).then_some(())
    });
    assert!(
        resumed.is_some(),
        "no shared hit on the new server within 2 s"
    );
    server.assert_no_keys_command();
}

fn more_sync_threads_than_blocking_connections_all_get_their_values_and_shared_hits() {
    let server = RedisServer::start();
    let db = temp_db("sync_threads");
    // A generous timeout: 32 threads on a small machine must not turn a
    // slow scheduling into a counted timeout.
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "2000")],
    );
    let c = a.call("sync_threads 7000");
    assert_eq!(c.runs, 32, "each thread's key was computed once");
    let failures = a.stat("shared_only", "connection") + a.stat("shared_only", "timeouts");
    assert_eq!(failures, 0, "no shared operation failed");
    assert_eq!(
        a.stat("shared_only", "shared"),
        32 * 19,
        "every later call was a shared hit, pooled or not"
    );
    server.assert_no_keys_command();
}

fn a_shared_hit_is_kept_locally_only_for_the_remaining_life_or_local_timeout() {
    let server = RedisServer::start();
    let db = temp_db("ttl");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);

    // timeout_ms = 400: B reads A's value 250 ms in, so its copy has ~150 ms left.
    let t0 = Instant::now();
    assert_eq!(a.call("short 1").runs, 1);
    std::thread::sleep(Duration::from_millis(250).saturating_sub(t0.elapsed()));
    assert_eq!(b.call("short 1").runs, 0, "shared hit");
    assert_eq!(b.call("short 1").runs, 0, "local copy");
    std::thread::sleep(Duration::from_millis(450).saturating_sub(t0.elapsed()));
    // With the full 400 ms the local copy would live until ~650 ms.
    assert_eq!(
        b.call("short 1").runs,
        1,
        "B's copy expired with A's entry, not 400 ms after B read it"
    );

    // local_timeout_ms = 100 caps B's copy of a 300 s entry.
    assert_eq!(a.call("capped 1").runs, 1);
    assert_eq!(b.call("capped 1").runs, 0);
    let shared_before = b.stat("capped", "shared");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(b.call("capped 1").runs, 0, "still in Redis");
    assert_eq!(
        b.stat("capped", "shared"),
        shared_before + 1,
        "re-read from Redis after 100 ms"
    );
    server.assert_no_keys_command();
}

fn a_server_that_never_answers_costs_each_call_at_most_the_timeout() {
    let silent = SilentServer::start();
    let db = temp_db("silent");
    let mut a = Node::start(
        "A",
        &silent.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "50")],
    );
    let budget = Duration::from_millis(50 + 100);
    let mut slowest = Duration::ZERO;
    for i in 0..12 {
        let c = a.call(&format!("get {i}"));
        assert_eq!(c.value, format!("\"user-{i}\""));
        assert_eq!(c.runs, 1);
        assert!(c.elapsed < budget, "call {i} took {:?}", c.elapsed);
        slowest = slowest.max(c.elapsed);
        let c = a.call(&format!("aget {i}"));
        assert!(c.elapsed < budget, "async call {i} took {:?}", c.elapsed);
        slowest = slowest.max(c.elapsed);
    }
    assert!(
        a.stat("user_profile", "skipped") >= 1,
        "the breaker skipped the silent server"
    );
    assert!(a.stat("user_profile", "breaker_opens") >= 1);
    // After the cool-down (500 ms) one probe goes to the server, times out,
    // and costs no more than the timeout either.
    std::thread::sleep(Duration::from_millis(550));
    let probe = a.call("get 100");
    assert!(probe.elapsed < budget, "the probe took {:?}", probe.elapsed);
    slowest = slowest.max(probe.elapsed);
    assert!(
        a.stat("user_profile", "timeouts") >= 1,
        "the probe timed out"
    );
    println!("    slowest call against a silent server: {slowest:?}");
    assert!(silent.connections_accepted() >= 1);
}

fn garbage_under_our_keys_is_a_counted_miss_and_is_replaced() {
    let server = RedisServer::start();
    let db = temp_db("garbage");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    assert_eq!(a.call("shared_only 1").runs, 1);
    let key = a.key("shared_only", 1);
    let valid = server.get_raw(&key).expect("A wrote its value");
    assert_eq!(
        &valid[..4],
        b"LC\x02\x02",
        "an envelope, format 2, MessagePack"
    );

    // Another type's envelope, and this function's envelope for another key.
    a.call("other_type 1");
    let other_type = server.get_raw(&a.key("other_type", 1)).unwrap();
    assert_eq!(a.call("shared_only 2").runs, 1);
    let other_key = server.get_raw(&a.key("shared_only", 2)).unwrap();

    let mut huge_length = valid[..36].to_vec();
    // A 2-array: the u64 id = 0, then a str32 claiming 4 GiB.
    huge_length.extend_from_slice(&[0x92, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff]);

    let mut random = vec![0u8; 200];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random),
        ("a truncated envelope", valid[..valid.len() - 3].to_vec()),
        ("a header only", valid[..20].to_vec()),
        ("another type's envelope", other_type),
        ("another key's envelope", other_key),
        ("a huge length prefix", huge_length),
        ("an empty value", Vec::new()),
        ("trailing bytes", [valid.clone(), vec![0]].concat()),
    ];
    for (i, (what, garbage)) in cases.into_iter().enumerate() {
        server.set_raw(&key, &garbage);
        let corrupt = a.stat("shared_only", "corrupt");
        let c = a.call("shared_only 1");
        assert_eq!(c.value, "(1, \"value 1\")", "{what}: the right value");
        assert_eq!(c.runs, 1, "{what}: a miss, so the function ran");
        assert_eq!(
            a.stat("shared_only", "corrupt"),
            corrupt + 1,
            "{what}: counted as corrupt"
        );
        let now = server.get_raw(&key).unwrap();
        assert_eq!(
            now,
            valid_with_new_times(&valid, &now),
            "{what}: replaced by a valid envelope"
        );
        assert_eq!(
            a.call("shared_only 1").runs,
            0,
            "{what}: and served from Redis again"
        );
        println!("    case {i}: {what}: counted miss, replaced");
    }
    server.assert_no_keys_command();
}

/// `now` must be `valid` except for the write and expiry times (bytes 20..36).
fn valid_with_new_times(valid: &[u8], now: &[u8]) -> Vec<u8> {
    assert_eq!(valid.len(), now.len());
    let mut expected = valid.to_vec();
    expected[20..36].copy_from_slice(&now[20..36]);
    expected
}

fn the_manual_cache_is_shared_and_its_writes_reach_every_process() {
    let server = RedisServer::start();
    let db = temp_db("manual");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(b.send("mget greeting"), "None");
    a.send("mset greeting hello");
    assert_eq!(
        b.send("mget greeting"),
        "Some(\"hello\")",
        "B reads A's set from Redis"
    );
    assert_eq!(b.send("mhas greeting"), "true");
    assert_eq!(
        b.send("mget_u64 greeting"),
        "None",
        "another type is a miss"
    );
    assert_eq!(
        server.get_raw("fleet:greeting").map(|v| v[..2].to_vec()),
        Some(b"LC".to_vec())
    );

    // A overwrites: B's local copy goes, B sees the new value.
    a.send("mset greeting bye");
    let (_, waited) = within(Duration::from_millis(50), || {
        (b.send("mget greeting") == "Some(\"bye\")").then_some(())
    })
    .expect("B kept its old copy after A's set");
    println!("    A's set reached B after {waited:?}");

    // B deletes: gone for A too.
    assert_eq!(b.send("mdel greeting"), "true");
    within(Duration::from_millis(50), || {
        (a.send("mget greeting") == "None").then_some(())
    })
    .expect("A kept its copy after B's delete");
    assert_eq!(a.send("mhas greeting"), "false");
    assert_eq!(server.get_raw("fleet:greeting"), None);
    a.send("mset async_key value");
    assert_eq!(b.send("aget_manual async_key"), "Some(\"value\")");
    server.assert_no_keys_command();
}

fn named_caches_and_batch_operations_reach_every_process() {
    let server = RedisServer::start();
    let db = temp_db("named");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(b.send("wait_bus"), "bus true");
    a.send("nset sessions s1 alice");
    a.send("nset carts s1 cart");
    a.send("mset s1 global");
    // Separators in names and keys are escaped: these two never meet.
    a.send("nset a b:c first");
    a.send("nset a:b c second");
    assert_eq!(
        b.send("nget sessions s1"),
        "Some(\"alice\")",
        "read from Redis"
    );
    assert_eq!(b.send("nget carts s1"), "Some(\"cart\")");
    assert_eq!(b.send("mget s1"), "Some(\"global\")");
    assert_eq!(b.send("nget a b:c"), "Some(\"first\")");
    assert_eq!(b.send("nget a:b c"), "Some(\"second\")");

    // A clears its "sessions": B's copy goes, every other cache keeps its entries.
    a.send("nclear sessions");
    let (_, waited) = within(Duration::from_millis(50), || {
        (b.send("nget sessions s1") == "None").then_some(())
    })
    .expect("B kept a sessions entry after A cleared sessions");
    println!("    A's clear of a named cache reached B after {waited:?}");
    assert_eq!(b.send("nget carts s1"), "Some(\"cart\")");
    assert_eq!(b.send("mget s1"), "Some(\"global\")");
    assert_eq!(a.send("nget sessions s1"), "None");

    // Batch operations: A's set_many is B's get_many; B's delete_many reaches A.
    a.send("mset_many x=1,y=2");
    assert_eq!(
        b.send("mget_many x,y,z"),
        "[Some(\"1\"), Some(\"2\"), None]"
    );
    let mget = server
        .monitor_lines()
        .into_iter()
        .find(|l| l.contains("\"MGET\"") && l.contains("fleet:x"))
        .expect("B's get_many asked Redis for its keys in one MGET");
    assert!(
        mget.contains("fleet:y") && mget.contains("fleet:z"),
        "one MGET for x, y and z: {mget}"
    );
    assert_eq!(a.send("mget_many y,x"), "[Some(\"2\"), Some(\"1\")]");
    assert_eq!(b.send("mdel_many x,y,z"), "2");
    within(Duration::from_millis(50), || {
        (a.send("mget_many x,y") == "[None, None]").then_some(())
    })
    .expect("A kept its copies after B's delete_many");
    assert_eq!(server.get_raw("fleet:x"), None);
    server.assert_no_keys_command();
}

fn a_soft_timeout_answers_stale_and_the_background_origin_updates_the_shared_tier_for_others() {
    let server = RedisServer::start();
    let db = temp_db("soft");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(a.call("soft 1").value, "Ok(1001)");
    std::thread::sleep(Duration::from_millis(350)); // expired; within stale_if_error
    let stale = a.call("soft 1");
    assert_eq!(stale.value, "Ok(1001)", "A answers with the stale value");
    assert!(
        stale.elapsed >= Duration::from_millis(100) && stale.elapsed < Duration::from_millis(300),
        "at the 100 ms soft deadline, not after the 400 ms origin: {:?}",
        stale.elapsed
    );
    // A's origin finishes in the background and writes both tiers.
    within(Duration::from_secs(2), || {
        a.send("stats soft").contains(" writes=2 ").then_some(())
    })
    .expect("A's background run wrote the shared tier");
    let b_call = b.call("soft 1");
    assert_eq!(
        (b_call.value.as_str(), b_call.runs),
        ("Ok(1002)", 0),
        "B reads A's background value from Redis without running the function"
    );
    server.assert_no_keys_command();
}

fn a_forced_refresh_stores_its_value_in_both_tiers_and_drops_other_processes_copies() {
    let server = RedisServer::start();
    let db = temp_db("forced");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(b.send("wait_bus"), "bus true");
    assert_eq!(a.call("forced 1 false").value, "1001");
    let from_a = b.call("forced 1 false");
    assert_eq!(
        (from_a.value.as_str(), from_a.runs),
        ("1001", 0),
        "B reads A's value"
    );
    assert_eq!(b.call("forced 1 false").runs, 0, "and keeps a local copy");
    let forced = a.call("forced 1 true");
    assert_eq!(
        (forced.value.as_str(), forced.runs),
        ("1002", 1),
        "A runs the function"
    );
    let (_, waited) = within(Duration::from_millis(50), || {
        (b.call("forced 1 false").value == "1002").then_some(())
    })
    .expect("B kept its copy after A's forced refresh");
    println!("    A's forced refresh reached B after {waited:?}");
    assert_eq!(b.call("forced 1 false").runs, 0, "B never ran the function");
    server.assert_no_keys_command();
}

fn xfetch_with_a_lock_refreshes_a_hot_key_once_per_period_across_three_processes() {
    let server = RedisServer::start();
    let db = temp_db("xhot");
    let mut nodes: Vec<Node> = ["A", "B", "C"]
        .into_iter()
        .map(|name| Node::spawn(name, &server.url(), &db, &[]))
        .collect();
    assert_eq!(nodes[0].call("xhot 1").runs, 1);
    assert_eq!(nodes[1].call("xhot 1").runs, 0, "B reads A's value");
    assert_eq!(nodes[2].call("xhot 1").runs, 0, "C reads A's value");
    // Each process learns how long the function takes (XFetch's delta) on
    // a key of its own, so every one of them draws early refreshes of key 1.
    assert_eq!(nodes[1].call("xhot 2").runs, 1);
    assert_eq!(nodes[2].call("xhot 3").runs, 1);
    for node in &mut nodes {
        node.post("hammer_hot 1500");
    }
    let answers: Vec<String> = nodes.iter_mut().map(|n| n.reply("hammer_hot")).collect();
    println!("    {answers:?}");
    let field = |a: &str, f: &str| -> u64 {
        a.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let runs: u64 = answers.iter().map(|a| field(a, "runs")).sum();
    for a in &answers {
        assert_eq!(
            field(a, "misses"),
            0,
            "no caller waited for the function: {a}"
        );
        // The processes that did not run the function take the runner's
        // value before their own copies expire.
        assert_eq!(
            field(a, "expired"),
            0,
            "no caller met an expired local copy: {a}"
        );
    }
    // 1.5 s of a 300 ms entry refreshed 60-200 ms early: 6 to 12 periods.
    // Without the lock each process would refresh each period (18-36 runs).
    assert!(
        (4..=13).contains(&runs),
        "one refresh per period for the fleet, not one per process: {runs} runs"
    );
    server.assert_no_keys_command();
}

fn with_the_lock_a_process_that_finds_another_refreshing_takes_its_value_before_its_copy_expires() {
    let server = RedisServer::start();
    let db = temp_db("refresh_wait");
    let mut nodes = vec![
        Node::spawn("A", &server.url(), &db, &[]),
        Node::spawn("B", &server.url(), &db, &[]),
    ];
    assert_eq!(nodes[0].call("news 1").runs, 1);
    assert_eq!(nodes[1].call("news 1").runs, 0, "B has A's value");
    // Past half of the 400 ms timeout, both are due at once: one takes the
    // lock and runs the function for 20 ms; the other finds the lock taken
    // and waits for its value. A later call would start a refresh of its
    // own: none comes until the value is there.
    std::thread::sleep(Duration::from_millis(250));
    for c in call_all(&mut nodes, "news 1") {
        assert_eq!(c.value, "\"news 1 #1\"", "due hits answer at once");
    }
    let shared_hits =
        |nodes: &mut Vec<Node>| -> u64 { nodes.iter_mut().map(|n| n.stat("news", "shared")).sum() };
    let taken = within(Duration::from_millis(1000), || {
        (shared_hits(&mut nodes) == 2).then_some(())
    });
    assert!(
        taken.is_some(),
        "the process that did not refresh took the value from Redis"
    );
    let values: Vec<String> = nodes
        .iter_mut()
        .map(|n| {
            let c = n.call("news 1");
            assert_eq!(c.runs, 0, "{} answered from its copy", n.name);
            assert_eq!(
                n.stat("news", "refresh_starts"),
                1,
                "{}: one refresh",
                n.name
            );
            assert_eq!(
                n.stat("news", "expired"),
                0,
                "{}: its copy never expired",
                n.name
            );
            c.value
        })
        .collect();
    assert_eq!(values[0], values[1], "both hold the refreshed value");
    let runs: u64 = nodes
        .iter_mut()
        .map(|n| {
            n.send("news_runs")
                .strip_prefix("runs ")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(runs, 2, "the fleet ran the function once to refresh");
    server.assert_no_keys_command();
}

fn timeout_by_gives_each_value_its_own_lifetime_in_the_shared_tier() {
    let server = RedisServer::start();
    let db = temp_db("by_value");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(a.call("by_value 2").runs, 1);
    assert_eq!(a.call("by_value 3").runs, 1);
    let pttl = |key: &str| match server.command(&[b"PTTL", key.as_bytes()]) {
        RespValue::Int(ms) => ms,
        other => panic!("PTTL {key}: {other:?}"),
    };
    let (even, odd) = (pttl(&a.key("by_value", 2)), pttl(&a.key("by_value", 3)));
    println!("    PTTL: even value {even} ms, odd value {odd} ms");
    assert!(
        (55_000..=60_000).contains(&even),
        "an even value lives 60 s: {even} ms"
    );
    assert!(
        (295_000..=300_000).contains(&odd),
        "an odd value's 600 s is capped by timeout = 300 s: {odd} ms"
    );
    assert_eq!(b.call("by_value 2").runs, 0, "B reads A's value");
    server.assert_no_keys_command();
}

fn values_over_the_size_limit_stay_in_process_and_are_counted() {
    let server = RedisServer::start();
    let db = temp_db("big");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    assert_eq!(a.call("big 1").runs, 1);
    assert_eq!(a.call("big 1").runs, 0, "kept in the local tier");
    assert_eq!(a.stat("big", "oversize"), 1);
    assert_eq!(a.stat("big", "writes"), 0);
    assert_eq!(
        server.get_raw(&a.key("big", 1)),
        None,
        "not written to Redis"
    );
    server.assert_no_keys_command();
}

fn negative_results_are_cached_in_both_tiers_for_none_timeout_and_timeouts_are_jittered() {
    let server = RedisServer::start();
    let db = temp_db("negative");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    let first = a.call("find 404");
    assert_eq!((first.value.as_str(), first.runs), ("None", 1));
    for _ in 0..999 {
        assert_eq!(a.call("find 404").runs, 0, "A's local copy of the None");
    }
    let from_redis = b.call("find 404");
    assert_eq!(
        (from_redis.value.as_str(), from_redis.runs),
        ("None", 0),
        "B read the cached None from Redis: a negative entry, not a miss"
    );
    let key = server
        .keys_matching("*find_user*")
        .into_iter()
        .next()
        .expect("the None is stored in Redis");
    match server.command(&[b"PTTL", key.as_bytes()]) {
        RespValue::Int(ms) => assert!(
            (1..=330).contains(&ms),
            "the None lives none_timeout_ms (300 ± 10 %) in Redis, not 300 s: {ms}"
        ),
        other => panic!("PTTL answered {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        b.call("find 404").runs,
        1,
        "after none_timeout both tiers have dropped the None"
    );

    // Found users live for `timeout` (300 s), each spread by the jitter.
    for id in 0..40 {
        assert_eq!(a.call(&format!("find {id}")).runs, 1);
        assert_eq!(b.call(&format!("find {id}")).runs, 0);
    }
    let mut ttls: Vec<i64> = server
        .keys_matching("*find_user*")
        .iter()
        .filter_map(|k| match server.command(&[b"PTTL", k.as_bytes()]) {
            RespValue::Int(ms) if ms > 1_000 => Some(ms),
            _ => None,
        })
        .collect();
    ttls.sort();
    assert_eq!(ttls.len(), 40);
    assert!(
        ttls[0] >= 269_000 && ttls[39] <= 330_000,
        "every TTL within 300 s ± 10 %: {ttls:?}"
    );
    ttls.dedup_by(|x, y| (*x - *y).abs() < 50);
    assert!(
        ttls.len() >= 20,
        "written together, they expire apart: {} distinct TTLs of 40",
        ttls.len()
    );
    server.assert_no_keys_command();
}

fn a_failing_process_serves_another_process_s_expired_value_within_stale_if_error() {
    let server = RedisServer::start();
    let db = temp_db("stale");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(a.call("quote 1").value, "Ok(\"quote 1\")");
    std::thread::sleep(Duration::from_millis(300)); // past the 200 ms timeout
    b.send("quotes_fail on");
    let c = b.call("quote 1");
    assert_eq!(
        (c.value.as_str(), c.runs),
        ("Ok(\"quote 1\")", 1),
        "B's call failed and got A's expired value from Redis"
    );
    assert_eq!(b.stat("quote", "stale_hits"), 1);
    let c = b.call("quote 2");
    assert_eq!(
        c.value, "Err(\"quote service down\")",
        "nothing stale to serve"
    );
    b.send("quotes_fail off");
    server.assert_no_keys_command();
}

fn concurrent_misses_of_a_shared_only_function_run_it_once_per_process() {
    let server = RedisServer::start();
    let db = temp_db("burst");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    for id in 0..5 {
        assert_eq!(a.call(&format!("shared_burst {id}")).runs, 1, "key {id}");
    }
    assert_eq!(
        a.stat("shared_slow", "misses"),
        5,
        "the other 155 calls were shared hits or waited for the one computation"
    );
    server.assert_no_keys_command();
}

fn concurrent_shared_hits_of_different_keys_share_mget_round_trips() {
    let mut server = RedisServer::start();
    let db = temp_db("mget");
    // A timeout no loaded test machine reaches: this scenario is about
    // coalescing (a timed-out write-back would turn a hit into a miss).
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "5000")],
    );
    const CALLERS: u64 = 400;
    let first = a.call(&format!("mt_burst {CALLERS}"));
    assert_eq!(
        first.value,
        CALLERS.to_string(),
        "every caller got its own value"
    );
    assert_eq!(first.runs, CALLERS, "the first burst computes every key");
    let gets = server.command_calls("get");
    let mgets = server.command_calls("mget");
    let again = a.call(&format!("mt_burst {CALLERS}"));
    assert_eq!(
        again.value,
        CALLERS.to_string(),
        "every caller got its own value"
    );
    assert_eq!(again.runs, 0, "the second burst is served from Redis");
    let gets = server.command_calls("get") - gets;
    let mgets = server.command_calls("mget") - mgets;
    println!("    {CALLERS} concurrent shared hits: {gets} GET + {mgets} MGET commands");
    assert!(mgets >= 1, "busy callers shared MGETs");
    assert!(
        gets + mgets < CALLERS,
        "fewer commands than callers ({gets} GET + {mgets} MGET)"
    );
    assert!(a.stat("shared_async", "shared") >= CALLERS);
    for errors in ["timeouts", "connection", "corrupt"] {
        assert_eq!(a.stat("shared_async", errors), 0, "{errors}");
    }

    // Redis gone under a burst: queued GETs fail with their round, and every
    // caller still gets its own value from the function.
    server.stop();
    let down = a.call(&format!("mt_burst {CALLERS}"));
    assert_eq!(
        down.value,
        CALLERS.to_string(),
        "every caller got its own value"
    );
    assert_eq!(down.runs, CALLERS, "Redis is down: the function answers");
    let failures = a.stat("shared_async", "connection")
        + a.stat("shared_async", "timeouts")
        + a.stat("shared_async", "skipped");
    assert!(failures >= 1, "the failed GETs are counted");
    server.restart();
    let back = within(Duration::from_secs(3), || {
        let c = a.call(&format!("mt_burst {CALLERS}"));
        assert_eq!(
            c.value,
            CALLERS.to_string(),
            "every caller got its own value"
        );
        (c.runs == 0).then_some(())
    });
    assert!(
        back.is_some(),
        "concurrent shared hits did not resume after the restart"
    );
    server.assert_no_keys_command();
}

fn with_the_lock_one_process_of_the_fleet_refreshes_ahead() {
    let server = RedisServer::start();
    let db = temp_db("refresh");
    let mut nodes = vec![
        Node::spawn("A", &server.url(), &db, &[]),
        Node::spawn("B", &server.url(), &db, &[]),
    ];
    let total_runs = |nodes: &mut Vec<Node>| -> u64 {
        nodes
            .iter_mut()
            .map(|n| {
                n.send("news_runs")
                    .strip_prefix("runs ")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(nodes[0].call("news 1").runs, 1);
    assert_eq!(
        nodes[1].call("news 1").runs,
        0,
        "B has A's value from Redis"
    );
    std::thread::sleep(Duration::from_millis(250)); // past half of the 400 ms timeout
    for c in call_all(&mut nodes, "news 1") {
        assert_eq!(
            c.value, "\"news 1 #1\"",
            "due hits answer at once with the current value"
        );
        assert_eq!(c.runs, 0, "no caller waited for the function");
    }
    let refreshed = within(Duration::from_millis(500), || {
        (total_runs(&mut nodes) >= 2).then_some(())
    });
    assert!(refreshed.is_some(), "a background refresh ran");
    std::thread::sleep(Duration::from_millis(50)); // a second refresh would have run by now
    for n in nodes.iter_mut() {
        assert_eq!(
            n.stat("news", "refresh_starts"),
            1,
            "each process was due and tried"
        );
    }
    assert_eq!(
        total_runs(&mut nodes),
        2,
        "both processes were due, one took the lock and refreshed"
    );
    server.assert_no_keys_command();
}

fn a_tag_invalidation_reaches_every_function_and_process() {
    let server = RedisServer::start();
    let db = temp_db("tags");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    for user in [1, 2] {
        assert_eq!(a.call(&format!("tprofile {user}")).runs, 1);
        assert_eq!(a.call(&format!("torders {user}")).runs, 1);
        assert_eq!(
            b.call(&format!("tprofile {user}")).runs,
            0,
            "B reads A's entries"
        );
        assert_eq!(b.call(&format!("torders {user}")).runs, 0);
    }
    assert_eq!(
        server.keys_matching("*tag:*user:1").len(),
        1,
        "one tag set per tag"
    );
    a.send("touch_user 1");
    assert!(
        server.keys_matching("*tag_*").len() == 2,
        "user 1's two shared entries are gone, user 2's remain: {:?}",
        server.keys_matching("*tag_*")
    );
    assert!(
        server.keys_matching("*tag:*user:1").is_empty(),
        "and the tag set"
    );
    let seen = within(Duration::from_millis(50), || {
        (b.call("tprofile 1").runs == 1).then_some(())
    });
    assert!(
        seen.is_some(),
        "B dropped its copy within 50 ms of A's invalidation"
    );
    assert_eq!(
        b.call("torders 1").runs,
        1,
        "in every function carrying the tag"
    );
    assert_eq!(b.call("tprofile 2").runs, 0, "other users keep theirs");
    assert_eq!(a.call("torders 2").runs, 0);
    server.assert_no_keys_command();
}

fn a_warm_up_in_one_process_serves_the_other_from_redis() {
    let server = RedisServer::start();
    let db = temp_db("warm");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    assert_eq!(a.send("warm 100"), "warmed 100 0");
    for id in 0..100 {
        let c = b.call(&format!("get {id}"));
        assert_eq!(c.runs, 0, "user {id} was warmed by A");
        assert_eq!(c.value, format!("\"user-{id}\""));
    }
    server.assert_no_keys_command();
}

fn a_version_bump_reaches_every_function_of_the_group_in_every_process() {
    let server = RedisServer::start();
    let db = temp_db("group");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    for id in 0..5 {
        assert_eq!(a.call(&format!("item {id}")).runs, 1);
        assert_eq!(a.call(&format!("price {id}")).runs, 1);
        assert_eq!(b.call(&format!("item {id}")).runs, 0, "B reads A's entries");
        assert_eq!(b.call(&format!("price {id}")).runs, 0);
    }
    assert_eq!(a.call("get 1").runs, 1);
    assert_eq!(b.call("get 1").runs, 0);
    let keys_before = server.dbsize();
    assert_eq!(
        b.send("bump catalog"),
        "bumped 10",
        "B dropped its 10 local copies"
    );
    assert!(
        server.dbsize() <= keys_before + 1,
        "O(1): one version key written, nothing scanned or deleted"
    );
    let seen = within(Duration::from_millis(50), || {
        (a.call("item 0").runs == 1).then_some(())
    });
    assert!(
        seen.is_some(),
        "A recomputes the group within 50 ms of B's bump"
    );
    assert_eq!(a.call("price 0").runs, 1);
    assert_eq!(b.call("item 0").runs, 0, "B reads A's new entry");
    assert_eq!(
        a.call("get 1").runs,
        0,
        "functions outside the group keep theirs"
    );
    assert_eq!(b.call("get 1").runs, 0);
    server.assert_no_keys_command();
}

/// Sends `line` to every node at once; their answers, in node order.
fn call_all(nodes: &mut [Node], line: &str) -> Vec<Call> {
    for n in nodes.iter_mut() {
        n.post(line);
    }
    nodes
        .iter_mut()
        .map(|n| {
            let reply = n.reply(line);
            n.parse_call(&reply)
        })
        .collect()
}

/// Sends `line` to every node, each `after` its offset from the first
/// send, and collects the calls' results.
fn call_staggered(nodes: &mut [Node], line: &str, after: &[Duration]) -> Vec<Call> {
    let started = Instant::now();
    for (n, at) in nodes.iter_mut().zip(after) {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        n.post(line);
    }
    nodes
        .iter_mut()
        .map(|n| {
            let reply = n.reply(line);
            n.parse_call(&reply)
        })
        .collect()
}

fn with_the_lock_four_processes_missing_one_key_run_the_function_exactly_once() {
    let server = RedisServer::start();
    let db = temp_db("lock");
    // C and D reach Redis over a link that delays each command by 4 ms, so
    // between their shared miss and their lock attempt lie ~8 ms: wide
    // enough for A to store its value and release the lock in between,
    // which is the race a lock winner must survive by reading again.
    let slow = slow_link::SlowLink::start(server.port(), Duration::from_millis(4));
    let mut nodes: Vec<Node> = [
        ("A", server.url()),
        ("B", server.url()),
        ("C", slow.redis_url()),
        ("D", slow.redis_url()),
    ]
    .into_iter()
    .map(|(name, url)| Node::spawn(name, &url, &db, &[]))
    .collect();
    // A starts each cold key (a 100 ms origin); B arrives in the middle of
    // A's run; C and D arrive at its end, around the moment A stores the
    // value and releases the lock (A's call time on the previous key), a
    // little later for each key.
    let mut a_took = Duration::from_millis(101);
    let mut locked = Vec::new();
    let mut unlocked = Vec::new();
    for key in 0..10u32 {
        let end = a_took.saturating_sub(Duration::from_millis(12)) + Duration::from_millis(1) * key;
        let schedule = [
            Duration::ZERO,
            Duration::from_millis(50),
            end,
            end + Duration::from_millis(3),
        ];
        let calls = call_staggered(&mut nodes, &format!("locked {key}"), &schedule);
        assert!(calls.iter().all(|c| c.value == format!("\"report {key}\"")));
        a_took = calls[0].elapsed;
        locked.push(calls.iter().map(|c| c.runs).sum::<u64>());
        let calls = call_staggered(&mut nodes, &format!("unlocked {key}"), &schedule);
        unlocked.push(calls.iter().map(|c| c.runs).sum::<u64>());
    }
    let histogram = |runs: &[u64]| {
        let mut h = std::collections::BTreeMap::new();
        for r in runs {
            *h.entry(*r).or_insert(0) += 1;
        }
        h
    };
    println!(
        "    origin calls per cold key over 4 staggered processes, 10 keys (calls: keys): with lock {:?}, without {:?}",
        histogram(&locked),
        histogram(&unlocked)
    );
    assert!(
        locked.iter().all(|n| *n == 1),
        "with the lock exactly 1 origin call per key across the fleet: {locked:?}"
    );
    let waits: u64 = nodes
        .iter_mut()
        .map(|n| n.stat("locked", "lock_waits"))
        .sum();
    assert!(
        waits >= 10,
        "B, arriving mid-run, waited for the lock holder's value: {waits}"
    );

    // A holder that dies releases by expiry: the others compute after
    // the lock's life (800 ms), not never.
    nodes[0].post("die_holding_lock 500");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let c = nodes[1].call("locked 500");
    assert_eq!(c.value, "\"report 500\"");
    assert_eq!(c.runs, 1, "B computed once the dead holder's lock expired");
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "waited {:?}: about the lock's life, bounded by twice it",
        started.elapsed()
    );
    server.assert_no_keys_command();
}

fn functions_of_other_argument_types_under_one_key_prefix_never_read_each_other_s_values() {
    let server = RedisServer::start();
    let db = temp_db("retyped");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    // Hashed: `(2u64,)` and `(1i64,)` have the same postcard encoding (a
    // zigzag varint). Template: both render `1`.
    for (kind, u) in [("one_name", 2), ("one_template", 1)] {
        let (f, g) = (format!("{kind}_u64 {u}"), format!("{kind}_i64 1"));
        let c = a.call(&f);
        assert_eq!((c.value, c.runs), (format!("\"u64 {u}\""), 1), "{kind}");
        let c = b.call(&g);
        assert_eq!(
            (c.value.as_str(), c.runs),
            ("\"i64 1\"", 1),
            "{kind}: g(1) ran its own body instead of reading f({u})'s value"
        );
        // Each is still shared with the other process under its own key.
        assert_eq!(b.call(&f).value, format!("\"u64 {u}\""), "{kind}");
        assert_eq!(a.call(&g).value, "\"i64 1\"", "{kind}");
    }
    // Hashed keys differ: both entries live side by side, both shared hits.
    let mut fresh = Node::spawn("C", &server.url(), &db, &[]);
    assert_eq!(fresh.call("one_name_u64 2").runs, 0, "a shared hit for u64");
    assert_eq!(fresh.call("one_name_i64 1").runs, 0, "and one for i64");
    // A template key is one readable key for both: the last writer's entry
    // is read by the other as a counted miss, never as its value.
    let c = fresh.call("one_template_u64 1");
    assert_eq!(c.value, "\"u64 1\"");
    let c = fresh.call("one_template_i64 1");
    assert_eq!(c.value, "\"i64 1\"");
    assert!(
        fresh.stat("one_template", "corrupt") >= 1,
        "the entry of the other argument types was a counted miss"
    );
    server.assert_no_keys_command();
}

fn each_instantiation_of_a_generic_function_has_its_own_shared_keys() {
    let server = RedisServer::start();
    let db = temp_db("generic");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    // `2u64` and `1i64` encode alike (postcard's zigzag varint).
    let calls = [("u64", 2, "2"), ("i64", 1, "1"), ("sku", 2, "Sku(2)")];
    for (ty, id, value) in calls {
        let c = a.call(&format!("generic {ty} {id}"));
        assert_eq!(
            (c.value, c.runs),
            (format!("\"{value}\""), 1),
            "A runs {ty}"
        );
    }
    for (ty, id, value) in calls {
        let c = b.call(&format!("generic {ty} {id}"));
        assert_eq!(
            (c.value, c.runs),
            (format!("\"{value}\""), 0),
            "B reads {ty}'s value from Redis"
        );
    }
    assert_eq!(b.stat("generic<u64>", "shared"), 1);
    assert_eq!(b.stat("generic<i64>", "shared"), 1);
    assert_eq!(b.stat("generic<redis_fleet::node::Sku>", "shared"), 1);
    let (unsigned, signed) = (a.key("generic u64", 2), a.key("generic i64", 1));
    let sku = a.key("generic sku", 2);
    assert!(unsigned.starts_with("fleet:generic<u64>:"), "{unsigned}");
    assert!(signed.starts_with("fleet:generic<i64>:"), "{signed}");
    assert!(
        sku.starts_with("fleet:generic<redis_fleet::node::Sku>:"),
        "{sku}"
    );
    assert_eq!(
        b.key("generic u64", 2),
        unsigned,
        "the same key in every process"
    );
    for key in [&unsigned, &signed, &sku] {
        assert!(server.get_raw(key).is_some(), "{key} is in Redis");
    }

    // Invalidating one instantiation leaves the others, in both tiers.
    assert_eq!(b.send("touch_generic u64 2"), "ok");
    assert!(
        server.get_raw(&unsigned).is_none(),
        "u64's entry is deleted"
    );
    assert!(server.get_raw(&signed).is_some(), "i64's is not");
    assert!(server.get_raw(&sku).is_some(), "nor Sku's");
    within(Duration::from_millis(50), || {
        (a.call("generic u64 2").runs == 1).then_some(())
    })
    .expect("A still served its u64 copy 50 ms after B's invalidation");
    assert_eq!(a.call("generic i64 1").runs, 0, "A's i64 copy stays");
    assert_eq!(a.call("generic sku 2").runs, 0, "A's Sku copy stays");
    server.assert_no_keys_command();
}

fn a_lock_whose_holder_panicked_is_released_at_once() {
    let server = RedisServer::start();
    let db = temp_db("lock_panic");
    let mut a = Node::spawn("A", &server.url(), &db, &[]);
    let mut b = Node::spawn("B", &server.url(), &db, &[]);
    a.send("flaky on");
    assert_eq!(a.call("locked_flaky 1").value, "panicked");
    let started = Instant::now();
    let c = b.call("locked_flaky 1");
    assert_eq!((c.value.as_str(), c.runs), ("1", 1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "B computed after {:?}: the lock was released, not left to expire (5 s)",
        started.elapsed()
    );
    server.assert_no_keys_command();
}

fn the_async_manual_clear_awaits_a_slow_shared_tier_without_blocking_its_executor() {
    let server = RedisServer::start();
    let db = temp_db("aclear");
    let mut a = Node::spawn(
        "A",
        &server.url(),
        &db,
        &[("CACHE_SHARED_TIMEOUT_MS", "50")],
    );
    a.send("mset greeting hello");
    server.pause();
    let reply = a.send("aclear_ticks");
    server.resume();
    let number = |field: &str| -> u64 {
        let at = reply
            .find(field)
            .unwrap_or_else(|| panic!("{field} in {reply:?}"));
        reply[at + field.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ticks, waited_ms) = (number("ticks "), number("waited_ms "));
    println!("    the clear waited {waited_ms} ms for the paused server; a 1 ms ticker beside it ran {ticks} times");
    assert!(
        waited_ms >= 40,
        "the clear waited for the shared tier's timeout: {reply}"
    );
    assert!(
        ticks > 0,
        "the executor's other task never ran while the clear waited: it blocked the thread ({reply})"
    );
    assert_eq!(
        a.send("mget greeting"),
        "None",
        "the clear still emptied the cache"
    );
}

fn main() {
    if std::env::var_os("LAYERCACHE_NODE").is_some() {
        node::run();
        return;
    }
    let scenarios: &[(&str, fn())] = &[
        (
            "each_instantiation_of_a_generic_function_has_its_own_shared_keys",
            each_instantiation_of_a_generic_function_has_its_own_shared_keys,
        ),
        (
            "the_async_manual_clear_awaits_a_slow_shared_tier_without_blocking_its_executor",
            the_async_manual_clear_awaits_a_slow_shared_tier_without_blocking_its_executor,
        ),
        (
            "a_value_computed_by_one_process_is_served_to_another_and_an_update_reaches_both",
            a_value_computed_by_one_process_is_served_to_another_and_an_update_reaches_both,
        ),
        (
            "all_and_prefix_invalidations_reach_every_process",
            all_and_prefix_invalidations_reach_every_process,
        ),
        (
            "calls_keep_their_values_while_redis_is_down_and_shared_hits_resume_after_a_restart",
            calls_keep_their_values_while_redis_is_down_and_shared_hits_resume_after_a_restart,
        ),
        (
            "a_sync_shared_call_during_a_pause_returns_within_the_timeout_and_counts_an_error",
            a_sync_shared_call_during_a_pause_returns_within_the_timeout_and_counts_an_error,
        ),
        (
            "concurrent_async_shared_calls_during_a_pause_return_within_the_timeout",
            concurrent_async_shared_calls_during_a_pause_return_within_the_timeout,
        ),
        (
            "the_sync_connection_pool_reconnects_after_a_restart_without_a_failed_call",
            the_sync_connection_pool_reconnects_after_a_restart_without_a_failed_call,
        ),
        (
            "more_sync_threads_than_blocking_connections_all_get_their_values_and_shared_hits",
            more_sync_threads_than_blocking_connections_all_get_their_values_and_shared_hits,
        ),
        (
            "a_shared_hit_is_kept_locally_only_for_the_remaining_life_or_local_timeout",
            a_shared_hit_is_kept_locally_only_for_the_remaining_life_or_local_timeout,
        ),
        (
            "a_server_that_never_answers_costs_each_call_at_most_the_timeout",
            a_server_that_never_answers_costs_each_call_at_most_the_timeout,
        ),
        (
            "garbage_under_our_keys_is_a_counted_miss_and_is_replaced",
            garbage_under_our_keys_is_a_counted_miss_and_is_replaced,
        ),
        (
            "the_manual_cache_is_shared_and_its_writes_reach_every_process",
            the_manual_cache_is_shared_and_its_writes_reach_every_process,
        ),
        (
            "named_caches_and_batch_operations_reach_every_process",
            named_caches_and_batch_operations_reach_every_process,
        ),
        (
            "a_soft_timeout_answers_stale_and_the_background_origin_updates_the_shared_tier_for_others",
            a_soft_timeout_answers_stale_and_the_background_origin_updates_the_shared_tier_for_others,
        ),
        (
            "a_forced_refresh_stores_its_value_in_both_tiers_and_drops_other_processes_copies",
            a_forced_refresh_stores_its_value_in_both_tiers_and_drops_other_processes_copies,
        ),
        (
            "xfetch_with_a_lock_refreshes_a_hot_key_once_per_period_across_three_processes",
            xfetch_with_a_lock_refreshes_a_hot_key_once_per_period_across_three_processes,
        ),
        (
            "with_the_lock_a_process_that_finds_another_refreshing_takes_its_value_before_its_copy_expires",
            with_the_lock_a_process_that_finds_another_refreshing_takes_its_value_before_its_copy_expires,
        ),
        (
            "timeout_by_gives_each_value_its_own_lifetime_in_the_shared_tier",
            timeout_by_gives_each_value_its_own_lifetime_in_the_shared_tier,
        ),
        (
            "values_over_the_size_limit_stay_in_process_and_are_counted",
            values_over_the_size_limit_stay_in_process_and_are_counted,
        ),
        (
            "a_failing_process_serves_another_process_s_expired_value_within_stale_if_error",
            a_failing_process_serves_another_process_s_expired_value_within_stale_if_error,
        ),
        (
            "concurrent_shared_hits_of_different_keys_share_mget_round_trips",
            concurrent_shared_hits_of_different_keys_share_mget_round_trips,
        ),
        (
            "concurrent_misses_of_a_shared_only_function_run_it_once_per_process",
            concurrent_misses_of_a_shared_only_function_run_it_once_per_process,
        ),
        (
            "a_warm_up_in_one_process_serves_the_other_from_redis",
            a_warm_up_in_one_process_serves_the_other_from_redis,
        ),
        (
            "a_tag_invalidation_reaches_every_function_and_process",
            a_tag_invalidation_reaches_every_function_and_process,
        ),
        (
            "with_the_lock_one_process_of_the_fleet_refreshes_ahead",
            with_the_lock_one_process_of_the_fleet_refreshes_ahead,
        ),
        (
            "a_version_bump_reaches_every_function_of_the_group_in_every_process",
            a_version_bump_reaches_every_function_of_the_group_in_every_process,
        ),
        (
            "with_the_lock_four_processes_missing_one_key_run_the_function_exactly_once",
            with_the_lock_four_processes_missing_one_key_run_the_function_exactly_once,
        ),
        (
            "a_lock_whose_holder_panicked_is_released_at_once",
            a_lock_whose_holder_panicked_is_released_at_once,
        ),
        (
            "functions_of_other_argument_types_under_one_key_prefix_never_read_each_other_s_values",
            functions_of_other_argument_types_under_one_key_prefix_never_read_each_other_s_values,
        ),
        (
            "negative_results_are_cached_in_both_tiers_for_none_timeout_and_timeouts_are_jittered",
            negative_results_are_cached_in_both_tiers_for_none_timeout_and_timeouts_are_jittered,
        ),
    ];
    scenarios::run(scenarios);
}
