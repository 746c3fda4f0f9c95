//! Fleet coherence under faults, against a real `redis-server`: an
//! invalidation issued while Redis is paused, down or restarting, or while
//! the pub/sub connections are being killed, reaches every process within
//! the documented bound once Redis answers again; a user without channel
//! rights gets an ERROR, a `bus: down` in `stats()`, and local copies that
//! live at most `local_timeout`; and a soak of random reads, updates and
//! invalidations under random pauses, kills, restarts and flushes never
//! reads a value older than the bound (checked from the recorded history).
//!
//! A `harness = false` test: run without arguments it is the parent, which
//! starts Redis and spawns copies of this binary as nodes
//! (`LAYERCACHE_NODE=1`), driven one command per line over stdin/stdout;
//! each node's log (WARN and up) comes back on its stderr.

#[path = "support/fleet_node.rs"]
mod fleet_node;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/scenarios.rs"]
mod scenarios;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_node::NodeProcess;
use redis_server::RedisServer;

/// The shared tier's timeout the nodes run with.
const TIMEOUT_MS: u64 = 50;

/// The documented bound past the end of an outage: the outbox retries
/// every 100 ms (`shared::outbox::RETRY_INTERVAL`), its replay takes a
/// round trip (at most the 50 ms timeout), the bus resubscribes within
/// 200 ms, and a notice takes a round trip to arrive; 300 ms more is left
/// for scheduling on a loaded two-core CI machine.
const BOUND_AFTER_OUTAGE: Duration = Duration::from_millis(650);

/// The documented bound on processes disagreeing about a version the store
/// lost without a restart (a `FLUSHALL`): one version check (every 1 s,
/// `runtime::versions::CHECK_EVERY`) plus [`BOUND_AFTER_OUTAGE`] for the
/// bump, its notice and scheduling.
const BOUND_AFTER_LOST_VERSION: Duration = Duration::from_millis(1000 + 650);

/// `local_timeout_ms` of the `capped` function.
const LOCAL_TIMEOUT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------- node side

mod node {
    use std::io::{BufRead, Write};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use layercache::{cache_invalidate, cached};

    /// The "database" every node shares: one file per id.
    fn db() -> PathBuf {
        PathBuf::from(std::env::var("LAYERCACHE_DB_DIR").expect("LAYERCACHE_DB_DIR"))
    }

    fn read(id: u64) -> String {
        std::fs::read_to_string(db().join(id.to_string())).unwrap_or_else(|_| "0".into())
    }

    /// Written whole, then renamed: a reader never sees half a value.
    fn write(id: u64, value: &str) {
        let tmp = db().join(format!(".{id}.{}", std::process::id()));
        std::fs::write(&tmp, value).expect("write db");
        std::fs::rename(tmp, db().join(id.to_string())).expect("rename db");
    }

    #[cached(timeout = 300, key_prefix = "profile")]
    pub fn profile(id: u64) -> String {
        read(id)
    }

    #[cache_invalidate(profile(id))]
    pub fn update(id: u64, value: &str) {
        write(id, value);
    }

    #[cache_invalidate(all = profile)]
    pub fn reindex() {}

    /// Local copies live 300 ms, Redis entries 300 s.
    #[cached(timeout = 300, key_prefix = "capped", local_timeout_ms = 300)]
    pub fn capped(id: u64) -> String {
        read(id + 1000)
    }

    #[cache_invalidate(capped(id))]
    pub fn update_capped(id: u64, value: &str) {
        write(id + 1000, value);
    }

    fn stats_line() -> String {
        let tier = layercache::stats().shared_tier.unwrap_or_default();
        format!(
            "pending={} replayed={} resubscriptions={} bus={} reason={}",
            tier.invalidations_pending,
            tier.invalidations_replayed,
            tier.resubscriptions,
            tier.bus.status.as_str(),
            tier.bus.reason.unwrap_or_default().replace('\n', " "),
        )
    }

    /// Moves this node's clock when it runs on a mock one (`LAYERCACHE_MOCK_CLOCK`).
    static MOCK: std::sync::OnceLock<layercache::MockClock> = std::sync::OnceLock::new();

