//! Caching for web services (cargo feature `axum`): the guide's view caching
//! as a tower [`Layer`](tower_layer::Layer) ([`ResponseCacheLayer`]),
//! fragment caching for templates ([`fragment`], [`fragment_async`]), and a
//! stats [`Router`](axum::Router) to mount ([`stats_router`],
//! [`mount_stats`]).
//!
//! Everything here goes through the same tiers, single-flight, metrics and
//! invalidation as `#[cached]` functions: a page is an entry whose stable
//! key is its path, so `#[cache_invalidate(prefix = "/products")]` or
//! [`invalidate_prefix("/products")`](crate::invalidate_prefix) drops the
//! cached pages under `/products` in every process.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use layercache_runtime::web::{mount_stats, ResponseCacheLayer};
//!
//! let app: Router = Router::new()
//!     .route("/products", get(|| async { "the product list" }))
//!     .layer(ResponseCacheLayer::new("pages").timeout(Duration::from_secs(60)));
//! let app = mount_stats(app, "/cache-stats");
//! # drop(app);
//! ```
//!
//! # HTTP caching rules (RFC 9111)
//!
//! The view cache is a shared cache in front of the app's own handlers.
//! It follows:
//!
//! | rule | RFC 9111 | what the layer does |
//! |---|---|---|
//! | freshness lifetime | §4.2.1, §5.2.2.10, §5.2.2.1, §5.3 | a page lives the smaller of the layer's timeout and `s-maxage`, else `max-age`, else `Expires` − `Date`; an invalid `Expires` is already stale |
//! | age | §4.2.3, §5.1 | `Age` = the larger of the origin's `Age` and `now − Date`, plus the time in the cache; a page is stale when its age reaches its lifetime |
//! | no-store, private | §5.2.2.5, §5.2.2.7 | not stored |
//! | no-cache, must-revalidate, proxy-revalidate | §5.2.2.4, §5.2.2.2, §5.2.2.8 | `no-cache` pages are not stored; `must-revalidate` pages are stored for their lifetime and never served stale (the layer never serves stale pages); `max-age=0` is not stored |
//! | validators, conditional requests | §4.3.2; RFC 9110 §13 | `ETag` / `Last-Modified` are kept (a strong `ETag` over the body is added when neither is set); `If-None-Match` (weak comparison, wins) and `If-Modified-Since` get a 304 with the fields §15.4.5 lists; on a miss they are not passed on, so the full answer is stored |
//! | invalidation by unsafe methods | §4.4 | a 2xx/3xx answer to `POST`, `PUT`, `PATCH`, `DELETE` drops the pages of its URL and of `Location` / `Content-Location` on the same host, in every tier and process |
//! | Vary | §4.1 | `Accept-Encoding` is always in the key (normalised to the known encodings accepted); other fields must be named in `vary_by`, `Vary: *` is never stored |
//! | Authorization | §3.5 | never answered from the cache; the answer is stored only with `public` |
//! | hop-by-hop fields | §3.1; RFC 9110 §7.6.1 | `Connection`, the fields it names, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and every `Proxy-*` field are never stored or replayed |
//! | HEAD | §4 | answered from the `GET`'s page |
//!
//! Left out on purpose:
//!
//! - **Serving stale** (`stale-while-revalidate`, `stale-if-error` from
//!   RFC 5861, §4.2.4): a stale page is a miss. `#[cached(stale_if_error)]`
//!   covers functions; pages follow when the pipeline's fail-safe does.
//! - **Revalidating stored pages** (§4.3.1-4.3.4: sending a conditional
//!   request to the handler and freshening on 304): the handler is in the
//!   same process and usually renders as fast as it validates; `no-cache`
//!   pages are not stored instead.
//! - **Heuristic freshness** (§4.2.2): a page without a lifetime lives the
//!   layer's timeout, which the app chose.
//! - **Request directives** other than `no-store` (`max-age`, `no-cache`,
//!   `min-fresh`, `max-stale` in requests, §5.2.1): a client's reload must
//!   not be able to make every request reach the handler (a cheap
//!   denial of service on the pages the cache protects).
//! - **Storing partial content** (`206`, `Range`, §3.3-3.4) and combining
//!   ranges: range requests pass through.
//! - **Invalidating on an unsafe method's error** (§4.4 only asks it on
//!   success) and **`Location` on another host** (§4.4 forbids it).
//! - **The `Cookie` field**: RFC 9111 lets a shared cache store answers to
//!   requests with cookies; the layer does not unless told which cookies do
//!   not matter ([`ResponseCacheLayer::ignore_cookies`],
//!   [`ResponseCacheLayer::vary_by_cookies`]) or the answer says `public`,
//!   because a page personalised by cookie without `Cache-Control: private`
//!   would otherwise be served to every visitor.

mod fragment;
mod page;
mod request;
mod response;
mod rules;
mod serve;
mod stats;
mod tee;

pub use fragment::{fragment, fragment_async, try_fragment, try_fragment_async};
pub use response::{CacheStatus, ResponseCache, ResponseCacheLayer, X_CACHE};
pub use stats::{mount_stats, stats_html, stats_router};
