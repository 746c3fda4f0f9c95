//! The shared backends without publish/subscribe (filesystem, SQLite,
//! memcached) across OS processes: values are shared, invalidations reach
//! the other process within the poll bound (`CACHE_BUS_POLL_MS`), two
//! processes writing the same keys never read a torn value, version bumps
//! are atomic across processes, and garbage under a key is a counted miss.
//!
//! `harness = false`: run without arguments this is the parent, which
//! spawns copies of itself as nodes (`LAYERCACHE_NODE=1`), each configured
//! through the environment as a service would be. Every scenario runs once
//! per backend in this build.

#[allow(unused_imports)]
#[path = "support/conformance.rs"]
mod conformance;
#[path = "support/direct_store.rs"]
mod direct_store;
#[path = "support/fleet_node.rs"]
mod fleet_node;
#[cfg(feature = "memcached")]
#[path = "support/memcached_server.rs"]
mod memcached_server;
/// For its server that accepts connections and never answers.
#[cfg(feature = "memcached")]
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/scenarios.rs"]
mod scenarios;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_node::NodeProcess;
use layercache::shared::SharedStore;

/// The poll interval the nodes run with: the staleness bound under test.
const POLL_MS: u64 = 20;

// ---------------------------------------------------------------- node side

mod node {
    use std::io::{BufRead, Write};
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Instant;

    use layercache::{cache_invalidate, cached, entry};

    pub static RUNS: AtomicU64 = AtomicU64::new(0);

    #[cached(timeout = 300, key_prefix = "user_profile")]
    pub fn get_user_profile(user_id: u64) -> String {
        RUNS.fetch_add(1, SeqCst);
        std::fs::read_to_string(db().join(user_id.to_string()))
            .unwrap_or_else(|_| format!("user-{user_id}"))
    }

    fn db() -> std::path::PathBuf {
        std::path::PathBuf::from(std::env::var("LAYERCACHE_DB_DIR").unwrap())
    }

    #[cache_invalidate(get_user_profile(user_id))]
    pub fn update_user(user_id: u64, name: &str) {
        std::fs::write(db().join(user_id.to_string()), name).unwrap();
    }

