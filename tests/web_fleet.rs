//! The guide's example app (`examples/web_app.rs`) on Redis, as a fleet:
//! two OS processes serve the app with `CACHE_TYPE=redis` against one real
//! `redis-server` on a free loopback port, and the test drives both over
//! HTTP.
//!
//! Every route of the app is driven on the fleet, each with what shows the
//! two processes share one cache: values one computed served by the other
//! (equal bodies, shared hits in its stats), invalidations and
//! `/clear-cache` in one reaching the other, and pages that must not be
//! stored never reaching Redis.
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
use reqwest::{Client, Method};

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
    request(node, Method::GET, path).await
}

/// A request with the fleet's public host; the `x-cache` header and the body.
async fn request(node: &Node, method: Method, path: &str) -> (String, String) {
    let resp = Client::new()
        .request(method, format!("{}{path}", node.url))
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

/// `field` of `function` in `node`'s stats endpoint (JSON); 0 before the
/// function's first call.
async fn stat(node: &Node, function: &str, field: &str) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&get(node, "/cache-stats").await.1).unwrap();
    stats["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == function)
        .and_then(|f| f[field].as_u64())
        .unwrap_or(0)
}

/// `user_profile`'s misses in `node`, from its stats endpoint.
async fn profile_misses(node: &Node) -> u64 {
    stat(node, "user_profile", "misses").await
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

async fn post_put_and_delete_in_one_process_drop_the_page_in_both(a: &Node, b: &Node) {
    let path = "/articles/7";
    assert_eq!(get(a, path).await.0, "MISS");
    assert_eq!(get(b, path).await.0, "HIT", "shared through Redis");
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let (x, body) = request(b, method.clone(), path).await;
        assert_eq!((x.as_str(), body.as_str()), ("BYPASS", "article 7 changed"));
        // B dropped its copy and Redis's at once; A's goes with the notice,
        // after which A reads the page B renders now.
        let (x, fresh) = get(b, path).await;
        assert_eq!(x, "MISS", "{method} in B dropped B's page");
        let seen = within(Duration::from_millis(500), async || {
            get(a, path).await.1 == fresh
        })
        .await;
        assert!(seen.is_some(), "{method} in B dropped A's page");
        let (x, _) = request(a, method.clone(), path).await;
        assert_eq!(x, "BYPASS");
        let dropped = within(Duration::from_millis(500), async || {
            get(b, path).await.0 == "MISS"
        })
        .await;
        assert!(dropped.is_some(), "{method} in A dropped B's page");
    }
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

async fn a_head_in_one_process_is_answered_from_the_page_the_other_stored(a: &Node, b: &Node) {
    let (first, page) = get(a, "/products/5").await;
    assert_eq!(first, "MISS");
    let resp = Client::new()
        .head(format!("{}/products/5", b.url))
        .header("host", "shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-cache"], "HIT", "from Redis");
    assert_eq!(
        resp.headers()["content-length"].to_str().unwrap(),
        page.len().to_string(),
        "the length of A's page"
    );
    assert!(resp.bytes().await.unwrap().is_empty());
}

async fn a_cached_function_s_value_computed_by_one_process_is_served_by_the_other(
    a: &Node,
    b: &Node,
) {
    // Both bodies carry the time they were computed: equal bodies mean one
    // computation.
    for path in ["/data", "/news"] {
        let (_, there) = get(a, path).await;
        let (_, here) = get(b, path).await;
        assert_eq!(here, there, "{path}: B served A's value");
    }
    // Same results whoever computes them: the other process's stats tell.
    for (path, function) in [
        ("/search?q=fleet&page=2", "search"),
        ("/popular-products", "popular_products"),
    ] {
        let (_, there) = get(a, path).await;
        let before = stat(b, function, "shared_hits").await;
        let (_, here) = get(b, path).await;
        assert_eq!(here, there, "{path}");
        assert_eq!(
            stat(b, function, "shared_hits").await,
            before + 1,
            "{path}: a shared hit in B"
        );
    }
    let search: Vec<String> =
        serde_json::from_str(&get(b, "/search?q=fleet&page=2").await.1).unwrap();
    assert_eq!(search[0], "fleet result 1 on page 2");
}