    /// The environment's configuration, on a mock clock.
    fn init_with_mock_clock() {
        let env = |k: &str| std::env::var(k).unwrap();
        let (clock, mock) = layercache::Clock::mock();
        let config = layercache::Config::builder()
            .cache_type(layercache::CacheType::Redis)
            .redis_url(env("CACHE_REDIS_URL"))
            .key_prefix(env("CACHE_KEY_PREFIX"))
            .shared_timeout(Duration::from_millis(
                env("CACHE_SHARED_TIMEOUT_MS").parse().unwrap(),
            ))
            .clock(clock)
            .build();
        layercache::init(config).unwrap();
        MOCK.set(mock).unwrap();
    }

    pub fn run() {
        tracing_subscriber::fmt()
            .with_env_filter("layercache=warn")
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        if std::env::var_os("LAYERCACHE_MOCK_CLOCK").is_some() {
            init_with_mock_clock();
        }
        let stdin = std::io::stdin();
        let mut out = std::io::stdout();
        for line in stdin.lock().lines() {
            let line = line.expect("stdin");
            let parts: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| parts[i].parse::<u64>().expect("number");
            let started = Instant::now();
            let reply = match parts.as_slice() {
                ["get", _] => format!("ok {}", profile(n(1))),
                ["cget", _] => format!("ok {}", capped(n(1))),
                ["update", _, v] => {
                    update(n(1), v);
                    format!("ok {}", started.elapsed().as_micros())
                }
                ["cupdate", _, v] => {
                    update_capped(n(1), v);
                    format!("ok {}", started.elapsed().as_micros())
                }
                ["reindex"] => {
                    reindex();
                    "ok".into()
                }
                ["flush", _] => format!(
                    "unapplied {}",
                    layercache::flush_invalidations(Duration::from_millis(n(1)))
                ),
                ["stats"] => stats_line(),
                ["advance", _] => {
                    MOCK.get()
                        .expect("a mock clock")
                        .advance(Duration::from_millis(n(1)));
                    "ok".into()
                }
                // Bring the shared tier up and wait until the bus answers (up or refused).
                ["wait_bus"] => {
                    let _ = profile(999_999);
                    loop {
                        let bus = layercache::stats().shared_tier.unwrap_or_default().bus;
                        if bus.status != layercache::BusStatus::Starting
                            || started.elapsed() > Duration::from_secs(10)
                        {
                            break format!("bus {}", bus.status.as_str());
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                ["quit"] => return,
                _ => format!("error unknown command {line:?}"),
            };
            writeln!(out, "{reply}").unwrap();
            out.flush().unwrap();
        }
    }
}

// -------------------------------------------------------------- parent side

/// A node process, its command channel and its log.
/// The fleet binaries' node process; this binary adds how it starts
/// its nodes and reads their answers.
type Node = NodeProcess;

impl Node {
    /// A node on `url` whose bus answered (up, or down when refused).
    fn spawn(name: &str, url: &str, db: &std::path::Path) -> Node {
        Node::spawn_with(name, url, db, &[])
    }

    /// [`Node::spawn`] with more environment variables.
    fn spawn_with(name: &str, url: &str, db: &std::path::Path, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.envs(env.iter().copied());
        cmd.env("LAYERCACHE_NODE", "1")
            .env("CACHE_TYPE", "redis")
            .env("CACHE_REDIS_URL", url)
            .env("CACHE_KEY_PREFIX", "faults")
            .env("CACHE_SHARED_TIMEOUT_MS", TIMEOUT_MS.to_string())
            .env("LAYERCACHE_DB_DIR", db)
            .env_remove("CACHE_DEFAULT_TIMEOUT")
            .env_remove("RUST_LOG");
        let mut node = NodeProcess::start_command(name, cmd, true);
        node.send("wait_bus");
        node
    }

    /// The value a read returned.
    fn get(&mut self, line: &str) -> String {
        let reply = self.send(line);
        reply.strip_prefix("ok ").expect("ok").to_string()
    }

    /// Runs an update; how long the caller waited.
    fn update(&mut self, line: &str) -> Duration {
        let reply = self.send(line);
        Duration::from_micros(reply.strip_prefix("ok ").unwrap().parse().unwrap())
    }

    /// A field of the node's `stats` line (the shared tier's state).
    fn tier_stat(&mut self, field: &str) -> String {
        let reply = self.send("stats");
        let at = reply
            .find(&format!("{field}="))
            .unwrap_or_else(|| panic!("no {field} in {reply:?}"));
        let rest = &reply[at + field.len() + 1..];
        if field == "reason" {
            rest.to_string()
        } else {
            rest.split_whitespace().next().unwrap().to_string()
        }
    }
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("layercache-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every millisecond until it holds, for at most `limit`;
/// how long it took.
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

/// A waits for nothing when Redis is unreachable: one timeout at most, plus
/// scheduling.
fn assert_fail_open(waited: Duration) {
    assert!(
        waited < Duration::from_millis(TIMEOUT_MS + 150),
        "the invalidating call waited {waited:?} with Redis unreachable"
    );
}

/// Two nodes both holding `profile(1) == "0"` (A computed it, B read it from Redis).
fn two_nodes_holding_one_value(server: &RedisServer, db: &std::path::Path) -> (Node, Node) {
    let mut a = Node::spawn("A", &server.url(), db);
    let mut b = Node::spawn("B", &server.url(), db);
    assert_eq!(a.get("get 1"), "0");
    assert_eq!(b.get("get 1"), "0");
    (a, b)
}

/// After the outage ends (at `back`), how long until `node` reads `want`.
fn stale_for(node: &mut Node, back: Instant, want: &str) -> Duration {
    within(Duration::from_secs(5), || node.get("get 1") == want).unwrap_or_else(|| {
        panic!(
            "{} still reads the old value 5 s after the outage",
            node.name
        )
    });
    back.elapsed()
}

// ----------------------------------------------------------------- scenarios

fn an_update_while_redis_is_paused_reaches_every_process_once_it_resumes() {
    let server = RedisServer::start_unmonitored();
    let db = temp_db("paused");
    let (mut a, mut b) = two_nodes_holding_one_value(&server, &db);
    server.pause();
    assert_fail_open(a.update("update 1 1"));
    assert_eq!(
        a.tier_stat("pending"),
        "1",
        "the delete waits in A's outbox"
    );
    assert_eq!(a.get("get 1"), "1", "A never reads what it invalidated");
    std::thread::sleep(Duration::from_millis(300));
    server.resume();
    let back = Instant::now();
    let stale = stale_for(&mut b, back, "1");
    println!("    B read the new value {stale:?} after Redis resumed");
    assert!(
        stale <= BOUND_AFTER_OUTAGE,
        "B stale {stale:?} after the outage"
    );
    within(Duration::from_secs(2), || a.tier_stat("pending") == "0").expect("A's outbox drained");
    assert_eq!(a.tier_stat("replayed"), "1");
    // A process that starts now finds nothing old in Redis.
    let mut c = Node::spawn("C", &server.url(), &db);
    assert_eq!(c.get("get 1"), "1");
}

fn an_update_while_redis_is_down_reaches_every_process_after_it_restarts_empty() {
    let mut server = RedisServer::start_unmonitored();
    let (mut a, mut b) = two_nodes_holding_one_value(&server, &temp_db("restart"));
    server.stop();
    assert_fail_open(a.update("update 1 1"));
    assert_eq!(a.get("get 1"), "1");
    server.restart();
    let back = Instant::now();
    let stale = stale_for(&mut b, back, "1");
    println!("    B read the new value {stale:?} after Redis restarted");
    assert!(
        stale <= BOUND_AFTER_OUTAGE,
        "B stale {stale:?} after the restart"
    );
    within(Duration::from_secs(2), || a.tier_stat("pending") == "0").expect("A's outbox drained");
    assert_eq!(b.get("get 1"), "1");
}

fn a_process_started_after_a_flushall_and_the_fleet_agree_on_a_version_within_the_bound() {
    let server = RedisServer::start_unmonitored();
    let db = temp_db("flushall");
    let (mut a, mut b) = two_nodes_holding_one_value(&server, &db);
    // An `all =` invalidation gives the namespace a version number; A and
    // B cache under it from now on.
    a.send("reindex");
    assert_eq!(a.get("get 1"), "0");
    within(BOUND_AFTER_OUTAGE, || b.get("get 1") == "0").expect("B reads it");
    server.command(&[b"FLUSHALL"]);
    // The store lost the number, not the processes: A caches the new value
    // under its old number, and B reads it there (once A's notice arrived).
    a.update("update 1 1");
    assert_eq!(a.get("get 1"), "1");
    within(BOUND_AFTER_OUTAGE, || b.get("get 1") == "1").expect("B reads A's update");
    // C starts after the flush and finds no number; its update must still
    // reach what A and B read.
    let mut c = Node::spawn("C", &server.url(), &db);
    assert_eq!(c.get("get 1"), "1");
    c.update("update 1 2");
    assert_eq!(c.get("get 1"), "2", "C never reads what it invalidated");
    let stale = within(Duration::from_secs(5), || {
        a.get("get 1") == "2" && b.get("get 1") == "2"
    })
    .unwrap_or_else(|| panic!("A or B still read the old value 5 s after C's update"));
    println!("    A and B read C's update {stale:?} after it (bound {BOUND_AFTER_LOST_VERSION:?})");
    assert!(
        stale <= BOUND_AFTER_LOST_VERSION,
        "stale for {stale:?} after an update from a process that started after the flush"
    );
    assert_eq!(c.get("get 1"), "2");
}

fn pub_sub_connections_killed_during_an_invalidation_lose_no_invalidation() {
    let server = RedisServer::start_unmonitored();
    let (mut a, mut b) = two_nodes_holding_one_value(&server, &temp_db("pubsub"));
    let killed = server.command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]);
    let back = Instant::now();
    a.update("update 1 1");
    let stale = stale_for(&mut b, back, "1");
    println!("    B read the new value {stale:?} after its bus connection was killed ({killed:?})");
    assert!(stale <= BOUND_AFTER_OUTAGE, "B stale {stale:?}");
    within(Duration::from_secs(2), || {
        b.tier_stat("resubscriptions") != "0"
    })
    .expect("B resubscribed");
    assert_eq!(b.tier_stat("bus"), "up");
}

/// Creates the ACL user `limited` with every key and command but no pub/sub
/// channel (Redis 7's default for new users); returns its URL.
fn user_without_channel_rights(server: &RedisServer) -> String {
    let acl = server.command(&[
        b"ACL",
        b"SETUSER",
        b"limited",
        b"on",
        b">s3cret",
        b"~*",
        b"+@all",
        b"resetchannels",
    ]);
    assert!(format!("{acl:?}").contains("OK"), "{acl:?}");
    format!("redis://limited:s3cret@127.0.0.1:{}/", server.port())
}

fn a_user_without_channel_rights_gets_an_error_a_down_bus_and_short_local_copies() {
    let server = RedisServer::start_unmonitored();
    let limited_url = user_without_channel_rights(&server);
    let db = temp_db("acl");
    let mut a = Node::spawn("A", &server.url(), &db);
    let mut b = Node::spawn("B", &limited_url, &db);

    assert_eq!(b.tier_stat("bus"), "down");
    let reason = b.tier_stat("reason");
    assert!(
        reason.contains("NOPERM") || reason.contains("permission"),
        "{reason}"
    );
    // Its stderr is read by another thread than its answers.
    within(Duration::from_secs(1), || {
        b.log_lines().iter().any(|l| l.contains("ERROR"))
    });
    let log = b.log_lines();
    let errors: Vec<&String> = log.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line: {log:#?}");
    assert!(
        errors[0].contains("redis://limited:***@127.0.0.1"),
        "{}",
        errors[0]
    );
    assert!(
        !log.iter().any(|l| l.contains("s3cret")),
        "no password in the log"
    );

    // B's local copy cannot hear A's update: it lives at most local_timeout.
    assert_eq!(a.get("cget 1"), "0");
    assert_eq!(b.get("cget 1"), "0");
    let updated = Instant::now();
    a.update("cupdate 1 1");
    within(Duration::from_secs(2), || b.get("cget 1") == "1").expect("B reads the update");
    let stale = updated.elapsed();
    println!(
        "    B's local copy outlived A's update by {stale:?} (local_timeout {LOCAL_TIMEOUT:?})"
    );
    // local_timeout, and room for scheduling on a loaded two-core machine.
    assert!(
        stale <= LOCAL_TIMEOUT + Duration::from_millis(250),
        "{stale:?}"
    );

    // B's own invalidation deletes the shared entry (no publish to refuse it).
    b.update("cupdate 1 2");
    assert_eq!(b.tier_stat("pending"), "0", "the delete ran");
    within(Duration::from_secs(2), || a.get("cget 1") == "2").expect("A reads B's update");
    let warns: Vec<String> = b
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert!(warns.is_empty(), "no misleading WARN lines: {warns:#?}");

    // A wrong password at start-up: an ERROR naming the URL, then fail-open.
    let wrong = format!("redis://limited:wrong@127.0.0.1:{}/", server.port());
    let mut c = Node::spawn("C", &wrong, &db);
    let started = Instant::now();
    assert_eq!(c.get("get 7"), "0");
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 150));
    assert_eq!(c.tier_stat("bus"), "down");
    within(Duration::from_secs(1), || {
        c.log_lines().iter().any(|l| l.contains("ERROR"))
    });
    let log = c.log_lines();
    assert!(
        log.iter()
            .any(|l| l.contains("ERROR") && l.contains("redis://limited:***@127.0.0.1")),
        "{log:#?}"
    );
}

/// While the bus is refused, a function without `local_timeout` keeps a
/// local copy at most `BUS_DOWN_LOCAL_TIMEOUT` (5 s), on B's mock clock.
fn a_refused_bus_caps_local_copies_at_5_s_without_local_timeout() {
    let server = RedisServer::start_unmonitored();
    let limited_url = user_without_channel_rights(&server);
    let db = temp_db("cap5s");
    let mut a = Node::spawn("A", &server.url(), &db);
    let mut b = Node::spawn_with("B", &limited_url, &db, &[("LAYERCACHE_MOCK_CLOCK", "1")]);
    assert_eq!(b.tier_stat("bus"), "down");
    assert_eq!(b.get("get 1"), "0");
    assert_eq!(a.get("get 1"), "0", "A reads B's value from Redis");
    a.update("update 1 1");
    assert_eq!(
        b.get("get 1"),
        "0",
        "B cannot hear the update: its copy stands"
    );
    b.send("advance 4900");
    assert_eq!(b.get("get 1"), "0", "still within 5 s");
    b.send("advance 200");
    assert_eq!(b.get("get 1"), "1", "the copy lived at most 5 s");
}

/// Local copies made while the bus was up outlive its loss by at most the
/// cap (5 s without `local_timeout`), on B's mock clock: the outage's timer
/// drops them, since no notice can.
fn copies_made_before_the_bus_was_lost_live_at_most_5_s_after_it() {
    let server = RedisServer::start_unmonitored();
    // A user whose channel rights are taken away while B is subscribed.
    let acl = server.command(&[
        b"ACL",
        b"SETUSER",
        b"revocable",
        b"on",
        b">s3cret",
        b"~*",
        b"+@all",
        b"allchannels",
    ]);
    assert!(format!("{acl:?}").contains("OK"), "{acl:?}");
    let url = format!("redis://revocable:s3cret@127.0.0.1:{}/", server.port());
    let db = temp_db("lost_bus");
    let mut a = Node::spawn("A", &server.url(), &db);
    let mut b = Node::spawn_with("B", &url, &db, &[("LAYERCACHE_MOCK_CLOCK", "1")]);
    assert_eq!(b.tier_stat("bus"), "up");
    assert_eq!(
        b.get("get 1"),
        "0",
        "B's local copy, made while the bus is up"
    );
    // Redis drops a subscriber whose channel rights go, and refuses it again.
    server.command(&[b"ACL", b"SETUSER", b"revocable", b"resetchannels"]);
    within(Duration::from_secs(2), || b.tier_stat("bus") == "down").expect("B's bus goes down");
    a.update("update 1 1");
    assert_eq!(
        b.get("get 1"),
        "0",
        "B cannot hear the update: its copy stands"
    );
    b.send("advance 4900");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(b.get("get 1"), "0", "still within 5 s");
    b.send("advance 200");
    let dropped = within(Duration::from_millis(500), || b.get("get 1") == "1")
        .expect("the copy made before the outage lived longer than 5 s into it");
    println!("    B's copy from before the outage was dropped {dropped:?} (real time) after 5 s of its clock");
}

fn a_flush_at_shutdown_applies_what_it_can_and_logs_the_rest_at_error() {
    let mut server = RedisServer::start_unmonitored();
    let db = temp_db("flush");
    let mut a = Node::spawn("A", &server.url(), &db);
    assert_eq!(a.get("get 1"), "0");
    server.stop();
    a.update("update 1 1");
    assert_eq!(a.tier_stat("pending"), "1");
    let started = Instant::now();
    assert_eq!(a.send("flush 200"), "unapplied 1", "Redis is down");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(200 + 150),
        "the deadline holds: {took:?}"
    );
    // The node's stderr is read by another thread than its answers: give
    // the line it logged before answering a moment to arrive.
    let logged = |log: &[String]| {
        log.iter().any(|l| {
            l.contains("ERROR") && l.contains("could not reach the shared tier before shutdown")
        })
    };
    within(Duration::from_secs(1), || logged(&a.log_lines()));
    let log = a.log_lines();
    assert!(logged(&log), "{log:#?}");
    server.restart();
    assert_eq!(
        a.send("flush 2000"),
        "unapplied 0",
        "applied once Redis is back"
    );
    assert_eq!(a.tier_stat("pending"), "0");
}

// --------------------------------------------------------------------- soak

/// A seeded xorshift generator: the soak's choices, repeatable per seed.
struct Rng(u64);

impl Rng {
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// One read or completed update in the soak's history.
#[derive(Clone, Copy)]
enum Op {
    Read { id: u64, value: u64, at: Instant },
    Update { id: u64, value: u64, done: Instant },
}

fn a_fault_injection_soak_never_reads_a_value_older_than_the_bound() {
    const NODES: usize = 3;
    const IDS: u64 = 6;
    let soak = Duration::from_secs(
        std::env::var("LAYERCACHE_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let server = Arc::new(Mutex::new(RedisServer::start_unmonitored()));
    let url = server.lock().unwrap().url();
    let db = temp_db("soak");
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let outages = Arc::new(Mutex::new(Vec::<(Instant, Instant)>::new()));
    let id_locks: Arc<Vec<Mutex<()>>> = Arc::new((0..IDS).map(|_| Mutex::new(())).collect());
    let next_value = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let end = Instant::now() + soak;
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| Node::spawn(&format!("N{i}"), &url, &db))
        .collect();

    let workers: Vec<_> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, mut node)| {
            let (history, id_locks, next_value) =
                (history.clone(), id_locks.clone(), next_value.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(i as u64 + 7);
                while Instant::now() < end {
                    let id = rng.below(IDS);
                    match rng.below(20) {
                        0..=13 => {
                            let at = Instant::now();
                            let value = node.get(&format!("get {id}")).parse().unwrap();
                            history.lock().unwrap().push(Op::Read { id, value, at });
                        }
                        14..=18 => {
                            // Updates of one id run one at a time, so values rise.
                            let _one = id_locks[id as usize].lock().unwrap();
                            let value =
                                next_value.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            node.update(&format!("update {id} {value}"));
                            let done = Instant::now();
                            history.lock().unwrap().push(Op::Update { id, value, done });
                        }
                        _ => {
                            node.send("reindex");
                        }
                    }
                    std::thread::sleep(Duration::from_millis(rng.below(5)));
                }
                node
            })
        })
        .collect();

