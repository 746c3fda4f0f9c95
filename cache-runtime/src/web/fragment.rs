//! Fragment caching: the guide's `{% cache timeout key %}` block for any
//! template engine. A fragment is a rendered `String` stored in the manual
//! cache under `fragment:{key}`, so `invalidate_prefix("fragment:sidebar")`
//! drops it (and its variants) everywhere.

use std::future::Future;
use std::time::Duration;

use crate::manual::{future, sync};

/// The manual-cache key of fragment `key`.
fn fragment_key(key: &str) -> String {
    format!("fragment:{key}")
}

/// The cached rendering of fragment `key`, or `render()`'s, kept for
/// `timeout`. Concurrent callers of a missing fragment share one rendering.
///
/// ```
/// use std::time::Duration;
/// use layercache_runtime::web::fragment;
///
/// let html = fragment("sidebar:en", Duration::from_secs(60), || "<ul>…</ul>".to_string());
/// assert_eq!(html, "<ul>…</ul>");
/// let again = fragment("sidebar:en", Duration::from_secs(60), || unreachable!("cached"));
/// assert_eq!(again, html);
/// layercache_runtime::invalidate_prefix("fragment:sidebar");
/// ```
pub fn fragment(key: &str, timeout: Duration, render: impl FnOnce() -> String) -> String {
    sync::Cache::global().get_or_insert_with(&fragment_key(key), timeout, render)
}

/// Like [`fragment`], for a rendering that can fail: an `Err` is returned
/// and nothing is stored (a template error is never cached).
///
/// ```
/// use std::time::Duration;
/// use layercache_runtime::web::try_fragment;
///
/// let failed: Result<String, &str> = try_fragment("menu", Duration::from_secs(60), || Err("no template"));
/// assert!(failed.is_err());
/// let ok: Result<String, &str> = try_fragment("menu", Duration::from_secs(60), || Ok("<nav/>".into()));
/// assert_eq!(ok.unwrap(), "<nav/>");
/// ```
pub fn try_fragment<E>(
    key: &str,
    timeout: Duration,
    render: impl FnOnce() -> Result<String, E>,
) -> Result<String, E> {
    let cache = sync::Cache::global();
    let key = fragment_key(key);
    if let Some(html) = cache.get::<String>(&key) {
        return Ok(html);
    }
    let html = render()?;
    cache.set(&key, html.clone(), timeout);
    Ok(html)
}

/// [`fragment`] for async renderers.
pub async fn fragment_async(
    key: &str,
    timeout: Duration,
    render: impl Future<Output = String>,
) -> String {
    future::Cache::global()
        .get_or_insert_with(&fragment_key(key), timeout, render)
        .await
}

/// [`try_fragment`] for async renderers.
pub async fn try_fragment_async<E>(
    key: &str,
    timeout: Duration,
    render: impl Future<Output = Result<String, E>>,
) -> Result<String, E> {
    let cache = future::Cache::global();
    let key = fragment_key(key);
    if let Some(html) = cache.get::<String>(&key).await {
        return Ok(html);
    }
    let html = render.await?;
    cache.set(&key, html.clone(), timeout).await;
    Ok(html)
}
