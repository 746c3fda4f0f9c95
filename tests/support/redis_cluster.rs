//! Test support: a real 3-master Redis Cluster on loopback, made of
//! `redis-server --cluster-enabled yes` children joined by
//! `redis-cli --cluster create`, with no persistence, a short node timeout
//! and `--cluster-require-full-coverage no` (the surviving masters keep
//! serving their slots while one is down).
//!
//! Include it with `#[path = "support/redis_cluster.rs"] mod redis_cluster;`.
//! It only uses `std` and the `redis-server` / `redis-cli` binaries.
//!
//! Every server runs under a small `sh` watchdog that holds a pipe from
//! this process: when the pipe closes (the node is stopped, the cluster
//! dropped, or the test process exits in any way, even killed) the
//! watchdog kills its server, so no server outlives the tests. The
//! temporary directory has a watchdog of its own.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Cluster failure detection: how long a node may be silent before the
/// others mark it failed. Short, so tests about a dead master stay short.
pub const NODE_TIMEOUT_MS: u64 = 500;
/// Longest wait for a server to come up, the cluster to form or heal.
const WAIT_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// A master frozen by [`RedisCluster::pause_node`]; resumed on drop.
pub struct Paused {
    pid: Option<String>,
}

impl Paused {
    /// Lets the master run again (`SIGCONT`).
    pub fn resume(mut self) {
        if let Some(pid) = self.pid.take() {
            signal(&pid, "-CONT");
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            signal(&pid, "-CONT");
        }
    }
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// One master of the cluster.
pub struct ClusterNode {
    port: u16,
    dir: PathBuf,
    /// The watchdog's stdin: closing it kills the server.
    lifeline: Option<ChildStdin>,
    watchdog: Option<Child>,
}

/// A 3-master Redis Cluster on 127.0.0.1, torn down on drop.
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    root: PathBuf,
    _root_lifeline: ChildStdin,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port whose cluster-bus twin (`port + 10000`) is free too: both bound
/// a moment ago. Picked below 55536 so the twin exists.
fn free_port_pair() -> u16 {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20);
    for _ in 0..1000 {
        // xorshift: a different candidate each round.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 20_000 + (seed % 25_000) as u16;
        let a = TcpListener::bind(loopback(port));
        let b = TcpListener::bind(loopback(port + 10_000));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
    panic!("no free port pair (p, p + 10000) on 127.0.0.1");
}

/// Runs `redis-cli -p port args...` and returns its stdout (empty when it
/// could not run or the server did not answer).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn answers_ping(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if (&stream).write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line).is_ok() && line.starts_with(b"+PONG")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "{what}: not within {WAIT_LIMIT:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn make_root() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "layercache-cluster-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the cluster's temporary directory");
    dir
}

/// A watchdog `sh` that runs `script` once its stdin reaches end of file.
fn watchdog(script: &str, args: &[&str]) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

impl ClusterNode {
    fn spawn(port: u16, dir: &Path) -> ClusterNode {
        std::fs::create_dir_all(dir).expect("node directory");
        let port_s = port.to_string();
        let timeout = NODE_TIMEOUT_MS.to_string();
        let dir_s = dir.display().to_string();
        // The server in the background; when our pipe closes, kill it (-9:
        // a crash, not a clean shutdown) and wait for it.
        let (child, stdin) = watchdog(
            "redis-server --port \"$1\" --dir \"$2\" --cluster-enabled yes \
             --cluster-config-file nodes.conf --cluster-node-timeout \"$3\" \
             --cluster-require-full-coverage no --save '' --appendonly no \
             --logfile redis.log </dev/null >/dev/null 2>&1 & pid=$!; \
             cat >/dev/null; kill -9 $pid 2>/dev/null; wait $pid",
            &[&port_s, &dir_s, &timeout],
        );
        ClusterNode {
            port,
            dir: dir.to_path_buf(),
            lifeline: Some(stdin),
            watchdog: Some(child),
        }
    }

