//! A function's policy: the lifetimes and strategies its [`FnSpec`]
//! declares, resolved against the configuration once, when its cache is
//! built.

use std::time::Duration;

use super::{FnSpec, Timeout};
use crate::config::Config;

/// Timeouts, jitter, negative caching, fail-safe, lock, refresh-ahead and
/// version group of one function.
pub(crate) struct Policy {
    /// How long entries live; `None` when they never expire.
    pub(super) ttl: Option<Duration>,
    /// Life of local copies: `ttl` capped by `local_timeout`.
    pub(super) local_ttl: Option<Duration>,
    /// `local_timeout`: caps every local copy's life.
    pub(super) local_cap: Option<Duration>,
    /// Each entry's timeout is spread by ±`jitter` of itself.
    jitter: f64,
    /// Timeout of negative results (`none_timeout`); `None` for `ttl`.
    none_ttl: Option<Duration>,
    /// The shared lock's life (`lock = true`), when there is a shared tier.
    pub(super) lock: Option<Duration>,
    /// How long past expiry a value may stand in for an `Err`.
    pub(super) stale: Option<Duration>,
    /// The fraction of the timeout after which a hit refreshes.
    pub(super) refresh_ahead: Option<f64>,
    /// The version group, if any.
    pub(super) group: Option<String>,
    /// Sliding expiration (`time_to_idle`), at least 1 ms.
    pub(super) idle: Option<Duration>,
}

impl Policy {
    /// The policy `spec` declares, with the configured defaults for what
    /// it leaves open; `shared` says whether the function has a shared
    /// tier (the lock needs one).
    pub(super) fn new<K>(spec: &mut FnSpec<K>, config: &Config, shared: bool) -> Policy {
        let ttl = match spec.timeout {
            Timeout::Default => config.default_timeout(),
            Timeout::Never => None,
            Timeout::After(d) => Some(d),
        };
        Policy {
            ttl,
            local_ttl: min_ttl(ttl, spec.local_timeout),
            local_cap: spec.local_timeout,
            jitter: spec
                .jitter
                .filter(|j| j.is_finite() && (0.0..1.0).contains(j))
                .unwrap_or(config.ttl_jitter()),
            none_ttl: spec.none_timeout,
            lock: spec.lock.filter(|_| shared),
            stale: spec.stale_if_error,
            refresh_ahead: spec
                .refresh_ahead
                .filter(|r| r.is_finite() && *r > 0.0 && *r < 1.0),
            group: spec.versioned.take(),
            idle: spec.time_to_idle.filter(|d| !d.is_zero()),
        }
    }

    /// The timeout of one new entry: the function's (or `none_timeout` for
    /// a negative result), spread by the jitter.
    #[inline]
    pub(crate) fn entry_ttl(&self, negative: bool) -> Option<Duration> {
        let base = if negative {
            self.none_ttl.or(self.ttl)
        } else {
            self.ttl
        }?;
        if self.jitter == 0.0 {
            return Some(base);
        }
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base))
    }

    /// How long a shared entry is kept: its timeout, plus the fail-safe
    /// window during which it may still stand in for an `Err`.
    #[inline]
    pub(super) fn shared_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.map(|t| t.saturating_add(self.stale.unwrap_or_default()))
    }
}

impl Policy {
    /// How long the shared store keeps a new entry: [`Policy::shared_ttl`],
    /// and no longer than `time_to_idle` (plus the fail-safe window) until
    /// a read extends it. The envelope keeps the absolute expiry, so an
    /// entry read past `timeout` is a miss however often it was touched.
    #[inline]
    pub(super) fn stored_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        let idle = self.idle_touch();
        match (self.shared_ttl(ttl), idle) {
            (Some(t), Some(i)) => Some(t.min(i)),
            (t, None) => t,
            (None, i) => i,
        }
    }

    /// The expiry a read of an idle function's shared entry sets:
    /// `time_to_idle` plus the fail-safe window.
    #[inline]
    pub(super) fn idle_touch(&self) -> Option<Duration> {
        self.idle
            .map(|i| i.saturating_add(self.stale.unwrap_or_default()))
    }
}

/// The shorter of two lifetimes, `None` being forever.
#[inline]
pub(super) fn min_ttl(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
