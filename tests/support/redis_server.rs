//! Test support: a real `redis-server` child process with a MONITOR capture, a
//! tiny std-only RESP2 client, and a "silent" TCP server that accepts
//! connections but never answers.
//!
//! Include it with `#[path = "support/redis_server.rs"] mod redis_server;`
//! (from `tests/`) or `#[path = "../tests/support/redis_server.rs"]` (from
//! `benches/`). It only uses `std`.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for the server to come up, go down, or echo a sync marker.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// Sleep between polls while waiting for something (kept well under 50 ms).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Read/write timeout of the one-shot command connections.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Prefix of the `ECHO` marker used to flush the MONITOR capture; lines that
/// carry it are hidden from [`RedisServer::monitor_lines`].
const SYNC_MARKER: &str = "__layercache_harness_monitor_sync__";

/// Returns a TCP port on 127.0.0.1 that was free a moment ago: binds
/// `127.0.0.1:0`, reads the port the OS picked and drops the listener.
///
/// Another process may grab the port before the caller binds it; callers that
/// spawn a server on it should be ready to retry with a new port.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of the probe listener")
        .port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Locks a mutex, ignoring poisoning (the data is a plain list of lines).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// RESP2
// ---------------------------------------------------------------------------

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK` style simple string.
    Simple(String),
    /// `-ERR ...` error reply (the text after the `-`).
    Error(String),
    /// `:42` integer reply.
    Int(i64),
    /// `$n` bulk string; `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the null array `*-1`.
    Array(Option<Vec<RespValue>>),
}

