//! What the view cache does with a request, and the key of its page.

use http::header::{self, HeaderMap};
use http::{Method, Request, Uri};

use super::response::Settings;
use super::rules;

/// The view cache's decision for one request.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    /// `GET` (`head: false`) or `HEAD` for the page under `key`. A
    /// `personal` request (`Authorization`, or a cookie the layer was not
    /// told about) is never answered from the cache; its response is stored
    /// only when it says `Cache-Control: public`.
    Page {
        key: String,
        head: bool,
        personal: bool,
    },
    /// A `POST`, `PUT`, `PATCH` or `DELETE`: passed on; on success the pages
    /// of its URL (every variant: see [`url_tag`]) are dropped.
    Unsafe,
    /// Straight to the inner service, nothing stored.
    Pass,
}

/// The encodings a compression layer under the cache may produce, which
/// are the part of `Accept-Encoding` a page key keeps.
const ENCODINGS: [&str; 4] = ["br", "deflate", "gzip", "zstd"];

/// Decides the route of `req` under `s`.
pub(crate) fn route<B>(s: &Settings, req: &Request<B>) -> Route {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => return Route::Unsafe,
        _ => return Route::Pass,
    };
    let headers = req.headers();
    if headers.contains_key(header::RANGE)
        || headers.contains_key(header::IF_MATCH)
        || headers.contains_key(header::IF_UNMODIFIED_SINCE)
        || rules::request_no_store(headers)
    {
        return Route::Pass;
    }
    let host = host_of(headers, req.uri());
    if let Some(allowed) = &s.hosts {
        if !host.as_ref().is_some_and(|h| allowed.contains(h)) {
            return Route::Pass;
        }
    }
    let mut key = url_key(s, req.uri(), host.as_deref());
    let personal = headers.contains_key(header::AUTHORIZATION) || has_unknown_cookie(s, headers);
    let ae = accept_encoding(headers);
    // A URI holds no tab, so these suffixes cannot be forged by a path.
    if !ae.is_empty() {
        key.push_str("\tae=");
        key.push_str(&ae);
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
    for name in &s.vary_cookies {
        key.push_str("\tcookie:");
        key.push_str(name);
        key.push('=');
        if let Some(value) = cookies(headers).find(|(n, _)| n == name).map(|(_, v)| v) {
            push_escaped(&mut key, value.as_bytes());
        }
    }
    Route::Page {
        key,
        head,
        personal,
    }
}

/// The part of a page key that names its URL: the path, the query (as
/// sent or sorted) and the host. Every variant of the URL's page (by
/// encoding, `vary_by` header or cookie) is this, or this and a tab.
/// Also the tag of every variant (see [`url_tag`]).
pub(crate) fn url_key(s: &Settings, uri: &Uri, host: Option<&str>) -> String {
    let mut key = String::with_capacity(uri.path().len() + 16);
    key.push_str(uri.path());
    if let Some(query) = uri.query().filter(|q| s.include_query && !q.is_empty()) {
        key.push('?');
        if s.sort_query {
            let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            pairs.sort_unstable();
            key.push_str(&pairs.join("&"));
        } else {
            key.push_str(query);
        }
    }
    if s.include_host {
        if let Some(host) = host {
            key.push_str("\thost=");
            push_escaped(&mut key, host.as_bytes());
        }
    }
    key
}

/// The URL keys an unsafe request to `req_uri` invalidates (§4.4): its
/// own, and those of `Location` and `Content-Location` of the response
/// when they name the same host.
pub(crate) fn url_keys(
    s: &Settings,
    req_headers: &HeaderMap,
    req_uri: &Uri,
    resp: &HeaderMap,
) -> Vec<String> {
    let host = host_of(req_headers, req_uri);
    let mut keys = vec![url_key(s, req_uri, host.as_deref())];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(uri) = resp
            .get(name)
            .and_then(|v| v.to_str().ok()?.parse::<Uri>().ok())
        else {
            continue;
        };
        let same_host = match uri.authority() {
            None => uri.path().starts_with('/'),
            Some(a) => Some(normal_host(a.as_str())) == host,
        };
        if same_host {
            keys.push(url_key(s, &uri, host.as_deref()));
        }
    }
    keys.dedup();
    keys
}

