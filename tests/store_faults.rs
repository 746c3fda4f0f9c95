//! What others do to a shared store, across OS processes, in every backend
//! of this build: crafted deep nesting under a recursive type's key (20 kB
//! and 1 MiB) is a counted miss that is replaced, never an abort; a Redis
//! list at a function's key (`WRONGTYPE`; a directory in the filesystem
//! store) is a miss for that key alone, is overwritten, and other
//! functions keep their shared hits; a deleted `CACHE_DIR` or SQLite file
//! heals: sharing and invalidation between two running processes resume
//! within 1 s, without a restart.
//!
//! `harness = false`: run without arguments this is the parent, which
//! spawns copies of itself as nodes (`LAYERCACHE_NODE=1`), configured
//! through the environment; each scenario runs once per backend in this
//! build.

#[cfg(feature = "memcached")]
#[path = "support/direct_store.rs"]
mod direct_store;
#[path = "support/fleet_node.rs"]
mod fleet_node;
#[path = "support/memcached_server.rs"]
mod memcached_server;
#[cfg(feature = "redis-cluster")]
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/scenarios.rs"]
mod scenarios;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use fleet_node::NodeProcess;

/// Counts scenario runs, for their namespaces.
static RUN: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------- node side

mod node {
    use std::io::{BufRead, Write};
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;

    use layercache::shared::SharedStore;
    use layercache::{cached, entry};

    pub static RUNS: AtomicU64 = AtomicU64::new(0);

    /// A recursive type: what a crafted nesting attack needs.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub enum Tree {
        Leaf(u8),
        Node(Box<Tree>),
    }

    /// No local tier: every call reads the shared tier.
    #[cached(timeout = 300, key_prefix = "tree", tier = "shared")]
    pub fn tree(id: u64) -> Tree {
        RUNS.fetch_add(1, SeqCst);
        Tree::Node(Box::new(Tree::Leaf(id as u8)))
    }

    #[cached(timeout = 300, key_prefix = "other", tier = "shared")]
    pub fn other(id: u64) -> u64 {
        RUNS.fetch_add(1, SeqCst);
        id * 10
    }

    /// Both tiers: a local copy that invalidations must reach.
    #[cached(timeout = 300, key_prefix = "profile")]
    pub fn profile(id: u64) -> String {
        RUNS.fetch_add(1, SeqCst);
        format!("user-{id}")
    }

    #[layercache::cache_invalidate(profile(id))]
    pub fn touch_profile(id: u64) {
        let _ = id;
    }

    /// The store the environment names, opened directly (not through a tier).
    fn open_store(rt: &tokio::runtime::Runtime) -> Arc<dyn SharedStore> {
        let _guard = rt.enter();
        super::direct_store::open_from_env()
    }

    /// A payload nesting `len` bytes deep in one of the shapes the formats
    /// do not count themselves (MessagePack).
    fn deep(shape: &str, len: usize) -> Vec<u8> {
        match shape {
            // Node(Node(...)): a one-entry map {1: …} per level.
            "enum" => [0x81, 0x01].repeat(len / 2),
            // Arrays inside arrays.
            "array" => vec![0x91; len],
            other => panic!("unknown shape {other}"),
        }
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
            "stats shared={} misses={} corrupt={} errors={} skipped={} breaker_opens={}",
            f.shared_hits,
            f.misses,
            f.shared.corrupt,
            f.shared.errors(),
            f.shared.skipped,
            tier.breaker_opens,
        )
    }

    pub fn run() {
        tracing_subscriber::fmt()
            .with_env_filter("layercache=warn")
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = open_store(&rt);
        let mut out = std::io::stdout();
        for line in std::io::stdin().lock().lines() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| parts[i].parse::<u64>().unwrap();
            let reply = match parts.as_slice() {
                ["tree", _] => timed(|| tree(n(1))),
                ["other", _] => timed(|| other(n(1))),
                ["profile", _] => timed(|| profile(n(1))),
                ["touch", _] => {
                    touch_profile(n(1));
                    "ok".to_string()
                }
                ["key", "tree", _] => {
                    format!("key {}", entry!(tree(n(2))).shared_key().unwrap())
                }
                ["key", "other", _] => {
                    format!("key {}", entry!(other(n(2))).shared_key().unwrap())
                }
                // The key's envelope header, then a crafted payload.
                ["poison", key, shape, _] => rt.block_on(async {
                    let valid = store.get(key).await.unwrap().expect("a value to forge");
                    let mut bytes = valid[..36].to_vec();
                    bytes.extend_from_slice(&deep(shape, n(3) as usize));
                    store.set(key, bytes, None).await.unwrap();
                    "ok".to_string()
                }),
                ["stats", name] => stats_line(name),
                ["quit"] => return,
                _ => format!("error unknown command {line:?}"),
            };
            writeln!(out, "{reply}").unwrap();
            out.flush().unwrap();
        }
    }
}

