//! The time source of every expiry decision.
//!
//! The runtime never calls `std::time::Instant::now()` directly: it asks a
//! [`Clock`], so tests can replace real time with a [`MockClock`] and move it
//! forward by hand instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

/// A point in time read from a [`Clock`], in nanoseconds since an arbitrary
/// origin. Only comparisons and differences between two readings of the same
/// clock mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp that never comes: entries stamped with it do not expire.
    pub const NEVER: Timestamp = Timestamp(u64::MAX);
    /// The clock's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// This timestamp moved `d` into the future, saturating at [`Timestamp::NEVER`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Nanoseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn nanos_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// The clock the runtime reads for expiry checks and latency measurements.
///
/// [`Clock::system`] (the default) reads the CPU's time-stamp counter through
/// [`quanta`] where it is invariant (a few nanoseconds, no system call), and the
/// OS monotonic clock elsewhere. [`Clock::mock`] gives a clock that only moves
/// when a test moves it.
///
/// ```
/// use std::time::Duration;
/// use layercache_runtime::Clock;
///
/// let (clock, mock) = Clock::mock();
/// let t0 = clock.now();
/// mock.advance(Duration::from_secs(301));
/// assert_eq!(clock.now().saturating_duration_since(t0), Duration::from_secs(301));
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    inner: quanta::Clock,
    origin: quanta::Instant,
    /// For a mock clock: the Unix time (ms) at `origin`; wall time then
    /// moves with the mock. `None` for the system clock, which reads the
    /// real wall clock.
    mock_wall_origin_ms: Option<u64>,
}

impl Clock {
    /// The real, monotonic clock.
    pub fn system() -> Clock {
        Clock::from_quanta(quanta::Clock::new())
    }

    /// A clock that stands still until the returned [`MockClock`] advances it.
    pub fn mock() -> (Clock, MockClock) {
        let (clock, mock) = quanta::Clock::mock();
        // Start well away from zero so that "now minus something" never underflows in tests.
        mock.increment(Duration::from_secs(1));
        let mut clock = Clock::from_quanta(clock);
        clock.mock_wall_origin_ms = Some(system_unix_millis());
        (clock, MockClock(mock))
    }

    fn from_quanta(inner: quanta::Clock) -> Clock {
        let origin = inner.now();
        Clock {
            inner,
            origin,
            mock_wall_origin_ms: None,
        }
    }

    /// Wall-clock time in Unix milliseconds: what shared-tier envelopes
    /// record, since other processes cannot read this process's monotonic
    /// clock. A mock clock's wall time moves with the mock.
    pub fn unix_millis(&self) -> u64 {
        match self.mock_wall_origin_ms {
            None => system_unix_millis(),
            Some(base) => base + self.now().0 / 1_000_000,
        }
    }

    /// The current time.
    #[inline]
    pub fn now(&self) -> Timestamp {
        let nanos = self
            .inner
            .now()
            .saturating_duration_since(self.origin)
            .as_nanos();
        Timestamp(nanos as u64)
    }
}

fn system_unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// The handle that moves a [`Clock::mock`] clock.
#[derive(Debug, Clone)]
pub struct MockClock(Arc<quanta::Mock>);

impl MockClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.increment(d);
    }
}