    #[cached(timeout = 300, key_prefix = "search", key = "{query}:page:{page}")]
    pub fn search(query: &str, page: u32) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("{query} result {page}")
    }

    #[cache_invalidate(all = search)]
    pub fn reindex() {}

    #[cache_invalidate(prefix = "search:{query}:")]
    pub fn reindex_query(query: &str) {
        let _ = query;
    }

    #[cached(timeout = 300, key_prefix = "catalog_item", versioned = "catalog")]
    pub fn catalog_item(id: u64) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("item {id}")
    }

    #[cached(timeout = 300, key_prefix = "shared_only", tier = "shared")]
    pub fn shared_only(id: u64) -> (u64, String) {
        RUNS.fetch_add(1, SeqCst);
        (id, format!("value {id}"))
    }

    #[cached(timeout = 1, key_prefix = "warmup")]
    pub fn warmup(id: u64) -> u64 {
        id
    }

    fn timed<T: std::fmt::Debug>(f: impl FnOnce() -> T) -> String {
        let before = RUNS.load(SeqCst);
        let v = f();
        format!("ok {v:?} runs={}", RUNS.load(SeqCst) - before)
    }

    fn stats_line(name: &str) -> String {
        let stats = layercache::stats();
        let Some(f) = stats.function(name) else {
            return "stats none".into();
        };
        let tier = stats.shared_tier.clone().unwrap_or_default();
        format!(
            "stats pending={} replayed={} local={} shared={} misses={} corrupt={} errors={} timeouts={} skipped={} bus={}",
            tier.invalidations_pending,
            tier.invalidations_replayed,
            f.local_hits,
            f.shared_hits,
            f.misses,
            f.shared.corrupt,
            f.shared.errors(),
            f.shared.timeouts,
            f.shared.skipped,
            tier.bus.status.as_str()
        )
    }

    pub fn run() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut out = std::io::stdout();
        for line in std::io::stdin().lock().lines() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| parts[i].parse::<u64>().unwrap();
            let reply = match parts.as_slice() {
                ["get", _] => timed(|| get_user_profile(n(1))),
                ["update", _, name] => {
                    update_user(n(1), name);
                    "ok".into()
                }
                ["search", q, _] => timed(|| search(q, n(2) as u32)),
                ["reindex"] => {
                    reindex();
                    "ok".into()
                }
                ["reindex_query", q] => {
                    reindex_query(q);
                    "ok".into()
                }
                ["item", _] => timed(|| catalog_item(n(1))),
                ["bump", g] => format!("bumped {}", layercache::bump_version(g)),
                ["shared_only", _] => timed(|| shared_only(n(1))),
                ["key", _] => format!(
                    "key {}",
                    entry!(shared_only(n(1))).shared_key().unwrap_or_default()
                ),
                ["stats", name] => stats_line(name),
                // Writes and reads the same keys as the other node, straight
                // through the store; every read must be one whole value.
                ["hammer", _, _] => {
                    let (writer, rounds) = (n(1) as u32, n(2) as u32);
                    let store = super::open_store();
                    let checked = rt.block_on(super::hammer(store, writer, rounds));
                    format!("hammered {checked}")
                }
                ["bumps", _] => {
                    let store = super::open_store();
                    let got: Vec<String> = rt.block_on(async {
                        let mut got = Vec::new();
                        for _ in 0..n(1) {
                            got.push(
                                store
                                    .bump_version("__layercache__:version:race", 7)
                                    .await
                                    .unwrap()
                                    .to_string(),
                            );
                        }
                        got
                    });
                    format!("versions {}", got.join(","))
                }
                ["wait_bus"] => {
                    let _ = warmup(0);
                    let started = Instant::now();
                    loop {
                        let up = layercache::stats()
                            .shared_tier
                            .is_some_and(|t| t.bus_subscribed);
                        if up || started.elapsed().as_secs() > 10 {
                            break format!("bus {up}");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
                ["quit"] => return,
                _ => crate::fleet_node::manual_cache_command(&parts)
                    .unwrap_or_else(|| format!("error unknown command {line:?}")),
            };
            writeln!(out, "{reply}").unwrap();
            out.flush().unwrap();
        }
    }
}

use direct_store::open_from_env as open_store;

/// `rounds` writes of checked values of many sizes to three keys shared
/// with the other writer, each followed by reads of all three.
async fn hammer(store: Arc<dyn SharedStore>, writer: u32, rounds: u32) -> u64 {
    let mut checked = 0;
    for seq in 0..rounds {
        let len = 12 + ((writer as usize * 7919 + seq as usize * 104_729) % 200_000);
        let key = format!("hammer:{}", seq % 3);
        let v = checked_value(writer, seq, len);
        store.set(&key, v, None).await.unwrap();
        for k in 0..3 {
            if let Some(v) = store.get(&format!("hammer:{k}")).await.unwrap() {
                conformance::assert_whole(&v);
                checked += 1;
            }
        }
    }
    checked
}

fn checked_value(writer: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    let fill = (writer.wrapping_mul(31).wrapping_add(seq) % 251) as u8;
    v.resize(len, fill);
    v
}

// -------------------------------------------------------------- parent side

/// One backend: the environment its nodes get, and what keeps it alive.
struct Backend {
    name: &'static str,
    env: Vec<(String, String)>,
    // Read only by the memcached scenarios (to stop and restart the server).
    #[cfg_attr(not(feature = "memcached"), allow(dead_code))]
    guard: Box<dyn std::any::Any>,
}

