//! Declarative, layered memoization for Rust. Put `#[cached]` on a function
//! and it is memoized in an in-process tier and, when one is configured, in a
//! shared tier every process of a fleet reads (Redis, Redis Cluster,
//! memcached, SQLite or a directory); put `#[cache_invalidate]` on the
//! function that changes the data and exactly the stale entries are dropped,
//! in every tier and every process, after it succeeds. Keys, expiry,
//! invalidation and metrics are checked by the compiler instead of written
//! by hand as cache-aside code.
//!
//! ```sh
//! cargo add layercache                    # the in-process tier (and a directory as shared tier)
//! cargo add layercache --features redis   # plus the Redis shared tier: CACHE_TYPE=redis
//! ```
//!
//! ```
//! use layercache::{cached, cache_invalidate};
//!
//! #[cached(timeout = 300, key_prefix = "user_profile")]
//! fn get_user_profile(user_id: u64) -> Result<String, String> {
//!     // an expensive database query
//!     Ok(format!("profile of {user_id}"))
//! }
//!
//! #[cache_invalidate(get_user_profile(user_id))]
//! fn update_user(user_id: u64, name: &str) -> Result<(), String> {
//!     // write to the database; the cached profile is dropped after Ok
//!     # let _ = name;
//!     Ok(())
//! }
//!
//! assert_eq!(get_user_profile(7), Ok("profile of 7".to_string())); // miss: runs the body
//! assert_eq!(get_user_profile(7), Ok("profile of 7".to_string())); // hit
//! update_user(7, "Ada").unwrap();                                  // drops user_profile(7)
//! let stats = layercache::stats();
//! let profile = stats.function("user_profile").unwrap();
//! assert_eq!((profile.hits, profile.misses), (1, 1));
//! assert_eq!(profile.entries, 0);
//! ```
//!
//! ## Features
//!
//! No feature is on by default: the in-process tier, the filesystem shared
//! tier, the manual cache, [`stats`] and Prometheus text need none. Items a
//! feature enables are marked with it in these docs.
//!
//! | feature | enables |
//! |---|---|
//! | `redis` | the Redis shared tier (`CACHE_TYPE=redis`, `CACHE_REDIS_URL`), pub/sub invalidation: [`shared::redis`] |
//! | `tls` | `rediss://` URLs (rustls with ring and the webpki roots, installed for you); a private CA and mutual TLS through `CACHE_REDIS_CA_CERT`, `CACHE_REDIS_CLIENT_CERT`, `CACHE_REDIS_CLIENT_KEY` (Redis and Redis Cluster); implies `redis` |
//! | `redis-cluster` | the Redis Cluster shared tier (`CACHE_TYPE=redis-cluster`, `CACHE_REDIS_NODES`): [`shared::redis_cluster`] |
//! | `memcached` | the memcached shared tier (`CACHE_TYPE=memcached`, `CACHE_MEMCACHED_SERVERS`): [`shared::memcached`] |
//! | `sqlite` | the SQLite shared tier, SQLite compiled in (`CACHE_TYPE=sqlite`, `CACHE_SQLITE_PATH`): [`shared::sqlite`] |
//! | `axum` | response and fragment caching for axum/tower and the stats router: [`web`] |
//! | `metrics` | counters and histograms through the `metrics` facade: [`export::metrics`] |
//! | `moka` | moka as the in-process store instead of quick_cache: [`local::MokaStore`] |
//!
//! ## Guides
//!
//! The depth lives in [`guide`], one page per concern:
//! [`#[cached]` options](guide::cached), [keys](guide::keys),
//! [invalidation](guide::invalidation),
//! [protection strategies](guide::strategies) (single-flight, lock, negative
//! caching, jitter, refresh-ahead, fail-safe, warm-up, versioned groups,
//! tags), [shared tiers](guide::shared_tiers), [the manual cache and
//! metrics](guide::metrics), [web services](guide::web),
//! [configuration](guide::configuration) and
//! [performance](guide::performance). The API modules: [`key`], [`codec`],
//! [`local`], [`shared`], [`export`], [`web`].
//!
//! ## `#[cached]`
//!
//! Works on `fn` and `async fn`, free functions and methods taking `&self`.
//! Options:
//!
//! | option | meaning |
//! |---|---|
//! | `timeout = 300` | seconds an entry lives (`0`: never expires); default `CACHE_DEFAULT_TIMEOUT`, else 300 |
//! | `timeout_ms = 250` | the same in milliseconds |
//! | `key_prefix = "user_profile"` | key namespace and metrics name; default `module::path::fn_name`; a method needs it, or `#[cached]` on its `impl` block (below) |
//! | `key = "{query}:page:{page}"` | key template over argument names and fields (`{user.id}`, `{self.tenant}`); arguments it does not name are not part of the key |
//! | `max_entries = 10000` | bound of the in-process tier; default `CACHE_MAX_ENTRIES`, else 10 000. Any `max_entries` keys fit (a working set that size stays whole); the default store may hold up to 19 % more ([`QuickCacheStore`](crate::local::QuickCacheStore)) |
//! | `output = "result"` | how to treat the return value when its type's name does not say: `"result"` (cache only `Ok`; for an alias of `Result` with another name), `"option"`, `"value"` |
//! | `in_impl = "Repo"` | names a method's cache `module::Repo::method` when it has no `key_prefix`, as `#[cached]` on the `impl Repo` block does for all its `#[cached]` methods (a method's attribute cannot see the `impl`, and compiler type names are not stable); bare `in_impl` is needed only on an associated function without `self` that never mentions `Self` |
//! | `tier = "both"` | with a shared tier (`CACHE_TYPE=redis`): `"both"` (default), `"shared"` (no local copy), `"local"` (never shared) |
//! | `local_timeout = 5` / `local_timeout_ms` | caps the life of local copies below `timeout` |
//! | `jitter = 0.1` | spreads each entry's timeout over ±10 % (default `CACHE_TTL_JITTER`, else 0) |
//! | `cache_none = true`, `none_timeout = 30` / `none_timeout_ms` | caches `None` results of an `Option<T>` function, for `none_timeout` |
//! | `lock = true`, `lock_timeout = 5` / `lock_timeout_ms` | one process of the fleet computes a missing key; the others wait for its value |
//! | `refresh_ahead = 0.8` | a hit after 80 % of the timeout refreshes in the background (owned arguments only) |
//! | `xfetch = 1.0` | probabilistic early refresh (XFetch's beta): a hit refreshes in the background with a chance that grows as expiry nears and with the function's run time (owned arguments only). Each process draws for its own local copy; with `lock = true` one process of the fleet runs the function per refresh and the others take its value from the shared tier before their copies expire ([guide](guide::strategies)) |
//! | `stale_if_error = 600` | an `Err` within 600 s after expiry returns the expired value |
//! | `time_to_idle = 60` / `time_to_idle_ms` | sliding expiration: an entry not read for 60 s expires, never later than `timeout` (alone, it sets no absolute timeout); in the shared tier on Redis 6.2+, Redis Cluster, memcached and SQLite (the filesystem store cannot: such a function stays in-process, logged) |
//! | `unless = expr` | skips the cache for a call: a `bool` argument, a function path, or an expression |
//! | `cache_if = f` | `fn(&R) -> bool` over the return value; `false` vetoes storing it |
//! | `versioned = "group"` | joins a version group: [`bump_version`] drops the whole group in O(1) |
//! | `tags = ["user:{user_id}"]` | tags from the arguments: `#[cache_invalidate(tag = "user:{user_id}")]` or [`invalidate_tag`] drops every entry carrying one |
//!
//! Concurrent misses of one key in a process always share one computation
//! (single-flight), calls joined inside one task (`tokio::join!`) too;
//! [`stats`] counts the callers it answered as `coalesced`. A leader that
//! panics or is cancelled hands the computation to one waiter; a call of a
//! key that an outer frame of the same call chain is computing (recursion)
//! runs alone instead of waiting for itself.
//!
//! Keys of different argument types never alias: the shared key covers the
//! argument types as written (a template's key stays readable; its
//! envelope check covers them), so changing an argument's type, or how it
//! is written, changes the key.
//!
//! ```
//! use layercache::{bump_version, cached, entry};
//!
//! #[cached(timeout = 300, cache_none = true, none_timeout = 30, jitter = 0.1, versioned = "users")]
//! fn find_user(id: u64) -> Option<String> {
//!     (id < 100).then(|| format!("user {id}"))
//! }
//!
//! assert_eq!(find_user(404), None);
//! assert_eq!(entry!(find_user(404)).get(), Some(None), "a cached None, not a miss");
//! assert_eq!(bump_version("users"), 1, "the whole group dropped");
//! assert_eq!(entry!(find_user(404)).get(), None);
//! ```
//!
//! What is cached: a `Result<T, E>` caches only `Ok(T)`; an `Option<T>` only
//! `Some(T)`; anything else always. The macro goes by the type's name
//! (`Result`, `io::Result`, `anyhow::Result`, `Option`): for an alias with
//! another name say `output = "result"`, or its `Err` values are cached too. Values must be
//! [`CacheValue`] (`Clone + Send + Sync + Serialize + DeserializeOwned`),
//! so any function can be served from the shared tier.
//! Without a template, every argument (and `self` for a method) is part of
//! the key and must be `Hash + Eq + Clone + Serialize`; `&str`, `&[T]` and
//! `&T` arguments are kept as owned copies.
//!
//! Keys: the in-process tier is keyed by the exact arguments, so two calls
//! never share an entry by accident. Each call also has a stable string key,
//! `{key_prefix}:{rendered template}` or `{key_prefix}:{xxh3-128 of the
//! argument signature and the arguments' postcard encoding}` (see
//! [`key`](key#the-canonical-encoding)), used for prefix invalidation and shared
//! tiers (the function's path stands in for a missing `key_prefix`).
//! Template values are escaped (`:` → `%3A`, `*` → `%2A`, ...) so an
//! argument cannot forge another key: see [`key::escape`].
//!
//! ## Invalidation and updates
//!
//! ```
//! use layercache::{cached, cache_invalidate, cache_put, entry, fn_cache};
//!
//! #[cached(timeout = 60, key_prefix = "search", key = "{query}:page:{page}")]
//! fn search(query: &str, page: u32) -> Vec<String> {
//!     vec![format!("{query} result on page {page}")]
//! }
//!
//! #[cache_invalidate(search(query, 1))]           // one entry
//! fn reindex_first_page(query: &str) {}
//!
//! #[cache_invalidate(prefix = "search:{query}:")] // every page of one query (the value is escaped)
//! fn reindex_query(query: &str) {}
//!
//! #[cache_invalidate(all = search)]               // every entry of `search`
//! fn reindex_all() {}
//!
//! #[cache_put(search(query, 1))]                  // store the result instead of dropping it
//! fn recompute_first_page(query: &str) -> Vec<String> { vec![format!("fresh {query}")] }
//!
//! search("rust", 1);
//! search("rust", 2);
//! reindex_query("rust");
//! assert!(!entry!(search("rust", 2)).is_cached());
//! recompute_first_page("rust");
//! assert_eq!(entry!(search("rust", 1)).get(), Some(vec!["fresh rust".to_string()]));
//! assert_eq!(search("rust", 1), vec!["fresh rust".to_string()]);
//! reindex_all();
//! assert_eq!(fn_cache!(search).len(), 0);
//! ```
//!
//! `#[cache_invalidate]` is stackable, takes several targets, and runs after
//! the function returns anything but `Err` (an alias of `Result` with
//! another name needs `output = "result"`), or before it with
//! `before = true`. Targets are checked by the compiler: a misspelt
//! function or a wrong argument is a compile error, never a dead key.
//!
//! ## Manual cache, stats, configuration
//!
//! [`sync::Cache`] and [`future::Cache`] are the guide's
//! `cache.get / set / delete / clear`. [`stats()`] returns a [`Stats`]
//! snapshot (serializable, printable as a table); [`reset_stats()`] zeroes
//! the counts, to measure a period. The process is configured
//! by [`init`] or, failing that, by the environment: `CACHE_TYPE` (`simple`,
//! the default; `null`, caching off; or a shared tier: `redis`,
//! `redis-cluster`, `memcached`, `sqlite`, `filesystem`),
//! `CACHE_DEFAULT_TIMEOUT`, `CACHE_KEY_PREFIX`, `CACHE_MAX_ENTRIES` and the
//! rest in the [configuration guide](guide::configuration) (see
//! [`Config::from_env`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs (`--cfg docsrs`, nightly) marks every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod guide;