// -------------------------------------------------------------- parent side

/// One backend: its nodes' environment, what keeps it alive, and how to
/// put a list at a key where the store has such a thing.
struct Backend {
    name: &'static str,
    env: Vec<(String, String)>,
    _guard: Box<dyn std::any::Any>,
    /// Replaces `key` with a list (`DEL`, `RPUSH`); returns its type after.
    #[allow(clippy::type_complexity)]
    list_at: Option<(Box<dyn Fn(&str)>, Box<dyn Fn(&str) -> String>)>,
}

fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "layercache-hostile-{}-{name}-{}",
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

fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = temp_dir("fs");
    let (d1, d2) = (dir.clone(), dir.clone());
    let entry =
        |dir: &std::path::Path, key: &str| dir.join(layercache::shared::filesystem::file_name(key));
    out.push(Backend {
        name: "filesystem",
        env: vec![
            ("CACHE_TYPE".into(), "filesystem".into()),
            ("CACHE_DIR".into(), dir.display().to_string()),
        ],
        _guard: Box::new(RemoveOnDrop(dir)),
        // The analogue of a wrong type: a directory where an entry's file goes.
        list_at: Some((
            Box::new(move |key| {
                let path = entry(&d1, key);
                std::fs::remove_file(&path).unwrap();
                std::fs::create_dir_all(path.join("not-ours")).unwrap();
            }),
            Box::new(move |key| {
                let path = entry(&d2, key);
                if path.is_file() {
                    "string (a file)"
                } else {
                    "directory"
                }
                .to_string()
            }),
        )),
    });
    #[cfg(feature = "sqlite")]
    {
        let dir = temp_dir("sqlite");
        out.push(Backend {
            name: "sqlite",
            env: vec![
                ("CACHE_TYPE".into(), "sqlite".into()),
                (
                    "CACHE_SQLITE_PATH".into(),
                    dir.join("cache.db").display().to_string(),
                ),
            ],
            _guard: Box::new(RemoveOnDrop(dir)),
            list_at: None,
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
            _guard: Box::new(server),
            list_at: None,
        });
    }
    #[cfg(feature = "redis")]
    {
        let server = std::rc::Rc::new(redis_server::RedisServer::start_unmonitored());
        let (s1, s2) = (server.clone(), server.clone());
        out.push(Backend {
            name: "redis",
            env: vec![
                ("CACHE_TYPE".into(), "redis".into()),
                ("CACHE_REDIS_URL".into(), server.url()),
            ],
            _guard: Box::new(server),
            list_at: Some((
                Box::new(move |key| {
                    s1.command(&[b"DEL", key.as_bytes()]);
                    s1.command(&[b"RPUSH", key.as_bytes(), b"not", b"ours"]);
                }),
                Box::new(move |key| format!("{:?}", s2.command(&[b"TYPE", key.as_bytes()]))),
            )),
        });
    }
    #[cfg(feature = "redis-cluster")]
    {
        let cluster = redis_cluster::shared();
        let port_of = |key: &str| cluster.ports()[cluster.node_of_key(key)];
        out.push(Backend {
            name: "redis-cluster",
            env: vec![
                ("CACHE_TYPE".into(), "redis-cluster".into()),
                ("CACHE_REDIS_NODES".into(), cluster.nodes_env()),
            ],
            _guard: Box::new(()),
            list_at: Some((
                Box::new(move |key| {
                    redis_cluster::cli(port_of(key), &["DEL", key]);
                    redis_cluster::cli(port_of(key), &["RPUSH", key, "not", "ours"]);
                }),
                Box::new(move |key| redis_cluster::cli(port_of(key), &["TYPE", key])),
            )),
        });
    }
    out
}

/// The fleet binaries' node process; this binary adds how it starts
/// its nodes and reads their answers.
type Node = NodeProcess;

impl Node {
    fn spawn(name: &str, b: &Backend) -> Node {
        Node::spawn_logged(name, b, None)
    }

    /// A node with `CACHE_CODEC=codec`.
    fn spawn_with_codec(name: &str, b: &Backend, codec: &str) -> Node {
        let mut with = Backend {
            name: b.name,
            env: b.env.clone(),
            _guard: Box::new(()),
            list_at: None,
        };
        with.env.push(("CACHE_CODEC".into(), codec.into()));
        Node::spawn_logged(name, &with, None)
    }

