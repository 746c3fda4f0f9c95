//! A cached route under load: one page served uncached, through
//! layercache's [`ResponseCacheLayer`], and through the peer
//! `http-cache-tower-server` (its in-memory moka manager), all in one run.
//!
//! The load generator is a closed loop of keep-alive HTTP/1.1 connections
//! on loopback (raw TCP, so the client costs as little as possible), on
//! its own runtime thread; the server has one runtime thread. It reports
//! requests per second and latency percentiles, and the ratios.
//!
//! ```text
//! cargo bench --features axum --bench web_load                  # 5 s per variant
//! WEB_LOAD_SECS=2 WEB_LOAD_CONNECTIONS=32 cargo bench --features axum --bench web_load
//! ```

#[path = "support/report.rs"]
mod report;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_cache_tower_server::{ServerCacheLayer, ServerCacheOptions};
use layercache::web::ResponseCacheLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The page: a 4 KiB product table whose rendering costs tens of µs of CPU,
/// like a template over a query result.
async fn page() -> impl IntoResponse {
    let mut html = String::with_capacity(8192);
    html.push_str("<table>");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for row in 0..100 {
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        let _ = write!(html, "<tr><td>{row}</td><td>{:016x}</td></tr>", x);
    }
    html.push_str("</table>");
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=600"),
        ],
        html,
    )
}

fn app(variant: &str) -> Router {
    let route = get(page);
    let route = match variant {
        "uncached" => route,
        "layercache" => route.layer(ResponseCacheLayer::new("bench_pages")),
        "http-cache-tower-server" => {
            let manager = http_cache::MokaManager::new(moka::future::Cache::new(10_000));
            let options = ServerCacheOptions {
                default_ttl: Some(Duration::from_secs(600)),
                ..Default::default()
            };
            route
                .layer(ServerCacheLayer::new(manager).with_options(options))
                .handle_error(|e: Box<dyn std::error::Error + Send + Sync>| async move {
                    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                })
        }
        other => unreachable!("unknown variant {other}"),
    };
    Router::new().route("/page", route)
}

struct Run {
    requests: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    hits: u64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile_us(&self, q: f64) -> u32 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0)
    }
}

/// Reads more bytes into `buf` (the server must not close the connection).
async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = conn.read(&mut chunk).await.expect("read a response");
    assert!(n > 0, "the server closed the connection");
    buf.extend_from_slice(&chunk[..n]);
}

/// The end of the line starting at `from` (after its CRLF), once read.
async fn line_end(conn: &mut TcpStream, buf: &mut Vec<u8>, from: usize) -> usize {
    loop {
        if let Some(i) = buf[from..].windows(2).position(|w| w == b"\r\n") {
            return from + i + 2;
        }
        fill(conn, buf).await;
    }
}

/// Reads one response (a `content-length` or a chunked body); returns
/// whether it carried `x-cache: HIT`.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(conn, buf).await;
    };
    let head = std::str::from_utf8(&buf[..head_end]).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    let hit = lower.contains("\r\nx-cache: hit");
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("a numeric content-length"));
    let end = match length {
        Some(len) => {
            while buf.len() < head_end + len {
                fill(conn, buf).await;
            }
            head_end + len
        }
        None => {
            assert!(lower.contains("transfer-encoding: chunked"), "{head}");
            let mut at = head_end;
            loop {
                let size_end = line_end(conn, buf, at).await;
                let size = std::str::from_utf8(&buf[at..size_end - 2]).unwrap();
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .expect("a chunk size");
                if size == 0 {
                    break line_end(conn, buf, size_end).await;
                }
                while buf.len() < size_end + size + 2 {
                    fill(conn, buf).await;
                }
                at = size_end + size + 2;
            }
        }
    };
    assert_eq!(buf.len(), end, "one response at a time");
    hit
}

async fn load(addr: SocketAddr, connections: usize, duration: Duration) -> Run {
    const REQUEST: &[u8] = b"GET /page HTTP/1.1\r\nhost: bench\r\n\r\n";
    // Warm the cache (and the connection paths) first.
    {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        for _ in 0..100 {
            conn.write_all(REQUEST).await.unwrap();
            read_response(&mut conn, &mut buf).await;
        }
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                conn.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(16 * 1024);
                let mut lat = Vec::with_capacity(1 << 16);
                let mut hits = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    conn.write_all(REQUEST).await.unwrap();
                    hits += u64::from(read_response(&mut conn, &mut buf).await);
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                (lat, hits)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut hits = 0;
    for t in tasks {
        let (lat, h) = t.await.unwrap();
        latencies_us.extend(lat);
        hits += h;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Run {
        requests: latencies_us.len() as u64,
        elapsed,
        latencies_us,
        hits,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let secs: f64 = env_or("WEB_LOAD_SECS", 5.0);
    let connections: usize = env_or("WEB_LOAD_CONNECTIONS", 32);
    let duration = Duration::from_secs_f64(secs);
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "web_load: GET /page (4 KiB, ~{} µs to render), {connections} keep-alive connections, {secs} s per variant; server and load generator on one runtime thread each",
        render_cost_us()
    );
    println!(
        "{:<26} {:>11} {:>9} {:>9} {:>9} {:>8}",
        "variant", "requests/s", "p50 µs", "p99 µs", "max µs", "hits"
    );
    let mut results = Vec::new();
    for variant in ["uncached", "layercache", "http-cache-tower-server"] {
        let listener = server
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let serving = server.spawn(async move {
            axum::serve(listener, app(variant)).await.unwrap();
        });
        let run = client.block_on(load(addr, connections, duration));
        serving.abort();
        println!(
            "{:<26} {:>11.0} {:>9} {:>9} {:>9} {:>7.1}%",
            variant,
            run.rps(),
            run.quantile_us(0.5),
            run.quantile_us(0.99),
            run.latencies_us.last().copied().unwrap_or(0),
            run.hits as f64 * 100.0 / run.requests.max(1) as f64,
        );
        results.push((variant, run));
    }
    let rps = |v: &str| results.iter().find(|(n, _)| *n == v).unwrap().1.rps();
    let p99 = |v: &str| {
        results
            .iter()
            .find(|(n, _)| *n == v)
            .unwrap()
            .1
            .quantile_us(0.99) as f64
    };
    report::write_results(
        "web_load",
        &serde_json::json!({
            "connections": connections,
            "secs": secs,
            "render_us": render_cost_us(),
            "rows": results.iter().map(|(name, run)| serde_json::json!({
                "variant": name,
                "rps": run.rps(),
                "p50_us": run.quantile_us(0.5),
                "p99_us": run.quantile_us(0.99),
            })).collect::<Vec<_>>(),
        }),
    );
    println!(
        "ratio: layercache = {:.2}x the uncached route's requests/s, {:.2}x http-cache-tower-server's; p99 {:.2}x the peer's",
        rps("layercache") / rps("uncached"),
        rps("layercache") / rps("http-cache-tower-server"),
        p99("layercache") / p99("http-cache-tower-server").max(1.0),
    );
}

/// The page's render time, measured once (µs).
fn render_cost_us() -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let r = rt.block_on(page()).into_response();
        std::hint::black_box(r);
    }
    (t.elapsed() / n).as_micros() as u64
}
