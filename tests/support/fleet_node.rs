//! The parent's side of a fleet test's node: a copy of the test binary
//! (started with `LAYERCACHE_NODE=1` and its own environment), driven one
//! command per line on its stdin, answering one line per command on its
//! stdout. Each fleet binary wraps [`NodeProcess`] with how it starts its
//! nodes and how it reads their answers. [`manual_cache_command`] is the
//! node's side of the manual-cache commands every fleet binary answers.
// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a node may take to answer one command.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A running node, killed when dropped.
pub struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    /// How failures name it.
    pub name: String,
}

impl NodeProcess {
    /// Starts `cmd` with piped stdin and stdout. With `capture_log` its
    /// stderr is kept for [`NodeProcess::log_lines`]; otherwise it goes
    /// where `cmd` sends it.
    pub fn start_command(
        name: impl Into<String>,
        mut cmd: Command,
        capture_log: bool,
    ) -> NodeProcess {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        if capture_log {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        NodeProcess {
            child,
            stdin,
            lines,
            log,
            name: name.into(),
        }
    }

    /// Sends `line` without waiting for the answer ([`NodeProcess::reply`]).
    pub fn post(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("node stdin");
        self.stdin.flush().unwrap();
    }

    /// The answer to `line`, sent last; a node that died or answered
    /// `error …` fails the test.
    pub fn reply(&mut self, line: &str) -> String {
        let reply = match self.lines.recv_timeout(ANSWER_WITHIN) {
            Ok(reply) => reply,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("node {} died (aborted?) on {line:?}", self.name)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "node {} did not answer {line:?} within {ANSWER_WITHIN:?}",
                self.name
            ),
        };
        assert!(!reply.starts_with("error"), "node {}: {reply}", self.name);
        reply
    }

    /// Sends `line` and waits for its answer.
    pub fn send(&mut self, line: &str) -> String {
        self.post(line);
        self.reply(line)
    }

    /// The counter `field` in the node's `stats {function}` line
    /// (`stats a=1 b=2 …`).
    pub fn stat(&mut self, function: &str, field: &str) -> u64 {
        let reply = self.send(&format!("stats {function}"));
        reply
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
            .unwrap_or_else(|| panic!("no {field} in {reply:?}"))
            .parse()
            .unwrap()
    }

    /// What the node logged on stderr so far (with `capture_log`).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The manual-cache commands a node answers, the same in every fleet binary:
/// `mset k v`, `mget k`, `nset NAME k v`, `nget NAME k`, `nclear NAME`,
/// `mset_many a=1,b=2`, `mget_many a,b`, `mdel_many a,b` (values are
/// `String`s, written for 300 s). `None` for another command.
pub fn manual_cache_command(parts: &[&str]) -> Option<String> {
    use layercache::sync::Cache;
    const LIFE: Duration = Duration::from_secs(300);
    let list = |keys: &str| keys.split(',').map(str::to_string).collect::<Vec<_>>();
    Some(match parts {
        ["mset", k, v] => {
            Cache::global().set(k, v.to_string(), LIFE);
            "ok".into()
        }
        ["mget", k] => format!("{:?}", Cache::global().get::<String>(k)),
        ["nset", name, k, v] => {
            Cache::named(name).set(k, v.to_string(), LIFE);
            "ok".into()
        }
        ["nget", name, k] => format!("{:?}", Cache::named(name).get::<String>(k)),
        ["nclear", name] => Cache::named(name).clear().to_string(),
        ["mset_many", pairs] => {
            let pairs: Vec<(&str, String)> = pairs
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, v.to_string()))
                .collect();
            Cache::global().set_many(&pairs, LIFE);
            "ok".into()
        }
        ["mget_many", keys] => {
            let keys = list(keys);
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            format!("{:?}", Cache::global().get_many::<String>(&keys))
        }
        ["mdel_many", keys] => {
            let keys = list(keys);
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            Cache::global().delete_many(&keys).to_string()
        }
        _ => return None,
    })
}