/// A new directory: unique per process (its id) and per call (a counter).
fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "layercache-bfleet-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn backends(scenario: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = temp_dir(&format!("fs-{scenario}"));
    out.push(Backend {
        name: "filesystem",
        env: vec![
            ("CACHE_TYPE".into(), "filesystem".into()),
            ("CACHE_DIR".into(), dir.display().to_string()),
        ],
        guard: Box::new(RemoveOnDrop(dir)),
    });
    #[cfg(feature = "sqlite")]
    {
        let dir = temp_dir(&format!("sqlite-{scenario}"));
        out.push(Backend {
            name: "sqlite",
            env: vec![
                ("CACHE_TYPE".into(), "sqlite".into()),
                (
                    "CACHE_SQLITE_PATH".into(),
                    dir.join("cache.db").display().to_string(),
                ),
            ],
            guard: Box::new(RemoveOnDrop(dir)),
        });
    }
    #[cfg(feature = "memcached")]
    {
        let server = memcached_server::MemcachedServer::start();
        out.push(Backend {
            name: "memcached",
            env: vec![
                ("CACHE_TYPE".into(), "memcached".into()),
                ("CACHE_MEMCACHED_SERVERS".into(), server.address()),
            ],
            guard: Box::new(server),
        });
    }
    out
}

/// The fleet binaries' node process; this binary adds how it starts
/// its nodes and reads their answers.
type Node = NodeProcess;

/// What a node answered to a call: `ok <value> runs=<n>`.
struct Call {
    value: String,
    runs: u64,
}

impl Node {
    /// A node whose invalidation bus is up.
    fn spawn(name: &str, backend: &Backend, db: &std::path::Path) -> Node {
        let mut node = Node::start(name, backend, db);
        assert_eq!(
            node.send("wait_bus"),
            "bus true",
            "node {}: no bus",
            node.name
        );
        node
    }

    /// A node, without waiting for its bus (its store may never answer).
    fn start(name: &str, backend: &Backend, db: &std::path::Path) -> Node {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("LAYERCACHE_NODE", "1")
            .env("CACHE_KEY_PREFIX", "bfleet")
            .env("CACHE_BUS_POLL_MS", POLL_MS.to_string())
            .env("LAYERCACHE_DB_DIR", db)
            .env_remove("CACHE_SHARED_TIMEOUT_MS")
            .env_remove("CACHE_DEFAULT_TIMEOUT")
            .stderr(Stdio::inherit());
        for (k, v) in &backend.env {
            cmd.env(k, v);
        }
        NodeProcess::start_command(format!("{}/{name}", backend.name), cmd, false)
    }

    fn call(&mut self, line: &str) -> Call {
        let reply = self.send(line);
        let rest = reply
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("node {}: {reply:?}", self.name));
        let (value, runs) = rest.rsplit_once(" runs=").unwrap();
        Call {
            value: value.to_string(),
            runs: runs.parse().unwrap(),
        }
    }

    /// The invalidation bus's status in `stats()`: up, down or starting.
    fn bus(&mut self) -> String {
        let reply = self.send("stats shared_only");
        reply
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("bus="))
            .unwrap_or_else(|| panic!("no bus in {reply:?}"))
            .to_string()
    }
}

/// Calls `f` every millisecond until it is true; how long that took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if f() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The documented bound (one poll interval plus one store read), with
/// room for a loaded 2-core machine.
fn bound() -> Duration {
    Duration::from_millis(POLL_MS + 200)
}

// ----------------------------------------------------------------- scenarios

fn a_value_is_shared_and_an_update_reaches_the_other_process_within_the_poll_bound(b: &Backend) {
    let db = temp_dir("db");
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    let first = x.call("get 1");
    assert_eq!((first.value.as_str(), first.runs), ("\"user-1\"", 1));
    let shared = y.call("get 1");
    assert_eq!(
        (shared.value.as_str(), shared.runs),
        ("\"user-1\"", 0),
        "B reads A's value"
    );
    assert_eq!(y.stat("user_profile", "shared"), 1);
    assert_eq!(y.call("get 1").runs, 0);
    assert_eq!(y.stat("user_profile", "local"), 1, "then keeps it locally");

    x.send("update 1 alice");
    let waited = within(bound(), || y.call("get 1").value == "\"alice\"").unwrap_or_else(|| {
        panic!(
            "{}: B still served the old value {:?} after the update",
            b.name,
            bound()
        )
    });
    println!(
        "    {}: B saw A's update after {waited:?} (poll every {POLL_MS} ms)",
        b.name
    );
    let _ = std::fs::remove_dir_all(db);
}

