//! How a function's return value maps to what is cached: the output
//! modes generated code picks from the return type.

use std::time::Duration;

use super::Value;

/// How a function's return value maps to what is cached.
pub trait OutputMode<R> {
    /// What the cache stores.
    type Value: Value;
    /// The part of `r` to store, or `None` when `r` must not be cached.
    fn cacheable(r: &R) -> Option<&Self::Value>;
    /// Rebuilds a return value from a cached one.
    fn from_cached(v: Self::Value) -> R;
    /// Whether `v` is a negative result (a cached `None`), which lives for
    /// `none_timeout` instead of `timeout`.
    #[inline]
    fn is_negative(_v: &Self::Value) -> bool {
        false
    }
    /// Whether `r` is an error, which a stale value may replace
    /// (`stale_if_error`).
    #[inline]
    fn is_error(_r: &R) -> bool {
        false
    }
    /// How long `v` may live at most, below the function's timeout (the
    /// view cache's HTTP freshness lifetime); `None`: the timeout alone.
    #[inline]
    fn lifetime(_v: &Self::Value) -> Option<Duration> {
        None
    }
}

/// Whether a return value counts as success for `#[cache_invalidate]` and
/// `#[cache_put]`: everything but `Err`.
pub trait Succeeds<R> {
    /// `false` only for `Err` under [`OkOnly`].
    fn succeeded(r: &R) -> bool;
}

impl<R> Succeeds<R> for Plain {
    #[inline]
    fn succeeded(_: &R) -> bool {
        true
    }
}

impl<T, E> Succeeds<Result<T, E>> for OkOnly {
    #[inline]
    fn succeeded(r: &Result<T, E>) -> bool {
        r.is_ok()
    }
}

impl<T> Succeeds<Option<T>> for SomeOnly {
    #[inline]
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

/// Any return type: always cached.
pub struct Plain;
/// `Result<T, E>`: only `Ok(T)` is cached.
pub struct OkOnly;
/// `Option<T>`: only `Some(T)` is cached.
pub struct SomeOnly;
/// `Option<T>` with `cache_none = true`: `None` is cached too (negative
/// caching, against cache penetration), for `none_timeout`.
pub struct SomeOrNone;

impl<T: Value> OutputMode<Option<T>> for SomeOrNone {
    type Value = Option<T>;
    #[inline]
    fn cacheable(r: &Option<T>) -> Option<&Option<T>> {
        Some(r)
    }
    #[inline]
    fn from_cached(v: Option<T>) -> Option<T> {
        v
    }
    #[inline]
    fn is_negative(v: &Option<T>) -> bool {
        v.is_none()
    }
}

impl<T> Succeeds<Option<T>> for SomeOrNone {
    #[inline]
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

impl<T: Value> OutputMode<T> for Plain {
    type Value = T;
    #[inline]
    fn cacheable(r: &T) -> Option<&T> {
        Some(r)
    }
    #[inline]
    fn from_cached(v: T) -> T {
        v
    }
}

impl<T: Value, E> OutputMode<Result<T, E>> for OkOnly {
    type Value = T;
    #[inline]
    fn cacheable(r: &Result<T, E>) -> Option<&T> {
        r.as_ref().ok()
    }
    #[inline]
    fn from_cached(v: T) -> Result<T, E> {
        Ok(v)
    }
    #[inline]
    fn is_error(r: &Result<T, E>) -> bool {
        r.is_err()
    }
}

impl<T: Value> OutputMode<Option<T>> for SomeOnly {
    type Value = T;
    #[inline]
    fn cacheable(r: &Option<T>) -> Option<&T> {
        r.as_ref()
    }
    #[inline]
    fn from_cached(v: T) -> Option<T> {
        Some(v)
    }
}