async fn a_user_and_a_missing_user_read_by_one_process_are_shared_hits_in_the_other(
    a: &Node,
    b: &Node,
) {
    for (path, status) in [("/user/11", 200), ("/user/4041", 404)] {
        let resp = Client::new()
            .get(format!("{}{path}", a.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path} in A");
        let before = stat(b, "user_profile", "shared_hits").await;
        let resp = Client::new()
            .get(format!("{}{path}", b.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path} in B");
        assert_eq!(
            stat(b, "user_profile", "shared_hits").await,
            before + 1,
            "{path}: B read A's entry (a missing user is cached too)"
        );
    }
}

async fn the_manual_cache_and_a_template_fragment_are_shared(
    a: &Node,
    b: &Node,
    redis: &RedisServer,
) {
    let (_, set_by_a) = get(a, "/manual-cache").await;
    assert!(
        set_by_a.starts_with("expensive operation at "),
        "{set_by_a}"
    );
    let (_, read_by_b) = get(b, "/manual-cache").await;
    assert_eq!(read_by_b, set_by_a, "B read the value A set");

    let (_, dashboard_a) = get(a, "/dashboard").await;
    assert!(
        redis
            .keys_matching("webfleet:fragment:*")
            .contains(&"webfleet:fragment:sidebar-content".to_string()),
        "the fragment is stored in Redis"
    );
    let before = stat(b, layercache::MANUAL_CACHE_NAME, "shared_hits").await;
    let (_, dashboard_b) = get(b, "/dashboard").await;
    let sidebar = |p: &str| p[..p.find("<p>").unwrap()].to_string();
    assert_eq!(sidebar(&dashboard_b), sidebar(&dashboard_a));
    assert!(dashboard_b.contains("<div>Home</div>"), "{dashboard_b}");
    assert_eq!(
        stat(b, layercache::MANUAL_CACHE_NAME, "shared_hits").await,
        before + 1,
        "B's sidebar came from Redis"
    );
}

async fn pages_that_cannot_be_stored_never_reach_redis(a: &Node, b: &Node, redis: &RedisServer) {
    for node in [a, b] {
        let (first, one) = get(node, "/live-score").await;
        let (second, two) = get(node, "/live-score").await;
        assert_ne!(one, two, "no-store: rendered each time");
        assert_eq!((first.as_str(), second.as_str()), ("MISS", "BYPASS"));
        assert_ne!(get(node, "/report?fail=1").await.0, "HIT");
        let (x, export) = get(node, "/export").await;
        assert_ne!(x, "HIT");
        assert_eq!(export.len(), 64 * 1024);
    }
    let stored = redis.keys_matching("webfleet:*");
    for page in ["/live-score", "/report", "/export"] {
        assert!(
            !stored
                .iter()
                .any(|k| k.starts_with(&format!("webfleet:{page}"))),
            "{page} is not in Redis: {stored:?}"
        );
    }
}

async fn the_stats_endpoints_of_each_process_describe_the_shared_tier(b: &Node) {
    let (_, json) = get(b, "/cache-stats").await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["shared_tier"]["bus_subscribed"], true, "{json}");
    assert_eq!(json["shared_tier"]["breaker_open"], false);
    assert_eq!(json["shared_tier"]["bus"]["status"], "up", "{json}");
    assert_eq!(json["shared_tier"]["invalidations_pending"], 0, "{json}");
    let pages = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "pages")
        .expect("the pages layer");
    assert!(pages["shared_hits"].as_u64() >= Some(1), "{pages}");
    let (_, html) = get(b, "/cache-stats/ui").await;
    assert!(html.starts_with("<!DOCTYPE html>"));
    // The bus line shows its status and the outbox, as stats() does.
    assert!(
        html.contains("<td id=\"bus\">up, ") && html.contains("0 invalidations pending"),
        "{html}"
    );
    for name in ["pages", "product_pages", "user_profile", "search"] {
        assert!(html.contains(&format!(">{name}</text>")), "{name}");
    }
}

