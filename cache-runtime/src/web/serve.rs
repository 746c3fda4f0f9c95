//! One request through the view cache: route, look up, stream and store.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{response, Request, Response, StatusCode};
use http_body::Frame;
use sync_wrapper::SyncWrapper;
use tokio::sync::oneshot;
use tower_service::Service;

use super::page::{Page, PageMode, Recipe};
use super::request::{self, Route};
use super::response::{mark, CacheStatus, Shared};
use super::rules::Directives;
use super::tee::{Recorded, Tee};
use crate::pipeline::{always, bypass_async, get_or_compute_async};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the inner service's answer was not stored.
enum Unstored<E> {
    /// Not storable by its head: handed back to the client as it is.
    Response(Result<Response<Body>, E>),
    /// Already streaming to the client; it outgrew `max_body` (or had
    /// trailers), so nothing is stored.
    TooBig,
    /// Already streaming to the client; it failed or the client left.
    Broken,
}

/// `Sync` so the pipeline may hold a reference across its write-back.
type Passed<E> = SyncWrapper<Unstored<E>>;

impl Shared {
    pub(crate) async fn serve<S, ReqB, ResB>(
        self: Arc<Self>,
        mut inner: S,
        req: Request<ReqB>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
        S::Future: Send,
        S::Error: Send + 'static,
        ReqB: Send + 'static,
        ResB: http_body::Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let cache = self.pages.cache;
        match request::route(&self.settings, &req) {
            Route::Pass => {
                let resp = bypass_async(cache, inner.call(req)).await?;
                Ok(mark(resp.map(Body::new), CacheStatus::Bypass))
            }
            Route::Unsafe => {
                let (headers, uri) = (req.headers().clone(), req.uri().clone());
                let resp = bypass_async(cache, inner.call(req)).await?;
                let status = resp.status();
                if status.is_success() || status.is_redirection() {
                    let keys = request::url_keys(&self.settings, &headers, &uri, resp.headers());
                    for key in keys {
                        self.drop_url(key).await;
                    }
                }
                Ok(mark(resp.map(Body::new), CacheStatus::Bypass))
            }
            Route::Page {
                key,
                personal: true,
                head,
            } => {
                let resp = bypass_async(cache, inner.call(req)).await?;
                Ok(self.personal(resp, key, head))
            }
            Route::Page {
                key, head: true, ..
            } => self.head(inner, req, key).await,
            Route::Page { key, .. } => self.get(inner, req, key).await,
        }
    }

    /// Drops the page of one URL in every variant, tier and process.
    async fn drop_url(&self, url: String) {
        crate::invalidate_tag_async(&request::url_tag(&url)).await;
        // A page stored on the side for a personal request carries no tag.
        self.pages.cache.invalidate_async(&url).await;
    }

    fn now_ms(&self) -> u64 {
        self.pages.cache.clock().unix_millis()
    }

    fn recipe(&self) -> Recipe {
        Recipe {
            now_ms: self.now_ms(),
            ignore_origin_freshness: self.settings.ignore_origin_freshness,
            generate_etag: self.settings.generate_etag,
        }
    }

