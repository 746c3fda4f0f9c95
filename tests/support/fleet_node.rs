//! The parent's side of a fleet test's node: a copy of the test binary
//! (started with `LAYERCACHE_NODE=1` and its own environment), driven one
//! command per line on its stdin, answering one line per command on its
//! stdout. Each fleet binary wraps [`NodeProcess`] with how it starts its
//! nodes and how it reads their answers.
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
