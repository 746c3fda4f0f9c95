//! The guide's example app (`examples/web_app.rs`) driven over HTTP: a real
//! axum server on a loopback port, a real HTTP client.
//!
//! The tests share one process-wide cache, so each takes a lock: counters
//! read around a request belong to that request alone.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/web_app.rs"]
mod web_app;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

use layercache::web::ResponseCacheLayer;
use reqwest::{Client, Response};
use tokio::sync::{Mutex, MutexGuard};
use web_app::ORIGIN;

/// One server for the whole binary, on its own runtime (each test has its own).
fn server() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(format!("http://{}", listener.local_addr().unwrap()))
                    .unwrap();
                axum::serve(listener, web_app::app()).await.unwrap();
            });
        });
        rx.recv().expect("the server starts")
    })
}

async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

async fn get(path: &str) -> (String, String) {
    let resp = Client::new()
        .get(format!("{}{path}", server()))
        .send()
        .await
        .unwrap();
    let status = x_cache(&resp);
    (status, resp.text().await.unwrap())
}

fn x_cache(resp: &Response) -> String {
    resp.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_second_get_of_a_cached_view_is_a_hit_with_an_identical_body() {
    let _serial = serial().await;
    // Other tests may have cached the page already.
    layercache::invalidate_prefix_async("/expensive-page").await;
    let before = ORIGIN.page.load(Relaxed);
    let (first, body1) = get("/expensive-page").await;
    let (second, body2) = get("/expensive-page").await;
    assert_eq!(first, "MISS");
    assert_eq!(second, "HIT");
    assert_eq!(body1, body2, "the stored page, byte for byte");
    assert!(body1.starts_with("<h1>Expensive Page</h1>"));
    assert_eq!(
        ORIGIN.page.load(Relaxed) - before,
        1,
        "the handler ran once"
    );
}

#[tokio::test]
async fn a_hit_keeps_the_content_type_and_carries_an_age() {
    let _serial = serial().await;
    get("/expensive-page").await;
    let resp = Client::new()
        .get(format!("{}/expensive-page", server()))
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&resp), "HIT");
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert!(resp.headers().contains_key("age"));
}

async fn head(url: &str) -> Response {
    Client::new().head(url).send().await.unwrap()
}

