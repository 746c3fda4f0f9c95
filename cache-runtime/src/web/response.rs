//! Response (view) caching: a tower [`Layer`] over any HTTP service.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use http::header::{self, HeaderName, HeaderValue};
use http::{response, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use serde::{Deserialize, Serialize};
use sync_wrapper::SyncWrapper;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Timestamp;
use crate::key::render_template;
use crate::pipeline::{
    always, bypass_async, get_or_compute_async, no_tags, FnCache, FnSpec, OkOnly, TierChoice,
    Timeout,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response header telling whether the cache answered: `HIT`, `MISS`
/// or `BYPASS` (see [`CacheStatus`]).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// How a response was produced, as sent in the [`X_CACHE`] header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from a cache tier; the inner service was not called.
    Hit,
    /// The inner service answered a cacheable request (its response may
    /// still not have been stored: see [`ResponseCacheLayer`]), or a `HEAD`
    /// for which no `GET` response was stored (passed on, never stored).
    Miss,
    /// The request is not cacheable (method, `Authorization`, `Range`,
    /// `Cache-Control: no-store`), or its page answered recently with a
    /// response that could not be stored (hit-for-pass), and it went
    /// straight to the inner service.
    Bypass,
}

impl CacheStatus {
    /// The header value: `"HIT"`, `"MISS"` or `"BYPASS"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// A stored response: what is kept in every tier.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Page {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    /// Unix time of the store, for the `Age` header.
    stored_ms: u64,
}

type PageCache = FnCache<String, Arc<Page>>;

/// One layer name's pages and hit-for-pass marks.
struct Pages {
    cache: &'static PageCache,
    passes: Passes,
}

/// Hit-for-pass (as Varnish has it): the pages whose last response could
/// not be stored, by hash of their key, with the time the mark ends.
///
/// Without it, concurrent requests for such a page would queue on the
/// first one's single-flight, get nothing back (nothing was stored) and
/// only then call the handler themselves: each would wait a whole handler
/// run for nothing. A marked page skips the flight and the cache. Keys are
/// hashed (64 bits) so a request does not allocate to check; a collision
/// only makes a page skip the cache until the mark ends.
struct Passes {
    marks: quick_cache::sync::Cache<u64, Timestamp>,
    /// How long a mark lasts: the page timeout, at most [`PASS_TTL`].
    ttl: Duration,
}

/// Most pages marked hit-for-pass at once per layer name; past it the
/// least useful marks are dropped (those pages then go through the flight
/// again, which is correct, only slower under concurrency).
const PASS_MARKS: usize = 4096;

/// Longest life of a hit-for-pass mark: a page that becomes storable
/// without a request noticing it (the mark is cleared by the first
/// storable response seen) is cached again after at most this long.
const PASS_TTL: Duration = Duration::from_secs(30);

impl Passes {
    fn new(page_timeout: Option<Duration>) -> Passes {
        Passes {
            marks: quick_cache::sync::Cache::new(PASS_MARKS),
            ttl: page_timeout.map_or(PASS_TTL, |t| t.min(PASS_TTL)),
        }
    }

    /// Whether the page hashing to `hash` is marked at `now`.
    fn is_marked(&self, hash: u64, now: Timestamp) -> bool {
        self.marks.get(&hash).is_some_and(|until| now < until)
    }

    /// Marks the page: its next requests skip the cache for a while.
    fn mark(&self, hash: u64, now: Timestamp) {
        self.marks.insert(hash, now.saturating_add(self.ttl));
    }

    /// A storable response was seen: the page is cached again.
    fn clear(&self, hash: u64) {
        self.marks.remove(&hash);
    }
}

/// Decides from the response head whether it may be stored.
type Filter = Arc<dyn Fn(&response::Parts) -> bool + Send + Sync>;

/// The default of [`ResponseCacheLayer::max_body`]: 1 MiB.
const DEFAULT_MAX_BODY: usize = 1 << 20;

/// A tower [`Layer`] caching `GET` responses of the service it wraps, and
/// answering `HEAD` requests from them (the guide's view caching,
/// `@cache.cached` on a route).
///
/// **The key** is the path and the query string (as sent, or with its
/// pairs sorted after [`sort_query`](Self::sort_query)), the host (see
/// [`include_host`](Self::include_host)), plus the request's values of the
/// headers named with [`vary_by`](Self::vary_by).
/// The stable key starts with the path, so
/// [`invalidate_prefix("/products")`](crate::invalidate_prefix) (or
/// `#[cache_invalidate(prefix = "/products")]`) drops those pages in every
/// tier and process; the page `/products?page=2` is `/products?page=2`.
/// The prefix is a plain string prefix: `"/products"` also matches
/// `/products-archive`, and `"/products/"` means the subtree only.
/// Pages share the manual cache's keyspace (no namespace), so
/// [`Cache::delete_prefix`](crate::sync::Cache::delete_prefix) reaches
/// them, and [`Cache::clear`](crate::sync::Cache::clear) drops them with
/// every other entry.
///
/// **`HEAD`** has the `GET`'s key: a stored page answers it with its status
/// and headers, a `Content-Length` of the stored body and no body
/// (`x-cache: HIT`). Without a stored page the request goes to the inner
/// service unchanged and its answer is passed on, not stored
/// (`x-cache: MISS`, counted as a miss): only a `GET` fills the cache.
///
/// **Requests that bypass the cache** (`x-cache: BYPASS`, counted as
/// `bypassed`): methods other than `GET`/`HEAD`, and requests with
/// `Authorization`, `Range` or `Cache-Control: no-store`. A `Cookie` does
/// not bypass: a page personalised by cookie must answer with
/// `Cache-Control: private`, or with `Vary: Cookie` and `Cookie` given to
/// [`vary_by`](Self::vary_by).
///
/// **Responses that are not stored** (passed through as `x-cache: MISS`):
/// a status the filter rejects (by default anything but 2xx, and 206),
/// `Cache-Control: no-store`, `no-cache` or `private`, a `Set-Cookie`
/// header, a `Vary` naming `*` or a header not given to `vary_by`, and
/// bodies over [`max_body`](Self::max_body), which are streamed to the
/// client as they come (the part read so far first). A stored response
/// keeps its headers except hop-by-hop ones and `Content-Length`; a hit
/// carries `x-cache: HIT` and an `Age`.
///
/// **Hit-for-pass**: a page whose response was not stored is remembered
/// (in this process, for the page timeout but at most 30 s, up to 4096
/// pages per layer name), and its requests meanwhile go straight to the
/// inner service, concurrently, as `x-cache: BYPASS` (counted as
/// `bypassed`), instead of queueing on a single-flight that cannot share
/// anything. The first storable response seen for the page (by its head:
/// status, `Cache-Control`, `Set-Cookie`, `Vary`) ends this; that response
/// is not stored, the next request's is.
///
/// Concurrent misses of one page share one call of the inner service
/// (single-flight); with a shared tier (`CACHE_TYPE=redis`) pages are
/// shared by the fleet. Stats are under the layer's name in
/// [`stats()`](crate::stats). Layers are identified by name: building two
/// layers with one name gives them one cache (the first one's settings).
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use layercache_runtime::web::ResponseCacheLayer;
///
/// let pages = ResponseCacheLayer::new("pages")
///     .timeout(Duration::from_secs(300))
///     .sort_query(true)
///     .vary_by([http::header::ACCEPT_LANGUAGE]);
/// let app: Router = Router::new()
///     .route("/expensive-page", get(|| async { "rendered slowly" }))
///     .layer(pages);
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct ResponseCacheLayer {
    settings: Settings,
}

#[derive(Clone)]
struct Settings {
    name: String,
    timeout: Timeout,
    max_entries: Option<u64>,
    tier: TierChoice,
    local_timeout: Option<Duration>,
    jitter: Option<f64>,
    include_query: bool,
    include_host: bool,
    sort_query: bool,
    vary: Vec<HeaderName>,
    max_body: usize,
    filter: Filter,
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("ResponseCacheLayer")
            .field("name", &s.name)
            .field("timeout", &s.timeout)
            .field("max_entries", &s.max_entries)
            .field("tier", &s.tier)
            .field("include_query", &s.include_query)
            .field("sort_query", &s.sort_query)
            .field("vary", &s.vary)
            .field("max_body", &s.max_body)
            .finish_non_exhaustive()
    }
}

