//! Test support: a real `memcached` child process on a free loopback port
//! (`memcached -l 127.0.0.1 -p PORT -U 0`), stopped on drop and restartable
//! on the same port. It only uses `std`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `memcached` server for one test.
pub struct MemcachedServer {
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(100),
    )
    .is_ok()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl MemcachedServer {
    /// Starts `memcached` from PATH (items up to 2 MiB, so a value at the
    /// default 1 MiB limit plus its header fits).
    pub fn start() -> MemcachedServer {
        let mut server = MemcachedServer {
            child: None,
            port: free_port(),
        };
        server.restart();
        server
    }

    /// `host:port`, as `CACHE_MEMCACHED_SERVERS` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let started = Instant::now();
        while accepts(self.port) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Freezes the server (`SIGSTOP`) until [`MemcachedServer::resume`]:
    /// connections stay open, requests go unanswered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("memcached is running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-I",
            "2m",
            "-m",
            "64",
        ]);
        if is_root() {
            // memcached refuses to run as root without being told to.
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached on PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while !accepts(self.port) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "memcached did not listen on {} within 5 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.stop();
    }
}
