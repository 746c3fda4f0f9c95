//! Per-function counters and latency histograms, and the [`Stats`] snapshot.
//!
//! The hit path must stay cheap on many cores, so counters are striped: each
//! thread keeps one of 63 cache-line-padded stripes for its life and bumps
//! uncontended atomics there (threads share a stripe only past 63; a thread
//! counts in a shared stripe 0 until its first timed hit or other count),
//! and a snapshot adds the stripes up. Hit latency is sampled: each thread's
//! first hit, then one in [`HIT_SAMPLE_EVERY`] of its hits, has a repeat of
//! its lookup timed, so no other hit reads the clock for it. Origin latency is measured on every miss,
//! whose cost dwarfs a clock read.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

mod shared;
pub(crate) use shared::SharedMetrics;
pub use shared::{BusHealth, BusStatus, SharedStats, TierStats};

/// Counts entries a store dropped to stay within its bound.
#[derive(Debug, Clone, Default)]
pub struct Evictions(std::sync::Arc<AtomicU64>);

impl Evictions {
    /// Records `n` evictions.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Evictions so far.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Stripes per function: a thread keeps one for its life, so up to this
/// many threads count without sharing a cache line.
const STRIPES: usize = 64;

/// One local hit in this many (per thread, its first one included) has
/// its latency measured: a repeat of its lookup is timed.
pub const HIT_SAMPLE_EVERY: u32 = 1024;

/// The counters of a function, one slot each in every stripe.
#[derive(Clone, Copy)]
enum Counter {
    Misses,
    LocalHits,
    SharedHits,
    Expired,
    NotCached,
    OriginPanics,
    Invalidations,
    Coalesced,
    LockWaits,
    StaleHits,
    Bypassed,
    Refreshes,
    RefreshesStarted,
}

/// Slots per stripe: 16 counters of 8 bytes are 128 bytes, the two cache
/// lines x86-64 fetches together, so two stripes never share a line.
const PER_STRIPE: usize = 16;
const _: () = assert!((Counter::RefreshesStarted as usize) < PER_STRIPE);

/// Masks a thread's stripe start into range: the compiler then knows an
/// index is in bounds, and a hit makes no bounds check.
const STRIPE_MASK: usize = (STRIPES - 1) * PER_STRIPE;

/// Every stripe's counters of one function, stripe after stripe:
/// counter `c` of the stripe starting at `s` is slot `s + c`.
#[repr(align(128))]
struct Stripes([AtomicU64; STRIPES * PER_STRIPE]);

/// What a thread knows about its counting, kept in one thread-local so a
/// hit computes its address once.
struct ThreadCounting {
    /// Local hits (of any function) before this thread's next timed one;
    /// 0 at the start, so its first hit is timed and gives it a stripe.
    countdown: Cell<u32>,
    /// Where this thread's stripe starts (a multiple of [`PER_STRIPE`]);
    /// 0, the stripe shared by threads without one of their own, until
    /// [`own_stripe`] gives it one. Kept premultiplied, so a hit finds its
    /// counter with a load and a mask.
    start: Cell<usize>,
}

thread_local! {
    static THREAD: ThreadCounting = const {
        ThreadCounting {
            countdown: Cell::new(0),
            start: Cell::new(0),
        }
    };
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// The start of this thread's stripe, giving it one of its own (stripes
/// 1 to 63, in turn) if it has none yet. Never inlined: counters other
/// than local hits are off the hit path, and inlined into a caller that
/// also counts a hit, its mask made the compiler keep the constant in a
/// register, one instruction more of every hit.
#[inline(never)]
fn own_stripe() -> usize {
    THREAD.with(|t| match t.start.get() {
        0 => assign_stripe(&t.start),
        start => start & STRIPE_MASK,
    })
}

#[cold]
fn assign_stripe(slot: &Cell<usize>) -> usize {
    let stripe = 1 + NEXT_STRIPE.fetch_add(1, Relaxed) % (STRIPES - 1);
    let start = stripe * PER_STRIPE;
    slot.set(start);
    start
}

/// Live metrics of one cached function (or of the manual cache).
pub struct FnMetrics {
    name: String,
    /// `Config::metrics`: off, nothing is counted.
    enabled: bool,
    stripes: Stripes,
    pub(crate) evictions: Evictions,
    pub(crate) hit_latency: Histogram,
    pub(crate) origin_latency: Histogram,
    pub(crate) shared: SharedMetrics,
}

macro_rules! bump {
    ($($method:ident => $field:ident),* $(,)?) => {
        $(
            #[inline]
            pub(crate) fn $method(&self) {
                if self.enabled {
                    self.add(Counter::$field, 1);
                }
            }
        )*
    };
}

impl FnMetrics {
    pub(crate) fn new(name: String, evictions: Evictions, enabled: bool) -> FnMetrics {
        FnMetrics {
            name,
            enabled,
            stripes: Stripes(std::array::from_fn(|_| AtomicU64::new(0))),
            evictions,
            hit_latency: Histogram::default(),
            origin_latency: Histogram::default(),
            shared: SharedMetrics::default(),
        }
    }

    /// Whether this function counts (`Config::metrics`).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The function's metrics name.
    pub fn name(&self) -> &str {
        &self.name
    }

    bump! {
        record_miss => Misses,
        record_expired => Expired,
        record_not_cached => NotCached,
        record_origin_panic => OriginPanics,
        record_shared_hit => SharedHits,
        record_coalesced => Coalesced,
        record_lock_wait => LockWaits,
        record_stale_hit => StaleHits,
        record_bypass => Bypassed,
        record_refresh => Refreshes,
        record_refresh_start => RefreshesStarted,
    }

    /// `n` entries dropped by invalidation.
    #[inline]
    pub(crate) fn record_invalidations(&self, n: u64) {
        if n > 0 && self.enabled {
            self.add(Counter::Invalidations, n);
        }
    }

    /// Adds `n` to `counter` in this thread's own stripe.
    #[inline]
    fn add(&self, counter: Counter, n: u64) {
        self.stripes.0[own_stripe() + counter as usize].fetch_add(n, Relaxed);
    }

    /// A hit served by the local tier, on a function whose metrics are
    /// [`enabled`](FnMetrics::enabled) (the hit path checks that once, with
    /// whether the tier is on); returns whether to time it (one in
    /// [`HIT_SAMPLE_EVERY`] of this thread's hits, its first included).
    ///
    /// Six instructions: the stripe is taken as it is (0 for a thread
    /// without one) and the sampling test is a decrement of a thread-local
    /// countdown; the timed hit gives its thread a stripe
    /// ([`FnMetrics::sampled`]), so neither needs a test of its own.
    #[inline(always)]
    pub(crate) fn count_local_hit(&self) -> bool {
        THREAD.with(|t| {
            let start = t.start.get() & STRIPE_MASK;
            self.stripes.0[start + Counter::LocalHits as usize].fetch_add(1, Relaxed);
            let (left, timed) = t.countdown.get().overflowing_sub(1);
            t.countdown.set(left);
            timed
        })
    }

    /// After a hit [`FnMetrics::count_local_hit`] picked: restarts this
    /// thread's countdown and gives the thread a stripe of its own if it
    /// still shares stripe 0.
    pub(crate) fn sampled(&self) {
        THREAD.with(|t| t.countdown.set(HIT_SAMPLE_EVERY - 1));
        own_stripe();
    }

    /// Zeroes every counter and histogram of this function.
    pub(crate) fn reset(&self) {
        for counter in &self.stripes.0 {
            counter.store(0, Relaxed);
        }
        self.evictions.0.store(0, Relaxed);
        self.hit_latency.reset();
        self.origin_latency.reset();
        self.shared.reset();
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .0
            .iter()
            .skip(counter as usize)
            .step_by(PER_STRIPE)
            .map(|c| c.load(Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self, entries: u64) -> FunctionStats {
        let local_hits = self.sum(Counter::LocalHits);
        let shared_hits = self.sum(Counter::SharedHits);
        let coalesced = self.sum(Counter::Coalesced);
        FunctionStats {
            name: self.name.clone(),
            hits: local_hits + shared_hits + coalesced,
            misses: self.sum(Counter::Misses),
            local_hits,
            shared_hits,
            coalesced,
            lock_waits: self.sum(Counter::LockWaits),
            stale_hits: self.sum(Counter::StaleHits),
            bypassed: self.sum(Counter::Bypassed),
            refreshes: self.sum(Counter::Refreshes),
            refreshes_started: self.sum(Counter::RefreshesStarted),
            expired: self.sum(Counter::Expired),
            not_cached: self.sum(Counter::NotCached),
            origin_panics: self.sum(Counter::OriginPanics),
            invalidations: self.sum(Counter::Invalidations),
            evictions: self.evictions.get(),
            entries,
            hit_latency: self.hit_latency.snapshot(),
            origin_latency: self.origin_latency.snapshot(),
            shared: self.shared.snapshot(),
        }
    }
}

/// Sub-buckets per power of two (64): a bucket spans at most 1/64 (1.6 %)
/// of its floor, and a quantile interpolated inside its bucket is within
/// that of the exact one.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// The upper bounds (`le`, in seconds) of the cumulative buckets exported
/// to Prometheus: fixed, so histograms of every process of a fleet add up.
pub const EXPORT_BOUNDS: [f64; 20] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A lock-free log-linear histogram of nanosecond durations (64 buckets
/// per power of two), with exact count, sum, minimum and maximum.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// The smallest value that falls in bucket `i`.
fn bucket_floor(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    (1u64 << exp) | (sub << (exp - u64::from(SUB_BITS)))
}

/// One past the largest value that falls in bucket `i` (saturating).
fn bucket_end(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_floor(i + 1)
    }
}

/// The `q` quantile (the sample of rank `ceil(q * total)`) of a histogram
/// with bucket counts `counts`: interpolated linearly inside its bucket by
/// the rank's place among the bucket's samples, then kept within
/// `[min, max]`, so a quantile never names a time no sample took (the
/// middle of a bucket can lie below its smallest sample).
fn quantile(counts: &[u64], total: u64, min: u64, max: u64, q: f64) -> u64 {
    let rank = ((total as f64) * q).ceil().clamp(1.0, total as f64) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if seen + c >= rank {
            let lo = bucket_floor(i);
            let width = bucket_end(i).saturating_sub(lo).saturating_sub(1);
            // The k-th of c samples sits at (k - 0.5) / c of the bucket.
            let at = ((rank - seen) as f64 - 0.5) / c as f64;
            let v = lo.saturating_add((width as f64 * at) as u64);
            return v.clamp(min, max);
        }
        seen += c;
    }
    max
}

impl Histogram {
    fn reset(&self) {
        for bucket in &*self.buckets {
            bucket.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum.store(0, Relaxed);
        self.min.store(u64::MAX, Relaxed);
        self.max.store(0, Relaxed);
    }

    pub(crate) fn record(&self, nanos: u64) {
        self.buckets[bucket_of(nanos)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(nanos, Relaxed);
        self.min.fetch_min(nanos, Relaxed);
        self.max.fetch_max(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyStats {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let count = self.count.load(Relaxed);
        let sum = self.sum.load(Relaxed);
        if total == 0 {
            return LatencyStats {
                count,
                sum_ns: sum,
                ..LatencyStats::default()
            };
        }
        let (min, max) = (self.min.load(Relaxed), self.max.load(Relaxed));
        let mut cumulative = [0u64; EXPORT_BOUNDS.len()];
        let mut seen = 0;
        let mut bound = 0;
        for (i, &c) in counts.iter().enumerate() {
            // A bucket counts below `le` when all of it is at or below it.
            while bound < EXPORT_BOUNDS.len()
                && (bucket_end(i) - 1) as f64 > EXPORT_BOUNDS[bound] * 1e9
            {
                cumulative[bound] = seen;
                bound += 1;
            }
            seen += c;
        }
        for slot in &mut cumulative[bound..] {
            *slot = seen;
        }
        let q = |q| quantile(&counts, total, min, max, q);
        LatencyStats {
            count,
            sum_ns: sum,
            mean_ns: sum.checked_div(count).unwrap_or(0),
            min_ns: min,
            max_ns: max,
            p50_ns: q(0.50),
            p90_ns: q(0.90),
            p99_ns: q(0.99),
            cumulative,
        }
    }
}

/// A latency distribution in nanoseconds. Count, sum, mean, minimum and
/// maximum are exact; quantiles are within 1.6 % of the exact ones and
/// never outside `[min_ns, max_ns]`. With no measurement every field is 0
/// (`count == 0` tells them apart from real zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencyStats {
    /// Measurements taken.
    pub count: u64,
    /// Sum of the measurements.
    pub sum_ns: u64,
    /// Mean of the measurements.
    pub mean_ns: u64,
    /// Smallest measurement.
    pub min_ns: u64,
    /// Largest measurement.
    pub max_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Measurements at or below each of [`EXPORT_BOUNDS`] (the Prometheus
    /// histogram's cumulative buckets; a fine bucket that straddles a bound
    /// counts above it). Not in the JSON snapshot.
    #[serde(skip)]
    pub cumulative: [u64; EXPORT_BOUNDS.len()],
}

impl LatencyStats {
    /// `p50_ns`, `p90_ns` or `p99_ns` in seconds for an exporter: NaN when
    /// nothing was measured (the Prometheus convention for an empty
    /// quantile; 0 would claim an instant answer).
    pub fn quantile_seconds(&self, ns: u64) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            ns as f64 / 1e9
        }
    }
}

/// The counters of one cached function at one moment.
///
/// `hits + misses` is the number of calls that consulted the cache; calls in
/// `null` mode count as misses.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// `key_prefix`, or `module::path::fn_name` without one.
    pub name: String,
    /// Calls answered from a cache tier.
    pub hits: u64,
    /// Calls that ran the function.
    pub misses: u64,
    /// Hits answered by the in-process tier.
    pub local_hits: u64,
    /// Hits answered by the shared tier (zero until a shared tier is configured).
    pub shared_hits: u64,
    /// Calls that missed while another caller in this process was already
    /// computing the same key, and took its value instead of running the
    /// function (single-flight). Counted in `hits`.
    pub coalesced: u64,
    /// Shared hits that came after waiting for another process holding the
    /// key's lock (`lock = true`); also counted in `shared_hits`.
    pub lock_waits: u64,
    /// Calls whose function failed (`Err`) and that returned a value past
    /// its expiry instead (`stale_if_error`); each is also a miss.
    pub stale_hits: u64,
    /// Calls that skipped the cache because their `unless` held (neither
    /// hits nor misses).
    pub bypassed: u64,
    /// Background refreshes ended (`refresh_ahead`, `xfetch`), including
    /// ones that failed, were skipped because another process held the
    /// lock, or took the value another process had just refreshed; their
    /// function runs are not misses.
    pub refreshes: u64,
    /// Background refreshes started; `refreshes_started - refreshes` are
    /// in flight.
    pub refreshes_started: u64,
    /// Lookups that found an entry past its expiry (each is also a miss).
    pub expired: u64,
    /// Results not stored: `Err`, `None`, or stored while an invalidation raced them.
    pub not_cached: u64,
    /// Calls whose function panicked (the panic reached the caller; nothing was stored).
    pub origin_panics: u64,
    /// Entries dropped by invalidation (one, all, prefix) or replaced by `put`.
    pub invalidations: u64,
    /// Entries dropped by the local tier to stay within `max_entries`.
    pub evictions: u64,
    /// Entries held in the local tier now.
    pub entries: u64,
    /// Time of a local lookup that hits (sampled: a repeat of the lookup of
    /// each thread's first hit, then of one hit in [`HIT_SAMPLE_EVERY`]).
    pub hit_latency: LatencyStats,
    /// Time the function itself took, on every miss.
    pub origin_latency: LatencyStats,
    /// The shared tier's counters for this function (zero without one).
    pub shared: SharedStats,
}

impl FunctionStats {
    /// `hits / (hits + misses)`, or 0.0 before the first call.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// `hits + misses`.
    pub fn requests(&self) -> u64 {
        self.hits + self.misses
    }
}

impl Serialize for FunctionStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("FunctionStats", 22)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("hits", &self.hits)?;
        s.serialize_field("misses", &self.misses)?;
        s.serialize_field("hit_rate", &self.hit_rate())?;
        s.serialize_field("local_hits", &self.local_hits)?;
        s.serialize_field("shared_hits", &self.shared_hits)?;
        s.serialize_field("coalesced", &self.coalesced)?;
        s.serialize_field("lock_waits", &self.lock_waits)?;
        s.serialize_field("stale_hits", &self.stale_hits)?;
        s.serialize_field("bypassed", &self.bypassed)?;
        s.serialize_field("refreshes", &self.refreshes)?;
        s.serialize_field("refreshes_started", &self.refreshes_started)?;
        s.serialize_field("expired", &self.expired)?;
        s.serialize_field("not_cached", &self.not_cached)?;
        s.serialize_field("origin_panics", &self.origin_panics)?;
        s.serialize_field("invalidations", &self.invalidations)?;
        s.serialize_field("evictions", &self.evictions)?;
        s.serialize_field("entries", &self.entries)?;
        s.serialize_field("errors", &self.shared.errors())?;
        s.serialize_field("hit_latency", &self.hit_latency)?;
        s.serialize_field("origin_latency", &self.origin_latency)?;
        s.serialize_field("shared", &self.shared)?;
        s.end()
    }
}

/// A snapshot of every cached function's counters, from [`stats()`](crate::stats).
///
/// ```
/// let stats = layercache_runtime::stats();
/// assert!(stats.function("no_such_function").is_none());
/// let json = serde_json::to_string(&stats).unwrap();
/// assert!(json.starts_with("{\"functions\":"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// One entry per function that has been called, sorted by name.
    pub functions: Vec<FunctionStats>,
    /// The shared tier of this process, when one is configured.
    pub shared_tier: Option<TierStats>,
}

impl Stats {
    /// The counters of the function named `name` (its `key_prefix`, or
    /// `module::path::fn_name`).
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Hits and misses over every function.
    pub fn totals(&self) -> (u64, u64) {
        self.functions
            .iter()
            .fold((0, 0), |(h, m), f| (h + f.hits, m + f.misses))
    }
}

impl fmt::Display for Stats {
    /// A table a person can read: one line per function.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>11} {:>12}",
            "function",
            "hits",
            "local",
            "shared",
            "misses",
            "errors",
            "hit rate",
            "entries",
            "hit p50",
            "origin mean"
        )?;
        for s in &self.functions {
            writeln!(
                f,
                "{:<36} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7.1}% {:>8} {:>11} {:>12}",
                s.name,
                s.hits,
                s.local_hits,
                s.shared_hits,
                s.misses,
                s.shared.errors(),
                s.hit_rate() * 100.0,
                s.entries,
                human_nanos(s.hit_latency.p50_ns),
                human_nanos(s.origin_latency.mean_ns),
            )?;
        }
        if let Some(t) = &self.shared_tier {
            writeln!(
                f,
                "shared tier {}: breaker {} (opened {} times), {} notices received, {} resubscriptions",
                t.store,
                if t.breaker_open { "OPEN" } else { "closed" },
                t.breaker_opens,
                t.notices_received,
                t.resubscriptions,
            )?;
            writeln!(
                f,
                "invalidation bus {}{}; {} invalidations waiting for the shared tier, {} replayed",
                t.bus.status.as_str(),
                t.bus
                    .reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(" ({r})")),
                t.invalidations_pending,
                t.invalidations_replayed,
            )?;
        }
        Ok(())
    }
}

