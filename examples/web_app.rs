//! The guide's Flask app, end to end, as an axum service: every route of the
//! guide, cached with layercache.
//!
//! ```text
//! cargo run --example web_app --features axum                 # embedded (in-process) cache
//! CACHE_TYPE=redis CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo run --example web_app --features axum,redis         # shared by every instance
//! curl -i localhost:3000/expensive-page                       # x-cache: MISS, then HIT
//! ```
//!
//! | route | guide | what caches it |
//! |---|---|---|
//! | `GET /data` | 2.2.1 | `#[cached(timeout = 300)]` on the slow function |
//! | `GET /expensive-page` | 2.2.2 | the view cache ([`ResponseCacheLayer`]) for 600 s |
//! | `GET /dashboard` | 2.2.3 | a cached template fragment (minijinja) |
//! | `GET /manual-cache`, `GET /clear-cache` | 2.3 | the manual cache: get / set / delete / clear |
//! | `GET`, `PUT /user/{id}` | 5.1 | a cached read (misses cached too, 7.2) and an invalidating update |
//! | `GET /search?q=&page=` | 4.1 | key template `search:{query}:page:{page}` |
//! | `GET /products?...`, `PUT /products/{id}` | 5.1 | view cache with sorted query; prefix invalidation of `/products` |
//! | `GET /popular-products` | 7.3 | TTL jitter |
//! | `GET /news` | 7.4 | refresh-ahead |
//! | `GET`, `POST`, `PUT`, `DELETE /articles/{id}` | 5.1 | view cache; an unsafe method drops the page (RFC 9111 §4.4) in every process |
//! | `GET /cache-stats`, `/cache-stats/metrics`, `/cache-stats/ui` | 6.1 | JSON, Prometheus, HTML |
//!
//! Origin calls are counted in [`ORIGIN`] so tests (`tests/web_app.rs`) can
//! tell a hit from a miss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use layercache::web::{mount_stats, ResponseCacheLayer};
use layercache::{cache_invalidate, cached, future::Cache};
use serde::{Deserialize, Serialize};

/// How many times each slow origin ran, by route.
pub struct Origins {
    /// `get_expensive_data` (`/data`).
    pub data: AtomicU64,
    /// The `/expensive-page` handler.
    pub page: AtomicU64,
    /// The `/products` handler.
    pub products: AtomicU64,
    /// The `/live-score` handler (`Cache-Control: no-store`).
    pub live: AtomicU64,
    /// The `/report` handler (fails with 500 on `?fail=1`).
    pub report: AtomicU64,
    /// The `/export` handler (a body over the layer's size limit).
    pub export: AtomicU64,
    /// User profile queries.
    pub user: AtomicU64,
    /// Sidebar fragment renderings.
    pub sidebar: AtomicU64,
}

/// The origin counters.
pub static ORIGIN: Origins = Origins {
    data: AtomicU64::new(0),
    page: AtomicU64::new(0),
    products: AtomicU64::new(0),
    live: AtomicU64::new(0),
    report: AtomicU64::new(0),
    export: AtomicU64::new(0),
    user: AtomicU64::new(0),
    sidebar: AtomicU64::new(0),
};

/// A slow query or render (kept short so the tests stay fast).
async fn slow() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

// ---- guide 2.2.1: a cached function behind a route ----

/// The guide's `get_expensive_data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expensive {
    data: String,
    timestamp: u128,
}

#[cached(timeout = 300)]
async fn get_expensive_data() -> Expensive {
    ORIGIN.data.fetch_add(1, Relaxed);
    slow().await;
    Expensive {
        data: "expensive result".into(),
        timestamp: now_ns(),
    }
}

async fn data() -> Json<Expensive> {
    Json(get_expensive_data().await)
}

// ---- guide 2.2.2: view caching ----

/// An article page; its `POST` (a comment), `PUT` and `DELETE` go through
/// the same layer, which drops the cached page when they succeed.
async fn article(Path(id): Path<u64>) -> Html<String> {
    slow().await;
    Html(format!(
        "<h1>Article {id}</h1><p>Rendered by process {} at {}</p>",
        std::process::id(),
        now_ns()
    ))
}

async fn change_article(Path(id): Path<u64>) -> String {
    format!("article {id} changed")
}

async fn expensive_page() -> Html<String> {
    ORIGIN.page.fetch_add(1, Relaxed);
    slow().await;
    Html(format!(
        "<h1>Expensive Page</h1><p>Generated at: {}</p>",
        now_ns()
    ))
}