fn default_filter(parts: &response::Parts) -> bool {
    parts.status.is_success() && parts.status != StatusCode::PARTIAL_CONTENT
}

impl ResponseCacheLayer {
    /// A layer whose pages are counted under `name` in
    /// [`stats()`](crate::stats), with the configured default timeout,
    /// the query string in the key as sent, and bodies up to 1 MiB.
    pub fn new(name: impl Into<String>) -> ResponseCacheLayer {
        ResponseCacheLayer {
            settings: Settings {
                name: name.into(),
                timeout: Timeout::Default,
                max_entries: None,
                tier: TierChoice::Both,
                local_timeout: None,
                jitter: None,
                include_query: true,
                include_host: true,
                sort_query: false,
                vary: Vec::new(),
                max_body: DEFAULT_MAX_BODY,
                filter: Arc::new(default_filter),
            },
        }
    }

    /// How long a page lives (`Duration::ZERO`: until invalidated).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = if timeout.is_zero() {
            Timeout::Never
        } else {
            Timeout::After(timeout)
        };
        self
    }

    /// Bound of the in-process tier, in pages.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.settings.max_entries = Some(max_entries);
        self
    }

    /// Which tiers pages use, as `#[cached(tier = ...)]`.
    pub fn tier(mut self, tier: TierChoice) -> Self {
        self.settings.tier = tier;
        self
    }

    /// Caps the life of in-process copies below the timeout.
    pub fn local_timeout(mut self, local_timeout: Duration) -> Self {
        self.settings.local_timeout = Some(local_timeout);
        self
    }

    /// Spreads each page's timeout over `±fraction` (TTL jitter, against cache avalanche).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.settings.jitter = Some(fraction.clamp(0.0, 1.0));
        self
    }

    /// Whether the query string is part of the key (default `true`).
    /// Without it `/search?q=a` and `/search?q=b` are one page: turn it
    /// off only for routes that ignore their query.
    pub fn include_query(mut self, include: bool) -> Self {
        self.settings.include_query = include;
        self
    }

    /// Whether the request's host (`Host`, or the URI's authority) is part
    /// of the key (default `true`), so one app serving several hosts never
    /// hands one host's page to another. Turn it off when every host name
    /// serves the same pages.
    pub fn include_host(mut self, include: bool) -> Self {
        self.settings.include_host = include;
        self
    }

    /// Sorts the query's `name=value` pairs before keying (default
    /// `false`), so `?a=1&b=2` and `?b=2&a=1` are one page.
    pub fn sort_query(mut self, sort: bool) -> Self {
        self.settings.sort_query = sort;
        self
    }

    /// Request headers whose values are part of the key. A response whose
    /// `Vary` names a header outside this list is not stored.
    pub fn vary_by(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.settings.vary = headers.into_iter().collect();
        self
    }

    /// Largest body stored, in bytes (default 1 MiB); larger bodies are
    /// streamed through and not stored.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.settings.max_body = bytes;
        self
    }

    /// Which responses are stored, by their head (default: 2xx but 206).
    /// `Cache-Control`, `Set-Cookie` and `Vary` are checked as well.
    ///
    /// ```
    /// use layercache_runtime::web::ResponseCacheLayer;
    /// // Also keep 404s, so probes of missing pages do not reach the handler.
    /// let layer = ResponseCacheLayer::new("pages")
    ///     .cache_when(|head| head.status.is_success() || head.status == http::StatusCode::NOT_FOUND);
    /// # drop(layer);
    /// ```
    pub fn cache_when(
        mut self,
        filter: impl Fn(&response::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.filter = Arc::new(filter);
        self
    }

    fn pages(&self) -> &'static Pages {
        static LAYERS: OnceLock<Mutex<HashMap<String, &'static Pages>>> = OnceLock::new();
        let mut layers = LAYERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = &self.settings;
        layers.entry(s.name.clone()).or_insert_with(|| {
            let cache = crate::invalidate::register(FnCache::new(FnSpec {
                name: s.name.clone(),
                // Pages share the manual cache's keyspace: their stable key
                // is the path, which prefix invalidation matches.
                namespace: String::new(),
                timeout: s.timeout,
                max_entries: s.max_entries,
                render: render_template,
                tier: s.tier,
                local_timeout: s.local_timeout,
                jitter: s.jitter,
                none_timeout: None,
                lock: None,
                stale_if_error: None,
                refresh_ahead: None,
                versioned: None,
            }));
            let passes = Passes::new(cache.timeout());
            Box::leak(Box::new(Pages { cache, passes }))
        })
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> ResponseCache<S> {
        ResponseCache {
            inner,
            shared: Arc::new(Shared {
                pages: self.pages(),
                settings: self.settings.clone(),
            }),
        }
    }
}

