//! The guides: how each part of layercache behaves, with the bounds it
//! keeps and the tests that show them. Each page is a module without items.
//!
//! | guide | what it covers |
//! |---|---|
//! | [`cached`] | every `#[cached]` option, what is cached, what the macro refuses |
//! | [`keys`] | local and stable keys, templates, escaping, the namespace |
//! | [`invalidation`] | `#[cache_invalidate]`, `#[cache_put]`, imperative handles, races |
//! | [`strategies`] | single-flight, distributed lock, negative caching, TTL jitter, refresh-ahead, fail-safe, conditions, warm-up, versioned groups, tags |
//! | [`shared_tiers`] | the two-level cache: Redis, Redis Cluster, memcached, SQLite, files; fail-open, invalidation across processes |
//! | [`metrics`] | the manual cache, `stats()`, Prometheus text, the `metrics` facade |
//! | [`web`] | response and fragment caching for axum/tower, the stats router |
//! | [`configuration`] | `Config`, `init`, the `CACHE_*` environment variables |
//! | [`performance`] | what a hit costs, against the peers, and how it is measured |

/// Every `#[cached]` option, what is cached, and what the macro refuses.
///
#[doc = include_str!("cached.md")]
pub mod cached {}

/// Keys: exact arguments in process, stable strings across processes.
///
#[doc = include_str!("keys.md")]
pub mod keys {}

/// Dropping and replacing entries: attributes, handles, and races.
///
#[doc = include_str!("invalidation.md")]
pub mod invalidation {}

/// Protection strategies: stampedes, missing keys, mass expiry, failures.
///
#[doc = include_str!("strategies.md")]
pub mod strategies {}

/// The shared tier behind the in-process one, and each backend's bounds.
///
#[doc = include_str!("shared_tiers.md")]
pub mod shared_tiers {}

/// The manual cache and the metrics every cached function keeps.
///
#[doc = include_str!("metrics.md")]
pub mod metrics {}

/// Web services: view caching, fragments and the stats endpoint (`axum`).
///
#[doc = include_str!("web.md")]
pub mod web {}

/// Configuration in code or from the environment.
///
#[doc = include_str!("configuration.md")]
pub mod configuration {}

/// What a hit costs against the peers, and how it was measured.
///
#[doc = include_str!("performance.md")]
pub mod performance {}