fn content_length(resp: &Response) -> Option<usize> {
    resp.headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn a_head_after_a_get_is_a_hit_with_the_get_s_content_length_and_no_body() {
    let _serial = serial().await;
    layercache::invalidate_prefix_async("/products/77").await;
    let (status, body) = get("/products/77").await;
    assert_eq!(status, "MISS");
    let handled = ORIGIN.products.load(Relaxed);
    let resp = head(&format!("{}/products/77", server())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(x_cache(&resp), "HIT", "answered from the GET's page");
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(content_length(&resp), Some(body.len()));
    assert_eq!(resp.bytes().await.unwrap().len(), 0, "no body");
    assert_eq!(
        ORIGIN.products.load(Relaxed),
        handled,
        "the handler did not run"
    );
}

#[tokio::test]
async fn a_head_before_any_get_is_passed_on_and_stores_nothing() {
    let _serial = serial().await;
    layercache::invalidate_prefix_async("/products/79").await;
    let before = ORIGIN.products.load(Relaxed);
    for _ in 0..2 {
        let resp = head(&format!("{}/products/79", server())).await;
        assert_eq!(x_cache(&resp), "MISS");
        assert_eq!(resp.bytes().await.unwrap().len(), 0);
    }
    let (status, body) = get("/products/79").await;
    assert_eq!(status, "MISS", "a HEAD does not fill the page");
    assert!(
        body.starts_with("<h1>Product 79</h1>"),
        "the full body: {body}"
    );
    assert_eq!(
        ORIGIN.products.load(Relaxed) - before,
        3,
        "each HEAD reached the handler"
    );
    assert_eq!(get("/products/79").await.0, "HIT");
}

/// Serves `app` on a loopback port for the rest of the calling test.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_head_hit_through_a_layer_around_a_whole_router_keeps_the_content_length() {
    let _serial = serial().await;
    let inner = axum::Router::new().route(
        "/whole/page",
        axum::routing::get(|| async { "a page of 24 bytes, long" }),
    );
    // The layer wraps the router as a service: the router has already
    // stripped the body of a HEAD by the time the layer sees the answer.
    let wrapped = tower_layer::Layer::layer(&ResponseCacheLayer::new("whole_router"), inner);
    let url = serve(axum::Router::new().fallback_service(wrapped)).await;
    let first = head(&format!("{url}/whole/page")).await;
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(
        content_length(&first),
        Some(24),
        "passed on as the router sent it"
    );
    let get = Client::new()
        .get(format!("{url}/whole/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&get), "MISS", "the HEAD stored nothing");
    assert_eq!(get.text().await.unwrap(), "a page of 24 bytes, long");
    let hit = head(&format!("{url}/whole/page")).await;
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(content_length(&hit), Some(24));
    assert_eq!(hit.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn put_then_get_shows_the_update() {
    let _serial = serial().await;
    let client = Client::new();
    let url = format!("{}/user/42", server());
    let queries = ORIGIN.user.load(Relaxed);
    let user: web_app::User = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(user.name, "user 42");
    let again: web_app::User = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(again, user);
    assert_eq!(
        ORIGIN.user.load(Relaxed) - queries,
        1,
        "the second GET was a hit"
    );

    let put = client
        .put(&url)
        .json(&serde_json::json!({ "name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let updated: web_app::User = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(updated.name, "Ada", "the update dropped the cached profile");
    assert_eq!(ORIGIN.user.load(Relaxed) - queries, 2);
}

#[tokio::test]
async fn a_missing_user_is_a_cached_404() {
    let _serial = serial().await;
    let queries = ORIGIN.user.load(Relaxed);
    for _ in 0..5 {
        let resp = Client::new()
            .get(format!("{}/user/4040", server()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(
        ORIGIN.user.load(Relaxed) - queries,
        1,
        "None is cached (guide 7.2)"
    );
}

#[tokio::test]
async fn no_store_responses_are_never_cached_and_the_next_request_passes() {
    let _serial = serial().await;
    let before = ORIGIN.live.load(Relaxed);
    let (first, body1) = get("/live-score").await;
    let (second, body2) = get("/live-score").await;
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("MISS", "BYPASS"),
        "the page is remembered as not storable (hit-for-pass)"
    );
    assert_ne!(body1, body2);
    assert_eq!(ORIGIN.live.load(Relaxed) - before, 2);
}

#[tokio::test]
async fn a_500_is_not_cached_and_the_next_success_is() {
    let _serial = serial().await;
    let before = ORIGIN.report.load(Relaxed);
    for expected in ["MISS", "BYPASS"] {
        let resp = Client::new()
            .get(format!("{}/report?fail=1", server()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        assert_eq!(x_cache(&resp), expected);
        assert_eq!(resp.text().await.unwrap(), "report failed");
    }
    assert_eq!(
        ORIGIN.report.load(Relaxed) - before,
        2,
        "each failure reached the handler"
    );
    let (first, _) = get("/report?fail=0").await;
    let (second, _) = get("/report?fail=0").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
}

#[tokio::test]
async fn query_string_order_does_not_matter_when_sorting_is_on() {
    let _serial = serial().await;
    let before = ORIGIN.products.load(Relaxed);
    let (first, body1) = get("/products?sort=price&page=3").await;
    let (second, body2) = get("/products?page=3&sort=price").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(body1, body2);
    let (other, _) = get("/products?page=4&sort=price").await;
    assert_eq!(other, "MISS", "other values are another page");
    assert_eq!(ORIGIN.products.load(Relaxed) - before, 2);
}

#[tokio::test]
async fn a_prefix_invalidation_drops_every_product_page() {
    let _serial = serial().await;
    get("/products?page=9").await;
    get("/products/9").await;
    assert_eq!(get("/products?page=9").await.0, "HIT");
    assert_eq!(get("/products/9").await.0, "HIT");
    let resp = Client::new()
        .put(format!("{}/products/9", server()))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(x_cache(&resp), "", "PUTs are not under the view cache");
    assert_eq!(get("/products?page=9").await.0, "MISS");
    assert_eq!(get("/products/9").await.0, "MISS");
    assert_eq!(get("/expensive-page").await.0, "HIT", "other pages stay");
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_streamed_whole_and_not_stored() {
    let _serial = serial().await;
    let before = ORIGIN.export.load(Relaxed);
    for expected in ["MISS", "BYPASS"] {
        let resp = Client::new()
            .get(format!("{}/export", server()))
            .send()
            .await
            .unwrap();
        assert_eq!(x_cache(&resp), expected);
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), 64 * 1024);
        for (i, chunk) in body.chunks(1024).enumerate() {
            assert!(
                chunk.iter().all(|&b| b == b'a' + (i % 26) as u8),
                "chunk {i} intact"
            );
        }
    }
    assert_eq!(ORIGIN.export.load(Relaxed) - before, 2);
}

#[tokio::test]
async fn requests_with_authorization_bypass_the_view_cache() {
    let _serial = serial().await;
    get("/expensive-page").await;
    let resp = Client::new()
        .get(format!("{}/expensive-page", server()))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&resp), "BYPASS");
    let pages = layercache::stats();
    assert!(pages.function("pages").unwrap().bypassed >= 1);
}

#[tokio::test]
async fn a_template_fragment_is_rendered_once_per_timeout() {
    let _serial = serial().await;
    let before = ORIGIN.sidebar.load(Relaxed);
    let (_, page1) = get("/dashboard").await;
    let (_, page2) = get("/dashboard").await;
    assert!(
        page1.contains("<div class=\"sidebar\"><div>Home</div>"),
        "{page1}"
    );
    assert_ne!(page1, page2, "the page itself is rendered each time");
    let sidebar = |p: &str| p[..p.find("<p>").unwrap()].to_string();
    assert_eq!(sidebar(&page1), sidebar(&page2));
    assert!(
        ORIGIN.sidebar.load(Relaxed) - before <= 1,
        "the fragment came from the cache"
    );
}

#[tokio::test]
async fn the_manual_cache_routes_set_and_clear() {
    let _serial = serial().await;
    let (_, first) = get("/manual-cache").await;
    let (_, second) = get("/manual-cache").await;
    assert_eq!(first, second);
    let (_, cleared) = get("/clear-cache").await;
    let cleared: serde_json::Value = serde_json::from_str(&cleared).unwrap();
    assert_eq!(cleared["deleted_my_key"], true);
    let (_, third) = get("/manual-cache").await;
    assert_ne!(third, first);
}

#[tokio::test]
async fn data_search_popular_and_news_answer_from_their_cached_functions() {
    let _serial = serial().await;
    let (_, d1) = get("/data").await;
    let (_, d2) = get("/data").await;
    assert_eq!(d1, d2);
    let (_, s) = get("/search?q=rust&page=2").await;
    let s: Vec<String> = serde_json::from_str(&s).unwrap();
    assert_eq!(s[0], "rust result 1 on page 2");
    let (_, p) = get("/popular-products").await;
    assert!(p.contains("keyboard"));
    let (_, n1) = get("/news").await;
    let (_, n2) = get("/news").await;
    assert_eq!(n1, n2);
    let stats = layercache::stats();
    for name in ["search", "popular_products", "latest_news"] {
        assert!(stats.function(name).unwrap().requests() >= 1, "{name}");
    }
}

#[tokio::test]
async fn the_stats_endpoint_returns_json_per_function() {
    let _serial = serial().await;
    get("/expensive-page").await;
    get("/expensive-page").await;
    let (_, json) = get("/cache-stats").await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let pages = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "pages")
        .unwrap();
    for field in [
        "hits",
        "misses",
        "hit_rate",
        "local_hits",
        "shared_hits",
        "entries",
        "errors",
        "hit_latency",
        "origin_latency",
        "shared",
    ] {
        assert!(pages.get(field).is_some(), "{field}");
    }
    let stats = layercache::stats();
    let now = stats.function("pages").unwrap();
    assert_eq!(pages["hits"], now.hits);
    assert_eq!(pages["misses"], now.misses);
}

#[tokio::test]
async fn prometheus_output_parses_and_agrees_with_stats() {
    let _serial = serial().await;
    get("/expensive-page").await;
    get("/user/1").await;
    let (_, text) = get("/cache-stats/metrics").await;
    let stats = layercache::stats();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let mut seen: HashMap<(String, String), f64> = HashMap::new();
    for sample in &scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => continue,
        };
        if let Some(function) = sample.labels.get("function") {
            seen.insert((sample.metric.clone(), function.to_string()), value);
        }
    }
    assert!(!stats.functions.is_empty());
    for f in &stats.functions {
        let at = |m: &str| seen.get(&(m.to_string(), f.name.clone())).copied();
        assert_eq!(
            at("layercache_hits_total"),
            Some(f.hits as f64),
            "{}",
            f.name
        );
        assert_eq!(
            at("layercache_misses_total"),
            Some(f.misses as f64),
            "{}",
            f.name
        );
        assert_eq!(
            at("layercache_local_hits_total"),
            Some(f.local_hits as f64),
            "{}",
            f.name
        );
        assert_eq!(
            at("layercache_entries"),
            Some(f.entries as f64),
            "{}",
            f.name
        );
    }
    let summaries = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "layercache_origin_duration_seconds")
        .count();
    assert!(
        summaries >= stats.functions.len(),
        "one summary per function"
    );
}

#[tokio::test]
async fn the_html_stats_page_has_a_bar_per_function() {
    let _serial = serial().await;
    get("/expensive-page").await;
    let resp = Client::new()
        .get(format!("{}/cache-stats/ui", server()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    for f in layercache::stats().functions {
        assert!(html.contains(&format!(">{}</text>", f.name)), "{}", f.name);
    }
}

/// The `data-f` cells of each `data-function` row of the stats page.
fn page_numbers(html: &str) -> HashMap<String, HashMap<String, String>> {
    let mut rows = HashMap::new();
    for row in html.split("<tr data-function=\"").skip(1) {
        let name = row.split('"').next().unwrap().replace("&amp;", "&");
        let mut cells = HashMap::new();
        for cell in row
            .split("</tr>")
            .next()
            .unwrap()
            .split("data-f=\"")
            .skip(1)
        {
            let (field, rest) = cell.split_once("\">").unwrap();
            let value = rest.split('<').next().unwrap();
            cells.insert(field.to_string(), value.to_string());
        }
        rows.insert(name, cells);
    }
    rows
}

/// Every counter the page shows for every function equals `stats`.
fn assert_page_numbers_equal_stats(html: &str, stats: &layercache::Stats) {
    let rows = page_numbers(html);
    assert_eq!(rows.len(), stats.functions.len(), "one row per function");
    for f in &stats.functions {
        let row = &rows[&f.name];
        let expected = [
            ("requests", f.hits + f.misses + f.bypassed),
            ("local_hits", f.local_hits),
            ("coalesced", f.coalesced),
            ("misses", f.misses),
            ("bypassed", f.bypassed),
            ("entries", f.entries),
            ("errors", f.shared.errors()),
        ];
        for (field, value) in expected {
            assert_eq!(row[field], value.to_string(), "{} {field}", f.name);
        }
        assert!(
            !row.contains_key("shared_hits"),
            "no shared column without a shared tier"
        );
    }
}

#[tokio::test]
async fn the_stats_page_shows_every_outcome_and_its_numbers_equal_stats() {
    let _serial = serial().await;
    get("/expensive-page").await;
    get("/expensive-page").await;
    get("/live-score").await; // not storable: a miss, then bypasses
    get("/live-score").await;
    let client = Client::new();
    client
        .get(format!("{}/expensive-page", server()))
        .header("cookie", "session=1")
        .send()
        .await
        .unwrap();
    let html = client
        .get(format!("{}/cache-stats/ui/", server()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stats = layercache::stats();
    assert_page_numbers_equal_stats(&html, &stats);
    for shown in [
        "local hits",
        "coalesced waits",
        "misses",
        "bypassed",
        "hit p99",
        "origin p99",
        "cache type",
        "snapshot taken",
        "invalidation bus",
    ] {
        assert!(html.contains(shown), "the page shows {shown}");
    }
    assert!(
        !html.contains("shared hits"),
        "no shared tier, no shared bar"
    );
    let pages = stats.function("pages").unwrap();
    assert!(
        pages.bypassed >= 2,
        "the cookie request and the pass were counted"
    );
}

#[tokio::test]
async fn the_stats_routes_answer_with_a_trailing_slash() {
    let _serial = serial().await;
    for path in [
        "/cache-stats",
        "/cache-stats/",
        "/cache-stats/ui/",
        "/cache-stats/metrics/",
    ] {
        let resp = Client::new()
            .get(format!("{}{path}", server()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_html_stats_page_renders_in_headless_chromium() {
    let _serial = serial().await;
    get("/expensive-page").await;
    let url = format!("{}/cache-stats/ui", server());
    let dir = std::env::temp_dir().join(format!("layercache-chromium-{}", std::process::id()));
    let shot = dir.join("stats.png");
    let dom = tokio::task::spawn_blocking(move || {
        let chromium = |args: &[&str]| {
            let out = std::process::Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                    "--window-size=1000,800",
                ])
                .arg(format!("--user-data-dir={}", dir.join("profile").display()))
                .args(args)
                .output()
                .expect("chromium is on PATH (scripts/test.sh installs Debian's chromium)");
            assert!(
                out.status.success(),
                "chromium failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let dom = chromium(&["--dump-dom", &url]);
        chromium(&[&format!("--screenshot={}", shot.display()), &url]);
        let png = std::fs::read(&shot).expect("a screenshot");
        let _ = std::fs::remove_dir_all(&dir);
        (String::from_utf8_lossy(&dom).into_owned(), png)
    })
    .await
    .unwrap();
    let (dom, png) = dom;
    let stats = layercache::stats();
    assert!(
        dom.contains("layercache: where each request was answered"),
        "{dom}"
    );
    assert_page_numbers_equal_stats(&dom, &stats);
    assert!(dom.contains("<rect"), "the chart rendered");
    assert!(dom.contains(">pages</text>"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank image: {} bytes",
        png.len()
    );
}

/// How many runs of a handler are in progress, and the most seen at once.
#[derive(Default)]
struct Overlap {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    runs: std::sync::atomic::AtomicUsize,
}

#[tokio::test]
async fn concurrent_requests_for_a_page_that_cannot_be_stored_run_the_handler_at_once() {
    let _serial = serial().await;
    let overlap = std::sync::Arc::new(Overlap::default());
    // Each run waits for a permit the test hands out, so the runs in
    // progress can be counted while they are all in the handler.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (o, g) = (overlap.clone(), gate.clone());
    let handler = move || {
        let (o, g) = (o.clone(), g.clone());
        async move {
            o.runs.fetch_add(1, Relaxed);
            let now = o.now.fetch_add(1, Relaxed) + 1;
            o.max.fetch_max(now, Relaxed);
            g.acquire().await.unwrap().forget();
            o.now.fetch_sub(1, Relaxed);
            ([(axum::http::header::CACHE_CONTROL, "no-store")], "live")
        }
    };
    let app = axum::Router::new()
        .route("/pass/live", axum::routing::get(handler))
        .layer(ResponseCacheLayer::new("pass_concurrency"));
    let url = format!("{}/pass/live", serve(app).await);

    gate.add_permits(1);
    let first = Client::new().get(&url).send().await.unwrap();
    assert_eq!(
        x_cache(&first),
        "MISS",
        "the first answer shows the page is not storable"
    );
    let bypassed = || {
        layercache::stats()
            .function("pass_concurrency")
            .unwrap()
            .bypassed
    };
    let bypassed_before = bypassed();

    let client = Client::new();
    let requests: Vec<_> = (0..8)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    // All eight reach the handler together; before hit-for-pass, seven
    // would wait on the first one's flight and this would never happen.
    let mut polls = 0;
    while overlap.now.load(Relaxed) < 8 {
        polls += 1;
        assert!(
            polls < 10_000,
            "only {} of 8 requests reached the handler at once: they were serialised",
            overlap.now.load(Relaxed)
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    gate.add_permits(8);
    for r in requests {
        let resp = r.await.unwrap().unwrap();
        assert_ne!(x_cache(&resp), "HIT");
        assert_eq!(
            x_cache(&resp),
            "BYPASS",
            "the page is remembered as not storable"
        );
        assert_eq!(resp.text().await.unwrap(), "live");
    }
    assert!(overlap.max.load(Relaxed) >= 2, "the runs overlapped");
    assert_eq!(
        overlap.runs.load(Relaxed),
        9,
        "each request ran the handler once"
    );
    assert_eq!(bypassed() - bypassed_before, 8, "counted as bypassed");
}

#[tokio::test]
async fn a_page_remembered_as_not_storable_is_cached_again_once_it_answers_storably() {
    let _serial = serial().await;
    let private = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (p, r) = (private.clone(), runs.clone());
    let handler = move || {
        let (p, r) = (p.clone(), r.clone());
        async move {
            r.fetch_add(1, Relaxed);
            let cc = if p.load(Relaxed) { "private" } else { "public" };
            ([(axum::http::header::CACHE_CONTROL, cc)], "page")
        }
    };
    let app = axum::Router::new()
        .route("/pass/flip", axum::routing::get(handler))
        .layer(ResponseCacheLayer::new("pass_flip"));
    let url = format!("{}/pass/flip", serve(app).await);
    let status = || async { x_cache(&Client::new().get(&url).send().await.unwrap()) };
    assert_eq!(status().await, "MISS", "private: not stored");
    assert_eq!(status().await, "BYPASS", "remembered");
    private.store(false, Relaxed);
    assert_eq!(
        status().await,
        "BYPASS",
        "still remembered; this storable answer ends it"
    );
    assert_eq!(
        status().await,
        "MISS",
        "through the cache again, and stored"
    );
    assert_eq!(status().await, "HIT");
    assert_eq!(runs.load(Relaxed), 4);
}

#[tokio::test]
async fn with_vary_by_accept_language_each_language_is_its_own_page_and_hits_on_its_second_request()
{
    let _serial = serial().await;
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let handler = move |headers: axum::http::HeaderMap| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Relaxed);
            let lang = headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("en")
                .to_string();
            let text = if lang.starts_with("de") {
                "Guten Tag"
            } else {
                "Good day"
            };
            ([(axum::http::header::VARY, "Accept-Language")], text)
        }
    };
    let app = axum::Router::new()
        .route("/vary/greeting", axum::routing::get(handler))
        .layer(
            ResponseCacheLayer::new("vary_pages").vary_by([axum::http::header::ACCEPT_LANGUAGE]),
        );
    let url = format!("{}/vary/greeting", serve(app).await);
    let fetch = |lang: &'static str| {
        let url = url.clone();
        async move {
            let resp = Client::new()
                .get(url)
                .header("accept-language", lang)
                .send()
                .await
                .unwrap();
            (x_cache(&resp), resp.text().await.unwrap())
        }
    };
    let en1 = fetch("en").await;
    let de1 = fetch("de").await;
    assert_eq!(en1, ("MISS".to_string(), "Good day".to_string()));
    assert_eq!(
        de1,
        ("MISS".to_string(), "Guten Tag".to_string()),
        "not the English page"
    );
    assert_eq!(
        fetch("en").await,
        ("HIT".to_string(), "Good day".to_string())
    );
    assert_eq!(
        fetch("de").await,
        ("HIT".to_string(), "Guten Tag".to_string())
    );
    assert_eq!(runs.load(Relaxed), 2, "one run per language");
}

#[tokio::test]
async fn a_cache_when_filter_that_keeps_404s_makes_the_second_404_a_hit() {
    let _serial = serial().await;
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let missing = |runs: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Relaxed);
                (axum::http::StatusCode::NOT_FOUND, "no such page")
            }
        }
    };
    let keeps_404s = ResponseCacheLayer::new("cache_when_404").cache_when(|head| {
        head.status.is_success() || head.status == axum::http::StatusCode::NOT_FOUND
    });
    let default = ResponseCacheLayer::new("cache_when_default");
    let app = axum::Router::new()
        .route(
            "/probe/kept",
            axum::routing::get(missing(runs.clone())).layer(keeps_404s),
        )
        .route(
            "/probe/default",
            axum::routing::get(missing(runs.clone())).layer(default),
        );
    let url = serve(app).await;
    let fetch = |path: &'static str| {
        let url = format!("{url}{path}");
        async move {
            let resp = Client::new().get(url).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            let x = x_cache(&resp);
            assert_eq!(resp.text().await.unwrap(), "no such page");
            x
        }
    };
    assert_eq!(fetch("/probe/kept").await, "MISS");
    assert_eq!(fetch("/probe/kept").await, "HIT", "the 404 was stored");
    assert_eq!(runs.load(Relaxed), 1);
    assert_eq!(fetch("/probe/default").await, "MISS");
    assert_ne!(
        fetch("/probe/default").await,
        "HIT",
        "without the filter a 404 is not stored"
    );
    assert_eq!(runs.load(Relaxed), 3);
}
