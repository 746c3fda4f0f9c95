//! A stored response and how it is answered from.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::response::{mark, CacheStatus};
use super::rules::{self, Directives};
use crate::pipeline::OutputMode;

/// A stored response: what is kept in every tier.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Page {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    /// Unix time (ms, by the cache's clock) the response was received.
    stored_ms: u64,
    /// Its corrected initial age in seconds (RFC 9111 §4.2.3).
    initial_age: u64,
    /// The freshness lifetime the response stated (seconds), if any.
    origin_lifetime: Option<u64>,
    /// How long it may be kept from its store (ms): its freshness lifetime
    /// minus its initial age, or `None` when the layer's timeout alone rules.
    ttl_ms: Option<u64>,
}

/// What the page cache stores for one request, and how long.
pub(crate) struct PageMode;

impl<E> OutputMode<Result<Arc<Page>, E>> for PageMode {
    type Value = Arc<Page>;
    #[inline]
    fn cacheable(r: &Result<Arc<Page>, E>) -> Option<&Arc<Page>> {
        r.as_ref().ok()
    }
    #[inline]
    fn from_cached(v: Arc<Page>) -> Result<Arc<Page>, E> {
        Ok(v)
    }
    #[inline]
    fn is_error(r: &Result<Arc<Page>, E>) -> bool {
        r.is_err()
    }
    #[inline]
    fn lifetime(v: &Arc<Page>) -> Option<Duration> {
        v.ttl_ms.map(Duration::from_millis)
    }
}

/// How a page is built from a response.
pub(crate) struct Recipe {
    /// Unix ms now, by the cache's clock.
    pub now_ms: u64,
    /// Keep the response's own freshness out of the page's life.
    pub ignore_origin_freshness: bool,
    /// Add a strong `ETag` over the body when the response has no validator.
    pub generate_etag: bool,
}

impl Page {
    /// The page of a response received at `recipe.now_ms`, its end-to-end
    /// header fields only.
    pub(crate) fn new(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        recipe: &Recipe,
    ) -> Page {
        let now_s = recipe.now_ms / 1000;
        let initial_age = rules::initial_age(headers, now_s);
        let origin_lifetime =
            rules::lifetime(&Directives::of(headers), headers, now_s).map(|l| l.as_secs());
        let ttl_ms = origin_lifetime
            .filter(|_| !recipe.ignore_origin_freshness)
            .map(|l| l.saturating_sub(initial_age).saturating_mul(1000));
        let mut kept: Vec<(String, Bytes)> = headers
            .iter()
            .filter(|(name, _)| rules::is_end_to_end(name, headers))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect();
        if recipe.generate_etag
            && status == StatusCode::OK
            && !headers.contains_key(header::ETAG)
            && !headers.contains_key(header::LAST_MODIFIED)
        {
            kept.push((
                header::ETAG.as_str().to_string(),
                Bytes::copy_from_slice(rules::etag_of(&body).as_bytes()),
            ));
        }
        Page {
            status: status.as_u16(),
            headers: kept,
            body,
            stored_ms: recipe.now_ms,
            initial_age,
            origin_lifetime,
            ttl_ms,
        }
    }

    /// The page's age in seconds at Unix ms `now_ms` (§4.2.3).
    pub(crate) fn age(&self, now_ms: u64) -> u64 {
        self.initial_age + now_ms.saturating_sub(self.stored_ms) / 1000
    }

    fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 3);
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_maybe_shared(value.clone()),
            ) {
                headers.append(n, v);
            }
        }
        headers
    }

    /// The answer to a request with headers `request` from this page, `now_ms`:
    /// a 304 when the request's validators match (RFC 9110 §13.2.2),
    /// otherwise the stored response (for a `HEAD`, `head`, without its body
    /// but with its `Content-Length`). A hit carries its `Age`.
    pub(crate) fn answer(
        &self,
        request: &HeaderMap,
        status: CacheStatus,
        name: &str,
        head: bool,
        now_ms: u64,
    ) -> Response<Body> {
        let code = StatusCode::from_u16(self.status).unwrap_or_else(|_| {
            tracing::warn!(
                name,
                status = self.status,
                "layercache: a stored page has an invalid status"
            );
            StatusCode::INTERNAL_SERVER_ERROR
        });
        let mut stored = self.header_map();
        let age = self.age(now_ms);
        self.align_freshness(&mut stored, age);
        if code == StatusCode::OK && rules::not_modified(request, &stored) {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            for field in rules::NOT_MODIFIED_FIELDS {
                for v in stored.get_all(&field) {
                    resp.headers_mut().append(field.clone(), v.clone());
                }
            }
            if status == CacheStatus::Hit {
                resp.headers_mut()
                    .insert(header::AGE, HeaderValue::from(age));
            }
            return mark(resp, status);
        }
        let body = if head {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = code;
        *resp.headers_mut() = stored;
        // 1xx, 204 and 304 responses must not carry a Content-Length (RFC 9110, 8.6).
        let bodiless = code.is_informational()
            || code == StatusCode::NO_CONTENT
            || code == StatusCode::NOT_MODIFIED;
        if head && !bodiless {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        if status == CacheStatus::Hit {
            resp.headers_mut()
                .insert(header::AGE, HeaderValue::from(age));
        }
        mark(resp, status)
    }

    /// Keeps what clients are told consistent with what the layer serves:
    /// a page served past the freshness its origin stated (only when the
    /// layer's timeout overrides it) says `max-age=0` instead of a lifetime
    /// already spent, and loses its `Expires`.
    fn align_freshness(&self, headers: &mut HeaderMap, age: u64) {
        let Some(lifetime) = self.origin_lifetime else {
            return;
        };
        if age < lifetime {
            return;
        }
        let kept: Vec<String> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|d| {
                let name = d.split('=').next().unwrap_or("").trim();
                !name.eq_ignore_ascii_case("max-age") && !name.eq_ignore_ascii_case("s-maxage")
            })
            .map(str::to_string)
            .collect();
        let mut value = kept.join(", ");
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str("max-age=0");
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::CACHE_CONTROL, v);
        }
        headers.remove(header::EXPIRES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(now_ms: u64) -> Recipe {
        Recipe {
            now_ms,
            ignore_origin_freshness: false,
            generate_etag: true,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_page_lives_its_lifetime_less_the_origin_s_age() {
        let h = headers(&[("cache-control", "max-age=10"), ("age", "4")]);
        let page = Page::new(StatusCode::OK, &h, Bytes::new(), &recipe(1_000_000));
        assert_eq!(
            <PageMode as OutputMode<Result<Arc<Page>, ()>>>::lifetime(&Arc::new(page)),
            Some(Duration::from_secs(6))
        );
        let page = Page::new(StatusCode::OK, &h, Bytes::new(), &recipe(1_000_000));
        assert_eq!(page.age(1_000_000 + 3_000), 7, "the origin's Age is added");
    }

    #[test]
    fn a_page_without_validators_gets_a_strong_etag_of_its_body() {
        let page = Page::new(
            StatusCode::OK,
            &HeaderMap::new(),
            Bytes::from("x"),
            &recipe(0),
        );
        let stored = page.header_map();
        assert_eq!(stored[header::ETAG], rules::etag_of(b"x"));
        let resp = page.answer(
            &headers(&[("if-none-match", stored[header::ETAG].to_str().unwrap())]),
            CacheStatus::Hit,
            "t",
            false,
            0,
        );
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn a_page_served_past_its_stated_lifetime_tells_clients_max_age_0() {
        let h = headers(&[("cache-control", "public, max-age=2")]);
        let page = Page::new(StatusCode::OK, &h, Bytes::new(), &recipe(0));
        let resp = page.answer(&HeaderMap::new(), CacheStatus::Hit, "t", false, 5_000);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=0");
        assert_eq!(resp.headers()[header::AGE], "5");
        let fresh = page.answer(&HeaderMap::new(), CacheStatus::Hit, "t", false, 1_000);
        assert_eq!(fresh.headers()[header::CACHE_CONTROL], "public, max-age=2");
    }
}
