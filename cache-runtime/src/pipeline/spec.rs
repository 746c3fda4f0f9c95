//! What a cached function declares about its cache ([`FnSpec`]), as
//! generated code writes it.

use std::time::Duration;

use super::control::TimeoutBy;
use crate::key::KeyError;
use crate::local::HeapBytes;

/// How long a function's entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The configured default ([`Config::default_timeout`](crate::Config::default_timeout)).
    Default,
    /// Entries never expire (`timeout = 0`, as in Flask-Caching).
    Never,
    /// Entries expire this long after they are written.
    After(Duration),
}

/// How a key is rendered into the suffix of its stable string key; returns
/// the key check stored in shared envelopes (see [`codec`](crate::codec)).
pub type RenderKey<K> = fn(&K, &mut String) -> Result<u64, KeyError>;

/// Which tiers a function uses (`tier = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TierChoice {
    /// The in-process tier only, even when a shared tier is configured.
    Local,
    /// The shared tier only: every call asks it (no local copy to go stale).
    Shared,
    /// Both (the default): local, then shared.
    #[default]
    Both,
}

/// What a cached function declares about its cache; built by generated code.
pub struct FnSpec<K> {
    /// Metrics name: the `key_prefix`, or the function's path.
    pub name: String,
    /// The key namespace: stable keys are `{namespace}:{suffix}` (just the
    /// suffix when empty, as for the manual cache).
    pub namespace: String,
    /// Entry lifetime.
    pub timeout: Timeout,
    /// Local-tier bound; `None` for the configured default.
    pub max_entries: Option<u64>,
    /// Byte bound of the local tier (`max_bytes`), each entry weighed by
    /// the estimate of [`local::weigh`](crate::local::weigh). With
    /// `max_entries` as well both bounds hold; alone, the configured
    /// default entry bound does not apply.
    pub max_bytes: Option<u64>,
    /// The heap part of an entry's weight under `max_bytes`; `None`
    /// weighs inline sizes only.
    pub heap_bytes: Option<HeapBytes<K>>,
    /// Renders a key's stable suffix.
    pub render: RenderKey<K>,
    /// Which tiers the function uses.
    pub tier: TierChoice,
    /// Caps the life of local copies below `timeout` (`local_timeout`), so
    /// a copy missed by an invalidation notice cannot outlive it.
    pub local_timeout: Option<Duration>,
    /// Spread of each entry's timeout (`jitter = 0.1`: ±10 %); `None` for
    /// the configured default ([`Config::ttl_jitter`](crate::Config::ttl_jitter)).
    pub jitter: Option<f64>,
    /// Life of a cached negative result (`none_timeout`, with
    /// `cache_none = true`); `None` for the function's timeout.
    pub none_timeout: Option<Duration>,
    /// Distributed single-flight (`lock = true`): after a shared miss, a
    /// process computes only while it holds the key's lock in the shared
    /// tier, which expires after this long if its holder dies.
    pub lock: Option<Duration>,
    /// Fail-safe (`stale_if_error`): when the function returns `Err`, a
    /// value that expired less than this long ago is returned instead.
    pub stale_if_error: Option<Duration>,
    /// Refresh-ahead (`refresh_ahead = 0.8`): a hit after this fraction of
    /// the timeout starts a background refresh.
    pub refresh_ahead: Option<f64>,
    /// Version group (`versioned = "user"`): the group's version is part
    /// of every shared key, so [`bump_version`](crate::bump_version) drops
    /// all of the group's entries in O(1).
    pub versioned: Option<String>,
    /// `timeout_by = path`: each value's own lifetime, capped by `timeout`
    /// when one is declared (see [`TimeoutBy`]).
    pub timeout_by: Option<TimeoutBy>,
    /// `stale_throttle`: after `stale_if_error` answered a failure with a
    /// stale value, the key takes that value without running the function
    /// for this long; `None` for [`DEFAULT_STALE_THROTTLE`](crate::DEFAULT_STALE_THROTTLE) when
    /// `stale_if_error` is set.
    pub stale_throttle: Option<Duration>,
    /// Probabilistic early refresh (`xfetch = 1.0`, the beta of Vattani et
    /// al., VLDB 2015): see [`refresh`](crate::FnCache) in the pipeline docs.
    pub xfetch: Option<f64>,
    /// Sliding expiration (`time_to_idle`): an entry not read for this
    /// long expires, and never outlives `timeout` (see
    /// [`FnCache`](crate::FnCache)'s idle hit path for its precision).
    pub time_to_idle: Option<Duration>,
}

impl<K> FnSpec<K> {
    /// A spec with every option at its default: the configured timeout,
    /// bound and jitter, both tiers, no strategy. Callers set what they
    /// declare with struct update syntax (`FnSpec { lock, ..FnSpec::new(..) }`).
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        render: RenderKey<K>,
    ) -> FnSpec<K> {
        FnSpec {
            name: name.into(),
            namespace: namespace.into(),
            timeout: Timeout::Default,
            max_entries: None,
            max_bytes: None,
            heap_bytes: None,
            render,
            tier: TierChoice::Both,
            local_timeout: None,
            jitter: None,
            none_timeout: None,
            lock: None,
            stale_if_error: None,
            refresh_ahead: None,
            versioned: None,
            timeout_by: None,
            stale_throttle: None,
            xfetch: None,
            time_to_idle: None,
        }
    }
}