/// A page that must never be stored: it says `Cache-Control: no-store`.
async fn live_score() -> impl IntoResponse {
    ORIGIN.live.fetch_add(1, Relaxed);
    (
        [(header::CACHE_CONTROL, "no-store")],
        format!("live score at {}", now_ns()),
    )
}

#[derive(Deserialize)]
struct ReportQuery {
    #[serde(default)]
    fail: u8,
}

/// A page that fails (500) on `?fail=1`: errors are never stored.
async fn report(Query(q): Query<ReportQuery>) -> Response {
    ORIGIN.report.fetch_add(1, Relaxed);
    if q.fail == 1 {
        return (StatusCode::INTERNAL_SERVER_ERROR, "report failed").into_response();
    }
    format!("report at {}", now_ns()).into_response()
}

/// A 64 KiB page, sent in 1 KiB chunks: over the `/export` layer's 16 KiB
/// limit, so it is streamed through and never stored.
async fn export() -> Response {
    ORIGIN.export.fetch_add(1, Relaxed);
    let chunks = (0..64u8).map(|i| Ok::<_, std::io::Error>(vec![b'a' + i % 26; 1024]));
    axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
}

// ---- guide 5.1: product pages, dropped by prefix ----

async fn products(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    ORIGIN.products.fetch_add(1, Relaxed);
    let mut params: Vec<_> = q.into_iter().collect();
    params.sort();
    Html(format!(
        "<h1>Products</h1><p>{params:?} at {}</p>",
        now_ns()
    ))
}

async fn product(Path(id): Path<u64>) -> Html<String> {
    ORIGIN.products.fetch_add(1, Relaxed);
    Html(format!("<h1>Product {id}</h1><p>at {}</p>", now_ns()))
}

/// Every cached product page (`/products`, `/products/7`, ...) goes.
#[cache_invalidate(prefix = "/products")]
async fn update_product(Path(id): Path<u64>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "message": format!("product {id} updated") }))
}

// ---- guide 2.2.3: a cached template fragment ----

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.add_template(
        "dashboard.html",
        "<h1>Dashboard</h1>{{ cached_include('sidebar.html', 'sidebar-content', 300) }}<p>at {{ now }}</p>",
    )
    .expect("dashboard template");
    env.add_template(
        "sidebar.html",
        "<div class=\"sidebar\">{% for item in items() %}<div>{{ item }}</div>{% endfor %}</div>",
    )
    .expect("sidebar template");
    env.add_function("items", || {
        ORIGIN.sidebar.fetch_add(1, Relaxed);
        vec!["Home", "Products", "News"]
    });
    // The guide's `{% cache 300, 'sidebar-content' %}...{% endcache %}`:
    // renders `template` once per `timeout` under `key`.
    env.add_function(
        "cached_include",
        |state: &minijinja::State, template: String, key: String, timeout: u64| {
            let env = state.env();
            let html = layercache::web::try_fragment(&key, Duration::from_secs(timeout), || {
                env.get_template(&template)?.render(minijinja::context! {})
            })?;
            Ok::<_, minijinja::Error>(minijinja::Value::from_safe_string(html))
        },
    );
    env
});

async fn dashboard() -> Response {
    let page = TEMPLATES
        .get_template("dashboard.html")
        .and_then(|t| t.render(minijinja::context! { now => now_ns().to_string() }));
    match page {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

// ---- guide 2.3: the manual cache ----

async fn manual_cache() -> String {
    let cache = Cache::global();
    if let Some(data) = cache.get::<String>("my_key").await {
        return data;
    }
    slow().await;
    let data = format!("expensive operation at {}", now_ns());
    cache
        .set("my_key", data.clone(), Duration::from_secs(300))
        .await;
    data
}

async fn clear_cache() -> Json<serde_json::Value> {
    let cache = Cache::global();
    let deleted = cache.delete("my_key").await;
    let cleared = cache.clear().await;
    Json(serde_json::json!({ "deleted_my_key": deleted, "cleared": cleared }))
}

// ---- guide 5.1 and 7.2: users ----

/// A user record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// The "database".
static USERS: LazyLock<Mutex<HashMap<u64, User>>> = LazyLock::new(|| {
    let users = (1..=100).map(|id| {
        (
            id,
            User {
                id,
                name: format!("user {id}"),
            },
        )
    });
    Mutex::new(users.collect())
});

/// Guide 5.2's per-type timeout (user profiles: 30 min); a missing user
/// is cached for 30 s (guide 7.2), so probes of unknown ids do not reach
/// the database.
#[cached(
    timeout = 1800,
    key_prefix = "user_profile",
    cache_none = true,
    none_timeout = 30
)]
async fn get_user_profile(user_id: u64) -> Option<User> {
    ORIGIN.user.fetch_add(1, Relaxed);
    slow().await;
    USERS.lock().unwrap().get(&user_id).cloned()
}

