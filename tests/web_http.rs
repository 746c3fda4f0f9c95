//! The view cache against the HTTP caching rules of RFC 9111, over real
//! HTTP: an axum server on a loopback port, a real client, time from a mock
//! clock (no sleeping). Each test has its own layer name (its own pages).
#![cfg(feature = "axum")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use layercache::web::ResponseCacheLayer;
use layercache::{Clock, Config, MockClock};
use reqwest::{Client, Response};
use tokio::sync::{Mutex, MutexGuard};

fn clocks() -> &'static (Clock, MockClock) {
    static MOCK: OnceLock<(Clock, MockClock)> = OnceLock::new();
    MOCK.get_or_init(|| {
        let (clock, mock) = Clock::mock();
        layercache::init(Config::builder().clock(clock.clone()).build()).unwrap();
        (clock, mock)
    })
}

fn clock() -> &'static MockClock {
    &clocks().1
}

/// Wall time as the cache sees it (it moves with the mock).
fn wall_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(clocks().0.unix_millis())
}

/// Tests move one clock: they run one at a time.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    clock();
    LOCK.lock().await
}

fn advance(secs: u64) {
    clock().advance(Duration::from_secs(secs));
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A route at `/page` answering with `headers` and a body naming the
/// number of the handler's run, under a layer; returns the page's URL and
/// the run counter.
async fn page_with(
    layer: ResponseCacheLayer,
    headers: &'static [(&'static str, &'static str)],
) -> (String, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                let n = counter.fetch_add(1, SeqCst) + 1;
                async move {
                    let mut h = HeaderMap::new();
                    for (name, value) in headers {
                        h.append(*name, HeaderValue::from_static(value));
                    }
                    (h, format!("run {n}"))
                }
            }),
        )
        .layer(layer);
    (format!("{}/page", serve(app).await), runs)
}

fn x_cache(resp: &Response) -> &str {
    resp.headers()
        .get("x-cache")
        .map_or("", |v| v.to_str().unwrap())
}

fn header_of<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

async fn fetch(url: &str) -> Response {
    Client::new().get(url).send().await.unwrap()
}

#[tokio::test]
async fn a_max_age_page_is_a_hit_with_its_age_until_max_age_then_fetched_again() {
    let _s = serial().await;
    let (url, runs) = page_with(
        ResponseCacheLayer::new("h_max_age").timeout(Duration::from_secs(600)),
        &[("cache-control", "max-age=2")],
    )
    .await;
    assert_eq!(x_cache(&fetch(&url).await), "MISS");
    advance(1);
    let hit = fetch(&url).await;
    assert_eq!((x_cache(&hit), header_of(&hit, "age")), ("HIT", "1"));
    assert_eq!(header_of(&hit, "cache-control"), "max-age=2");
    advance(1);
    let again = fetch(&url).await;
    assert_eq!(
        x_cache(&again),
        "MISS",
        "stale at 2 s although the layer says 600 s"
    );
    assert_eq!(again.text().await.unwrap(), "run 2");
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test]
async fn s_maxage_wins_over_max_age_for_the_shared_cache() {
    let _s = serial().await;
    let (url, runs) = page_with(
        ResponseCacheLayer::new("h_s_maxage"),
        &[("cache-control", "max-age=60, s-maxage=1")],
    )
    .await;
    fetch(&url).await;
    assert_eq!(x_cache(&fetch(&url).await), "HIT");
    advance(1);
    assert_eq!(x_cache(&fetch(&url).await), "MISS");
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test]
async fn expires_minus_date_is_the_lifetime() {
    let _s = serial().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                counter.fetch_add(1, SeqCst);
                async {
                    let now = wall_now();
                    [
                        (header::DATE, httpdate::fmt_http_date(now)),
                        (
                            header::EXPIRES,
                            httpdate::fmt_http_date(now + Duration::from_secs(10)),
                        ),
                    ]
                }
            }),
        )
        .layer(ResponseCacheLayer::new("h_expires"));
    let url = format!("{}/page", serve(app).await);
    fetch(&url).await;
    advance(8);
    assert_eq!(x_cache(&fetch(&url).await), "HIT", "fresh before Expires");
    advance(3);
    assert_eq!(x_cache(&fetch(&url).await), "MISS", "stale after Expires");
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test]
async fn the_origin_s_age_is_added_to_the_time_in_the_cache_and_shortens_its_life() {
    let _s = serial().await;
    let (url, _) = page_with(
        ResponseCacheLayer::new("h_age"),
        &[("cache-control", "max-age=10"), ("age", "5")],
    )
    .await;
    fetch(&url).await;
    advance(1);
    let hit = fetch(&url).await;
    assert_eq!((x_cache(&hit), header_of(&hit, "age")), ("HIT", "6"));
    advance(4);
    assert_eq!(x_cache(&fetch(&url).await), "MISS", "10 s old: stale");
}