    /// A node whose WARN and ERROR logs go to `log` (else to this stderr).
    fn spawn_logged(name: &str, b: &Backend, log: Option<&std::path::Path>) -> Node {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        if let Some(log) = log {
            cmd.stderr(std::fs::File::create(log).unwrap());
        } else {
            cmd.stderr(Stdio::inherit());
        }
        cmd.env("LAYERCACHE_NODE", "1")
            // A namespace per scenario run: the stores outlive a scenario.
            .env(
                "CACHE_KEY_PREFIX",
                format!("hostile{}x{}", std::process::id(), RUN.load(Relaxed)),
            )
            .env("CACHE_SHARED_TIMEOUT_MS", "1000")
            .env("CACHE_BUS_POLL_MS", "20");
        for (k, v) in &b.env {
            cmd.env(k, v);
        }
        NodeProcess::start_command(format!("{}/{name}", b.name), cmd, false)
    }

    /// How many times the function ran during `line`.
    fn runs(&mut self, line: &str) -> u64 {
        let reply = self.send(line);
        reply.rsplit_once("runs=").unwrap().1.parse().unwrap()
    }

    fn key(&mut self, function: &str, id: u64) -> String {
        let reply = self.send(&format!("key {function} {id}"));
        reply.strip_prefix("key ").unwrap().to_string()
    }
}

// ----------------------------------------------------------------- scenarios

fn crafted_deep_nesting_under_a_recursive_type_is_a_counted_miss_not_an_abort(b: &Backend) {
    let mut reader = Node::spawn("reader", b);
    let mut writer = Node::spawn("writer", b);
    assert_eq!(reader.runs("tree 1"), 1);
    assert_eq!(reader.runs("tree 1"), 0, "a shared hit");
    let key = reader.key("tree", 1);
    for len in [20_000, 1 << 20] {
        for shape in ["enum", "array"] {
            let what = format!("{shape} nesting, {len} bytes");
            assert_eq!(writer.send(&format!("poison {key} {shape} {len}")), "ok");
            let corrupt = reader.stat("tree", "corrupt");
            assert_eq!(reader.runs("tree 1"), 1, "{what}: a miss");
            assert_eq!(
                reader.stat("tree", "corrupt"),
                corrupt + 1,
                "{what}: counted corrupt"
            );
            assert_eq!(
                reader.runs("tree 1"),
                0,
                "{what}: replaced by the write-back, a shared hit again"
            );
            println!("    {what}: counted miss, replaced");
        }
    }
}