fn all_prefix_and_group_invalidations_reach_the_other_process(b: &Backend) {
    let db = temp_dir("db");
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    for (q, p) in [("rust", 1), ("rust", 2), ("go", 1), ("rust%", 1)] {
        assert_eq!(x.call(&format!("search {q} {p}")).runs, 1);
        assert_eq!(
            y.call(&format!("search {q} {p}")).runs,
            0,
            "B reads A's {q} {p}"
        );
    }
    x.send("reindex_query rust");
    let waited = within(bound(), || y.call("search rust 1").runs == 1)
        .unwrap_or_else(|| panic!("{}: B kept rust 1 after A's prefix invalidation", b.name));
    println!(
        "    {}: prefix invalidation reached B after {waited:?}",
        b.name
    );
    assert_eq!(y.call("search rust 2").runs, 1);
    if b.name == "memcached" {
        // memcached cannot find keys by prefix: the whole function moved to
        // a new version (more than the prefix, never less).
        assert_eq!(
            y.call("search go 1").runs,
            1,
            "memcached: the whole function"
        );
        x.call("search go 1");
    } else {
        assert_eq!(y.call("search go 1").runs, 0, "go is outside the prefix");
        assert_eq!(
            y.call("search rust% 1").runs,
            0,
            "`rust%` is not matched by `rust`"
        );
    }

    x.send("reindex");
    let waited = within(bound(), || y.call("search go 1").runs == 1)
        .unwrap_or_else(|| panic!("{}: B kept go 1 after A's `all =`", b.name));
    println!("    {}: `all =` reached B after {waited:?}", b.name);

    assert_eq!(x.call("item 1").runs, 1);
    assert_eq!(y.call("item 1").runs, 0);
    let bumped = x.send("bump catalog");
    assert!(bumped.starts_with("bumped "), "{bumped}");
    let waited = within(bound(), || y.call("item 1").runs == 1)
        .unwrap_or_else(|| panic!("{}: B kept item 1 after A's version bump", b.name));
    println!("    {}: a group bump reached B after {waited:?}", b.name);
    let _ = std::fs::remove_dir_all(db);
}

/// The invalidating process never called the function: on a store that
/// cannot delete by prefix (memcached) the processes that have it move it
/// to a new version, so nobody reads the old shared value back.
fn a_prefix_invalidation_from_a_process_that_never_called_the_function_reaches_its_entries(
    b: &Backend,
) {
    let db = temp_dir("db");
    let mut admin = Node::spawn("admin", b, &db);
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    assert_eq!(x.call("search rust 1").runs, 1);
    assert_eq!(y.call("search rust 1").runs, 0, "B reads A's value");
    assert_eq!(y.call("search rust 1").runs, 0);
    admin.send("reindex_query rust");
    let waited = within(bound(), || y.call("search rust 1").runs == 1).unwrap_or_else(|| {
        panic!(
            "{}: B still served the old value after a prefix invalidation by a process that never called the function",
            b.name
        )
    });
    println!(
        "    {}: the prefix invalidation reached B's entries after {waited:?}",
        b.name
    );
    let _ = std::fs::remove_dir_all(db);
}

