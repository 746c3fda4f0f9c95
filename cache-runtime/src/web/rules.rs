//! The RFC 9111 rules the view cache applies to response and request heads:
//! freshness (§4.2), validators and conditional requests (§4.3, RFC 9110
//! §13), hop-by-hop fields (§3.1). Pure functions of headers and times, so
//! they are tested without a server.

use std::time::{Duration, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::response::X_CACHE;

/// The `Cache-Control` directives of a response the layer acts on.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`.
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl Directives {
    /// Parses every `Cache-Control` field of `headers`. A directive with an
    /// unreadable argument counts as present with no argument, and an
    /// unreadable `max-age` as 0 (RFC 9111 §4.2.1: invalid is stale).
    pub(crate) fn of(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for part in value.split(',') {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part.trim(), None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                    "max-age" => d.max_age = Some(secs()),
                    "s-maxage" => d.s_maxage = Some(secs()),
                    _ => {}
                }
            }
        }
        d
    }
}

/// Whether a request's `Cache-Control` says `no-store`.
pub(crate) fn request_no_store(headers: &HeaderMap) -> bool {
    Directives::of(headers).no_store
}

/// An HTTP date (`Expires`, `Date`, `Last-Modified`) in Unix seconds.
pub(crate) fn http_date(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    let t = httpdate::parse_http_date(value).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Formats Unix seconds as an HTTP date.
#[cfg(test)]
pub(crate) fn fmt_http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

/// The freshness lifetime a shared cache gives a response (§4.2.1):
/// `s-maxage`, else `max-age`, else `Expires` minus `Date` (or minus
/// `now` without a `Date`); `None` when the response states none (the
/// layer's timeout alone applies: the layer does no heuristic freshness).
/// An unreadable `Expires` is in the past (§5.3).
pub(crate) fn lifetime(d: &Directives, headers: &HeaderMap, now_secs: u64) -> Option<Duration> {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Some(Duration::from_secs(s));
    }
    if !headers.contains_key(header::EXPIRES) {
        return None;
    }
    let expires = http_date(headers, header::EXPIRES).unwrap_or(0);
    let date = http_date(headers, header::DATE).unwrap_or(now_secs);
    Some(Duration::from_secs(expires.saturating_sub(date)))
}

/// The corrected initial age of a response received at `now_secs` (§4.2.3):
/// the larger of the apparent age (`now - Date`) and the origin's `Age`
/// (the response delay of an in-process handler is taken as zero).
pub(crate) fn initial_age(headers: &HeaderMap, now_secs: u64) -> u64 {
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let apparent = http_date(headers, header::DATE).map_or(0, |d| now_secs.saturating_sub(d));
    age.max(apparent)
}

/// Whether a response header field is stored and replayed: not the
/// hop-by-hop fields (§3.1: `Connection`, the fields it names, the
/// classic list and every `Proxy-*`), nor those each answer sets anew
/// (`Content-Length`, `Age`, `x-cache`).
pub(crate) fn is_end_to_end(name: &HeaderName, headers: &HeaderMap) -> bool {
    const HOP: [HeaderName; 8] = [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::CONTENT_LENGTH,
        header::AGE,
        X_CACHE,
    ];
    if HOP.contains(name) || name.as_str() == "keep-alive" || name.as_str().starts_with("proxy-") {
        return false;
    }
    !headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

/// A strong entity tag over a body: 128 bits of xxh3, quoted.
pub(crate) fn etag_of(body: &[u8]) -> HeaderValue {
    let hash = xxhash_rust::xxh3::xxh3_128(body);
    HeaderValue::from_str(&format!("\"{hash:032x}\"")).expect("hex digits are a valid header")
}

/// An entity tag without its weakness mark, for the weak comparison that
/// `If-None-Match` uses (RFC 9110 §13.1.2).
fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// Whether a request's conditional header fields are satisfied by a stored
/// response with headers `stored`, so a 304 answers it (RFC 9110 §13.2.2:
/// `If-None-Match` wins; `If-Modified-Since` counts only without it).
pub(crate) fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return request.get_all(header::IF_NONE_MATCH).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || opaque(t) == opaque(etag))
            })
        });
    }
    match (
        http_date(request, header::IF_MODIFIED_SINCE),
        http_date(stored, header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The header fields a 304 carries from the stored response (RFC 9110
/// §15.4.5).
pub(crate) const NOT_MODIFIED_FIELDS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

#[cfg(test)]
mod tests {
    use super::*;

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
    fn s_maxage_wins_over_max_age_which_wins_over_expires() {
        let now = 1_700_000_000;
        let h = headers(&[("cache-control", "max-age=60, s-maxage=5")]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, now),
            Some(Duration::from_secs(5))
        );
        let h = headers(&[
            ("cache-control", "max-age=60"),
            ("expires", &fmt_http_date(now + 10)),
        ]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, now),
            Some(Duration::from_secs(60))
        );
        let h = headers(&[
            ("expires", &fmt_http_date(now + 10)),
            ("date", &fmt_http_date(now - 5)),
        ]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, now),
            Some(Duration::from_secs(15)),
            "Expires counts from Date"
        );
        let h = headers(&[("expires", "0")]);
        assert_eq!(
            lifetime(&Directives::of(&h), &h, now),
            Some(Duration::ZERO),
            "an invalid Expires is in the past"
        );
        assert_eq!(
            lifetime(&Directives::default(), &HeaderMap::new(), now),
            None
        );
    }

    #[test]
    fn the_initial_age_is_the_origin_s_age_or_the_apparent_age_if_larger() {
        let now = 1_700_000_000;
        assert_eq!(initial_age(&headers(&[("age", "7")]), now), 7);
        let h = headers(&[("age", "2"), ("date", &fmt_http_date(now - 30))]);
        assert_eq!(initial_age(&h, now), 30);
    }

    #[test]
    fn connection_the_fields_it_names_and_proxy_fields_are_hop_by_hop() {
        let h = headers(&[("connection", "close, x-secret"), ("x-secret", "1")]);
        for name in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "proxy-authenticate",
            "transfer-encoding",
            "upgrade",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!is_end_to_end(&name, &h), "{name}");
        }
        assert!(is_end_to_end(&header::CONTENT_TYPE, &h));
        assert!(is_end_to_end(&header::ETAG, &h));
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_if_modified_since() {
        let stored = headers(&[("etag", "\"v1\""), ("last-modified", &fmt_http_date(1_000))]);
        assert!(not_modified(
            &headers(&[("if-none-match", "W/\"v1\"")]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"x\", \"v1\"")]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[
                ("if-none-match", "\"v0\""),
                ("if-modified-since", &fmt_http_date(2_000))
            ]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-modified-since", &fmt_http_date(1_000))]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", &fmt_http_date(999))]),
            &stored
        ));
    }
}