/// Memoizes a function: the first call with given arguments runs the body
/// and stores the result; later calls with equal arguments return a copy
/// until the entry expires or is invalidated.
///
/// Options: `timeout` (seconds, `0` = never), `timeout_ms`, `key_prefix`,
/// `key` (template), `max_entries`, `output`, `in_impl`; see the
/// [crate documentation](crate#cached).
///
/// ```
/// use layercache::cached;
///
/// #[cached(timeout = 60, key_prefix = "search", key = "{query}:page:{page}")]
/// fn search(query: &str, page: u32) -> Vec<String> {
///     vec![format!("{query} on page {page}")]
/// }
///
/// #[derive(Clone, Hash, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
/// struct Repo { tenant: String }
///
/// impl Repo {
///     #[cached(key_prefix = "repo", key = "{self.tenant}:{id}")]  // a method names its cache,
///     async fn load(&self, id: u64) -> Result<String, std::io::Error> {
///         Ok(format!("{}/{id}", self.tenant))     // an Err is never cached
///     }
/// }
///
/// #[cached]                                       // or the block names them:
/// impl Repo {                                     // `module::Repo::count`
///     #[cached]
///     fn count(&self) -> usize { self.tenant.len() }
/// }
///
/// assert_eq!(search("rust", 2), search("rust", 2));
/// let stats = layercache::stats();
/// assert_eq!(stats.function("search").unwrap().hits, 1);
/// ```
#[doc(inline)]
pub use layercache_macros::cached;

