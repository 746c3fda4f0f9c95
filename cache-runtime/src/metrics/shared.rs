//! The shared tier's counters: per function ([`SharedMetrics`], snapshot
//! [`SharedStats`]) and per process ([`TierStats`], with the bus's
//! [`BusHealth`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::Histogram;
use crate::error::ErrorKind;

/// Whether the invalidation bus delivers notices to this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BusStatus {
    /// Not subscribed yet.
    #[default]
    Starting,
    /// Subscribed: notices arrive.
    Up,
    /// Lost or refused: notices do not arrive (see [`BusHealth::reason`]).
    Down,
}

impl BusStatus {
    /// `starting`, `up` or `down` (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            BusStatus::Starting => "starting",
            BusStatus::Up => "up",
            BusStatus::Down => "down",
        }
    }
}

/// The invalidation bus's health, in [`TierStats::bus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BusHealth {
    /// Up, down or starting.
    pub status: BusStatus,
    /// Why the bus is down (the server's answer, no password); `None` otherwise.
    pub reason: Option<String>,
}

/// Per-function counters of the shared tier.
#[derive(Default)]
pub(crate) struct SharedMetrics {
    misses: AtomicU64,
    errors: [AtomicU64; 7],
    bytes_written: AtomicU64,
    writes: AtomicU64,
    pub(crate) latency: Histogram,
}

impl SharedMetrics {
    pub(crate) fn record_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn record_error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }
    pub(crate) fn record_write(&self, bytes: usize) {
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn reset(&self) {
        for counter in self
            .errors
            .iter()
            .chain([&self.misses, &self.bytes_written, &self.writes])
        {
            counter.store(0, Relaxed);
        }
        self.latency.reset();
    }

    pub(crate) fn snapshot(&self) -> SharedStats {
        let e = |k: ErrorKind| self.errors[k as usize].load(Relaxed);
        SharedStats {
            misses: self.misses.load(Relaxed),
            writes: self.writes.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            timeouts: e(ErrorKind::Timeout),
            connection_errors: e(ErrorKind::Connection),
            server_errors: e(ErrorKind::Server),
            corrupt: e(ErrorKind::Corrupt),
            oversize: e(ErrorKind::Oversize),
            skipped: e(ErrorKind::Skipped),
            encode_errors: e(ErrorKind::Encode),
            latency: self.latency.snapshot(),
        }
    }
}

/// One function's shared-tier counters at one moment (all zero for a
/// function that does not use a shared tier).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SharedStats {
    /// Shared lookups that found nothing usable (the function ran, or a
    /// local hit made the lookup unnecessary is *not* counted).
    pub misses: u64,
    /// Values written to the shared tier.
    pub writes: u64,
    /// Bytes written to the shared tier (envelopes included).
    pub bytes_written: u64,
    /// Operations cut off by the tier's timeout.
    pub timeouts: u64,
    /// Operations failed by a refused or lost connection.
    pub connection_errors: u64,
    /// Operations the server answered with an error.
    pub server_errors: u64,
    /// Stored bytes that failed verification or decoding (each also a miss; the key is rewritten).
    pub corrupt: u64,
    /// Values not written because they exceeded the size limit.
    pub oversize: u64,
    /// Operations skipped because the circuit breaker was open.
    pub skipped: u64,
    /// Values that could not be encoded (not written).
    pub encode_errors: u64,
    /// Time of shared round trips (hits, misses and writes; one in
    /// [`SHARED_SAMPLE_EVERY`](crate::shared::SHARED_SAMPLE_EVERY) per thread, the first one included).
    pub latency: crate::metrics::LatencyStats,
}

impl SharedStats {
    /// Every failure, whatever its kind (skips included).
    pub fn errors(&self) -> u64 {
        self.timeouts
            + self.connection_errors
            + self.server_errors
            + self.corrupt
            + self.oversize
            + self.skipped
            + self.encode_errors
    }
}

/// Process-wide state of the shared tier, in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TierStats {
    /// Where the store is (no password).
    pub store: String,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Invalidation notices received from other processes.
    pub notices_received: u64,
    /// Times the bus subscription was lost and restored (local copies were dropped each time).
    pub resubscriptions: u64,
    /// Whether the invalidation bus has been subscribed at least once.
    pub bus_subscribed: bool,
    /// The invalidation bus now: up, or down and why.
    pub bus: BusHealth,
    /// Invalidations waiting in the outbox for the shared tier or the bus
    /// (see [`outbox`](crate::shared::outbox)).
    pub invalidations_pending: u64,
    /// Invalidations applied after having waited in the outbox.
    pub invalidations_replayed: u64,
    /// Times the outbox was full and collapsed into one clear.
    pub outbox_overflows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_health_serializes_as_a_status_and_a_reason() {
        let down = BusHealth {
            status: BusStatus::Down,
            reason: Some("NOPERM".into()),
        };
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            r#"{"status":"down","reason":"NOPERM"}"#
        );
        for s in [BusStatus::Starting, BusStatus::Up, BusStatus::Down] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