    let mut faults: HashMap<&str, u64> = HashMap::new();
    let mut rng = Rng(42);
    while Instant::now() + Duration::from_secs(2) < end {
        std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
        let mut server = server.lock().unwrap();
        let started = Instant::now();
        let fault = match rng.below(4) {
            0 => {
                server.pause();
                std::thread::sleep(Duration::from_millis(50 + rng.below(750)));
                server.resume();
                "pause"
            }
            1 => {
                server.stop();
                std::thread::sleep(Duration::from_millis(rng.below(500)));
                server.restart();
                "kill+restart"
            }
            2 => {
                server.command(&[b"FLUSHALL"]);
                "flushall"
            }
            _ => {
                server.command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]);
                "kill pubsub"
            }
        };
        outages.lock().unwrap().push((started, Instant::now()));
        *faults.entry(fault).or_default() += 1;
    }
    let nodes: Vec<Node> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    // Shutdown: every node flushes what it still has pending.
    for mut node in nodes {
        assert_eq!(node.send("flush 2000"), "unapplied 0");
    }

    let history = history.lock().unwrap();
    let outages = outages.lock().unwrap();
    let (worst, worst_excess, reads) = check_history(&history, &outages);
    println!(
        "    soak {soak:?}: {} operations ({reads} reads), faults {faults:?}, worst staleness {worst:?}, worst staleness past the outages {worst_excess:?}",
        history.len()
    );
    assert!(
        worst_excess <= BOUND_AFTER_OUTAGE,
        "a read returned a value {worst_excess:?} older than allowed (outages excluded)"
    );
}

