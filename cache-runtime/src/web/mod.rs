//! Caching for web services (cargo feature `axum`): the guide's view caching
//! as a tower [`Layer`](tower_layer::Layer) ([`ResponseCacheLayer`]),
//! fragment caching for templates ([`fragment`], [`fragment_async`]), and a
//! stats [`Router`](axum::Router) to mount ([`stats_router`]).
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
//! use layercache_runtime::web::{stats_router, ResponseCacheLayer};
//!
//! let app: Router = Router::new()
//!     .route("/products", get(|| async { "the product list" }))
//!     .layer(ResponseCacheLayer::new("pages").timeout(Duration::from_secs(60)))
//!     .nest("/cache-stats", stats_router());
//! # drop(app);
//! ```

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