#[tokio::test]
async fn no_cache_must_revalidate_at_max_age_0_and_max_age_0_pages_are_never_served_from_the_cache()
{
    let _s = serial().await;
    for (name, cc) in [
        ("h_nc1", "no-cache"),
        ("h_nc2", "must-revalidate, max-age=0"),
        ("h_nc3", "max-age=0"),
        ("h_nc4", "s-maxage=0"),
        ("h_nc5", "proxy-revalidate, max-age=0"),
    ] {
        let headers: &'static [(&str, &str)] =
            Box::leak(vec![("cache-control", cc)].into_boxed_slice());
        let (url, runs) = page_with(ResponseCacheLayer::new(name), headers).await;
        for _ in 0..3 {
            assert_ne!(x_cache(&fetch(&url).await), "HIT", "{cc}");
        }
        assert_eq!(
            runs.load(SeqCst),
            3,
            "{cc}: every request reached the handler"
        );
    }
}

#[tokio::test]
async fn must_revalidate_with_a_lifetime_is_served_until_stale_and_never_after() {
    let _s = serial().await;
    let (url, _) = page_with(
        ResponseCacheLayer::new("h_mr"),
        &[("cache-control", "must-revalidate, max-age=3")],
    )
    .await;
    fetch(&url).await;
    advance(2);
    assert_eq!(x_cache(&fetch(&url).await), "HIT");
    advance(1);
    assert_eq!(x_cache(&fetch(&url).await), "MISS");
}

