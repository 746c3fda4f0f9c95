//! Generated code compiles without a warning under strict lints, in a
//! library-like crate with public cached functions and methods.
#![deny(warnings, missing_docs, unused, unreachable_pub, rust_2018_idioms)]

use std::sync::Arc;

use std::hash::Hash;

use layercache::{cache_invalidate, cache_put, cached, CacheKeyType};
use serde::{Deserialize, Serialize};

/// A cached public function.
#[cached(timeout = 60, key_prefix = "strict_square")]
pub fn square(x: u64) -> u64 {
    x * x
}

/// Negative caching and jitter, sync and async.
#[cached(timeout = 60, cache_none = true, none_timeout = 5, jitter = 0.1)]
pub fn find(id: u64) -> Option<u64> {
    (id < 10).then_some(id)
}

/// Negative caching in an async function.
#[cached(timeout = 60, cache_none, none_timeout_ms = 500, jitter = 0)]
pub async fn find_async(id: u64) -> Option<u64> {
    (id < 10).then_some(id)
}

/// Sliding expiration, by borrowed and owned arguments, sync and async.
#[cached(timeout = 3600, time_to_idle = 60)]
pub fn session(token: &str, owner: String) -> usize {
    token.len() + owner.len()
}

/// Sliding expiration alone, in an async function with a key template.
#[cached(time_to_idle_ms = 500, key = "{id}")]
pub async fn idle_profile(id: u64) -> Option<u64> {
    Some(id)
}

/// Tags from the arguments, with and without a key template.
#[cached(timeout = 60, key_prefix = "strict_tagged", tags = ["user:{id}", "all"])]
pub fn tagged(id: u64, page: u32) -> u64 {
    id + u64::from(page)
}

/// Tags with a key template over a borrowed argument.
#[cached(timeout = 60, key = "{name}", tags = ["name:{name}"])]
pub async fn tagged_by_name(name: &str) -> usize {
    name.len()
}

/// A cached async function with a template.
#[cached(key = "{query}:{page}")]
pub async fn search(query: &str, page: u32) -> Result<Vec<String>, String> {
    Ok(vec![format!("{query}{page}")])
}

/// A crate-visible unsafe function with a lifetime and a where clause.
///
/// # Safety
/// None needed; it only shows that the signature is kept as written.
#[cached(key = "{text}")]
pub(crate) unsafe fn shout<'a>(text: &'a str) -> String
where
    'a: 'a,
{
    text.to_uppercase()
}

/// A tenant's id: a user type for generic functions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize, CacheKeyType)]
pub struct TenantId(pub u64);

/// A generic function with a lifetime: one cache per type argument.
#[cached(key_prefix = "strict_first")]
pub fn first<'a, T>(items: &'a [T]) -> Option<T>
where
    T: CacheKeyType + Clone + Hash + Eq + Send + Sync + Serialize + for<'de> Deserialize<'de>,
{
    items.first().cloned()
}

/// A generic function of an owned argument.
#[cached(key_prefix = "strict_label")]
pub fn label<T: CacheKeyType + Clone + Hash + Eq + Send + Sync + Serialize + std::fmt::Debug>(
    id: T,
) -> String {
    format!("{id:?}")
}

/// Drops one instantiation's entry, and all of another's.
#[cache_invalidate(label(id), all = first::<u64>)]
pub fn forget<T: CacheKeyType + Clone + Hash + Eq + Send + Sync + Serialize + std::fmt::Debug>(
    id: T,
) {
}

/// Drops the entry of a generic function of a borrowed slice.
#[cache_invalidate(first(items))]
pub fn forget_first<T>(items: &[T])
where
    T: CacheKeyType + Clone + Hash + Eq + Send + Sync + Serialize + for<'de> Deserialize<'de>,
{
}

/// Drops the entry of a function of a borrowed slice of a concrete type.
#[cache_invalidate(first(ids))]
pub fn forget_ids(ids: &[u64]) {}

/// An update.
#[cache_invalidate(square(x), all = search)]
pub fn update(x: u64) {}

/// A put.
#[cache_put(square(x))]
pub fn store(x: u64) -> u64 {
    x * x
}

/// A repository.
#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Its tenant.
    pub tenant: String,
}

/// Names its cached methods' caches after `Repo`.
#[cached]
impl Repo {
    /// A cached method keyed on `self`, its cache named after the `impl`'s type.
    #[cached]
    pub fn get(&self, id: u32) -> Option<String> {
        Some(format!("{}{id}", self.tenant))
    }

    /// A cached method with an `Arc<Self>` receiver, keyed by a template.
    #[cached(key_prefix = "repo_shared", key = "{self.tenant}:{id}")]
    pub fn shared(self: &Arc<Self>, id: u32) -> String {
        format!("{}{id}", self.tenant)
    }

    /// A method that invalidates another.
    #[cache_invalidate(self.get(id))]
    pub fn set(&mut self, id: u32) {}
}

fn main() {
    assert_eq!(square(3), 9);
    update(3);
    assert_eq!(store(4), 16);
    let mut repo = Repo { tenant: "t".into() };
    assert_eq!(repo.get(1).as_deref(), Some("t1"));
    repo.set(1);
    let shared = Arc::new(repo);
    assert_eq!(shared.shared(2), "t2");
    let _ = search;
    assert_eq!(first(&[TenantId(1)]), Some(TenantId(1)));
    assert_eq!(label(TenantId(2)), "TenantId(2)");
    forget(TenantId(2));
    assert_eq!(unsafe { shout("hi") }, "HI");
}