async fn get_user(Path(id): Path<u64>) -> Response {
    match get_user_profile(id).await {
        Some(user) => Json(user).into_response(),
        None => (StatusCode::NOT_FOUND, "no such user").into_response(),
    }
}

/// An update's body.
#[derive(Debug, Deserialize)]
pub struct UserUpdate {
    /// The new name.
    pub name: String,
}

/// Guide 5.1: after a successful update, the user's cached profile is
/// dropped everywhere.
#[cache_invalidate(get_user_profile(user_id))]
async fn update_user(user_id: u64, update: UserUpdate) -> Result<User, String> {
    let mut users = USERS.lock().unwrap();
    let user = users.get_mut(&user_id).ok_or("no such user")?;
    user.name = update.name;
    Ok(user.clone())
}

async fn put_user(Path(id): Path<u64>, Json(update): Json<UserUpdate>) -> Response {
    match update_user(id, update).await {
        Ok(user) => {
            Json(serde_json::json!({ "message": "User updated successfully", "user": user }))
                .into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

// ---- guide 4.1: search ----

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    #[serde(default = "first_page")]
    page: u32,
}

fn first_page() -> u32 {
    1
}

#[cached(timeout = 60, key_prefix = "search", key = "{query}:page:{page}")]
async fn search_results(query: &str, page: u32) -> Vec<String> {
    slow().await;
    (1..=3)
        .map(|i| format!("{query} result {i} on page {page}"))
        .collect()
}

async fn search(Query(q): Query<SearchQuery>) -> Json<Vec<String>> {
    Json(search_results(&q.q, q.page).await)
}

// ---- guide 7.3 and 7.4 ----

/// Guide 7.3: an hour, ±10 %, so entries written together do not expire together.
#[cached(timeout = 3600, key_prefix = "popular_products", jitter = 0.1)]
async fn popular_from_db() -> Vec<String> {
    slow().await;
    vec!["keyboard".into(), "mouse".into(), "monitor".into()]
}

async fn popular_products() -> Json<Vec<String>> {
    Json(popular_from_db().await)
}

/// Guide 7.4: a hit after 80 % of the 5 minutes refreshes in the background.
#[cached(timeout = 300, key_prefix = "latest_news", refresh_ahead = 0.8)]
async fn fetch_latest_news() -> Vec<String> {
    slow().await;
    vec![format!("news fetched at {}", now_ns())]
}

async fn news() -> Json<Vec<String>> {
    Json(fetch_latest_news().await)
}

/// The whole app.
pub fn app() -> Router {
    // Requests carrying a cookie are personal (never answered from the
    // cache) unless the layer is told the cookie does not change the page:
    // here the analytics and consent cookies every visitor has.
    let pages = ResponseCacheLayer::new("pages")
        .timeout(Duration::from_secs(600))
        .ignore_cookies(["_ga", "consent"]);
    let articles = ResponseCacheLayer::new("articles").ignore_cookies(["_ga", "consent"]);
    let product_pages = ResponseCacheLayer::new("product_pages")
        .timeout(Duration::from_secs(3600))
        .sort_query(true);
    let exports = ResponseCacheLayer::new("exports").max_body(16 * 1024);
    let app = Router::new()
        .route("/data", get(data))
        .route("/expensive-page", get(expensive_page).layer(pages.clone()))
        .route("/live-score", get(live_score).layer(pages.clone()))
        .route("/report", get(report).layer(pages))
        .route("/export", get(export).layer(exports))
        .route("/products", get(products).layer(product_pages.clone()))
        .route(
            "/products/{id}",
            get(product).layer(product_pages).put(update_product),
        )
        .route(
            "/articles/{id}",
            get(article)
                .post(change_article)
                .put(change_article)
                .delete(change_article)
                .layer(articles),
        )
        .route("/dashboard", get(dashboard))
        .route("/manual-cache", get(manual_cache))
        .route("/clear-cache", get(clear_cache))
        .route("/user/{id}", get(get_user).put(put_user))
        .route("/search", get(search))
        .route("/popular-products", get(popular_products))
        .route("/news", get(news));
    mount_stats(app, "/cache-stats")
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,layercache=info".into()),
        )
        .init();
    let addr = std::env::var("WEB_APP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "layercache web_app on http://{} (CACHE_TYPE={}); try /expensive-page, /user/1, /cache-stats/ui",
        listener.local_addr()?,
        layercache::config().cache_type()
    );
    axum::serve(listener, app()).await
}