    /// Whether the server answered PING within `limit`.
    fn came_up(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if answers_ping(self.port) {
                return true;
            }
            std::thread::sleep(POLL);
        }
        false
    }

    fn kill(&mut self) {
        drop(self.lifeline.take());
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
        let port = self.port;
        wait_until(&format!("127.0.0.1:{port} closed"), || {
            TcpStream::connect_timeout(&loopback(port), Duration::from_millis(100)).is_err()
        });
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl RedisCluster {
    /// Starts three masters on free ports and joins them into one cluster
    /// (slots split evenly, no replicas); returns when every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// If `redis-server`/`redis-cli` are missing or the cluster does not
    /// form within 15 s.
    pub fn start() -> RedisCluster {
        let root = make_root();
        let root_s = root.display().to_string();
        let (_, root_lifeline) = watchdog("cat >/dev/null; rm -rf \"$1\"", &[&root_s]);
        let mut nodes = Vec::new();
        for i in 0..3 {
            // A port taken between the probe and the bind: try another.
            let mut node = None;
            for _ in 0..5 {
                let port = free_port_pair();
                let mut n = ClusterNode::spawn(port, &root.join(format!("node{i}")));
                if n.came_up(Duration::from_secs(5)) {
                    node = Some(n);
                    break;
                }
                n.kill();
                let _ = std::fs::remove_dir_all(&n.dir);
            }
            nodes.push(node.expect("redis-server did not start on any of 5 ports"));
        }
        let cluster = RedisCluster {
            nodes,
            root,
            _root_lifeline: root_lifeline,
        };
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy();
        cluster
    }

    /// The masters' ports, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:{port}` of every master.
    pub fn seeds(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The seeds as `CACHE_REDIS_NODES` wants them.
    pub fn nodes_env(&self) -> String {
        self.seeds().join(",")
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].lifeline.is_some()
    }

    /// Waits until every running node reports `cluster_state:ok` and
    /// knows every other running node as a connected master.
    pub fn wait_healthy(&self) {
        let running: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.lifeline.is_some())
            .map(|n| n.port)
            .collect();
        let all = self.nodes.len();
        let started = Instant::now();
        loop {
            let ok = running.iter().all(|&p| {
                let info = cli(p, &["cluster", "info"]);
                let nodes = cli(p, &["cluster", "nodes"]);
                let connected = nodes
                    .lines()
                    .filter(|l| l.contains("master") && !l.contains("fail"))
                    .count();
                info.contains("cluster_state:ok") && (running.len() < all || connected == all)
            });
            if ok {
                return;
            }
            if started.elapsed() > WAIT_LIMIT {
                let logs: Vec<String> = self.nodes.iter().map(|n| n.log_tail()).collect();
                panic!(
                    "the cluster on {:?} is not healthy after {WAIT_LIMIT:?}; logs:\n{}",
                    self.ports(),
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Freezes master `i` (`SIGSTOP`): its connections stay open and go
    /// unanswered until [`Paused::resume`] (or drop). Keep it shorter than
    /// [`NODE_TIMEOUT_MS`] unless the test wants it marked failed.
    pub fn pause_node(&self, i: usize) -> Paused {
        let info = cli(self.nodes[i].port, &["info", "server"]);
        let pid = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .unwrap_or_else(|| panic!("no process_id in INFO of master {i}: {info:?}"))
            .to_string();
        signal(&pid, "-STOP");
        Paused { pid: Some(pid) }
    }

    /// Kills master `i` (SIGKILL) and waits until its port is closed.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Waits until the other masters mark master `i` failed (after the
    /// node timeout); returns how long that took.
    pub fn wait_marked_failed(&self, i: usize) -> Duration {
        let started = Instant::now();
        let id_port = format!("127.0.0.1:{}@", self.nodes[i].port);
        let others: Vec<u16> = (0..self.nodes.len())
            .filter(|&j| j != i && self.is_running(j))
            .map(|j| self.nodes[j].port)
            .collect();
        wait_until("the killed master marked failed", || {
            others.iter().all(|&p| {
                cli(p, &["cluster", "nodes"])
                    .lines()
                    .any(|l| l.contains(&id_port) && l.contains("fail") && !l.contains("fail?"))
            })
        });
        started.elapsed()
    }

    /// Starts master `i` again on its port with its cluster config file
    /// (it rejoins with its slots, its data gone) and waits until the
    /// cluster is healthy; returns how long the rejoin took.
    pub fn restart_node(&mut self, i: usize) -> Duration {
        let started = Instant::now();
        self.start_node(i);
        self.wait_healthy();
        started.elapsed()
    }

    /// Starts master `i` again on its port with its cluster config file,
    /// without waiting for the cluster (for several nodes coming back).
    pub fn start_node(&mut self, i: usize) {
        if self.is_running(i) {
            self.nodes[i].kill();
        }
        let (port, dir) = (self.nodes[i].port, self.nodes[i].dir.clone());
        let limit = Instant::now() + Duration::from_secs(5);
        loop {
            let node = ClusterNode::spawn(port, &dir);
            if node.came_up(Duration::from_secs(2)) {
                self.nodes[i] = node;
                break;
            }
            let mut node = node;
            node.kill();
            assert!(
                Instant::now() < limit,
                "master {i} did not restart on port {port}; log:\n{}",
                self.nodes[i].log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes every key on every running master.
    pub fn flush_all(&self) {
        for n in self.nodes.iter().filter(|n| n.lifeline.is_some()) {
            let out = cli(n.port, &["flushall"]);
            assert!(out.trim() == "OK", "FLUSHALL on {}: {out:?}", n.port);
        }
    }

    /// The index of the master that serves `key`'s slot.
    pub fn node_of_key(&self, key: &str) -> usize {
        let port = self
            .nodes
            .iter()
            .find(|n| n.lifeline.is_some())
            .expect("a running node")
            .port;
        let slot: u16 = cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        for line in cli(port, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if owns {
                let node_port: u16 = fields[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .expect("node address");
                if let Some(i) = self.nodes.iter().position(|n| n.port == node_port) {
                    return i;
                }
            }
        }
        panic!("no master owns slot {slot} of {key:?}");
    }

    /// Keys stored on master `i` (all of them, by `SCAN`).
    pub fn keys_on(&self, i: usize) -> Vec<String> {
        let out = cli(self.nodes[i].port, &["--scan"]);
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            drop(n.lifeline.take());
        }
        for n in &mut self.nodes {
            if let Some(mut w) = n.watchdog.take() {
                let _ = w.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One cluster for a whole test binary, started on first use; the
/// watchdogs stop it when the process exits.
pub fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

/// Exclusive use of the [`shared`] cluster, emptied for the holder; the
/// next test waits until it is dropped.
pub struct Lease(());

impl Lease {
    /// Waits for the shared cluster, then empties it.
    pub fn take() -> Lease {
        let cluster = shared();
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = FREED.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        drop(busy);
        let lease = Lease(());
        cluster.flush_all();
        lease
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        FREED.notify_one();
    }
}
