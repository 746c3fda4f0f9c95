//! Named manual caches: [`sync::Cache::named`](super::sync::Cache::named)
//! and [`future::Cache::named`](super::future::Cache::named).
//!
//! A named cache is a manual cache with its own namespace, default timeout
//! and bound, over the process's tiers. Its shared keys are
//! `{CACHE_KEY_PREFIX}:{name}:{key}` with the name and the key escaped as
//! stable keys are (see [`key`](crate::key)), so `named("a")`'s key `"b:c"`
//! and `named("a:b")`'s key `"c"` never meet. Clearing it moves its
//! namespace to a new version, which drops its entries in every process
//! and leaves every other cache alone.
//!
//! The first [`Builder::build`] of a name fixes its settings for the
//! process's life; a later build of the same name with other settings gets
//! the existing cache and logs a warning.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use std::any::Any;

use super::{store, AnyValue, Store};
use crate::key::{escape, render_template, KeyError};
use crate::pipeline::{FnCache, FnSpec, Timeout};

/// What a named cache was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    timeout: Option<Duration>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
}

/// Settings before any builder method: what `named(..)` alone asks for.
const UNSET: Settings = Settings {
    timeout: None,
    max_entries: None,
    max_bytes: None,
};

/// A handle type a builder makes: [`sync::Cache`](super::sync::Cache) or
/// [`future::Cache`](super::future::Cache).
pub trait Handle: Copy + sealed::Sealed {
    #[doc(hidden)]
    fn from_store(store: Store) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::super::sync::Cache {}
    impl Sealed for super::super::future::Cache {}
}

impl Handle for super::sync::Cache {
    fn from_store(store: Store) -> Self {
        super::sync::Cache { store }
    }
}

impl Handle for super::future::Cache {
    fn from_store(store: Store) -> Self {
        super::future::Cache { store }
    }
}

/// Builds a named cache: `Cache::named("sessions").timeout(..).max_entries(..).build()`.
///
/// It also derefs to the cache, built with the settings given so far, so
/// `Cache::named("sessions").get::<String>("s1")` works without `build()`.
///
/// A named cache's shared keys are `{CACHE_KEY_PREFIX}:{name}:{key}`, the
/// name and the key escaped as stable keys are, so `named("a")`'s key
/// `"b:c"` and `named("a:b")`'s key `"c"` never meet. Its `clear()` moves
/// its namespace to a new version: its entries go in every process, every
/// other cache keeps its own. The first build of a name fixes its settings
/// for the life of the process; a later build with other settings gets the
/// existing cache and logs a warning.
#[must_use = "a builder does nothing until it is built or used as its cache"]
pub struct Builder<C> {
    name: String,
    settings: Settings,
    built: OnceLock<C>,
}

impl<C: Handle> Builder<C> {
    pub(super) fn new(name: &str) -> Builder<C> {
        Builder {
            name: name.to_string(),
            settings: UNSET,
            built: OnceLock::new(),
        }
    }

    /// The default timeout of `set_default` (`Duration::ZERO`: never
    /// expires); without it, the configured default timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// The bound of the cache's local tier; without it, the configured
    /// `CACHE_MAX_ENTRIES`.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.settings.max_entries = Some(max_entries);
        self
    }

    /// The byte bound of the cache's local tier: its entries weigh at most
    /// `max_bytes` in all, each weighed by the estimate of
    /// [`local::weigh`](crate::local::weigh) (a key its length, a value its
    /// encoded size, plus their inline sizes). With
    /// [`max_entries`](Self::max_entries) as well both bounds hold; alone,
    /// the configured entry bound does not apply.
    ///
    /// ```
    /// use layercache_runtime::sync::Cache;
    /// use std::time::Duration;
    ///
    /// let pages = Cache::named("doc_pages").max_bytes(64 << 20).build();
    /// pages.set("/", "<html>…</html>".to_string(), Duration::from_secs(60));
    /// assert_eq!(pages.get::<String>("/").as_deref(), Some("<html>…</html>"));
    /// ```
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.settings.max_bytes = Some(max_bytes);
        self
    }

    /// The cache. An empty name is the global manual cache.
    pub fn build(&self) -> C {
        *self
            .built
            .get_or_init(|| C::from_store(lookup(&self.name, self.settings)))
    }
}

impl<C: Handle> Deref for Builder<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.build();
        self.built.get().expect("built just above")
    }
}

impl<C> std::fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedCacheBuilder")
            .field("name", &self.name)
            .field("timeout", &self.settings.timeout)
            .field("max_entries", &self.settings.max_entries)
            .field("max_bytes", &self.settings.max_bytes)
            .finish()
    }
}

/// The cache of `name`, registered on first use.
fn lookup(name: &str, settings: Settings) -> Store {
    if name.is_empty() {
        tracing::warn!("layercache: a named cache needs a name; using the global manual cache");
        return store();
    }
    static NAMED: OnceLock<Mutex<HashMap<String, (Settings, Store)>>> = OnceLock::new();
    let mut named = NAMED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&(first, cache)) = named.get(name) {
        if settings != first && settings != UNSET {
            tracing::warn!(
                name,
                ?first,
                ?settings,
                "layercache: named cache built again with other settings; keeping the first"
            );
        }
        return cache;
    }
    let timeout = match settings.timeout {
        None => Timeout::Default,
        Some(t) if t.is_zero() => Timeout::Never,
        Some(t) => Timeout::After(t),
    };
    let cache = crate::invalidate::register(FnCache::new(FnSpec {
        timeout,
        max_entries: settings.max_entries,
        max_bytes: settings.max_bytes,
        heap_bytes: Some(named_heap_bytes),
        jitter: Some(0.0),
        ..FnSpec::new(name, escape(name), render_escaped)
    }));
    named.insert(name.to_string(), (settings, cache));
    cache
}

/// The heap part of a named cache entry's weight: its key's length and
/// its value's (see [`Weighable`]).
#[allow(clippy::ptr_arg)] // must match `HeapBytes<String>`
fn named_heap_bytes(key: &String, value: &dyn Any) -> u64 {
    let value = value
        .downcast_ref::<AnyValue>()
        .map_or(0, |v| v.heap_bytes());
    (key.len() as u64).saturating_add(value)
}

/// A named cache's key suffix: the key escaped, so a separator in it cannot
/// make two names' keys meet.
#[allow(clippy::ptr_arg)] // must match `RenderKey<String>`
fn render_escaped(key: &String, out: &mut String) -> Result<u64, KeyError> {
    render_template(&escape(key), out)
}