/// The service of [`ResponseCacheLayer`].
#[derive(Clone)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("name", &self.shared.settings.name)
            .finish_non_exhaustive()
    }
}

struct Shared {
    pages: &'static Pages,
    settings: Settings,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ResponseCache<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.serve(inner, req).await })
    }
}

/// What the inner service answered when it is not stored.
type Passed<E> = SyncWrapper<Result<Response<Body>, E>>;

impl Shared {
    async fn serve<S, ReqB, ResB>(
        &self,
        mut inner: S,
        req: Request<ReqB>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        ResB: http_body::Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let Some((key, head)) = self.key_of(&req) else {
            let resp = bypass_async(self.pages.cache, inner.call(req)).await?;
            return Ok(mark(resp.map(Body::new), CacheStatus::Bypass));
        };
        if head {
            return self.head(inner, req, key).await;
        }
        let cache = self.pages.cache;
        let passes = &self.pages.passes;
        let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        if passes.is_marked(hash, cache.clock().now()) {
            let resp = bypass_async(cache, inner.call(req)).await?;
            let (parts, body) = resp.into_parts();
            // The page may have become storable (a deploy, a flag): the
            // next request goes through the cache again. This response is
            // not stored: a body of unknown length may still turn out over
            // the limit, and storing outside the flight could race one.
            let too_big = http_body::Body::size_hint(&body).lower() > self.settings.max_body as u64;
            if self.storable(&parts) && !too_big {
                passes.clear(hash);
            }
            return Ok(mark(
                Response::from_parts(parts, Body::new(body)),
                CacheStatus::Bypass,
            ));
        }
        let ran = AtomicBool::new(false);
        let origin = async {
            ran.store(true, Relaxed);
            match inner.call(req).await {
                Err(e) => Err(SyncWrapper::new(Err(e))),
                Ok(resp) => match self.capture(resp).await {
                    Ok(page) => Ok(Arc::new(page)),
                    Err(resp) => Err(SyncWrapper::new(Ok(resp))),
                },
            }
        };
        let r: Result<Arc<Page>, Passed<S::Error>> =
            get_or_compute_async::<OkOnly, String, _>(cache, key, always, no_tags, origin).await;
        let status = if ran.load(Relaxed) {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        match r {
            Ok(page) => {
                if status == CacheStatus::Miss {
                    // Stored by a caller that ran alone after a flight that
                    // marked the page: the mark is out of date.
                    passes.clear(hash);
                }
                Ok(page.to_response(status, &self.settings.name, false))
            }
            Err(passed) => {
                let passed = passed.into_inner();
                if passed.is_ok() {
                    // A response that could not be stored: let the next
                    // requests skip the flight (they would wait for this
                    // run and get nothing).
                    passes.mark(hash, cache.clock().now());
                }
                passed.map(|resp| mark(resp, CacheStatus::Miss))
            }
        }
    }

    /// A `HEAD`: answered from the `GET`'s stored page (its status and
    /// headers, `Content-Length` of the stored body, no body); without one,
    /// the request goes to the inner service as it is and its answer is not
    /// stored (a `HEAD` answer has no body to store, and keeping a second
    /// copy of each page for `HEAD` would double the memory).
    async fn head<S, ReqB, ResB>(
        &self,
        mut inner: S,
        req: Request<ReqB>,
        key: String,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        ResB: http_body::Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        match self.pages.cache.lookup_async(key).await {
            Some(page) => Ok(page.to_response(CacheStatus::Hit, &self.settings.name, true)),
            None => {
                let resp = inner.call(req).await?;
                Ok(mark(resp.map(Body::new), CacheStatus::Miss))
            }
        }
    }

    /// The key of a cacheable request and whether it is a `HEAD` (answered
    /// from the `GET`'s page: same key); `None` to bypass the cache.
    fn key_of<B>(&self, req: &Request<B>) -> Option<(String, bool)> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return None,
        };
        let headers = req.headers();
        if headers.contains_key(header::AUTHORIZATION)
            || headers.contains_key(header::RANGE)
            || has_directive(headers.get_all(header::CACHE_CONTROL), &["no-store"])
        {
            return None;
        }
        let s = &self.settings;
        let uri = req.uri();
        let mut key = String::with_capacity(uri.path().len() + 16);
        key.push_str(uri.path());
        if let Some(query) = uri.query().filter(|q| s.include_query && !q.is_empty()) {
            key.push('?');
            if s.sort_query {
                let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
                pairs.sort_unstable();
                for (i, pair) in pairs.iter().enumerate() {
                    if i > 0 {
                        key.push('&');
                    }
                    key.push_str(pair);
                }
            } else {
                key.push_str(query);
            }
        }
        // A URI holds no tab, so these suffixes cannot be forged by a path.
        if s.include_host {
            let host = headers
                .get(header::HOST)
                .map(HeaderValue::as_bytes)
                .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()));
            if let Some(host) = host {
                key.push_str("\thost=");
                push_escaped(&mut key, host);
            }
        }
        for name in &s.vary {
            key.push('\t');
            key.push_str(name.as_str());
            key.push('=');
            for value in headers.get_all(name) {
                push_escaped(&mut key, value.as_bytes());
                key.push(',');
            }
        }
        Some((key, head))
    }

    /// Reads a response into a [`Page`] when it may be stored; otherwise
    /// gives it back, its body intact (what was read comes first).
    async fn capture<B>(&self, resp: Response<B>) -> Result<Page, Response<Body>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = resp.into_parts();
        // Boxed once: `Body` is `Unpin`, and the pass-through needs it anyway.
        let mut body = Body::new(body);
        let limit = self.settings.max_body;
        let storable =
            self.storable(&parts) && http_body::Body::size_hint(&body).lower() <= limit as u64;
        if !storable {
            return Err(Response::from_parts(parts, body));
        }
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut size = 0usize;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        size += data.len();
                        chunks.push(data);
                        if size > limit {
                            return Err(resume(parts, chunks, None, body));
                        }
                    }
                    // Trailers: passed on, not stored.
                    Err(frame) => return Err(resume(parts, chunks, Some(Ok(frame)), body)),
                },
                Some(Err(e)) => return Err(resume(parts, chunks, Some(Err(e.into())), body)),
            }
        }
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut all = Vec::with_capacity(size);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                Bytes::from(all)
            }
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect();
        Ok(Page {
            status: parts.status.as_u16(),
            headers,
            body,
            stored_ms: unix_ms(),
        })
    }

    /// Whether a response head allows storing it.
    fn storable(&self, parts: &response::Parts) -> bool {
        let headers = &parts.headers;
        if !(self.settings.filter)(parts)
            || headers.contains_key(header::SET_COOKIE)
            || has_directive(
                headers.get_all(header::CACHE_CONTROL),
                &["no-store", "no-cache", "private"],
            )
        {
            return false;
        }
        headers.get_all(header::VARY).iter().all(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .all(|n| {
                        n != "*"
                            && self
                                .settings
                                .vary
                                .iter()
                                .any(|h| h.as_str().eq_ignore_ascii_case(n))
                    })
            })
        })
    }
}