/// Drops cached entries after the function returns anything but `Err`
/// (before it, with `before = true`; for an alias of `Result` with another
/// name add `output = "result"`). Targets: `f(args)`, `recv.method(args)`,
/// `all = f`, `prefix = "ns:{arg}:"`; several per attribute, attributes stack.
/// Targets are checked by the compiler like ordinary calls.
///
/// ```
/// use layercache::{cache_invalidate, cached, entry};
///
/// #[cached(key_prefix = "user")]
/// fn get_user(id: u64) -> Option<String> { Some(format!("user {id}")) }
///
/// #[cache_invalidate(get_user(id))]
/// fn rename(id: u64, name: &str) -> Result<(), String> {
///     if name.is_empty() { return Err("empty".into()) }  // Err: nothing is dropped
///     Ok(())
/// }
///
/// get_user(1);
/// assert!(rename(1, "").is_err());
/// assert!(entry!(get_user(1)).is_cached());
/// rename(1, "Ada").unwrap();
/// assert!(!entry!(get_user(1)).is_cached());
/// ```
#[doc(inline)]
pub use layercache_macros::cache_invalidate;

/// Stores the function's return value (its `Ok` or `Some`) as the cached
/// result of another cached call: an update that refreshes instead of drops.
///
/// ```
/// use layercache::{cache_put, cached};
///
/// #[cached]
/// fn price(item: u32) -> u64 { 100 }
///
/// #[cache_put(price(item))]
/// fn set_price(item: u32, cents: u64) -> Result<u64, String> { Ok(cents) }
///
/// set_price(7, 250).unwrap();
/// assert_eq!(price(7), 250); // served from the cache
/// ```
#[doc(inline)]
pub use layercache_macros::cache_put;