/// The tag every variant of the page of URL key `url` carries, so an
/// unsafe request drops them all in O(variants) (no keyspace scan).
pub(crate) fn url_tag(url: &str) -> String {
    format!("layercache.page\t{url}")
}

/// The URL part of a page key (up to its first variant suffix).
pub(crate) fn url_of(key: &str) -> &str {
    let host = key.find("\thost=").map_or(0, |i| i + 1);
    match key[host..].find('\t') {
        Some(i) => &key[..host + i],
        None => key,
    }
}

/// The request's host (`Host`, or the URI's authority), lower case,
/// without a port or a trailing dot: instances reached as `10.0.0.1:8080`
/// and `10.0.0.2:8081` share pages, and so do `Shop.example.` and
/// `shop.example`.
pub(crate) fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let raw = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    Some(normal_host(raw))
}

pub(crate) fn normal_host(raw: &str) -> String {
    let raw = raw.rsplit('@').next().unwrap_or(raw).trim();
    let host = if raw.starts_with('[') {
        // An IPv6 literal: the port, if any, follows the bracket.
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `Accept-Encoding` reduced to the known encodings it accepts (q > 0),
/// sorted: `gzip, deflate` and `deflate;q=0.9, gzip` are one variant, and
/// a request accepting none of them (identity) adds nothing to the key.
fn accept_encoding(headers: &HeaderMap) -> String {
    let mut accepted: Vec<&str> = Vec::new();
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if let Some(known) = ENCODINGS
                .iter()
                .find(|e| e.eq_ignore_ascii_case(coding))
                .filter(|_| !refused)
            {
                accepted.push(known);
            }
        }
    }
    accepted.sort_unstable();
    accepted.dedup();
    accepted.join(",")
}

/// Whether a response's encoding is one the request that keyed it accepts:
/// a compression layer answering `br` to a key made for `gzip` must not be
/// stored there.
pub(crate) fn encoding_fits(key: &str, resp: &HeaderMap) -> bool {
    let used = resp
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|e| !e.eq_ignore_ascii_case("identity"));
    let Some(used) = used else { return true };
    let accepted = key
        .split('\t')
        .find_map(|part| part.strip_prefix("ae="))
        .unwrap_or("");
    accepted.split(',').any(|e| e.eq_ignore_ascii_case(used))
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            let (n, v) = c.split_once('=')?;
            Some((n.trim(), v.trim()))
        })
}

/// Whether the request carries a cookie neither ignored nor varied by
/// (with `vary_by(COOKIE)` the whole header is in the key: none is unknown).
fn has_unknown_cookie(s: &Settings, headers: &HeaderMap) -> bool {
    if s.vary.contains(&header::COOKIE) || !headers.contains_key(header::COOKIE) {
        return false;
    }
    cookies(headers).any(|(name, _)| {
        !s.ignore_cookies.iter().any(|c| c == name) && !s.vary_cookies.iter().any(|c| c == name)
    })
}