    async fn get<S, ReqB, ResB>(
        self: Arc<Self>,
        mut inner: S,
        mut req: Request<ReqB>,
        key: String,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
        S::Future: Send,
        S::Error: Send + 'static,
        ReqB: Send + 'static,
        ResB: http_body::Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
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
            if self.storable(&parts, &key) && !too_big {
                passes.clear(hash);
            }
            return Ok(mark(
                Response::from_parts(parts, Body::new(body)),
                CacheStatus::Bypass,
            ));
        }
        if let Some(page) = cache.local_get(&key, Some) {
            let now = self.now_ms();
            return Ok(page.answer(
                req.headers(),
                CacheStatus::Hit,
                &self.settings.name,
                false,
                now,
            ));
        }
        let conditions = take_conditions(req.headers_mut());
        let (early_tx, early_rx) = oneshot::channel();
        let ran = Arc::new(AtomicBool::new(false));
        let flight = {
            let (shared, ran) = (Arc::clone(&self), Arc::clone(&ran));
            async move {
                let origin = async {
                    ran.store(true, Relaxed);
                    match inner.call(req).await {
                        Err(e) => Err(SyncWrapper::new(Unstored::Response(Err(e)))),
                        Ok(resp) => shared.record(resp.map(Body::new), &key, early_tx).await,
                    }
                };
                let tag = |k: &String| vec![request::url_tag(request::url_of(k))];
                let mut r = get_or_compute_async::<PageMode, String, _>(
                    cache,
                    key.clone(),
                    always,
                    tag,
                    origin,
                )
                .await;
                match &mut r {
                    Ok(_) if ran.load(Relaxed) => shared.pages.passes.clear(hash),
                    // Not storable: the next requests skip the flight (they
                    // would wait for this run and get nothing).
                    Err(passed) => match passed.get_mut() {
                        Unstored::Response(Ok(_)) | Unstored::TooBig => {
                            shared.pages.passes.mark(hash, cache.clock().now())
                        }
                        Unstored::Response(Err(_)) | Unstored::Broken => {}
                    },
                    Ok(_) => {}
                }
                r
            }
        };
        // The flight runs on its own task: it outlives this request when the
        // body streams to the client, and stores the page at its end.
        let task = tokio::spawn(flight);
        if let Ok(streaming) = early_rx.await {
            return Ok(streaming);
        }
        let r = match task.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let status = if ran.load(Relaxed) {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        match r {
            Ok(page) => Ok(page.answer(
                &conditions,
                status,
                &self.settings.name,
                false,
                self.now_ms(),
            )),
            Err(passed) => match passed.into_inner() {
                Unstored::Response(r) => r.map(|resp| mark(resp, CacheStatus::Miss)),
                // Unreachable in practice: a streamed answer went out above.
                Unstored::TooBig | Unstored::Broken => {
                    let mut resp = Response::new(Body::empty());
                    *resp.status_mut() = StatusCode::BAD_GATEWAY;
                    Ok(mark(resp, CacheStatus::Miss))
                }
            },
        }
    }

    /// The leader's answer from the inner service: streamed to the client
    /// through `early` while a copy is recorded, then the page (or why
    /// there is none).
    async fn record<E>(
        &self,
        resp: Response<Body>,
        key: &str,
        early: oneshot::Sender<Response<Body>>,
    ) -> Result<Arc<Page>, Passed<E>> {
        let (parts, body) = resp.into_parts();
        let fits = http_body::Body::size_hint(&body).lower() <= self.settings.max_body as u64;
        if !(fits && self.storable(&parts, key)) {
            let resp = Response::from_parts(parts, body);
            return Err(SyncWrapper::new(Unstored::Response(Ok(resp))));
        }
        if http_body::Body::size_hint(&body).exact().is_some() {
            // A body of known length (a rendered page) is already in
            // memory: stored before it is answered, so the fleet has it
            // when the client does, and the answer carries a generated ETag.
            return match http_body_util::BodyExt::collect(body).await {
                Ok(all) if all.trailers().is_none() => {
                    let body = all.to_bytes();
                    Ok(Arc::new(Page::new(
                        parts.status,
                        &parts.headers,
                        body,
                        &self.recipe(),
                    )))
                }
                Ok(all) => {
                    let resp = Response::from_parts(parts, Body::new(all));
                    Err(SyncWrapper::new(Unstored::Response(Ok(resp))))
                }
                Err(e) => {
                    let failed =
                        futures_util::stream::once(async move { Err::<Frame<Bytes>, _>(e) });
                    let body = Body::new(http_body_util::StreamBody::new(failed));
                    let resp = Response::from_parts(parts, body);
                    Err(SyncWrapper::new(Unstored::Response(Ok(resp))))
                }
            };
        }
        let (tee, done) = Tee::new(body, self.settings.max_body);
        let (status, headers) = (parts.status, parts.headers.clone());
        let streaming = mark(
            Response::from_parts(parts, Body::new(tee)),
            CacheStatus::Miss,
        );
        // A closed receiver (the client left) drops the tee: `Broken` below.
        let _ = early.send(streaming);
        match done.await {
            Ok(Recorded::Complete(body)) => {
                Ok(Arc::new(Page::new(status, &headers, body, &self.recipe())))
            }
            Ok(Recorded::Unstorable) => Err(SyncWrapper::new(Unstored::TooBig)),
            Ok(Recorded::Broken) | Err(_) => Err(SyncWrapper::new(Unstored::Broken)),
        }
    }