#[tokio::test]
async fn ignore_origin_freshness_keeps_the_layer_timeout_and_tells_clients_max_age_0() {
    let _s = serial().await;
    let (url, runs) = page_with(
        ResponseCacheLayer::new("h_ignore")
            .timeout(Duration::from_secs(600))
            .ignore_origin_freshness(true),
        &[("cache-control", "public, max-age=2")],
    )
    .await;
    fetch(&url).await;
    advance(5);
    let hit = fetch(&url).await;
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(header_of(&hit, "age"), "5");
    assert_eq!(header_of(&hit, "cache-control"), "public, max-age=0");
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test]
async fn if_none_match_with_the_stored_etag_is_a_304_from_the_cache() {
    let _s = serial().await;
    let (url, runs) = page_with(
        ResponseCacheLayer::new("h_inm"),
        &[("etag", "\"v1\""), ("cache-control", "max-age=60")],
    )
    .await;
    fetch(&url).await;
    let resp = Client::new()
        .get(&url)
        .header("if-none-match", "\"v0\", W/\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(x_cache(&resp), "HIT");
    assert_eq!(header_of(&resp, "etag"), "\"v1\"");
    assert_eq!(header_of(&resp, "cache-control"), "max-age=60");
    assert_eq!(resp.text().await.unwrap(), "");
    let other = Client::new()
        .get(&url)
        .header("if-none-match", "\"v0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK, "another tag gets the page");
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test]
async fn a_page_without_validators_gets_a_generated_etag_that_answers_if_none_match_with_304() {
    let _s = serial().await;
    let (url, _) = page_with(ResponseCacheLayer::new("h_gen_etag"), &[]).await;
    fetch(&url).await;
    // Computed from the whole body: stored pages (hits) carry it.
    let hit = fetch(&url).await;
    assert_eq!(x_cache(&hit), "HIT");
    let etag = header_of(&hit, "etag").to_string();
    assert!(
        etag.starts_with('"') && etag.len() > 2,
        "a strong tag: {etag}"
    );
    let resp = Client::new()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let (url, _) = page_with(
        ResponseCacheLayer::new("h_no_gen_etag").generate_etag(false),
        &[],
    )
    .await;
    fetch(&url).await;
    let plain = fetch(&url).await;
    assert_eq!(x_cache(&plain), "HIT");
    assert_eq!(header_of(&plain, "etag"), "", "generate_etag(false)");
}

#[tokio::test]
async fn if_modified_since_at_or_after_last_modified_is_a_304_from_the_cache() {
    let _s = serial().await;
    let (url, runs) = page_with(
        ResponseCacheLayer::new("h_ims"),
        &[("last-modified", "Tue, 01 Jul 2025 10:00:00 GMT")],
    )
    .await;
    fetch(&url).await;
    let ims = |since: &'static str| {
        let url = url.clone();
        async move {
            Client::new()
                .get(url)
                .header("if-modified-since", since)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        ims("Tue, 01 Jul 2025 10:00:00 GMT").await,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(ims("Tue, 01 Jul 2025 09:59:59 GMT").await, StatusCode::OK);
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test]
async fn a_conditional_request_on_a_cold_page_stores_the_full_answer_and_never_marks_it_uncacheable(
) {
    let _s = serial().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move |headers: HeaderMap| {
                log.lock()
                    .unwrap()
                    .push(headers.contains_key(header::IF_NONE_MATCH));
                async move {
                    if headers.contains_key(header::IF_NONE_MATCH) {
                        // What a handler that does its own validation answers.
                        return StatusCode::NOT_MODIFIED.into_response();
                    }
                    ([(header::ETAG, "\"v1\"")], "the page").into_response()
                }
            }),
        )
        .layer(ResponseCacheLayer::new("h_cold_conditional"));
    let url = format!("{}/page", serve(app).await);
    let cold = Client::new()
        .get(&url)
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (cold.status(), x_cache(&cold)),
        (StatusCode::NOT_MODIFIED, "MISS"),
        "the handler's full answer was stored, and the cache answered the condition"
    );
    let next = fetch(&url).await;
    assert_eq!(x_cache(&next), "HIT", "the page was stored");
    assert_eq!(next.text().await.unwrap(), "the page");
    let conditional = Client::new()
        .get(&url)
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(*seen.lock().unwrap(), [false], "one run, unconditional");
}

#[tokio::test]
async fn post_put_patch_and_delete_drop_the_page_of_their_url_and_of_location() {
    let _s = serial().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app = Router::new()
        .route(
            "/items/1",
            get(move || {
                counter.fetch_add(1, SeqCst);
                async { "item 1" }
            })
            .post(|| async { "posted" })
            .put(|| async { "put" })
            .patch(|| async { "patched" })
            .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/items",
            axum::routing::post(|| async {
                (
                    StatusCode::CREATED,
                    [(header::LOCATION, "/items/1")],
                    "created",
                )
            }),
        )
        .route(
            "/fails",
            axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(ResponseCacheLayer::new("h_unsafe"));
    let base = serve(app).await;
    let url = format!("{base}/items/1");
    let client = Client::new();
    fetch(&url).await;
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(x_cache(&fetch(&url).await), "HIT", "{method}");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(x_cache(&resp), "BYPASS");
        assert_eq!(
            x_cache(&fetch(&url).await),
            "MISS",
            "{method} dropped the page"
        );
    }
    assert_eq!(x_cache(&fetch(&url).await), "HIT");
    let gzip = || client.get(&url).header("accept-encoding", "gzip").send();
    assert_eq!(x_cache(&gzip().await.unwrap()), "MISS", "another variant");
    assert_eq!(x_cache(&gzip().await.unwrap()), "HIT");
    client.post(format!("{base}/items")).send().await.unwrap();
    assert_eq!(
        x_cache(&gzip().await.unwrap()),
        "MISS",
        "every variant of the URL is dropped"
    );
    assert_eq!(
        x_cache(&fetch(&url).await),
        "MISS",
        "the Location of a POST is dropped too"
    );
    assert_eq!(runs.load(SeqCst), 8);
}