/// Encodes a command as a RESP array of bulk strings.
fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one `\r\n`-terminated line and returns it without the terminator.
fn read_resp_line<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid(format!(
            "reply line not terminated by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(bytes: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "bad RESP integer {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

/// Parses one RESP2 reply from `reader`.
fn read_reply<R: BufRead>(reader: &mut R) -> io::Result<RespValue> {
    let line = read_resp_line(reader)?;
    let (tag, rest) = line
        .split_first()
        .ok_or_else(|| invalid("empty RESP line"))?;
    match tag {
        b'+' => Ok(RespValue::Simple(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        b'-' => Ok(RespValue::Error(String::from_utf8_lossy(rest).into_owned())),
        b':' => Ok(RespValue::Int(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(RespValue::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| invalid("bulk length overflow"))?;
            let mut buf = vec![0u8; len + 2];
            reader.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(invalid("bulk string not terminated by CRLF"));
            }
            buf.truncate(len);
            Ok(RespValue::Bulk(Some(buf)))
        }
        b'*' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(RespValue::Array(None));
            }
            let len = usize::try_from(len).map_err(|_| invalid("array length overflow"))?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_reply(reader)?);
            }
            Ok(RespValue::Array(Some(items)))
        }
        other => Err(invalid(format!(
            "unknown RESP type byte {:?} in line {:?}",
            char::from(*other),
            String::from_utf8_lossy(&line)
        ))),
    }
}

/// Sends one command on a fresh connection and reads one reply.
fn send_command(port: u16, args: &[&[u8]]) -> io::Result<RespValue> {
    let stream = TcpStream::connect_timeout(&loopback(port), IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    (&stream).write_all(&encode_command(args))?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

/// True when something on `port` answers the inline command `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if (&stream).write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream);
    reader.read_until(b'\n', &mut line).is_ok() && line.starts_with(b"+PONG")
}

/// Extracts the upper-cased command name from a MONITOR line such as
/// `+1700000000.123456 [0 127.0.0.1:5000] "set" "k" "v"`.
fn monitor_command_name(line: &str) -> Option<String> {
    let after = &line[line.find("] \"")? + 3..];
    let mut name = String::new();
    let mut chars = after.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(name.to_ascii_uppercase()),
            '\\' => {
                name.push(c);
                name.push(chars.next()?);
            }
            _ => name.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------

/// The MONITOR connection of one server incarnation and its reader thread.
struct Monitor {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

impl Monitor {
    /// Opens a connection, issues `MONITOR`, waits for its `+OK` (so every
    /// command executed afterwards is captured), then reads lines in a
    /// background thread until the connection closes.
    fn attach(port: u16, lines: Arc<Mutex<Vec<String>>>) -> io::Result<Monitor> {
        let stream = TcpStream::connect_timeout(&loopback(port), IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        (&stream).write_all(b"MONITOR\r\n")?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut ok = Vec::new();
        reader.read_until(b'\n', &mut ok)?;
        if !ok.starts_with(b"+OK") {
            return Err(invalid(format!(
                "MONITOR answered {:?}",
                String::from_utf8_lossy(&ok)
            )));
        }
        stream.set_read_timeout(None)?;
        let thread = thread::Builder::new()
            .name(format!("redis-monitor-{port}"))
            .spawn(move || monitor_loop(reader, lines))?;
        Ok(Monitor { stream, thread })
    }

    /// Closes the connection and waits for the reader thread.
    fn detach(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.thread.join();
    }
}

/// Body of the MONITOR thread: never panics, ends on EOF or any read error.
fn monitor_loop(mut reader: BufReader<TcpStream>, lines: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                lock(&lines).push(line);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Why a spawned `redis-server` did not become ready.
enum SpawnFailure {
    /// The process exited (typically: the port could not be bound).
    Exited(ExitStatus),
    /// It kept running but did not answer PING in time.
    Timeout,
}

/// A real `redis-server` child process on 127.0.0.1 and a free port, with no
/// persistence, a private temporary `--dir`, and a MONITOR capture of every
/// command it executes over its whole life (across [`RedisServer::restart`]).
///
/// Dropping it kills the process and removes the temporary directory.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    monitor: Option<Monitor>,
    lines: Arc<Mutex<Vec<String>>>,
    monitored: bool,
}

impl RedisServer {
    /// Starts `redis-server` (found on `PATH`) and waits until it answers
    /// `PING`, then attaches the MONITOR capture.
    ///
    /// # Panics
    /// If `redis-server` is not installed, or it does not answer `PING`
    /// within 5 s.
    pub fn start() -> RedisServer {
        RedisServer::start_with(true)
    }

    /// Like [`RedisServer::start`] but without the MONITOR capture, which
    /// makes the server format every command (for benchmarks). Use
    /// [`RedisServer::command_calls`] to check what was sent.
    pub fn start_unmonitored() -> RedisServer {
        RedisServer::start_with(false)
    }

    fn start_with(monitored: bool) -> RedisServer {
        let dir = make_temp_dir();
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
            monitor: None,
            lines: Arc::new(Mutex::new(Vec::new())),
            monitored,
        };
        // The port from `free_port` can be taken before redis binds it; if the
        // child exits early, try again with another port.
        let mut last_exit = None;
        for _ in 0..5 {
            let port = free_port();
            server.port = port;
            match server.spawn_and_wait(Instant::now() + WAIT_LIMIT) {
                Ok(child) => {
                    server.child = Some(child);
                    if server.monitored {
                        server.attach_monitor();
                    }
                    return server;
                }
                Err(SpawnFailure::Exited(status)) => last_exit = Some(status),
                Err(SpawnFailure::Timeout) => panic!(
                    "redis-server on 127.0.0.1:{port} did not answer PING within {WAIT_LIMIT:?}; log:\n{}",
                    server.log_tail()
                ),
            }
        }
        panic!(
            "redis-server kept exiting at startup (last status: {last_exit:?}); log:\n{}",
            server.log_tail()
        );
    }

    /// The TCP port the server listens on (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The private temporary directory passed as `--dir` (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while the child process is running (between start/restart and stop).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server process, waits for it, and waits (up to 5 s) until
    /// connecting to its port fails. The MONITOR capture is kept. No-op when
    /// already stopped.
    ///
    /// # Panics
    /// If the port still accepts connections after 5 s.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.kill_process();
        let deadline = Instant::now() + WAIT_LIMIT;
        while TcpStream::connect_timeout(&loopback(self.port), Duration::from_millis(100)).is_ok() {
            if Instant::now() >= deadline {
                panic!(
                    "127.0.0.1:{} still accepts connections {WAIT_LIMIT:?} after redis-server was killed",
                    self.port
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the server again on the same port (stopping it first if it is
    /// running), retrying for up to 5 s while the port cannot be bound, waits
    /// for `PING` and re-attaches the MONITOR capture. The data set starts
    /// empty (no persistence).
    ///
    /// # Panics
    /// If the server is not serving on the same port within 5 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            match self.spawn_and_wait(deadline) {
                Ok(child) => {
                    self.child = Some(child);
                    if self.monitored {
                        self.attach_monitor();
                    }
                    return;
                }
                Err(SpawnFailure::Exited(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(failure) => {
                    let why = match failure {
                        SpawnFailure::Exited(status) => format!("kept exiting ({status})"),
                        SpawnFailure::Timeout => "did not answer PING".to_owned(),
                    };
                    panic!(
                        "redis-server restart on 127.0.0.1:{} failed within {WAIT_LIMIT:?}: {why}; log:\n{}",
                        self.port,
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and commands
    /// queue unanswered, as on a stalled host, until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`RedisServer::pause`]d server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Sends one command (a RESP array of bulk strings) on a fresh connection
    /// and returns the parsed reply. Error replies come back as
    /// [`RespValue::Error`].
    ///
    /// # Panics
    /// On connection or protocol failures.
    pub fn command(&self, args: &[&[u8]]) -> RespValue {
        send_command(self.port, args).unwrap_or_else(|e| {
            panic!(
                "redis command {:?} on 127.0.0.1:{} failed: {e}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>(),
                self.port
            )
        })
    }

    /// `SET key value` with arbitrary bytes; panics unless the reply is `+OK`.
    pub fn set_raw(&self, key: &str, value: &[u8]) {
        match self.command(&[b"SET", key.as_bytes(), value]) {
            RespValue::Simple(ref s) if s == "OK" => {}
            other => panic!("SET {key:?} answered {other:?}"),
        }
    }

    /// `GET key`; `None` when the key does not exist.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        match self.command(&[b"GET", key.as_bytes()]) {
            RespValue::Bulk(value) => value,
            other => panic!("GET {key:?} answered {other:?}"),
        }
    }

    /// All keys matching the glob `pattern`, sorted and de-duplicated,
    /// collected with a `SCAN` cursor loop (never `KEYS`).
    pub fn keys_matching(&self, pattern: &str) -> Vec<String> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let reply = self.command(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ]);
            let RespValue::Array(Some(mut parts)) = reply else {
                panic!("SCAN answered {reply:?}");
            };
            let batch = parts.pop();
            let next = parts.pop();
            match (next, batch) {
                (Some(RespValue::Bulk(Some(next))), Some(RespValue::Array(Some(batch))))
                    if parts.is_empty() =>
                {
                    for key in batch {
                        match key {
                            RespValue::Bulk(Some(k)) => {
                                keys.push(String::from_utf8_lossy(&k).into_owned())
                            }
                            other => panic!("SCAN returned a non-bulk key {other:?}"),
                        }
                    }
                    if next == b"0" {
                        break;
                    }
                    cursor = next;
                }
                (next, batch) => {
                    panic!("unexpected SCAN reply shape: cursor {next:?}, keys {batch:?}")
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// `DBSIZE`.
    pub fn dbsize(&self) -> i64 {
        match self.command(&[b"DBSIZE"]) {
            RespValue::Int(n) => n,
            other => panic!("DBSIZE answered {other:?}"),
        }
    }

    /// A copy of every MONITOR line captured so far (over all incarnations of
    /// the server), e.g. `+1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "v"`.
    ///
    /// While the server runs, this first flushes the capture: it sends a
    /// marker `ECHO` and waits until the monitor has seen it, so every command
    /// that completed before the call is included. Marker lines are hidden.
    ///
    /// # Panics
    /// If the running server's monitor does not echo the marker within 5 s.
    pub fn monitor_lines(&self) -> Vec<String> {
        self.sync_monitor();
        lock(&self.lines)
            .iter()
            .filter(|line| !line.contains(SYNC_MARKER))
            .cloned()
            .collect()
    }

    /// The upper-cased command name (first quoted token after the `]`) of
    /// every captured MONITOR line, in order.
    pub fn commands_seen(&self) -> Vec<String> {
        self.monitor_lines()
            .iter()
            .filter_map(|line| monitor_command_name(line))
            .collect()
    }

    /// Panics, listing the offending lines, if any captured command is `KEYS`.
    pub fn assert_no_keys_command(&self) {
        assert!(
            self.monitored,
            "started without MONITOR: check command_calls(\"keys\") instead"
        );
        let offending: Vec<String> = self
            .monitor_lines()
            .into_iter()
            .filter(|line| monitor_command_name(line).as_deref() == Some("KEYS"))
            .collect();
        assert!(
            offending.is_empty(),
            "the KEYS command was sent to redis on port {} ({} time(s)):\n{}",
            self.port,
            offending.len(),
            offending.join("\n")
        );
    }

    // -- internals ----------------------------------------------------------

    /// Sends a unique `ECHO` and waits until the MONITOR thread captured it.
    /// How many times the server executed command `name` (from `INFO
    /// commandstats`; counts since the last start).
    pub fn command_calls(&self, name: &str) -> u64 {
        let RespValue::Bulk(Some(info)) = self.command(&[b"INFO", b"commandstats"]) else {
            panic!("INFO commandstats did not return text");
        };
        let prefix = format!("cmdstat_{}:calls=", name.to_ascii_lowercase());
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn sync_monitor(&self) {
        if self.child.is_none() || self.monitor.is_none() {
            return;
        }
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let marker = format!("{SYNC_MARKER}{}", SEQ.fetch_add(1, Ordering::Relaxed));
        if send_command(self.port, &[b"ECHO", marker.as_bytes()]).is_err() {
            // The server went away underneath us; what was captured is all there is.
            return;
        }
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if lock(&self.lines)
                .iter()
                .rev()
                .any(|line| line.contains(&marker))
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the MONITOR capture of redis on port {} did not see its sync marker within {WAIT_LIMIT:?}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis-server.log")
    }

    /// The last few KiB of the server's stdout/stderr, for panic messages.
    fn log_tail(&self) -> String {
        match fs::read(self.log_path()) {
            Ok(bytes) => {
                let start = bytes.len().saturating_sub(4096);
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            }
            Err(e) => format!("<no log: {e}>"),
        }
    }

    /// Spawns `redis-server` on `self.port` and waits until it answers PING.
    fn spawn_and_wait(&self, deadline: Instant) -> Result<Child, SpawnFailure> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log file handle: {e}"));
        let port = self.port.to_string();
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ])
            .args(["--loglevel", "warning", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "`redis-server` was not found on PATH; install it (e.g. `apt-get install redis-server`) to run these tests"
            ),
            Err(e) => panic!("failed to spawn redis-server: {e}"),
        };
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SpawnFailure::Exited(status));
            }
            if ping(self.port) {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnFailure::Timeout);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn attach_monitor(&mut self) {
        match Monitor::attach(self.port, Arc::clone(&self.lines)) {
            Ok(monitor) => self.monitor = Some(monitor),
            Err(e) => panic!("cannot attach MONITOR to redis on port {}: {e}", self.port),
        }
    }

    /// Kills and reaps the child and closes the monitor. Never panics.
    fn kill_process(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(monitor) = self.monitor.take() {
            monitor.detach();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_process();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates a fresh, unique directory under `std::env::temp_dir()`.
fn make_temp_dir() -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "layercache-redis-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------
// SilentServer
// ---------------------------------------------------------------------------

/// A TCP listener on 127.0.0.1 that accepts connections and reads (and
/// discards) whatever is sent, but never writes a single byte; useful to
/// exercise client timeouts. Sockets stay open until the peer closes them or
/// the server is dropped.
pub struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    /// Binds `127.0.0.1:0` and starts the background accept/read thread.
    pub fn start() -> SilentServer {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).expect("bind silent server on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("silent server local_addr")
            .port();
        listener
            .set_nonblocking(true)
            .expect("set silent listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let accepted = Arc::clone(&accepted);
            thread::Builder::new()
                .name(format!("silent-server-{port}"))
                .spawn(move || silent_loop(listener, &stop, &accepted))
                .expect("spawn silent server thread")
        };
        SilentServer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// How many connections have been accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Accepts and drains connections until `stop` is set; never writes. Dropping
/// the listener and sockets on return closes them.
fn silent_loop(listener: TcpListener, stop: &AtomicBool, accepted: &AtomicUsize) {
    let mut sockets: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut busy = false;
        loop {
            match listener.accept() {
                Ok((socket, _)) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.set_nonblocking(true);
                    sockets.push(socket);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        sockets.retain_mut(|socket| loop {
            match socket.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => busy = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        });
        if !busy {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
