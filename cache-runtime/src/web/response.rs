//! Response (view) caching: a tower [`Layer`] over any HTTP service.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{response, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Timestamp;
use crate::key::render_template;
use crate::pipeline::{FnCache, FnSpec, TierChoice, Timeout};

use super::page::Page;

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

type PageCache = FnCache<String, Arc<Page>>;

/// One layer name's pages and hit-for-pass marks.
pub(crate) struct Pages {
    pub(crate) cache: &'static PageCache,
    pub(crate) passes: Passes,
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
pub(crate) struct Passes {
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
    pub(crate) fn is_marked(&self, hash: u64, now: Timestamp) -> bool {
        self.marks.get(&hash).is_some_and(|until| now < until)
    }

    /// Marks the page: its next requests skip the cache for a while.
    pub(crate) fn mark(&self, hash: u64, now: Timestamp) {
        self.marks.insert(hash, now.saturating_add(self.ttl));
    }

    /// A storable response was seen: the page is cached again.
    pub(crate) fn clear(&self, hash: u64) {
        self.marks.remove(&hash);
    }
}

/// Decides from the response head whether it may be stored.
pub(crate) type Filter = Arc<dyn Fn(&response::Parts) -> bool + Send + Sync>;

/// The default of [`ResponseCacheLayer::max_body`]: 1 MiB.
const DEFAULT_MAX_BODY: usize = 1 << 20;

/// A tower [`Layer`] caching `GET` responses of the service it wraps, and
/// answering `HEAD` and conditional requests from them (the guide's view
/// caching, `@cache.cached` on a route), by the rules of RFC 9111 listed in
/// the [module docs](super).
///
/// **The key** is the path and the query string (as sent, or with its
/// pairs sorted after [`sort_query`](Self::sort_query)), the host without
/// its port (see [`include_host`](Self::include_host) and
/// [`allow_hosts`](Self::allow_hosts)), the encodings the request accepts
/// among `br`, `deflate`, `gzip` and `zstd` (sorted, so a compression layer
/// under the cache keeps caching, one page per encoding), plus the
/// request's values of the headers named with [`vary_by`](Self::vary_by)
/// and of the cookies named with [`vary_by_cookies`](Self::vary_by_cookies).
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
/// **Freshness**: a page lives the smaller of the layer's
/// [`timeout`](Self::timeout) and the response's `s-maxage`, `max-age` or
/// `Expires` (less the `Age` it came with); a hit carries the page's `Age`
/// (its initial age plus its time in the cache).
/// [`ignore_origin_freshness`](Self::ignore_origin_freshness) makes the
/// layer's timeout win.
///
/// **Validators**: a stored page keeps its `ETag` and `Last-Modified`, and
/// gets a strong `ETag` computed from its body when it has neither
/// ([`generate_etag`](Self::generate_etag)). `If-None-Match` and
/// `If-Modified-Since` are answered with a 304 from the page; on a cold
/// page they are removed from the request to the inner service, so its
/// full answer is stored.
///
/// **`HEAD`** has the `GET`'s key: a stored page answers it with its status
/// and headers, a `Content-Length` of the stored body and no body
/// (`x-cache: HIT`). Without a stored page the request goes to the inner
/// service unchanged and its answer is passed on, not stored
/// (`x-cache: MISS`, counted as a miss): only a `GET` fills the cache.
///
/// **Unsafe methods**: a `POST`, `PUT`, `PATCH` or `DELETE` goes to the
/// inner service (`x-cache: BYPASS`); when it succeeds (2xx or 3xx) the
/// pages of its URL, and of the `Location` and `Content-Location` it
/// answers with on the same host, are dropped in every tier and process.
///
/// **Personal requests**: a request with `Authorization`, or with a cookie
/// the layer was not told about ([`ignore_cookies`](Self::ignore_cookies),
/// [`vary_by_cookies`](Self::vary_by_cookies), or `vary_by(COOKIE)`), is
/// never answered from the cache (`x-cache: BYPASS`), and its response is
/// stored only when it says `Cache-Control: public`. (Before, a cookie did
/// not bypass, and a page personalised by cookie without `Cache-Control:
/// private` was served to every visitor.)
///
/// **Other requests that bypass the cache** (`x-cache: BYPASS`, counted as
/// `bypassed`): other methods, `Range`, `If-Match`,
/// `If-Unmodified-Since`, `Cache-Control: no-store`, and a host outside
/// [`allow_hosts`](Self::allow_hosts).
///
/// **Responses that are not stored** (passed through as `x-cache: MISS`):
/// a status the filter rejects (by default anything but 2xx, and 206),
/// `Cache-Control: no-store`, `no-cache` or `private`, a freshness
/// lifetime already spent (`max-age=0`, `must-revalidate, max-age=0`), a
/// `Set-Cookie` header, a `Vary` naming `*` or a header the key does not
/// hold, a `Content-Encoding` the request did not accept, and bodies over
/// [`max_body`](Self::max_body). **Bodies are streamed**: the client gets
/// each chunk as the handler produces it, while the layer records a copy;
/// the page is stored at the end of the body, unless it outgrew
/// `max_body` (then it is passed on whole and not stored). A stored
/// response keeps its end-to-end headers only: never `Connection`, the
/// fields it names, `Keep-Alive`, `Transfer-Encoding`, `TE`, `Trailer`,
/// `Upgrade` or any `Proxy-*` field.
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
/// A miss runs on a spawned tokio task (axum runs on tokio), so a page
/// whose client left mid-stream is still stored, and a streamed page is
/// stored just after its last byte reaches the client.
///
/// Concurrent misses of one page share one call of the inner service
/// (single-flight; the first caller streams, the others get the page when
/// it is complete); with a shared tier (`CACHE_TYPE=redis`) pages are
/// shared by the fleet. Every request is counted once under the layer's
/// name in [`stats()`](crate::stats): a hit (`local_hits`, `shared_hits`
/// or `coalesced`), a miss, or `bypassed`. Layers are identified by name:
/// building two layers with one name gives them one cache (the first one's
/// settings).
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use layercache_runtime::web::ResponseCacheLayer;
///
/// let pages = ResponseCacheLayer::new("pages")
///     .timeout(Duration::from_secs(300))
///     .sort_query(true)
///     .vary_by([http::header::ACCEPT_LANGUAGE])
///     // Analytics cookies do not change the page; `theme` does.
///     .ignore_cookies(["_ga"])
///     .vary_by_cookies(["theme"]);
/// let app: Router = Router::new()
///     .route("/expensive-page", get(|| async { "rendered slowly" }))
///     .layer(pages);
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct ResponseCacheLayer {
    pub(crate) settings: Settings,
}

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) name: String,
    timeout: Timeout,
    max_entries: Option<u64>,
    tier: TierChoice,
    local_timeout: Option<Duration>,
    jitter: Option<f64>,
    pub(crate) include_query: bool,
    pub(crate) include_host: bool,
    pub(crate) sort_query: bool,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) max_body: usize,
    pub(crate) filter: Filter,
    /// Normalised host names served from the cache; `None`: any.
    pub(crate) hosts: Option<Vec<String>>,
    pub(crate) ignore_cookies: Vec<String>,
    pub(crate) vary_cookies: Vec<String>,
    pub(crate) ignore_origin_freshness: bool,
    pub(crate) generate_etag: bool,
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
                hosts: None,
                ignore_cookies: Vec::new(),
                vary_cookies: Vec::new(),
                ignore_origin_freshness: false,
                generate_etag: true,
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

    /// Serves only these hosts from the cache (compared without port, in
    /// lower case); a request for any other host passes to the inner
    /// service (`x-cache: BYPASS`) and adds no entry, so a client cannot
    /// fill the cache with pages under made-up `Host` values.
    pub fn allow_hosts<I, H>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let hosts = hosts
            .into_iter()
            .map(|h| super::request::normal_host(h.as_ref()))
            .collect();
        self.settings.hosts = Some(hosts);
        self
    }

    /// Cookies that do not change a page (analytics, consent): a request
    /// whose cookies are all ignored or [varied by](Self::vary_by_cookies)
    /// is answered from the cache. Any other cookie makes the request
    /// personal (never answered from the cache).
    pub fn ignore_cookies<I, C>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        self.settings.ignore_cookies = names.into_iter().map(Into::into).collect();
        self
    }

    /// Cookies whose values are part of the key (a theme, a language): one
    /// page per value, and a request carrying them is not personal. A
    /// response's `Vary: Cookie` is then accepted.
    pub fn vary_by_cookies<I, C>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        self.settings.vary_cookies = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the layer's timeout alone decides how long a page lives
    /// (default `false`: the response's `s-maxage`, `max-age` or `Expires`
    /// shortens it, and `max-age=0` pages are not stored). With `true`, a
    /// page served past the freshness its response stated tells clients
    /// `max-age=0` so they do not keep it longer still.
    pub fn ignore_origin_freshness(mut self, ignore: bool) -> Self {
        self.settings.ignore_origin_freshness = ignore;
        self
    }

    /// Whether a stored `200` with neither `ETag` nor `Last-Modified` gets a
    /// strong `ETag` computed from its body (default `true`), so clients
    /// revalidate with `If-None-Match` and get a 304 without the body.
    pub fn generate_etag(mut self, generate: bool) -> Self {
        self.settings.generate_etag = generate;
        self
    }

    /// Sorts the query's `name=value` pairs before keying (default
    /// `false`), so `?a=1&b=2` and `?b=2&a=1` are one page.
    pub fn sort_query(mut self, sort: bool) -> Self {
        self.settings.sort_query = sort;
        self
    }

    /// Request headers whose values are part of the key. A response whose
    /// `Vary` names a header outside this list (other than
    /// `Accept-Encoding`, always in the key) is not stored.
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

    pub(crate) fn pages(&self) -> &'static Pages {
        static LAYERS: OnceLock<Mutex<HashMap<String, &'static Pages>>> = OnceLock::new();
        let mut layers = LAYERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = &self.settings;
        layers.entry(s.name.clone()).or_insert_with(|| {
            let cache = crate::invalidate::register(FnCache::new(FnSpec {
                timeout: s.timeout,
                max_entries: s.max_entries,
                tier: s.tier,
                local_timeout: s.local_timeout,
                jitter: s.jitter,
                // Pages share the manual cache's keyspace: their stable key
                // is the path, which prefix invalidation matches.
                ..FnSpec::new(s.name.clone(), String::new(), render_template)
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

/// What every clone of one layer's service shares.
pub(crate) struct Shared {
    pub(crate) pages: &'static Pages,
    pub(crate) settings: Settings,
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

/// Sets the [`X_CACHE`] header.
pub(crate) fn mark(mut resp: Response<Body>, status: CacheStatus) -> Response<Body> {
    resp.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