    /// A personal request's answer (it went to the inner service): passed
    /// on, and stored on the side only when it says `Cache-Control: public`.
    fn personal<ResB>(&self, resp: Response<ResB>, key: String, head: bool) -> Response<Body>
    where
        ResB: http_body::Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let (parts, body) = resp.into_parts();
        let body = Body::new(body);
        let fits = http_body::Body::size_hint(&body).lower() <= self.settings.max_body as u64;
        let public = Directives::of(&parts.headers).public;
        if head || !public || !fits || !self.storable(&parts, &key) {
            return mark(Response::from_parts(parts, body), CacheStatus::Bypass);
        }
        let (tee, done) = Tee::new(body, self.settings.max_body);
        let (status, headers) = (parts.status, parts.headers.clone());
        let cache = self.pages.cache;
        let recipe = self.recipe();
        tokio::spawn(async move {
            if let Ok(Recorded::Complete(body)) = done.await {
                let page = Page::new(status, &headers, body, &recipe);
                cache.put_async(key, Arc::new(page)).await;
            }
        });
        mark(
            Response::from_parts(parts, Body::new(tee)),
            CacheStatus::Bypass,
        )
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
            Some(page) => {
                let now = self.now_ms();
                Ok(page.answer(
                    req.headers(),
                    CacheStatus::Hit,
                    &self.settings.name,
                    true,
                    now,
                ))
            }
            None => {
                let resp = inner.call(req).await?;
                Ok(mark(resp.map(Body::new), CacheStatus::Miss))
            }
        }
    }

    /// Whether a response head allows storing it under `key`.
    pub(crate) fn storable(&self, parts: &response::Parts, key: &str) -> bool {
        let s = &self.settings;
        let headers = &parts.headers;
        let d = Directives::of(headers);
        if !(s.filter)(parts)
            || headers.contains_key(header::SET_COOKIE)
            || d.no_store
            || d.no_cache
            || d.private
            || !request::encoding_fits(key, headers)
        {
            return false;
        }
        if !s.ignore_origin_freshness {
            let now_s = self.now_ms() / 1000;
            let spent = super::rules::lifetime(&d, headers, now_s)
                .is_some_and(|l| l.as_secs() <= super::rules::initial_age(headers, now_s));
            if spent {
                return false;
            }
        }
        headers.get_all(header::VARY).iter().all(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .all(|n| self.keyed_by(n))
            })
        })
    }

    /// Whether the page key holds the request header `name` (for `Vary`).
    fn keyed_by(&self, name: &str) -> bool {
        let s = &self.settings;
        name != "*"
            && (name.eq_ignore_ascii_case("accept-encoding")
                || (name.eq_ignore_ascii_case("cookie") && !s.vary_cookies.is_empty())
                || s.vary.iter().any(|h| h.as_str().eq_ignore_ascii_case(name)))
    }
}

/// Removes the request's `If-None-Match` and `If-Modified-Since` (the
/// cache answers them itself) and returns them: a conditional request on a
/// cold page gets the full answer from the inner service, which is stored.
fn take_conditions(headers: &mut HeaderMap) -> HeaderMap {
    let mut taken = HeaderMap::new();
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        for v in headers.get_all(&name) {
            taken.append(name.clone(), v.clone());
        }
        headers.remove(&name);
    }
    taken
}