/// Appends `bytes` with `%`, `,`, control and non-ASCII bytes
/// percent-escaped (injective, so two header values never share a key).
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' && b != b',' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::response::{ResponseCacheLayer, Shared};
    use super::*;
    use http::{Request, Response};

    fn layer() -> Shared {
        layer_of(ResponseCacheLayer::new("web::tests").vary_by([header::ACCEPT_LANGUAGE]))
    }

    fn layer_of(l: ResponseCacheLayer) -> Shared {
        Shared {
            pages: l.pages(),
            settings: l.settings,
        }
    }

    impl Shared {
        /// The key of a request answered from the cache, and whether it is a `HEAD`.
        fn key_of<B>(&self, req: &Request<B>) -> Option<(String, bool)> {
            match route(&self.settings, req) {
                Route::Page {
                    key,
                    head,
                    personal: false,
                } => Some((key, head)),
                _ => None,
            }
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
    fn authorization_cookies_range_no_store_and_posts_are_not_answered_from_the_cache() {
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
        let cookie = Request::get("/a")
            .header("cookie", "session=1")
            .body(())
            .unwrap();
        let post = Request::post("/a").body(()).unwrap();
        assert_eq!(route(&s.settings, &post), Route::Unsafe);
        for req in [auth, cookie, range, no_store, post] {
            assert_eq!(s.key_of(&req), None, "{req:?}");
        }
    }

    #[test]
    fn responses_with_private_cache_control_cookies_or_foreign_vary_are_not_storable() {
        let s = layer();
        let head_of = |f: fn(http::response::Builder) -> http::response::Builder| {
            f(Response::builder()).body(()).unwrap().into_parts().0
        };
        assert!(s.storable(&head_of(|b| b.status(200)), "/a"));
        assert!(s.storable(&head_of(|b| b.header("vary", "Accept-Language")), "/a"));
        assert!(!s.storable(&head_of(|b| b.status(500)), "/a"));
        assert!(!s.storable(&head_of(|b| b.status(206)), "/a"));
        assert!(!s.storable(
            &head_of(|b| b.header("cache-control", "private, max-age=60")),
            "/a"
        ));
        assert!(!s.storable(&head_of(|b| b.header("cache-control", "no-store")), "/a"));
        assert!(!s.storable(&head_of(|b| b.header("set-cookie", "a=b")), "/a"));
        assert!(!s.storable(&head_of(|b| b.header("vary", "*")), "/a"));
        assert!(!s.storable(
            &head_of(|b| b.header("vary", "accept-language, cookie")),
            "/a"
        ));
        assert!(!s.storable(&head_of(|b| b.header("cache-control", "no-cache")), "/a"));
        assert!(!s.storable(
            &head_of(|b| b.header("cache-control", "must-revalidate, max-age=0")),
            "/a"
        ));
        assert!(
            s.storable(&head_of(|b| b.header("vary", "accept-encoding")), "/a"),
            "always keyed"
        );
        assert!(!s.storable(
            &head_of(|b| b.header("content-encoding", "br")),
            "/a\tae=gzip"
        ));
    }

    #[test]
    fn ignored_and_varied_cookies_keep_a_request_cacheable_and_varied_ones_split_the_key() {
        let s = layer_of(
            ResponseCacheLayer::new("web::tests::cookies")
                .ignore_cookies(["_ga"])
                .vary_by_cookies(["theme"]),
        );
        let with = |cookie: &str| {
            let req = Request::get("/a")
                .header("cookie", cookie)
                .body(())
                .unwrap();
            s.key_of(&req)
        };
        assert!(with("_ga=1").is_some());
        assert_eq!(with("_ga=1; theme=dark"), with("theme=dark; _ga=2"));
        assert_ne!(with("theme=dark"), with("theme=light"));
        assert_eq!(
            with("theme=dark; session=x"),
            None,
            "an unknown cookie is personal"
        );
    }

    #[test]
    fn the_host_is_keyed_without_port_or_case_and_allow_hosts_passes_others() {
        let s =
            layer_of(ResponseCacheLayer::new("web::tests::hosts").allow_hosts(["Shop.example"]));
        let at = |host: &str| {
            let req = Request::get("/a").header("host", host).body(()).unwrap();
            s.key_of(&req)
        };
        assert_eq!(at("shop.example:8080"), at("SHOP.example"));
        assert_eq!(at("shop.example").unwrap().0, "/a\thost=shop.example");
        assert_eq!(at("evil.example"), None);
        let ipv6 = Request::get("/a")
            .header("host", "[::1]:3000")
            .body(())
            .unwrap();
        assert_eq!(
            host_of(ipv6.headers(), ipv6.uri()).as_deref(),
            Some("[::1]")
        );
    }

    #[test]
    fn every_variant_of_a_page_names_its_url() {
        assert_eq!(
            url_of("/a?x=1\thost=h\tae=gzip\taccept-language=en"),
            "/a?x=1\thost=h"
        );
        assert_eq!(url_of("/a\tae=gzip"), "/a");
        assert_eq!(url_of("/a\thost=h"), "/a\thost=h");
        assert_eq!(url_of("/a"), "/a");
    }

    #[test]
    fn accept_encoding_is_keyed_as_the_sorted_known_encodings_it_accepts() {
        let s = layer_of(ResponseCacheLayer::new("web::tests::ae"));
        let with = |ae: &str| {
            let req = Request::get("/a")
                .header("accept-encoding", ae)
                .body(())
                .unwrap();
            s.key_of(&req).unwrap().0
        };
        assert_eq!(with("gzip, deflate"), with("deflate;q=0.5, gzip"));
        assert_eq!(with("gzip, deflate"), "/a\tae=deflate,gzip");
        assert_eq!(with("identity"), "/a");
        assert_eq!(with("gzip;q=0, br"), "/a\tae=br");
    }
}