/// The entry of one call of a cached function, written as the call:
/// `entry!(f(args))`, `entry!(repo.method(args))`. Returns a
/// [`CallEntry`]: `get` (peek), `is_cached`, `put` (prime), `invalidate`,
/// `stable_key`.
///
/// ```
/// use layercache::{cached, entry};
///
/// #[cached(key_prefix = "square")]
/// fn square(x: u64) -> u64 { x * x }
///
/// entry!(square(12)).put(144);                // warm one call
/// assert_eq!(entry!(square(12)).get(), Some(144));
/// assert_eq!(entry!(square(12)).stable_key().unwrap().len(), "square:".len() + 32);
/// assert!(entry!(square(12)).invalidate());
/// ```
#[doc(inline)]
pub use layercache_macros::entry;

/// The cache of a cached function, named by path: `fn_cache!(f)`,
/// `fn_cache!(module::f)`, `fn_cache!(Type::method)`. Returns its
/// [`FnCache`]: `invalidate_all`, `stats`, `len`, `timeout`, `name`.
///
/// ```
/// use layercache::{cached, fn_cache};
///
/// #[cached(max_entries = 100)]
/// fn double(x: u32) -> u32 { x * 2 }
///
/// double(1);
/// double(2);
/// assert_eq!(fn_cache!(double).len(), 2);
/// assert_eq!(fn_cache!(double).invalidate_all(), 2);
/// assert_eq!(fn_cache!(double).stats().misses, 2);
/// ```
#[doc(inline)]
pub use layercache_macros::fn_cache;

/// Derives [`CacheKeyType`] (the trait of the same name): a stable name of
/// the type, `module::path::Type`, or `#[cache_key_type(name = "...")]`.
///
/// ```
/// use layercache::CacheKeyType;
///
/// #[derive(CacheKeyType)]
/// #[cache_key_type(name = "user")]
/// struct User;
///
/// #[derive(CacheKeyType)]
/// struct Page<T>(Vec<T>);
///
/// assert_eq!(User::type_key(), "user");
/// assert!(<Page<u64>>::type_key().ends_with("::Page<u64>"));
/// ```
#[doc(inline)]
pub use layercache_macros::CacheKeyType;
pub use layercache_runtime::*;

#[doc(hidden)]
pub use layercache_runtime::__private;
