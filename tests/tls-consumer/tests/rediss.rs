//! `rediss://` from a crate that enables only `layercache/tls`, against a
//! real `redis-server --tls-port` with a CA, server and client certificates
//! made here by `openssl`, and an ACL user (the default user is off).
//!
//! Without a crypto provider installed by layercache, every connection of
//! these nodes panicked in rustls ("Could not automatically determine the
//! process-level CryptoProvider") and every call ran the function.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, a server certificate for 127.0.0.1, a client certificate, and a
/// second CA that signed none of them.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn generate(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "layercache-tls-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, crt, subj) = (
                format!("{ca}.key"),
                format!("{ca}.crt"),
                format!("/CN=layercache test {ca}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt,
            ];
            args.extend_from_slice(&ec);
            openssl(&dir, &args);
        }
        for (who, subj, ext) in [
            (
                "server",
                "/CN=localhost",
                // Cluster nodes also present it to each other on the cluster bus.
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "/CN=app", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, crt, extfile) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.crt"),
                format!("{who}.ext"),
            );
            std::fs::write(dir.join(&extfile), ext).unwrap();
            let mut args = vec!["req", "-subj", subj, "-keyout", &key, "-out", &csr];
            args.extend_from_slice(&ec);
            openssl(&dir, &args);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &extfile,
                    "-out",
                    &crt,
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster-bus twin (`port + 10000`) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` with TLS only (no plain port), the ACL user `app`
/// (password `pw`) and the default user off.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(pki: &Pki, client_certs: bool) -> TlsRedis {
        TlsRedis::start_with(pki, client_certs, &[])
    }

    /// A master of a TLS cluster (its bus over TLS too), not yet joined.
    fn start_cluster_node(pki: &Pki) -> TlsRedis {
        TlsRedis::start_with(
            pki,
            false,
            &["--cluster-enabled", "yes", "--tls-cluster", "yes"],
        )
    }

    fn start_with(pki: &Pki, client_certs: bool, extra: &[&str]) -> TlsRedis {
        for _ in 0..5 {
            let port = if extra.is_empty() {
                free_port()
            } else {
                free_port_pair()
            };
            let log = pki.dir.join(format!("redis-{port}.log"));
            let dir = pki.dir.join(format!("node-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args(["--tls-cert-file", &pki.path("server.crt")])
                .args(["--tls-key-file", &pki.path("server.key")])
                .args(["--tls-ca-cert-file", &pki.path("ca.crt")])
                .args([
                    "--tls-auth-clients",
                    if client_certs { "yes" } else { "no" },
                ])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &dir.display().to_string(),
                ])
                .args(extra)
                .args(["--user", "default", "off"])
                .args(["--user", "app", "on", ">pw", "~*", "&*", "+@all"])
                .args(["--logfile", &log.display().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            let mut server = TlsRedis { child, port };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("Ready to accept connections"))
                {
                    return server;
                }
                if server.child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("redis-server with TLS did not start");
    }

    fn url(&self) -> String {
        format!("rediss://app:pw@127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The consumer's binary, configured through the environment.
struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Node {
    fn spawn(name: &str, url: &str, tls: &[(&str, String)]) -> Node {
        let log = std::env::temp_dir().join(format!(
            "layercache-tls-node-{name}-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tls-consumer"));
        cmd.env("CACHE_TYPE", "redis")
            .env("CACHE_REDIS_URL", url)
            .env("CACHE_SHARED_TIMEOUT_MS", "500")
            .env("RUST_LOG", "layercache=warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in tls {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the consumer binary");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Node {
            child,
            stdin,
            stdout,
            log,
        }
    }

    fn send(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(!reply.is_empty(), "the node died; its log:\n{}", self.log());
        reply.trim_end().to_string()
    }

    /// The function's runs during a `get`.
    fn runs(&mut self, id: u64) -> u64 {
        let reply = self.send(&format!("get {id}"));
        assert!(reply.starts_with(&format!("ok user-{id} ")), "{reply}");
        reply
            .split("runs=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn ca(pki: &Pki, file: &str) -> Vec<(&'static str, String)> {
    vec![("CACHE_REDIS_CA_CERT", pki.path(file))]
}

fn with_client_cert(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_REDIS_CA_CERT", pki.path("ca.crt")),
        ("CACHE_REDIS_CLIENT_CERT", pki.path("client.crt")),
        ("CACHE_REDIS_CLIENT_KEY", pki.path("client.key")),
    ]
}

/// A value computed by `a` is a shared hit in `b`, and an invalidation in
/// `a` reaches `b`'s local copy over the TLS bus.
fn assert_shared_between(a: &mut Node, b: &mut Node) {
    assert_eq!(a.send("wait_bus"), "bus true", "{}", a.log());
    assert_eq!(b.send("wait_bus"), "bus true", "{}", b.log());
    assert_eq!(a.runs(1), 1, "computed in A");
    assert_eq!(b.runs(1), 0, "a shared hit in B: {}", b.log());
    assert_eq!(b.runs(1), 0, "then a local hit");
    assert_eq!(a.send("update 1"), "ok");
    let started = Instant::now();
    while b.runs(1) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the invalidation reached B within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for node in [a, b] {
        let log = node.log();
        assert!(
            !log.contains("CryptoProvider") && !log.contains("panicked"),
            "{log}"
        );
        assert!(!log.contains("pw@"), "no password in the logs: {log}");
    }
}

#[test]
fn two_processes_share_values_over_rediss_with_a_private_ca_and_an_acl_user() {
    let pki = Pki::generate("ca");
    let server = TlsRedis::start(&pki, false);
    let mut a = Node::spawn("a", &server.url(), &ca(&pki, "ca.crt"));
    let mut b = Node::spawn("b", &server.url(), &ca(&pki, "ca.crt"));
    assert_shared_between(&mut a, &mut b);
}

#[test]
fn two_processes_share_values_over_mutual_tls_with_a_client_certificate() {
    let pki = Pki::generate("mtls");
    let server = TlsRedis::start(&pki, true);
    let mut a = Node::spawn("a", &server.url(), &with_client_cert(&pki));
    let mut b = Node::spawn("b", &server.url(), &with_client_cert(&pki));
    assert_shared_between(&mut a, &mut b);

    // The same server refuses a process without a client certificate: it
    // still answers every call (fail-open), and says why at ERROR.
    let mut c = Node::spawn("c", &server.url(), &ca(&pki, "ca.crt"));
    assert_fails_open_with_a_tls_error(&mut c);
}

#[test]
fn two_processes_share_values_over_a_rediss_cluster_with_a_private_ca() {
    let pki = Pki::generate("cluster");
    let masters: Vec<TlsRedis> = (0..3).map(|_| TlsRedis::start_cluster_node(&pki)).collect();
    let addresses: Vec<String> = masters
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port))
        .collect();
    let mut create = Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            &pki.path("ca.crt"),
            "--user",
            "app",
            "--pass",
            "pw",
        ])
        .args(["--no-auth-warning", "--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed");
    // redis-cli waits for the nodes to meet without a limit of its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = create.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = create.kill();
            panic!("the TLS cluster's nodes did not meet within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut create.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        status.success() && out.contains("All 16384 slots covered"),
        "{out}"
    );
    // Every master must agree that the cluster is up before the nodes start.
    let deadline = Instant::now() + Duration::from_secs(15);
    for m in &masters {
        loop {
            let info = Command::new("redis-cli")
                .args([
                    "--tls",
                    "--cacert",
                    &pki.path("ca.crt"),
                    "--user",
                    "app",
                    "--pass",
                    "pw",
                ])
                .args([
                    "--no-auth-warning",
                    "-p",
                    &m.port.to_string(),
                    "cluster",
                    "info",
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the TLS cluster did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let seeds: Vec<String> = masters
        .iter()
        .map(|m| format!("rediss://app:pw@127.0.0.1:{}", m.port))
        .collect();
    let env = |ca_file: &str| {
        vec![
            ("CACHE_TYPE", "redis-cluster".to_string()),
            ("CACHE_REDIS_NODES", seeds.join(",")),
            ("CACHE_REDIS_CA_CERT", pki.path(ca_file)),
        ]
    };
    let mut a = Node::spawn("a", &seeds[0], &env("ca.crt"));
    let mut b = Node::spawn("b", &seeds[0], &env("ca.crt"));
    assert_shared_between(&mut a, &mut b);
    let mut c = Node::spawn("c", &seeds[0], &env("other-ca.crt"));
    assert_fails_open_with_a_tls_error(&mut c);
}

#[test]
fn a_wrong_ca_is_a_clear_error_and_calls_fail_open() {
    let pki = Pki::generate("wrong");
    let server = TlsRedis::start(&pki, false);
    let mut a = Node::spawn("a", &server.url(), &ca(&pki, "other-ca.crt"));
    assert_fails_open_with_a_tls_error(&mut a);
}

fn assert_fails_open_with_a_tls_error(node: &mut Node) {
    for round in 0..3 {
        let started = Instant::now();
        assert_eq!(
            node.runs(7),
            u64::from(round == 0),
            "round {round}: the function's value"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the timeouts"
        );
    }
    let stats = node.send("stats");
    assert!(stats.contains("shared_hits=0"), "{stats}");
    assert!(
        !stats.contains("errors=0 "),
        "errors are counted: {stats}\n{}",
        node.log()
    );
    let started = Instant::now();
    let log = loop {
        let log = node.log();
        if log.contains("ERROR") || started.elapsed() > Duration::from_secs(2) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let error = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("TLS connection to Redis failed"))
        .unwrap_or_else(|| panic!("a clear ERROR line in:\n{log}"));
    assert!(error.contains("CACHE_REDIS_CA_CERT"), "{error}");
    println!("{error}");
    assert!(
        !log.contains("pw@") && !log.contains(":pw"),
        "no password in the logs: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