impl Page {
    /// The stored response, marked with `status`; for a `HEAD` (`head`),
    /// without its body but with the body's `Content-Length` (the stored
    /// headers have none: it is hop-by-hop here, as the body's length is
    /// known when it is sent).
    fn to_response(&self, status: CacheStatus, name: &str, head: bool) -> Response<Body> {
        let code = StatusCode::from_u16(self.status).unwrap_or_else(|_| {
            tracing::warn!(
                name,
                status = self.status,
                "layercache: a stored page has an invalid status"
            );
            StatusCode::INTERNAL_SERVER_ERROR
        });
        let body = if head {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = code;
        let headers = resp.headers_mut();
        headers.reserve(self.headers.len() + 3);
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_maybe_shared(value.clone()),
            ) {
                headers.append(n, v);
            }
        }
        // 1xx, 204 and 304 responses must not carry a Content-Length (RFC 9110, 8.6).
        let bodiless = code.is_informational()
            || code == StatusCode::NO_CONTENT
            || code == StatusCode::NOT_MODIFIED;
        if head && !bodiless {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        if status == CacheStatus::Hit {
            let age = unix_ms().saturating_sub(self.stored_ms) / 1000;
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        mark(resp, status)
    }
}

fn mark(mut resp: Response<Body>, status: CacheStatus) -> Response<Body> {
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    resp
}

/// A body that yields `read` (and `next`, a frame or error already taken
/// from `rest`), then the rest of `rest`.
fn resume(
    parts: response::Parts,
    read: Vec<Bytes>,
    next: Option<Result<Frame<Bytes>, BoxError>>,
    rest: Body,
) -> Response<Body> {
    let done = matches!(next, Some(Err(_)));
    let head = stream::iter(read.into_iter().map(|b| Ok(Frame::data(b))).chain(next));
    let tail = TryStreamExt::map_err(BodyStream::new(rest), BoxError::from);
    let frames: Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>> =
        if done {
            Box::pin(head)
        } else {
            Box::pin(head.chain(tail))
        };
    Response::from_parts(parts, Body::new(StreamBody::new(frames)))
}

fn has_directive<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    directives: &[&str],
) -> bool {
    values.into_iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|d| {
                let d = d.split('=').next().unwrap_or("").trim();
                directives.iter().any(|x| d.eq_ignore_ascii_case(x))
            })
        })
    })
}