fn garbage_under_a_key_is_a_counted_corrupt_miss_and_is_replaced(b: &Backend) {
    let db = temp_dir("db");
    let mut x = Node::spawn("A", b, &db);
    assert_eq!(x.call("shared_only 1").runs, 1);
    let key = x.send("key 1").strip_prefix("key ").unwrap().to_string();
    assert!(!key.is_empty());
    let store = env_store(b);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let valid = rt
        .block_on(store.get(&key))
        .unwrap()
        .expect("A wrote its value");
    let garbage: Vec<Vec<u8>> = vec![
        b"random bytes, not an envelope".to_vec(),
        valid[..valid.len() - 3].to_vec(),
        Vec::new(),
        [valid.clone(), vec![0]].concat(),
    ];
    for (i, g) in garbage.into_iter().enumerate() {
        rt.block_on(store.set(&key, g, None)).unwrap();
        let corrupt = x.stat("shared_only", "corrupt");
        let c = x.call("shared_only 1");
        assert_eq!(
            (c.value.as_str(), c.runs),
            ("(1, \"value 1\")", 1),
            "case {i}"
        );
        assert_eq!(
            x.stat("shared_only", "corrupt"),
            corrupt + 1,
            "case {i}: counted"
        );
        assert_eq!(
            x.call("shared_only 1").runs,
            0,
            "case {i}: replaced, served again"
        );
    }
    let _ = std::fs::remove_dir_all(db);
}

/// The backend's store opened in the parent, as a node would.
fn batch_operations_and_named_caches_work_across_processes(b: &Backend) {
    let db = temp_dir("batch");
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    x.send("mset_many a=1,b=2,c=3");
    assert_eq!(
        y.send("mget_many c,missing,a,b"),
        "[Some(\"3\"), None, Some(\"1\"), Some(\"2\")]",
        "{}: B reads A's set_many, in its keys' order",
        b.name
    );
    assert_eq!(x.send("mget_many a,b"), "[Some(\"1\"), Some(\"2\")]");
    assert_eq!(y.send("mdel_many a,b,missing"), "2");
    within(bound(), || {
        x.send("mget_many a,b,c") == "[None, None, Some(\"3\")]"
    })
    .unwrap_or_else(|| panic!("{}: A kept copies after B's delete_many", b.name));

    x.send("nset sessions k alice");
    x.send("nset carts k cart");
    x.send("nset a b:c first");
    x.send("nset a:b c second");
    assert_eq!(y.send("nget sessions k"), "Some(\"alice\")");
    assert_eq!(y.send("nget carts k"), "Some(\"cart\")");
    assert_eq!(
        y.send("nget a b:c"),
        "Some(\"first\")",
        "names and keys escaped"
    );
    assert_eq!(y.send("nget a:b c"), "Some(\"second\")");
    x.send("nclear sessions");
    let waited = within(bound(), || y.send("nget sessions k") == "None")
        .unwrap_or_else(|| panic!("{}: B kept a sessions entry after A's clear", b.name));
    println!(
        "    {}: a named cache's clear reached B after {waited:?}",
        b.name
    );
    assert_eq!(
        y.send("nget carts k"),
        "Some(\"cart\")",
        "other caches keep theirs"
    );
    assert_eq!(x.send("mget_many c"), "[Some(\"3\")]");
    let _ = std::fs::remove_dir_all(db);
}

fn env_store(b: &Backend) -> Arc<dyn SharedStore> {
    for (k, v) in &b.env {
        std::env::set_var(k, v);
    }
    let store = open_store();
    for (k, _) in &b.env {
        std::env::remove_var(k);
    }
    store
}