#[tokio::test]
async fn a_streamed_body_s_first_byte_arrives_before_the_handler_finishes_and_is_stored_at_its_end()
{
    let _s = serial().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let rx = rx.clone();
                async move {
                    let rx = rx.lock().await.take().expect("one run");
                    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
                        let chunk = rx.recv().await?;
                        Some((Ok::<_, std::io::Error>(chunk), rx))
                    });
                    Body::from_stream(chunks)
                }
            }),
        )
        .layer(ResponseCacheLayer::new("h_stream"));
    let url = format!("{}/stream", serve(app).await);
    tx.send("first ").await.unwrap();
    let mut resp = fetch(&url).await;
    assert_eq!(x_cache(&resp), "MISS");
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the first chunk arrives while the handler is still producing")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first ");
    tx.send("second").await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"second");
    let stored = async {
        loop {
            let r = fetch(&url).await;
            if x_cache(&r) == "HIT" {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(5), stored)
        .await
        .expect("stored at the end of the stream");
    assert_eq!(body, "first second");
}

#[tokio::test]
async fn with_a_compression_layer_under_the_cache_gzip_and_identity_are_each_their_own_entry() {
    let _s = serial().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let text = "a page long enough for the compression layer to compress it ".repeat(20);
    let body = text.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                counter.fetch_add(1, SeqCst);
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain")], body) }
            }),
        )
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(ResponseCacheLayer::new("h_gzip"));
    let url = format!("{}/page", serve(app).await);
    let get_with = |ae: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut req = Client::new().get(url);
            if let Some(ae) = ae {
                req = req.header("accept-encoding", ae);
            }
            let resp = req.send().await.unwrap();
            let status = x_cache(&resp).to_string();
            let encoding = header_of(&resp, "content-encoding").to_string();
            let vary = header_of(&resp, "vary").to_string();
            (status, encoding, vary, resp.bytes().await.unwrap())
        }
    };
    let (status, encoding, vary, gz) = get_with(Some("gzip, deflate")).await;
    assert_eq!((status.as_str(), encoding.as_str()), ("MISS", "gzip"));
    assert!(vary.to_ascii_lowercase().contains("accept-encoding"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, text);
    let (status, encoding, _, again) = get_with(Some("deflate, gzip")).await;
    assert_eq!(
        (status.as_str(), encoding.as_str()),
        ("HIT", "gzip"),
        "one entry for both orders"
    );
    assert_eq!(again, gz);
    let (status, encoding, _, body) = get_with(None).await;
    assert_eq!((status.as_str(), encoding.as_str()), ("MISS", ""));
    assert_eq!(body, text.as_bytes());
    let (status, encoding, _, _) = get_with(None).await;
    assert_eq!((status.as_str(), encoding.as_str()), ("HIT", ""));
    assert_eq!(runs.load(SeqCst), 2, "one run per encoding");
}

/// A page personalised by a cookie or a token, without Cache-Control: what
/// an app that forgot the note would serve.
fn greeting_app(layer: ResponseCacheLayer) -> Router {
    Router::new()
        .route(
            "/hello",
            get(|headers: HeaderMap| async move {
                let who = headers
                    .get(header::COOKIE)
                    .or(headers.get(header::AUTHORIZATION))
                    .map_or("stranger".to_string(), |v| v.to_str().unwrap().to_string());
                format!("hello {who}")
            }),
        )
        .route(
            "/public",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "public, max-age=60")],
                    "for everyone",
                )
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn cookie_and_authorization_requests_are_never_served_another_visitor_s_page() {
    let _s = serial().await;
    let url = format!(
        "{}/hello",
        serve(greeting_app(ResponseCacheLayer::new("h_personal"))).await
    );
    let client = Client::new();
    for (name, alice, bob) in [
        ("cookie", "user=alice", "user=bob"),
        ("authorization", "Bearer alice", "Bearer bob"),
    ] {
        let a = client.get(&url).header(name, alice).send().await.unwrap();
        assert_eq!(x_cache(&a), "BYPASS");
        assert_eq!(a.text().await.unwrap(), format!("hello {alice}"));
        let b = client.get(&url).header(name, bob).send().await.unwrap();
        assert_eq!(x_cache(&b), "BYPASS");
        assert_eq!(b.text().await.unwrap(), format!("hello {bob}"), "{name}");
        let anonymous = fetch(&url).await;
        assert_eq!(
            anonymous.text().await.unwrap(),
            "hello stranger",
            "nothing personal was stored"
        );
    }
}