fn a_list_at_a_function_s_key_is_a_miss_for_that_key_alone_and_is_overwritten(b: &Backend) {
    let (list_at, type_of) = b.list_at.as_ref().expect("a store with other types");
    let mut a = Node::spawn("A", b);
    for id in 1..=20 {
        assert_eq!(a.runs(&format!("other {id}")), 1);
    }
    for id in 1..=10 {
        assert_eq!(a.runs(&format!("tree {id}")), 1);
        list_at(&a.key("tree", id));
    }
    // A fresh process: ten wrong-type keys (twice the breaker's
    // threshold), then the other function's twenty values.
    let mut b2 = Node::spawn("B", b);
    for id in 1..=10 {
        assert_eq!(b2.runs(&format!("tree {id}")), 1, "tree {id}: a miss");
        let key = b2.key("tree", id);
        // The write-back replaces it (a cluster client still learning the
        // slots may need a second write: the next call's).
        let started = Instant::now();
        loop {
            let now = type_of(&key);
            if now.contains("string") {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "tree {id}: not overwritten, still {now}"
            );
            b2.runs(&format!("tree {id}"));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(b2.runs(&format!("tree {id}")), 0, "tree {id}: then a hit");
    }
    for id in 1..=20 {
        assert_eq!(
            b2.runs(&format!("other {id}")),
            0,
            "other {id}: a shared hit"
        );
    }
    assert_eq!(
        b2.stat("other", "shared"),
        20,
        "every shared hit of the other function"
    );
    assert_eq!(b2.stat("other", "skipped"), 0);
    assert_eq!(
        b2.stat("tree", "breaker_opens"),
        0,
        "the breaker never opened"
    );
    let corrupt = b2.stat("tree", "corrupt");
    println!("    10 wrong-type keys: 10 misses ({corrupt} counted corrupt; MGET rounds read them as nil), overwritten; 20/20 shared hits of another function, breaker never opened");
}

fn the_codec_chosen_by_configuration_is_shared_and_another_codec_s_bytes_are_a_miss(b: &Backend) {
    let mut json_a = Node::spawn_with_codec("json-A", b, "json");
    let mut json_b = Node::spawn_with_codec("json-B", b, "json");
    let mut msgpack = Node::spawn_with_codec("msgpack", b, "msgpack");
    assert_eq!(json_a.runs("tree 1"), 1);
    assert_eq!(json_b.runs("tree 1"), 0, "JSON written, JSON read");
    assert_eq!(msgpack.runs("tree 1"), 1, "another codec's bytes: a miss");
    assert_eq!(msgpack.stat("tree", "corrupt"), 1, "counted");
    assert_eq!(msgpack.runs("tree 1"), 0, "then its own value");
}

/// Deletes the store's files under the running nodes; `None` for stores
/// without any.
fn delete_store_files(b: &Backend) -> Option<()> {
    let var = |name: &str| {
        b.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(dir) = var("CACHE_DIR") {
        std::fs::remove_dir_all(dir).unwrap();
        return Some(());
    }
    let db = var("CACHE_SQLITE_PATH")?;
    // The database and its WAL files, as `rm cache.db*` would.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    Some(())
}

fn a_deleted_store_heals_and_sharing_resumes_within_a_second(b: &Backend) {
    let log = temp_dir("log").join("a.log");
    let mut a = Node::spawn_logged("A", b, Some(&log));
    assert_eq!(a.runs("profile 1"), 1);
    delete_store_files(b).expect("a store with files");
    let deleted = Instant::now();
    // A goes on writing (and finds the store gone) ...
    assert_eq!(a.runs("other 100"), 1);
    // ... and a process started after the deletion joins it.
    let mut c = Node::spawn("C", b);
    let mut id = 100;
    let resumed = loop {
        // A new value each round: written by A, read by C.
        id += 1;
        assert_eq!(a.runs(&format!("other {id}")), 1);
        if c.runs(&format!("other {id}")) == 0 {
            break deleted.elapsed();
        }
        assert!(
            deleted.elapsed() < std::time::Duration::from_secs(1),
            "sharing did not resume within 1 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // And invalidations cross again: C's local copy is dropped.
    assert_eq!(a.runs("profile 2"), 1);
    assert_eq!(c.runs("profile 2"), 0, "a shared hit in C");
    assert_eq!(a.send("touch 2"), "ok");
    let touched = Instant::now();
    while c.runs("profile 2") == 0 {
        assert!(
            touched.elapsed() < std::time::Duration::from_secs(1),
            "the invalidation reached C within 1 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let warn = logged
        .lines()
        .find(|l| l.contains("WARN") && (l.contains("deleted") || l.contains("replaced")))
        .unwrap_or_else(|| panic!("A logged the healing at WARN:\n{logged}"));
    println!(
        "    sharing with a new process resumed {resumed:?} after the deletion; an invalidation crossed in {:?}\n    A logged: {}",
        touched.elapsed(),
        warn.split("layercache: ").nth(1).unwrap_or(warn)
    );
}

fn main() {
    if std::env::var_os("LAYERCACHE_NODE").is_some() {
        node::run();
        return;
    }
    type Scenario = fn(&Backend);
    let scenarios: &[(&str, Scenario)] = &[
        (
            "crafted_deep_nesting_under_a_recursive_type_is_a_counted_miss_not_an_abort",
            crafted_deep_nesting_under_a_recursive_type_is_a_counted_miss_not_an_abort,
        ),
        (
            "a_list_at_a_function_s_key_is_a_miss_for_that_key_alone_and_is_overwritten",
            a_list_at_a_function_s_key_is_a_miss_for_that_key_alone_and_is_overwritten,
        ),
        (
            "a_deleted_store_heals_and_sharing_resumes_within_a_second",
            a_deleted_store_heals_and_sharing_resumes_within_a_second,
        ),
        (
            "the_codec_chosen_by_configuration_is_shared_and_another_codec_s_bytes_are_a_miss",
            the_codec_chosen_by_configuration_is_shared_and_another_codec_s_bytes_are_a_miss,
        ),
    ];
    let backends = backends();
    let mut runner = scenarios::Runner::from_args();
    for (name, scenario) in scenarios {
        for backend in &backends {
            let applies = match *name {
                n if n.starts_with("a_list_at") => backend.list_at.is_some(),
                n if n.starts_with("a_deleted_store") => backend
                    .env
                    .iter()
                    .any(|(k, _)| k == "CACHE_DIR" || k == "CACHE_SQLITE_PATH"),
                _ => true,
            };
            if !applies {
                continue;
            }
            runner.run(&format!("{}::{name}", backend.name), || {
                RUN.fetch_add(1, Relaxed);
                scenario(backend)
            });
        }
    }
    runner.finish();
}