/// Headers not stored with a page: hop-by-hop ones, and those each answer
/// sets anew (`Content-Length` from the stored body, `Age`, `x-cache`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::CONTENT_LENGTH,
        header::AGE,
    ]
    .contains(name)
        || name == X_CACHE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Appends `bytes` with `%`, control and non-ASCII bytes percent-escaped
/// (injective, so two header values never share a key).
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' && b != b',' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Shared {
        let l = ResponseCacheLayer::new("web::tests").vary_by([header::ACCEPT_LANGUAGE]);
        Shared {
            pages: l.pages(),
            settings: l.settings,
        }
    }

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[test]
    fn keys_start_with_the_path_so_prefix_invalidation_matches_pages() {
        let s = layer();
        assert_eq!(
            s.key_of(&get("/products/1?x=1")).unwrap().0,
            "/products/1?x=1\taccept-language="
        );
        let hosted = Request::get("/a")
            .header("host", "shop.example")
            .body(())
            .unwrap();
        assert_eq!(
            s.key_of(&hosted).unwrap().0,
            "/a\thost=shop.example\taccept-language="
        );
        let other = Request::get("/a")
            .header("host", "admin.example")
            .body(())
            .unwrap();
        assert_ne!(
            s.key_of(&hosted),
            s.key_of(&other),
            "hosts never share a page"
        );
    }

    #[test]
    fn a_head_has_the_get_s_key_and_vary_values_are_part_of_it_and_cannot_be_forged() {
        let s = layer();
        let head = Request::head("/a").body(()).unwrap();
        assert_eq!(
            s.key_of(&head),
            Some(("/a\taccept-language=".to_string(), true)),
            "a HEAD is answered from the GET's page"
        );
        assert_eq!(
            s.key_of(&get("/a")).unwrap(),
            (s.key_of(&head).unwrap().0, false)
        );
        let en = Request::get("/a")
            .header("accept-language", "en")
            .body(())
            .unwrap();
        let de = Request::get("/a")
            .header("accept-language", "de")
            .body(())
            .unwrap();
        assert_ne!(s.key_of(&en), s.key_of(&de));
        let two = Request::get("/a")
            .header("accept-language", "en")
            .header("accept-language", "de")
            .body(())
            .unwrap();
        let joined = Request::get("/a")
            .header("accept-language", "en,de")
            .body(())
            .unwrap();
        assert_ne!(
            s.key_of(&two),
            s.key_of(&joined),
            "a comma inside a value is escaped"
        );
    }

    #[test]
    fn authorization_range_no_store_and_posts_bypass() {
        let s = layer();
        let auth = Request::get("/a")
            .header("authorization", "Bearer x")
            .body(())
            .unwrap();
        let range = Request::get("/a")
            .header("range", "bytes=0-1")
            .body(())
            .unwrap();
        let no_store = Request::get("/a")
            .header("cache-control", "no-store")
            .body(())
            .unwrap();
        let post = Request::post("/a").body(()).unwrap();
        for req in [auth, range, no_store, post] {
            assert_eq!(s.key_of(&req), None, "{req:?}");
        }
    }

    #[test]
    fn responses_with_private_cache_control_cookies_or_foreign_vary_are_not_storable() {
        let s = layer();
        let head = |f: fn(http::response::Builder) -> http::response::Builder| {
            f(Response::builder()).body(()).unwrap().into_parts().0
        };
        assert!(s.storable(&head(|b| b.status(200))));
        assert!(s.storable(&head(|b| b.header("vary", "Accept-Language"))));
        assert!(!s.storable(&head(|b| b.status(500))));
        assert!(!s.storable(&head(|b| b.status(206))));
        assert!(!s.storable(&head(|b| b.header("cache-control", "private, max-age=60"))));
        assert!(!s.storable(&head(|b| b.header("cache-control", "no-store"))));
        assert!(!s.storable(&head(|b| b.header("set-cookie", "a=b"))));
        assert!(!s.storable(&head(|b| b.header("vary", "*"))));
        assert!(!s.storable(&head(|b| b.header("vary", "accept-language, cookie"))));
    }

    #[test]
    fn a_pass_mark_lasts_the_page_timeout_at_most_30_s_or_until_cleared() {
        let t0 = Timestamp::ZERO.saturating_add(Duration::from_secs(1));
        let at = |secs| t0.saturating_add(Duration::from_secs(secs));
        let long = Passes::new(None);
        long.mark(7, t0);
        assert!(long.is_marked(7, at(29)));
        assert!(!long.is_marked(7, at(30)), "30 s at most");
        assert!(!long.is_marked(8, t0), "other pages are not marked");
        let short = Passes::new(Some(Duration::from_secs(5)));
        short.mark(7, t0);
        assert!(short.is_marked(7, at(4)));
        assert!(
            !short.is_marked(7, at(5)),
            "no longer than the page would live"
        );
        short.mark(7, t0);
        short.clear(7);
        assert!(!short.is_marked(7, t0), "a storable response clears it");
    }
}