/// For every read, how long after the update that replaced its value it
/// started (0 when it read the newest value); returns the worst, the worst
/// once the outages overlapping that span are taken out, and the number
/// of reads.
fn check_history(history: &[Op], outages: &[(Instant, Instant)]) -> (Duration, Duration, usize) {
    let mut updates: HashMap<u64, Vec<(u64, Instant)>> = HashMap::new();
    for op in history {
        if let Op::Update { id, value, done } = *op {
            updates.entry(id).or_default().push((value, done));
        }
    }
    let (mut worst, mut worst_excess, mut reads) = (Duration::ZERO, Duration::ZERO, 0);
    for op in history {
        let Op::Read { id, value, at } = *op else {
            continue;
        };
        reads += 1;
        // The first update after `value` that had completed when the read began.
        let replaced = updates
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|(v, done)| *v > value && *done < at)
            .map(|(_, done)| *done)
            .min();
        let Some(replaced) = replaced else { continue };
        let stale = at - replaced;
        let down: Duration = outages
            .iter()
            .map(|(s, e)| {
                let (s, e) = ((*s).max(replaced), (*e).min(at));
                e.saturating_duration_since(s)
            })
            .sum();
        worst = worst.max(stale);
        worst_excess = worst_excess.max(stale.saturating_sub(down));
    }
    (worst, worst_excess, reads)
}

