//! # layercache
//!
//! Declarative, layered memoization. Put `#[cached]` on a function and it is
//! memoized; put `#[cache_invalidate]` on the function that changes the data
//! and exactly the affected entries are dropped after it succeeds.
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
//! ## `#[cached]`
//!
//! Works on `fn` and `async fn`, free functions and methods taking `&self`.
//! Options:
//!
//! | option | meaning |
//! |---|---|
//! | `timeout = 300` | seconds an entry lives (`0`: never expires); default `CACHE_DEFAULT_TIMEOUT`, else 300 |
//! | `timeout_ms = 250` | the same in milliseconds |
//! | `key_prefix = "user_profile"` | key namespace and metrics name; default `module::path::fn_name` |
//! | `key = "{query}:page:{page}"` | key template over argument names and fields (`{user.id}`, `{self.tenant}`); arguments it does not name are not part of the key |
//! | `max_entries = 10000` | bound of the in-process tier; default `CACHE_MAX_ENTRIES`, else 10 000 |
//! | `output = "result"` | how to treat the return value when its type's name does not say: `"result"` (cache only `Ok`; for an alias of `Result` with another name), `"option"`, `"value"` |
//! | `in_impl` | needed only on an associated function without `self` that never mentions `Self` |
//!
//! What is cached: a `Result<T, E>` caches only `Ok(T)`; an `Option<T>` only
//! `Some(T)`; anything else always. The macro goes by the type's name
//! (`Result`, `io::Result`, `anyhow::Result`, `Option`): for an alias with
//! another name say `output = "result"`, or its `Err` values are cached too. Values must be
//! [`CacheValue`] (`Clone + Send + Sync + Serialize + DeserializeOwned`),
//! so the same function can later be served from a shared tier.
//! Without a template, every argument (and `self` for a method) is part of
//! the key and must be `Hash + Eq + Clone + Serialize`; `&str`, `&[T]` and
//! `&T` arguments are kept as owned copies.
//!
//! Keys: the in-process tier is keyed by the exact arguments, so two calls
//! never share an entry by accident. Each call also has a stable string key,
//! `{key_prefix}:{rendered template}` or `{fn path}:{xxh3-128 of the
//! arguments' bincode encoding}`, used for prefix invalidation and shared
//! tiers. Template values are escaped (`:` → `%3A`, `*` → `%2A`, ...) so an
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
//! the function returns anything but `Err` (or before it with
//! `before = true`). Targets are checked by the compiler: a misspelt
//! function or a wrong argument is a compile error, never a dead key.
//!
//! ## Manual cache, stats, configuration
//!
//! [`sync::Cache`] and [`future::Cache`] are the guide's
//! `cache.get / set / delete / clear`. [`stats()`] returns a [`Stats`]
//! snapshot (serializable, printable as a table). The process is configured
//! by [`init`] or, failing that, by the environment: `CACHE_TYPE` (`simple`
//! or `null`), `CACHE_DEFAULT_TIMEOUT`, `CACHE_KEY_PREFIX`,
//! `CACHE_MAX_ENTRIES` (see [`Config::from_env`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use layercache_macros::{cache_invalidate, cache_put, cached, entry, fn_cache};
pub use layercache_runtime::*;

#[doc(hidden)]
pub use layercache_runtime::__private;
