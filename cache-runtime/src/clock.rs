//! The time source of every expiry decision.
//!
//! The runtime never calls `std::time::Instant::now()` directly: it asks a
//! [`Clock`], so tests can replace real time with a [`MockClock`] and move it
//! forward by hand instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

/// How often the recent time behind [`Clock::is_before`] is refreshed.
const RECENT_EVERY: Duration = Duration::from_millis(10);

/// How stale the recent time may be before an expiry decision goes wrong:
/// [`Clock::is_before`] trusts it only for deadlines more than this ahead
/// of it, and reads the exact clock for the others. 100 times the refresh
/// interval, so the refreshing thread may be kept off the CPU for most of
/// a second before a decision could be late.
const RECENT_SLACK: Duration = Duration::from_secs(1);

/// The recent time of the system clocks plus [`RECENT_SLACK`]: a deadline
/// after it has surely not come. `u64::MAX` until the refreshing thread
/// runs, so nothing is trusted to it before.
static HORIZON: AtomicU64 = AtomicU64::new(u64::MAX);

/// The horizon of a mock clock: nothing is trusted to a past reading.
static NO_HORIZON: AtomicU64 = AtomicU64::new(u64::MAX);

/// The process's system clock and its origin: every [`Clock::system`]
/// shares them, so their timestamps compare with [`HORIZON`].
static SYSTEM: OnceLock<(quanta::Clock, quanta::Instant)> = OnceLock::new();

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
/// A local hit decides expiry with a coarser, cheaper reading: a thread
/// (`layercache-clock`, started with the first function cache) stores the
/// time every 10 ms, and a deadline more than 1 s past that stored time has
/// surely not come; only an entry within a second of its deadline (every
/// entry of a timeout under a second) is checked against the exact clock.
/// So expiry is exact, unless that thread is kept off the CPU for most of
/// a second. A mock clock is always read exactly.
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
    /// [`HORIZON`] for the system clock, [`NO_HORIZON`] for a mock.
    horizon: &'static AtomicU64,
}

impl Clock {
    /// The real, monotonic clock.
    pub fn system() -> Clock {
        let (inner, origin) = SYSTEM.get_or_init(|| {
            let inner = quanta::Clock::new();
            let origin = inner.now();
            (inner, origin)
        });
        Clock {
            inner: inner.clone(),
            origin: *origin,
            mock_wall_origin_ms: None,
            horizon: &HORIZON,
        }
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
            horizon: &NO_HORIZON,
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

    /// Starts the thread that keeps the recent time [`Clock::is_before`]
    /// relies on (once per process; nothing for a mock clock).
    pub(crate) fn keep_recent(&self) {
        static STARTED: Once = Once::new();
        if self.mock_wall_origin_ms.is_some() {
            return;
        }
        STARTED.call_once(|| {
            let clock = Clock::system();
            let slack = u64::try_from(RECENT_SLACK.as_nanos()).unwrap_or(u64::MAX);
            let horizon = move || clock.now().0.saturating_add(slack);
            HORIZON.store(horizon(), Relaxed);
            let spawned = std::thread::Builder::new()
                .name("layercache-clock".into())
                .spawn(move || loop {
                    std::thread::sleep(RECENT_EVERY);
                    HORIZON.store(horizon(), Relaxed);
                });
            if let Err(e) = spawned {
                // Without the thread every expiry check reads the exact clock.
                HORIZON.store(u64::MAX, Relaxed);
                tracing::warn!(error = %e, "layercache: could not start the clock thread; expiry checks read the exact clock");
            }
        });
    }

    /// Whether `deadline` has not come yet: `now() < deadline`, decided
    /// without reading the clock when the deadline is more than a second
    /// past the recent time (see the type's documentation).
    #[inline]
    pub fn is_before(&self, deadline: Timestamp) -> bool {
        deadline.0 > self.horizon.load(Relaxed) || self.now() < deadline
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mock_clock_decides_expiry_exactly_at_the_deadline() {
        let (clock, mock) = Clock::mock();
        clock.keep_recent();
        let deadline = clock.now().saturating_add(Duration::from_secs(300));
        mock.advance(Duration::from_secs(300) - Duration::from_nanos(1));
        assert!(clock.is_before(deadline));
        mock.advance(Duration::from_nanos(1));
        assert!(!clock.is_before(deadline), "the deadline itself has come");
    }

    #[test]
    fn the_system_clock_trusts_its_recent_time_only_far_from_a_deadline() {
        let clock = Clock::system();
        clock.keep_recent();
        let now = clock.now();
        assert!(clock.is_before(now.saturating_add(Duration::from_secs(3600))));
        assert!(clock.is_before(Timestamp::NEVER));
        assert!(!clock.is_before(now), "a deadline already reached");
        // Within the slack of the recent time the exact clock decides: a
        // deadline 20 ms ahead has passed 30 ms later, though the recent
        // time may not have moved yet.
        let soon = clock.now().saturating_add(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!clock.is_before(soon));
    }

    #[test]
    fn system_clocks_share_one_origin() {
        let (a, b) = (Clock::system(), Clock::system());
        let (ta, tb) = (a.now(), b.now());
        assert!(tb >= ta && tb.nanos_since(ta) < 1_000_000_000);
    }
}