async fn clear_cache_in_one_process_empties_the_other(a: &Node, b: &Node) {
    let (_, before) = get(b, "/manual-cache").await;
    get(b, "/expensive-page").await;
    assert_eq!(get(b, "/expensive-page").await.0, "HIT", "B holds the page");
    let (_, cleared) = get(a, "/clear-cache").await;
    let cleared: serde_json::Value = serde_json::from_str(&cleared).unwrap();
    assert_eq!(cleared["deleted_my_key"], true, "{cleared}");
    let gone = within(Duration::from_millis(500), async || {
        get(b, "/expensive-page").await.0 == "MISS"
    })
    .await;
    let gone = gone.expect("B's page was dropped");
    println!("    B's /expensive-page was dropped {gone:?} after A's /clear-cache");
    let (_, after) = get(b, "/manual-cache").await;
    assert_ne!(after, before, "my_key was recomputed");
}

/// One version per namespace, fleet-wide: the view caches and the manual
/// cache share the empty namespace, and a `/clear-cache` moves it once, so
/// afterwards (twice in a row) a page A renders is a shared hit in B.
async fn after_clear_cache_a_page_rendered_by_one_process_is_a_hit_in_the_other(
    a: &Node,
    b: &Node,
) {
    for round in 0..2 {
        get(a, "/clear-cache").await;
        // Let B hear the new version (a notice), as any later request would.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (first, page) = get(a, "/expensive-page").await;
        assert_eq!(first, "MISS", "round {round}: the clear dropped A's page");
        let (there, same) = get(b, "/expensive-page").await;
        assert_eq!(
            there, "HIT",
            "round {round}: B reads A's page from Redis after the clear"
        );
        assert_eq!(same, page);
    }
}

fn main() {
    if std::env::var_os("LAYERCACHE_WEB_NODE").is_some() {
        node();
        return;
    }
    let redis = RedisServer::start_unmonitored();
    let (a, b) = (Node::spawn(&redis), Node::spawn(&redis));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let passed = rt.block_on(async {
        let mut passed = 0;
        macro_rules! run {
            ($test:ident($($arg:expr),*)) => {
                println!("test {} ...", stringify!($test));
                $test($($arg),*).await;
                passed += 1;
            };
        }
        run!(a_page_rendered_by_one_process_is_a_hit_in_the_other(&a, &b));
        // Before any other page is read from Redis by B.
        run!(the_stats_of_the_other_process_count_the_shared_hit(&b));
        run!(a_head_in_one_process_is_answered_from_the_page_the_other_stored(&a, &b));
        run!(a_cached_function_s_value_computed_by_one_process_is_served_by_the_other(&a, &b));
        run!(a_user_and_a_missing_user_read_by_one_process_are_shared_hits_in_the_other(&a, &b));
        run!(an_update_in_one_process_reaches_the_other(&a, &b));
        run!(a_prefix_invalidation_in_one_process_drops_the_other_s_pages(&a, &b));
        run!(post_put_and_delete_in_one_process_drop_the_page_in_both(
            &a, &b
        ));
        run!(the_manual_cache_and_a_template_fragment_are_shared(
            &a, &b, &redis
        ));
        run!(pages_that_cannot_be_stored_never_reach_redis(
            &a, &b, &redis
        ));
        run!(the_stats_endpoints_of_each_process_describe_the_shared_tier(&b));
        // Last: it empties every cache of the fleet.
        run!(clear_cache_in_one_process_empties_the_other(&a, &b));
        run!(after_clear_cache_a_page_rendered_by_one_process_is_a_hit_in_the_other(&a, &b));
        passed
    });
    let pages = redis.keys_matching("webfleet:*");
    assert!(
        pages
            .iter()
            .any(|k| k.starts_with("webfleet:/expensive-page")),
        "the page is stored in Redis: {pages:?}"
    );
    println!("\ntest result: ok. {passed} passed; 0 failed");
}