fn two_processes_writing_the_same_keys_never_read_a_torn_value(b: &Backend) {
    let db = temp_dir("db");
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    let started = Instant::now();
    x.post("hammer 1 300");
    y.post("hammer 2 300");
    let (rx, ry) = (x.reply("hammer"), y.reply("hammer"));
    println!(
        "    {}: {rx} and {ry} whole values in {:?}",
        b.name,
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(db);
}

fn version_bumps_from_two_processes_are_all_distinct(b: &Backend) {
    let db = temp_dir("db");
    let mut x = Node::spawn("A", b, &db);
    let mut y = Node::spawn("B", b, &db);
    x.post("bumps 200");
    y.post("bumps 200");
    let mut all: Vec<u64> = [x.reply("bumps"), y.reply("bumps")]
        .iter()
        .flat_map(|r| {
            r.strip_prefix("versions ")
                .unwrap()
                .split(',')
                .map(|v| v.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    let first = all[0];
    assert_eq!(
        all,
        (first..first + 400).collect::<Vec<_>>(),
        "400 distinct, consecutive numbers"
    );
    let _ = std::fs::remove_dir_all(db);
}

/// memcached only: the server is killed mid-run and started again.
fn calls_keep_their_values_while_the_server_is_down_and_shared_hits_resume_after_a_restart(
    b: &mut Backend,
) {
    #[cfg(feature = "memcached")]
    if b.guard.is::<memcached_server::MemcachedServer>() {
        let db = temp_dir("db");
        let mut x = Node::spawn("A", b, &db);
        let mut y = Node::spawn("B", b, &db);
        let name = b.name;
        let server = b
            .guard
            .downcast_mut::<memcached_server::MemcachedServer>()
            .unwrap();
        assert_eq!(x.call("shared_only 1").runs, 1);
        assert_eq!(y.call("shared_only 1").runs, 0);
        server.stop();
        for i in 2..6 {
            let c = y.call(&format!("shared_only {i}"));
            assert_eq!(
                c.value,
                format!("({i}, \"value {i}\")"),
                "fail-open: the function's value"
            );
        }
        assert!(
            y.stat("shared_only", "errors") >= 1,
            "the failures are counted"
        );
        server.restart();
        let waited = within(Duration::from_secs(5), || {
            x.call("shared_only 7");
            y.call("shared_only 7").runs == 0
        })
        .expect("shared hits did not resume within 5 s of the restart");
        println!("    {name}: shared hits resumed {waited:?} after the restart");
        let _ = std::fs::remove_dir_all(db);
        return;
    }
    println!("    {}: (no server to kill)", b.name);
}

/// memcached only: an update issued while the server is paused, then while
/// it is down, reaches the other process once the server answers again
/// (resumed, or restarted empty), within the documented bound: the
/// outbox's retry interval (100 ms), one poll and one round trip, with
/// 400 ms of room for a loaded machine (after a restart too: a pooled
/// connection the server closed is noticed before use, and a fresh one dialed).
fn an_update_while_the_server_is_paused_or_down_reaches_the_other_process_once_it_answers(
    b: &mut Backend,
) {
    #[cfg(feature = "memcached")]
    if b.guard.is::<memcached_server::MemcachedServer>() {
        let db = temp_dir("db");
        let mut x = Node::spawn("A", b, &db);
        let mut y = Node::spawn("B", b, &db);
        let name = b.name;
        let server = b
            .guard
            .downcast_mut::<memcached_server::MemcachedServer>()
            .unwrap();
        for (round, outage) in ["paused", "restarted"].into_iter().enumerate() {
            let (old, new) = (format!("v{round}"), format!("v{}", round + 1));
            x.send(&format!("update 1 {old}"));
            within(Duration::from_secs(2), || {
                x.call("get 1").value == format!("{old:?}")
                    && y.call("get 1").value == format!("{old:?}")
            })
            .expect("both hold the old value");
            assert_eq!(y.call("get 1").runs, 0, "B holds a copy");
            if outage == "paused" {
                server.pause();
            } else {
                server.stop();
            }
            let started = Instant::now();
            x.send(&format!("update 1 {new}"));
            assert!(
                started.elapsed() < Duration::from_millis(300),
                "fail-open: the update returned after {:?}",
                started.elapsed()
            );
            assert_eq!(
                x.call("get 1").value,
                format!("{new:?}"),
                "A reads its update"
            );
            std::thread::sleep(Duration::from_millis(200));
            if outage == "paused" {
                server.resume();
            } else {
                server.restart();
            }
            let back = Instant::now();
            let bound = Duration::from_millis(100 + POLL_MS + 50 + 400);
            within(Duration::from_secs(5), || {
                y.call("get 1").value == format!("{new:?}")
            })
            .unwrap_or_else(|| {
                panic!(
                    "{name}: B still reads the old value 5 s after the server was {outage}; A: {}",
                    x.send("stats user_profile")
                )
            });
            let stale = back.elapsed();
            println!("    {name}: B read the update {stale:?} after the server was {outage}");
            assert!(stale <= bound, "{outage}: B stale {stale:?} > {bound:?}");
        }
        let _ = std::fs::remove_dir_all(db);
        return;
    }
    println!("    {}: (no server to pause)", b.name);
}

/// memcached only: a server that accepts connections and never answers (a
/// hung memcached). Every call returns its function's value within the
/// tier's timeout (50 ms) plus generous room, the timeouts are counted,
/// and nothing hangs.
fn calls_against_a_server_that_never_answers_return_within_the_timeout_and_count_it(
    b: &mut Backend,
) {
    #[cfg(feature = "memcached")]
    if b.guard.is::<memcached_server::MemcachedServer>() {
        let silent = redis_server::SilentServer::start();
        let deaf = Backend {
            name: "memcached-deaf",
            env: vec![
                ("CACHE_TYPE".into(), "memcached".into()),
                (
                    "CACHE_MEMCACHED_SERVERS".into(),
                    format!("127.0.0.1:{}", silent.port()),
                ),
                ("CACHE_SHARED_TIMEOUT_MS".into(), "50".into()),
            ],
            guard: Box::new(()),
        };
        let db = temp_dir("db");
        let mut x = Node::start("A", &deaf, &db);
        let bound = Duration::from_millis(50 + 950);
        let (mut slowest, mut calls) = (Duration::ZERO, 0u64);
        let timeouts =
            |x: &mut Node| x.stat("shared_only", "timeouts") + x.stat("user_profile", "timeouts");
        // The bus does not come up within the timeout, so the breaker opens
        // at once; its probe after the cool-down (500 ms) times out.
        let counted = within(Duration::from_secs(10), || {
            calls += 1;
            for (line, value) in [
                (
                    format!("shared_only {calls}"),
                    format!("({calls}, \"value {calls}\")"),
                ),
                (format!("get {calls}"), format!("\"user-{calls}\"")),
            ] {
                let started = Instant::now();
                let c = x.call(&line);
                let took = started.elapsed();
                assert!(took < bound, "{line} took {took:?}");
                slowest = slowest.max(took);
                assert_eq!(
                    (c.value, c.runs),
                    (value, 1),
                    "{line}: the function's value"
                );
            }
            timeouts(&mut x) >= 1
        });
        assert!(counted.is_some(), "no timeout counted in 10 s");
        assert!(
            x.stat("shared_only", "skipped") + x.stat("user_profile", "skipped") >= 1,
            "the breaker skipped the server"
        );
        assert!(silent.connections_accepted() >= 1, "the node connected");
        println!("    {}: slowest of {} calls {slowest:?}", b.name, 2 * calls);
        let _ = std::fs::remove_dir_all(db);
        return;
    }
    println!("    {}: (no server to silence)", b.name);
}

/// memcached only: a polled bus that cannot read its notice log says so, as
/// a lost Redis subscription does (`bus: down` in `stats()`, local copies
/// of shared entries capped), within one poll interval plus the poll's
/// operation timeout (2 s: `shared::polled`), and is up again within one
/// poll of the server answering.
fn a_polled_bus_that_cannot_read_its_log_reports_down_then_up_again(b: &mut Backend) {
    #[cfg(feature = "memcached")]
    if b.guard.is::<memcached_server::MemcachedServer>() {
        let db = temp_dir("db");
        let mut x = Node::spawn("A", b, &db);
        assert_eq!(x.call("shared_only 1").runs, 1);
        assert_eq!(x.bus(), "up");
        let name = b.name;
        let server = b
            .guard
            .downcast_mut::<memcached_server::MemcachedServer>()
            .unwrap();
        server.stop();
        let down_bound = Duration::from_millis(POLL_MS + 2000 + 400);
        let down = within(Duration::from_secs(10), || x.bus() == "down")
            .expect("the bus never said down with its store stopped");
        server.restart();
        let up = within(Duration::from_secs(10), || x.bus() == "up")
            .expect("the bus never came back up after the restart");
        println!("    {name}: bus down {down:?} after the stop (bound {down_bound:?}), up {up:?} after the restart");
        assert!(down <= down_bound, "bus down only after {down:?}");
        assert!(
            up <= Duration::from_millis(POLL_MS + 2000 + 400),
            "bus up only after {up:?}"
        );
        let _ = std::fs::remove_dir_all(db);
        return;
    }
    println!("    {}: (no server to kill)", b.name);
}

fn main() {
    if std::env::var_os("LAYERCACHE_NODE").is_some() {
        node::run();
        return;
    }
    type Scenario = fn(&mut Backend);
    let scenarios: &[(&str, Scenario)] = &[
        (
            "a_polled_bus_that_cannot_read_its_log_reports_down_then_up_again",
            a_polled_bus_that_cannot_read_its_log_reports_down_then_up_again,
        ),
        (
            "calls_keep_their_values_while_the_server_is_down_and_shared_hits_resume_after_a_restart",
            calls_keep_their_values_while_the_server_is_down_and_shared_hits_resume_after_a_restart,
        ),
        (
            "an_update_while_the_server_is_paused_or_down_reaches_the_other_process_once_it_answers",
            an_update_while_the_server_is_paused_or_down_reaches_the_other_process_once_it_answers,
        ),
        (
            "calls_against_a_server_that_never_answers_return_within_the_timeout_and_count_it",
            calls_against_a_server_that_never_answers_return_within_the_timeout_and_count_it,
        ),
        (
            "a_value_is_shared_and_an_update_reaches_the_other_process_within_the_poll_bound",
            |b| a_value_is_shared_and_an_update_reaches_the_other_process_within_the_poll_bound(b),
        ),
        (
            "all_prefix_and_group_invalidations_reach_the_other_process",
            |b| all_prefix_and_group_invalidations_reach_the_other_process(b),
        ),
        (
            "a_prefix_invalidation_from_a_process_that_never_called_the_function_reaches_its_entries",
            |b| a_prefix_invalidation_from_a_process_that_never_called_the_function_reaches_its_entries(b),
        ),
        (
            "garbage_under_a_key_is_a_counted_corrupt_miss_and_is_replaced",
            |b| garbage_under_a_key_is_a_counted_corrupt_miss_and_is_replaced(b),
        ),
        (
            "two_processes_writing_the_same_keys_never_read_a_torn_value",
            |b| two_processes_writing_the_same_keys_never_read_a_torn_value(b),
        ),
        (
            "batch_operations_and_named_caches_work_across_processes",
            |b| batch_operations_and_named_caches_work_across_processes(b),
        ),
        (
            "version_bumps_from_two_processes_are_all_distinct",
            |b| version_bumps_from_two_processes_are_all_distinct(b),
        ),
    ];
    // Scenarios that stop, pause or silence a server: they apply to the
    // backend that has one (memcached), and are not counted for the others.
    let needs_a_server = &scenarios[..4];
    let mut runner = scenarios::Runner::from_args();
    for (name, scenario) in scenarios {
        for mut backend in backends(name) {
            if needs_a_server.iter().any(|(n, _)| n == name) && backend.name != "memcached" {
                continue;
            }
            let full = format!("{}::{name}", backend.name);
            runner.run(&full, || scenario(&mut backend));
        }
    }
    runner.finish();
}