fn human_nanos(ns: u64) -> String {
    match ns {
        0 => "-".to_string(),
        n if n < 10_000 => format!("{n} ns"),
        n if n < 10_000_000 => format!("{:.1} µs", n as f64 / 1e3),
        n if n < 10_000_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        n => format!("{:.1} s", n as f64 / 1e9),
    }
}

/// Records one origin duration with the `metrics` facade (called on every
/// miss; the other series reach the facade from snapshots, see
/// [`export::metrics`](crate::export::metrics)).
#[cfg(feature = "metrics")]
#[inline]
pub(crate) fn origin_duration_to_facade(function: &str, nanos: u64) {
    ::metrics::histogram!("layercache_origin_duration_seconds", "function" => function.to_string())
        .record(nanos as f64 / 1e9);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_floors_round_trip() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            123_456,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went backwards");
            assert!(b < BUCKETS);
            assert!(bucket_floor(b) <= v, "floor of bucket of {v} is above it");
            last = b;
        }
        for i in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_floor(i)), i);
        }
    }

    #[test]
    fn histogram_reports_exact_count_mean_max_and_close_quantiles() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max_ns, 1_000_000);
        assert_eq!(s.mean_ns, 500_500);
        assert!((465_000..=535_000).contains(&s.p50_ns), "p50 {}", s.p50_ns);
        assert!(
            (920_000..=1_000_000).contains(&s.p99_ns),
            "p99 {}",
            s.p99_ns
        );
    }

    #[test]
    fn samples_within_50_29_and_50_32_ms_give_p50_and_p99_within_that_range() {
        let h = Histogram::default();
        for ns in [50_290_000, 50_301_000, 50_312_000, 50_320_000] {
            h.record(ns);
        }
        let s = h.snapshot();
        for (name, q) in [("p50", s.p50_ns), ("p90", s.p90_ns), ("p99", s.p99_ns)] {
            assert!(
                (50_290_000..=50_320_000).contains(&q),
                "{name} = {q} ns is outside the samples' range"
            );
        }
        assert_eq!((s.min_ns, s.max_ns), (50_290_000, 50_320_000));
    }

    /// The sample of rank `ceil(q * n)`, as the histogram defines a quantile.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((sorted.len() as f64) * q).ceil().max(1.0) as usize;
        sorted[rank - 1]
    }

    #[test]
    fn every_quantile_of_random_samples_is_within_3_percent_of_the_exact_one() {
        let mut rng = fastrand::Rng::with_seed(0x1a7e_cac4e);
        for case in 0..300 {
            let n = rng.usize(1..2000);
            // Log-uniform over 1 µs .. 10 s, uniform over a narrow band, or
            // a few repeated values: the shapes latencies take.
            let shape = case % 3;
            let base = rng.u64(1_000..10_000_000_000);
            let samples: Vec<u64> = (0..n)
                .map(|_| match shape {
                    0 => (1e3 * 1e7f64.powf(rng.f64())) as u64,
                    1 => base + rng.u64(0..=base / 1000),
                    _ => base * rng.u64(1..4),
                })
                .collect();
            let h = Histogram::default();
            for &v in &samples {
                h.record(v);
            }
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let s = h.snapshot();
            for (q, got) in [(0.5, s.p50_ns), (0.9, s.p90_ns), (0.99, s.p99_ns)] {
                let want = exact(&sorted, q);
                let err = (got as f64 - want as f64).abs() / want as f64;
                assert!(
                    err <= 0.03,
                    "case {case}: q{q} = {got}, exact {want} ({:.2} %)",
                    err * 100.0
                );
                assert!((sorted[0]..=sorted[n - 1]).contains(&got));
            }
        }
    }

    #[test]
    fn an_empty_histogram_reports_zero_count_and_nan_quantiles_for_exporters() {
        let s = Histogram::default().snapshot();
        assert_eq!(s.count, 0);
        assert!(s.quantile_seconds(s.p99_ns).is_nan());
    }

    #[test]
    fn cumulative_export_buckets_count_samples_at_or_below_each_bound() {
        let h = Histogram::default();
        for ns in [500, 2_000_000, 2_000_000, 3_000_000_000] {
            h.record(ns);
        }
        let s = h.snapshot();
        let at = |le: f64| s.cumulative[EXPORT_BOUNDS.iter().position(|&b| b == le).unwrap()];
        assert_eq!(at(1e-6), 1);
        assert_eq!(at(1e-3), 1);
        assert_eq!(at(2.5e-3), 3);
        assert_eq!(at(2.5), 3);
        assert_eq!(at(5.0), 4);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn striped_counters_add_up_across_threads() {
        let m = std::sync::Arc::new(FnMetrics::new("t".into(), Evictions::default(), true));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.count_local_hit();
                        m.record_miss();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = m.snapshot(0);
        assert_eq!((s.hits, s.local_hits, s.misses), (4000, 4000, 4000));
        assert_eq!(s.hit_rate(), 0.5);
    }
}