/// The checker itself: a read of a replaced value counts as stale from the
/// moment the update completed, minus the outages in between.
fn the_history_checker_measures_staleness_past_the_outages() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let history = [
        Op::Update {
            id: 1,
            value: 1,
            done: at(100),
        },
        Op::Read {
            id: 1,
            value: 1,
            at: at(150),
        },
        // Value 0 read 900 ms after value 1 replaced it.
        Op::Read {
            id: 1,
            value: 0,
            at: at(1000),
        },
        // Started before the update completed: not stale.
        Op::Read {
            id: 1,
            value: 0,
            at: at(90),
        },
    ];
    let (worst, excess, reads) = check_history(&history, &[]);
    assert_eq!(
        (worst, excess, reads),
        (Duration::from_millis(900), Duration::from_millis(900), 3)
    );
    let (_, excess, _) = check_history(&history, &[(at(50), at(800))]);
    assert_eq!(
        excess,
        Duration::from_millis(200),
        "700 ms of outage taken out"
    );
}

fn main() {
    if std::env::var_os("LAYERCACHE_NODE").is_some() {
        node::run();
        return;
    }
    let scenarios: &[(&str, fn())] = &[
        (
            "the_history_checker_measures_staleness_past_the_outages",
            the_history_checker_measures_staleness_past_the_outages,
        ),
        (
            "an_update_while_redis_is_paused_reaches_every_process_once_it_resumes",
            an_update_while_redis_is_paused_reaches_every_process_once_it_resumes,
        ),
        (
            "an_update_while_redis_is_down_reaches_every_process_after_it_restarts_empty",
            an_update_while_redis_is_down_reaches_every_process_after_it_restarts_empty,
        ),
        (
            "a_process_started_after_a_flushall_and_the_fleet_agree_on_a_version_within_the_bound",
            a_process_started_after_a_flushall_and_the_fleet_agree_on_a_version_within_the_bound,
        ),
        (
            "pub_sub_connections_killed_during_an_invalidation_lose_no_invalidation",
            pub_sub_connections_killed_during_an_invalidation_lose_no_invalidation,
        ),
        (
            "a_user_without_channel_rights_gets_an_error_a_down_bus_and_short_local_copies",
            a_user_without_channel_rights_gets_an_error_a_down_bus_and_short_local_copies,
        ),
        (
            "a_refused_bus_caps_local_copies_at_5_s_without_local_timeout",
            a_refused_bus_caps_local_copies_at_5_s_without_local_timeout,
        ),
        (
            "copies_made_before_the_bus_was_lost_live_at_most_5_s_after_it",
            copies_made_before_the_bus_was_lost_live_at_most_5_s_after_it,
        ),
        (
            "a_flush_at_shutdown_applies_what_it_can_and_logs_the_rest_at_error",
            a_flush_at_shutdown_applies_what_it_can_and_logs_the_rest_at_error,
        ),
        (
            "a_fault_injection_soak_never_reads_a_value_older_than_the_bound",
            a_fault_injection_soak_never_reads_a_value_older_than_the_bound,
        ),
    ];
    scenarios::run(scenarios);
}
