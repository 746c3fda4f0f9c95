//! The tiers' settings, part of [`Config`](crate::Config): which store
//! backs the local tier, and how the shared tier behaves.

use std::time::Duration;

/// Settings of the shared tier (part of [`Config`](crate::Config)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// Longest a shared operation may take before the call goes on without it.
    pub timeout: Duration,
    /// Values whose encoding is larger are not written to the shared tier.
    pub max_value_size: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips the store before one probe is let through.
    pub breaker_cooldown: Duration,
    /// How often a store without publish/subscribe (filesystem, SQLite,
    /// memcached) is polled for invalidation notices: the bound on how long
    /// another process's local copy can outlive an invalidation
    /// (`CACHE_BUS_POLL_MS`, default 100 ms; see [`polled`](crate::shared::polled)).
    pub bus_poll_interval: Duration,
    /// How values are encoded in the shared tier (`CACHE_CODEC`; see [`crate::codec`]).
    pub codec: crate::codec::CodecKind,
}

/// Default [`SharedSettings::timeout`]: 50 ms.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest [`SharedSettings::timeout`] accepted: 60 s (longer ones are cut to it).
pub const MAX_SHARED_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`SharedSettings::bus_poll_interval`]: 100 ms.
pub const DEFAULT_BUS_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default [`SharedSettings::max_value_size`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            timeout: DEFAULT_SHARED_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_millis(500),
            bus_poll_interval: DEFAULT_BUS_POLL_INTERVAL,
            codec: crate::codec::CodecKind::default(),
        }
    }
}

/// Which store backs the local tier.
///
/// The default is [`LocalStoreKind::QuickCache`]: on the 2-core machines this
/// project is measured on, a warm raw `quick_cache` get costs about 9 ns
/// against about 130 ns for moka (`benches/local_hit.rs`, the README), and its
/// S3-FIFO eviction keeps hit ratios at or above LRU's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LocalStoreKind {
    /// [`quick_cache::sync::Cache`], sharded S3-FIFO.
    #[default]
    QuickCache,
    /// [`moka::sync::Cache`], TinyLFU (cargo feature `moka`).
    #[cfg(feature = "moka")]
    Moka,
}

/// The default `CACHE_THRESHOLD`: entries kept in the directory.
pub const DEFAULT_THRESHOLD: u64 = 10_000;
