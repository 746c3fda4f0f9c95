//! The guide's example app (`examples/web_app.rs`) on Redis, as a fleet:
//! two OS processes serve the app with `CACHE_TYPE=redis` against one real
//! `redis-server` on a free loopback port, and the test drives both over
//! HTTP.
//!
//! A `harness = false` test: run without arguments it is the parent; with
//! `LAYERCACHE_WEB_NODE=1` it is a node that serves the app and prints its
//! address.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/web_app.rs"]
mod web_app;

#[path = "support/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use reqwest::Client;

/// Node side: wait for the invalidation bus, serve the app, print the address.
fn node() {
    let rt = tokio::runtime::Runtime::new().expect("node runtime");
    rt.block_on(async {
        let started = Instant::now();
        // The first use of the cache brings the shared tier (and its bus) up.
        let _ = layercache::future::Cache::global().get::<u8>("warm").await;
        while !layercache::stats()
            .shared_tier
            .is_some_and(|t| t.bus_subscribed)
        {
            assert!(started.elapsed() < Duration::from_secs(10), "no bus");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ADDR http://{}", listener.local_addr().unwrap());
        axum::serve(listener, web_app::app()).await.unwrap();
    });
}

/// A node process, killed on drop.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn spawn(redis: &RedisServer) -> Node {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("LAYERCACHE_WEB_NODE", "1")
            .env("CACHE_TYPE", "redis")
            .env("CACHE_REDIS_URL", redis.url())
            .env("CACHE_KEY_PREFIX", "webfleet")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the node prints its address");
        let url = line
            .trim()
            .strip_prefix("ADDR ")
            .unwrap_or_else(|| panic!("unexpected node output {line:?}"))
            .to_string();
        Node { child, url }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(node: &Node, path: &str) -> (String, String) {
    let resp = Client::new()
        .get(format!("{}{path}", node.url))
        // Both instances serve one public host, as behind a load balancer
        // (pages are keyed by host).
        .header("host", "shop.example")
        .send()
        .await
        .unwrap();
    let x = resp
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (x, resp.text().await.unwrap())
}

/// Polls `f` every 2 ms until it holds, for at most `limit`.
async fn within(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

async fn a_page_rendered_by_one_process_is_a_hit_in_the_other(a: &Node, b: &Node) {
    let (first, page) = get(a, "/expensive-page").await;
    assert_eq!(first, "MISS");
    let (there, same) = get(b, "/expensive-page").await;
    assert_eq!(
        there, "HIT",
        "B never rendered the page: it came from Redis"
    );
    assert_eq!(same, page);
}

/// `user_profile`'s misses in `node`, from its stats endpoint.
async fn profile_misses(node: &Node) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&get(node, "/cache-stats").await.1).unwrap();
    stats["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "user_profile")
        .and_then(|f| f["misses"].as_u64())
        .unwrap_or(0)
}

async fn an_update_in_one_process_reaches_the_other(a: &Node, b: &Node) {
    let (_, before) = get(b, "/user/7").await;
    assert!(before.contains("\"user 7\""), "{before}");
    let misses = profile_misses(b).await;
    get(b, "/user/7").await;
    assert_eq!(profile_misses(b).await, misses, "B holds user 7");
    let put = Client::new()
        .put(format!("{}/user/7", a.url))
        .json(&serde_json::json!({ "name": "Grace" }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    // Each process has its own toy "database", so B's fresh answer is its
    // own; what shows the update reached B is that B queries again.
    let dropped = within(Duration::from_millis(500), async || {
        get(b, "/user/7").await;
        profile_misses(b).await > misses
    })
    .await;
    let dropped = dropped.expect("B dropped its copy of user 7");
    println!("    B dropped user 7 {dropped:?} after A's update");
}

async fn a_prefix_invalidation_in_one_process_drops_the_other_s_pages(a: &Node, b: &Node) {
    get(b, "/products?page=1").await;
    assert_eq!(get(b, "/products?page=1").await.0, "HIT");
    let put = Client::new()
        .put(format!("{}/products/1", a.url))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let gone = within(Duration::from_millis(500), async || {
        get(b, "/products?page=1").await.0 == "MISS"
    })
    .await;
    let gone = gone.expect("B's product page was dropped");
    println!("    B's /products page was dropped {gone:?} after A's update");
}

async fn the_stats_of_the_other_process_count_the_shared_hit(b: &Node) {
    let (_, text) = get(b, "/cache-stats/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let shared_hits = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "layercache_shared_hits_total" && s.labels.get("function") == Some("pages")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        });
    assert_eq!(shared_hits, Some(1.0));
}

fn main() {
    if std::env::var_os("LAYERCACHE_WEB_NODE").is_some() {
        node();
        return;
    }
    let redis = RedisServer::start_unmonitored();
    let (a, b) = (Node::spawn(&redis), Node::spawn(&redis));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!("test a_page_rendered_by_one_process_is_a_hit_in_the_other ...");
        a_page_rendered_by_one_process_is_a_hit_in_the_other(&a, &b).await;
        println!("test the_stats_of_the_other_process_count_the_shared_hit ...");
        the_stats_of_the_other_process_count_the_shared_hit(&b).await;
        println!("test an_update_in_one_process_reaches_the_other ...");
        an_update_in_one_process_reaches_the_other(&a, &b).await;
        println!("test a_prefix_invalidation_in_one_process_drops_the_other_s_pages ...");
        a_prefix_invalidation_in_one_process_drops_the_other_s_pages(&a, &b).await;
    });
    let pages = redis.keys_matching("webfleet:*");
    assert!(
        pages
            .iter()
            .any(|k| k.starts_with("webfleet:/expensive-page")),
        "the page is stored in Redis: {pages:?}"
    );
    println!("\ntest result: ok. 4 passed; 0 failed");
}
