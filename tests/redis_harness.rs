//! Self-tests of the redis test-support harness (`tests/support/redis_server.rs`).

#[path = "support/redis_server.rs"]
mod redis_server;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use redis_server::{free_port, RedisServer, RespValue, SilentServer};

#[test]
fn free_port_returns_a_bindable_port() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind(("127.0.0.1", port)).expect("the free port can be bound");
}

#[test]
fn start_answers_ping_on_its_url() {
    let server = RedisServer::start();
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert!(server.dir().is_dir());
    assert_eq!(
        server.command(&[b"PING"]),
        RespValue::Simple("PONG".to_owned())
    );
    assert_eq!(
        server.command(&[b"ECHO", b"hi"]),
        RespValue::Bulk(Some(b"hi".to_vec()))
    );
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn command_parses_error_int_null_and_array_replies() {
    let server = RedisServer::start();
    assert!(matches!(
        server.command(&[b"NOSUCHCOMMAND"]),
        RespValue::Error(e) if e.starts_with("ERR")
    ));
    assert_eq!(server.command(&[b"INCR", b"n"]), RespValue::Int(1));
    assert_eq!(server.command(&[b"GET", b"missing"]), RespValue::Bulk(None));
    server.command(&[b"RPUSH", b"list", b"a", b"b"]);
    assert_eq!(
        server.command(&[b"LRANGE", b"list", b"0", b"-1"]),
        RespValue::Array(Some(vec![
            RespValue::Bulk(Some(b"a".to_vec())),
            RespValue::Bulk(Some(b"b".to_vec())),
        ]))
    );
    assert_eq!(
        server.command(&[b"BLPOP", b"empty", b"0.01"]),
        RespValue::Array(None)
    );
}

#[test]
fn set_raw_get_raw_round_trips_binary_bytes() {
    let server = RedisServer::start();
    let value: &[u8] = b"a\r\nb\0c\xff\r\n$3\r\n*1\r\n-ERR\r\n\0";
    server.set_raw("bin:key", value);
    assert_eq!(server.get_raw("bin:key").as_deref(), Some(value));
    server.set_raw("empty", b"");
    assert_eq!(server.get_raw("empty"), Some(Vec::new()));
    assert_eq!(server.get_raw("absent"), None);
    assert_eq!(server.dbsize(), 2);
}

#[test]
fn keys_matching_collects_all_matches_via_scan() {
    let server = RedisServer::start();
    let mut expected = Vec::new();
    for i in 0..2500 {
        let key = format!("harness:a:{i}");
        server.set_raw(&key, b"x");
        expected.push(key);
    }
    for i in 0..10 {
        server.set_raw(&format!("other:{i}"), b"y");
    }
    expected.sort();
    assert_eq!(server.keys_matching("harness:a:*"), expected);
    assert_eq!(server.keys_matching("other:*").len(), 10);
    assert!(server.keys_matching("nothing:*").is_empty());
    assert_eq!(server.dbsize(), 2510);

    let commands = server.commands_seen();
    assert!(commands.iter().any(|c| c == "SCAN"), "{commands:?}");
    server.assert_no_keys_command();
}

#[test]
fn stop_refuses_connections_and_restart_serves_again_on_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    server.set_raw("before", b"1");

    server.stop();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    server.stop(); // idempotent

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(
        server.command(&[b"PING"]),
        RespValue::Simple("PONG".to_owned())
    );
    // No persistence: the data set starts empty.
    assert_eq!(server.get_raw("before"), None);
    server.set_raw("after", b"2");
    assert_eq!(server.get_raw("after").as_deref(), Some(&b"2"[..]));

    // The monitor capture spans both incarnations.
    let lines = server.monitor_lines();
    assert!(lines.iter().any(|l| l.contains("\"before\"")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("\"after\"")), "{lines:#?}");

    // Restarting a running server works too.
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn monitor_captures_set_and_assert_no_keys_command_panics_on_keys() {
    let server = RedisServer::start();
    server.set_raw("monitored", b"value");

    let lines = server.monitor_lines();
    let set_line = lines
        .iter()
        .find(|l| l.contains("\"monitored\""))
        .unwrap_or_else(|| panic!("SET not captured: {lines:#?}"));
    assert!(set_line.starts_with('+'), "{set_line}");
    assert!(
        set_line.contains(" 127.0.0.1:") && set_line.contains("\"SET\""),
        "{set_line}"
    );
    assert!(server.commands_seen().iter().any(|c| c == "SET"));
    server.assert_no_keys_command();

    // Lower-case names are normalised, and the check fires on KEYS.
    server.command(&[b"keys", b"*"]);
    assert!(server.commands_seen().iter().any(|c| c == "KEYS"));
    let result = catch_unwind(AssertUnwindSafe(|| server.assert_no_keys_command()));
    let payload = result.expect_err("assert_no_keys_command must panic after KEYS");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("\"keys\""), "{message}");
}

#[test]
fn dropping_the_server_kills_it_and_removes_its_dir() {
    let server = RedisServer::start();
    let port = server.port();
    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn silent_server_accepts_but_never_replies() {
    let silent = SilentServer::start();
    assert_eq!(
        silent.url(),
        format!("redis://127.0.0.1:{}/", silent.port())
    );

    let mut stream = TcpStream::connect(("127.0.0.1", silent.port())).expect("connect");
    stream.write_all(b"PING\r\n").expect("write");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        ),
        Ok(n) => panic!("silent server produced a read of {n} bytes"),
    }

    let deadline = Instant::now() + Duration::from_secs(2);
    while silent.connections_accepted() < 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(silent.connections_accepted(), 1);

    // Dropping it closes the accepted socket: the client then sees EOF.
    drop(silent);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF after drop, got {other:?}"),
    }
}