#[tokio::test]
async fn a_public_answer_to_a_personal_request_is_stored_and_ignored_cookies_are_cached() {
    let _s = serial().await;
    let base = serve(greeting_app(
        ResponseCacheLayer::new("h_public").ignore_cookies(["_ga"]),
    ))
    .await;
    let client = Client::new();
    let public = format!("{base}/public");
    client
        .get(&public)
        .header("cookie", "user=alice")
        .send()
        .await
        .unwrap();
    let stored = async {
        loop {
            if x_cache(&fetch(&public).await) == "HIT" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), stored)
        .await
        .expect("Cache-Control: public is stored even for a cookie request");
    let hello = format!("{base}/hello");
    client
        .get(&hello)
        .header("cookie", "_ga=1")
        .send()
        .await
        .unwrap();
    let hit = client
        .get(&hello)
        .header("cookie", "_ga=2")
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&hit), "HIT", "an ignored cookie is not personal");
}

#[tokio::test]
async fn two_hosts_have_two_pages_and_a_port_qualified_host_shares_the_host_s_page() {
    let _s = serial().await;
    let app =
        Router::new()
            .route(
                "/where",
                get(|headers: HeaderMap| async move {
                    format!("{:?}", headers.get(header::HOST).unwrap())
                }),
            )
            .layer(
                ResponseCacheLayer::new("h_hosts").allow_hosts(["shop.example", "admin.example"]),
            );
    let url = format!("{}/where", serve(app).await);
    let client = Client::new();
    let at = |host: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(url).header("host", host).send().await.unwrap();
            (x_cache(&r).to_string(), r.text().await.unwrap())
        }
    };
    assert_eq!(at("shop.example").await.0, "MISS");
    let (status, body) = at("admin.example").await;
    assert_eq!(status, "MISS", "another host is another page");
    assert!(body.contains("admin"));
    let (status, body) = at("shop.example:8080").await;
    assert_eq!(status, "HIT", "the port is not part of the key");
    assert!(body.contains("\"shop.example\""));
    assert_eq!(
        at("evil.example").await.0,
        "BYPASS",
        "a host outside the list passes"
    );
    assert_eq!(at("evil.example").await.0, "BYPASS", "and adds no entry");
}

#[tokio::test]
async fn hop_by_hop_fields_and_proxy_fields_are_never_replayed() {
    let _s = serial().await;
    let (url, _) = page_with(
        ResponseCacheLayer::new("h_hop"),
        &[
            ("connection", "x-internal"),
            ("x-internal", "secret"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    fetch(&url).await;
    let hit = fetch(&url).await;
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(header_of(&hit, "x-kept"), "yes");
    for name in ["x-internal", "proxy-authorization", "proxy-authenticate"] {
        assert!(!hit.headers().contains_key(name), "{name} was replayed");
    }
}

#[tokio::test]
async fn every_request_is_counted_once_as_a_hit_a_miss_or_a_bypass() {
    let _s = serial().await;
    let (page, _) = page_with(ResponseCacheLayer::new("h_counts"), &[]).await;
    let client = Client::new();
    fetch(&page).await; // miss
    fetch(&page).await; // hit
    client
        .get(&page)
        .header("cookie", "s=1")
        .send()
        .await
        .unwrap(); // bypass
    client.post(&page).send().await.unwrap(); // bypass (405, nothing dropped)
    fetch(&page).await; // hit
    let s = layercache::stats();
    let f = s.function("h_counts").unwrap();
    assert_eq!((f.hits, f.misses, f.bypassed), (2, 1, 2));
    assert_eq!(f.hits + f.misses + f.bypassed, 5);
}
