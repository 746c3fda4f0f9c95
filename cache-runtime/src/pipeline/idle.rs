//! Sliding expiration (`time_to_idle`): the local hit path of a function
//! that declares it, and how its local entries carry their absolute
//! deadline.
//!
//! A local entry of an idle function expires at the earlier of its idle
//! deadline (last extending read + `time_to_idle`) and its hard deadline
//! (write + `timeout`, none without one). [`Stored`] keeps one deadline,
//! `expires_at`, and has no room for a second one: another 8 bytes would
//! grow every entry of every function (the memory benchmark's budget is
//! 1.2x quick_cache's bytes per entry). So `expires_at` holds the effective
//! deadline, and an idle function's `tag` is split: its high 32 bits are
//! the high half of the stable key's hash (what an invalidation notice
//! matches: a 32-bit collision only drops a local copy early), its low 32
//! bits the milliseconds from `expires_at` to the hard deadline
//! ([`NO_HARD_DEADLINE`] for none). The distance is rounded down and a
//! longer one (over 49 days) saturates, so an entry may end a little
//! before `timeout`, never after.
//!
//! Functions without `time_to_idle` never reach this module: the macro
//! calls [`idle_hit`] or [`get_or_compute_idle`] only for those that
//! declare it, so their hit path and entries are unchanged.
//!
//! # Precision
//!
//! Moving a deadline is a write to the store (under its shard's lock), so
//! a read moves it only when that gains more than 1/[`SLIDE_STEP`] of
//! `time_to_idle`: an entry read at `t` lives until at least
//! `t + 7/8 · time_to_idle` and at most `t + time_to_idle`, and a hot entry
//! costs one store write per `time_to_idle / 8`, not one per read.

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use quick_cache::Equivalent;

use super::entry::{after_local_miss, after_local_miss_async};
use super::{FnCache, Key, OutputMode, Value};
use crate::clock::Timestamp;
use crate::local::Stored;
use crate::value::CacheValue;

/// The low half of an idle entry's tag meaning "no hard deadline".
const NO_HARD_DEADLINE: u32 = u32::MAX;

/// The half of a tag that an idle entry keeps of its stable key's hash.
const TAG_HASH: u64 = 0xFFFF_FFFF_0000_0000;

/// A read extends an entry only when that gains more than
/// `time_to_idle / SLIDE_STEP`.
const SLIDE_STEP: u32 = 8;

/// How a new entry of an idle function is stored: the life of its first
/// idle period (`time_to_idle`, or `ttl` when shorter) and its tag, carrying
/// the distance from that deadline to the hard one (`ttl` after now).
pub(super) fn stamp(idle: Duration, ttl: Option<Duration>, tag: u64) -> (Option<Duration>, u64) {
    let first = ttl.map_or(idle, |t| t.min(idle));
    let rest = match ttl {
        None => NO_HARD_DEADLINE,
        Some(t) => millis_down(t.saturating_sub(first)),
    };
    (Some(first), (tag & TAG_HASH) | u64::from(rest))
}

/// `d` in whole milliseconds, rounded down, below [`NO_HARD_DEADLINE`].
fn millis_down(d: Duration) -> u32 {
    u32::try_from(d.as_millis())
        .unwrap_or(u32::MAX)
        .min(NO_HARD_DEADLINE - 1)
}

/// The entry's hard deadline (`timeout` after it was written).
fn hard_deadline<V>(entry: &Stored<V>) -> Timestamp {
    match entry.tag as u32 {
        NO_HARD_DEADLINE => Timestamp::NEVER,
        rest => entry
            .expires_at
            .saturating_add(Duration::from_millis(u64::from(rest))),
    }
}

/// The deadline a read at `now` gives the entry: `now + idle`, capped by
/// its hard deadline and moved later by under a millisecond so that the
/// distance left to the hard deadline is whole milliseconds (so the hard
/// deadline never drifts, however often the entry slides).
fn slid_deadline<V>(entry: &Stored<V>, now: Timestamp, idle: Duration) -> (Timestamp, u32) {
    let hard = hard_deadline(entry);
    let to = now.saturating_add(idle).min(hard);
    if hard == Timestamp::NEVER {
        return (to, NO_HARD_DEADLINE);
    }
    let gap = hard.nanos_since(to);
    let to = to.saturating_add(Duration::from_nanos(gap % 1_000_000));
    (to, millis_down(hard.saturating_duration_since(to)))
}

/// Whether a read at `now` should move the entry's deadline (it gains more
/// than `idle / SLIDE_STEP`).
fn due<V>(entry: &Stored<V>, now: Timestamp, idle: Duration) -> bool {
    let (to, _) = slid_deadline(entry, now, idle);
    to > entry.expires_at.saturating_add(idle / SLIDE_STEP)
}

/// Moves the deadline of the entry held now, if it is still fresh (a read
/// never revives an expired entry) and the move extends it.
fn slide<V>(entry: &mut Stored<V>, now: Timestamp, idle: Duration) -> bool {
    if now >= entry.expires_at {
        return false;
    }
    let (to, rest) = slid_deadline(entry, now, idle);
    if to <= entry.expires_at {
        return false;
    }
    entry.expires_at = to;
    entry.tag = (entry.tag & TAG_HASH) | u64::from(rest);
    true
}

/// The pipeline for a sync function with `time_to_idle`: the local tier
/// (a hit moves the entry's idle deadline), then as
/// [`get_or_compute`](super::get_or_compute), for a key built before the
/// lookup (a template's rendering); a key of the arguments themselves goes
/// through [`idle_hit`] instead.
pub fn get_or_compute_idle<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl FnOnce() -> R,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.idle_get(&key) {
        return M::from_cached(v);
    }
    after_local_miss::<M, K, R>(cache, key, cache_if, tags, origin)
}

/// [`get_or_compute_idle`] for an `async fn`.
pub async fn get_or_compute_async_idle<M, K, R>(
    cache: &FnCache<K, M::Value>,
    key: K,
    cache_if: fn(&R) -> bool,
    tags: impl FnOnce(&K) -> Vec<String>,
    origin: impl Future<Output = R>,
) -> R
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
{
    if let Some(v) = cache.idle_get(&key) {
        return M::from_cached(v);
    }
    after_local_miss_async::<M, K, R>(cache, key, cache_if, tags, origin).await
}

/// What the idle hit path found by a call's borrowed arguments.
pub enum IdleHit<R> {
    /// A fresh entry whose deadline need not move.
    Fresh(R),
    /// A fresh entry whose deadline this read should move: the wrapper
    /// builds the owned key and calls [`idle_slide`].
    Slide(R),
    /// No fresh entry.
    Miss,
}

/// Step 1 for a function with `time_to_idle` whose key is the tuple of its
/// arguments: looks the call up by `probe` (see [`local_hit`](super::local_hit)),
/// so a hit builds no owned key unless it must move the entry's deadline
/// (once per `time_to_idle / 8` at most, see the module's precision).
#[inline]
pub fn idle_hit<M, K, Q, R>(cache: &FnCache<K, M::Value>, probe: &Q) -> IdleHit<R>
where
    M: OutputMode<R>,
    M::Value: CacheValue,
    K: Key,
    Q: Hash + Equivalent<K> + ?Sized,
{
    match cache.idle_lookup(probe) {
        Some((v, false)) => IdleHit::Fresh(M::from_cached(v)),
        Some((v, true)) => IdleHit::Slide(M::from_cached(v)),
        None => IdleHit::Miss,
    }
}

/// Moves the idle deadline of `key`'s entry after [`IdleHit::Slide`].
pub fn idle_slide<K: Key, V: Value>(cache: &FnCache<K, V>, key: &K) {
    cache.slide(key);
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// Step 1 for a function with `time_to_idle`: a fresh local entry is a
    /// hit, and the read moves its deadline (see the module's precision).
    pub(crate) fn idle_get(&self, key: &K) -> Option<V> {
        let (value, due) = self.idle_lookup(key)?;
        if due {
            self.slide(key);
        }
        Some(value)
    }

    /// The fresh value under `key`, and whether this read should move its
    /// deadline (counted as a local hit or, by the caller, a miss).
    fn idle_lookup<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> Option<(V, bool)> {
        let Some(idle) = self.policy.idle else {
            return self.local_get(key, |v| Some((v, false)));
        };
        self.local.hit(&self.metrics, key, true, |entry| {
            let due = due(&entry, self.local.clock.now(), idle);
            Some((entry.value, due))
        })
    }

    /// Moves the deadline of `key`'s entry for a read now.
    fn slide(&self, key: &K) {
        if let Some(idle) = self.policy.idle {
            let now = self.local.clock.now();
            self.local.store().update(key, |e| slide(e, now, idle));
        }
    }

    /// The life and tag a local entry of this function is stored with:
    /// unchanged without `time_to_idle` (see [`stamp`]).
    #[inline]
    pub(super) fn idle_stamp(&self, ttl: Option<Duration>, tag: u64) -> (Option<Duration>, u64) {
        match self.policy.idle {
            None => (ttl, tag),
            Some(idle) => stamp(idle, ttl, tag),
        }
    }

    /// [`FnCache::drop_tagged`] for an idle function, whose entries keep
    /// only the high half of their tag.
    pub(super) fn drop_tagged_idle(&self, tag: u64) -> u64 {
        self.local.bump_slot(tag);
        let n = self
            .local
            .store()
            .retain(&|_, e| (e.tag ^ tag) & TAG_HASH != 0);
        self.metrics.record_invalidations(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    fn stored(ttl: Option<Duration>, at: Timestamp) -> Stored<u8> {
        let (first, tag) = stamp(IDLE, ttl, 0xABCD_EF01_2345_6789);
        Stored {
            value: 1,
            expires_at: at.saturating_add(first.unwrap()),
            tag,
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO.saturating_add(Duration::from_secs(secs))
    }

    #[test]
    fn a_new_entry_lives_one_idle_period_and_remembers_its_hard_deadline() {
        let e = stored(Some(Duration::from_secs(60)), at(100));
        assert_eq!(e.expires_at, at(110));
        assert_eq!(hard_deadline(&e), at(160));
        assert_eq!(e.tag & TAG_HASH, 0xABCD_EF01_0000_0000);
    }

    #[test]
    fn a_read_moves_the_deadline_but_never_past_the_hard_one() {
        let mut e = stored(Some(Duration::from_secs(60)), at(100));
        assert!(slide(&mut e, at(105), IDLE));
        assert_eq!(e.expires_at, at(115));
        assert_eq!(hard_deadline(&e), at(160));
        for t in (110..=150).step_by(5) {
            assert!(slide(&mut e, at(t), IDLE), "read at {t}");
        }
        assert_eq!(e.expires_at, at(160), "capped by the hard deadline");
        assert!(!slide(&mut e, at(155), IDLE));
    }

    #[test]
    fn sliding_many_times_does_not_drift_the_hard_deadline() {
        let mut e = stored(Some(Duration::from_secs(3600)), at(0));
        let mut now = at(0);
        for _ in 0..10_000 {
            now = now.saturating_add(Duration::from_nanos(1_234_567));
            slide(&mut e, now, IDLE);
        }
        assert_eq!(hard_deadline(&e), at(3600));
    }

    #[test]
    fn without_a_timeout_an_entry_slides_forever() {
        let mut e = stored(None, at(0));
        assert_eq!(hard_deadline(&e), Timestamp::NEVER);
        assert!(slide(&mut e, at(9), IDLE));
        assert_eq!(e.expires_at, at(19));
        assert_eq!(hard_deadline(&e), Timestamp::NEVER);
    }

    #[test]
    fn a_read_extends_only_when_it_gains_an_eighth_of_the_idle_time() {
        let e = stored(None, at(0));
        assert!(!due(&e, at(1), IDLE), "gains 1 s of 10");
        assert!(due(&e, at(2), IDLE), "gains 2 s of 10");
    }

    #[test]
    fn an_expired_entry_is_not_revived() {
        let mut e = stored(None, at(0));
        assert!(!slide(&mut e, at(10), IDLE));
        assert_eq!(e.expires_at, at(10));
    }

    #[test]
    fn a_notice_naming_the_stable_key_drops_an_idle_entry_and_only_that_one() {
        use crate::config::Config;
        use crate::pipeline::{FnSpec, TierChoice, Timeout};
        use crate::runtime::Runtime;
        let spec = FnSpec {
            timeout: Timeout::After(Duration::from_secs(60)),
            time_to_idle: Some(IDLE),
            tier: TierChoice::Local,
            ..FnSpec::new(
                "idle_notice",
                "idle_notice",
                crate::key::render_hashed::<u64>,
            )
        };
        let cache: FnCache<u64, u64> =
            FnCache::with_runtime(spec, Runtime::leak(Config::default()));
        let (tag_a, tag_b) = (0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
        cache.write_back(1, 10, cache.generation(tag_a), tag_a);
        cache.write_back(2, 20, cache.generation(tag_b), tag_b);
        assert_eq!(cache.drop_tagged(tag_a), 1);
        assert_eq!(cache.peek(&1), None);
        assert_eq!(cache.peek(&2), Some(20));
    }

    #[test]
    fn an_idle_function_on_a_store_that_cannot_touch_stays_in_process() {
        use crate::config::{CacheType, Config};
        use crate::pipeline::FnSpec;
        use crate::runtime::Runtime;
        let dir = std::env::temp_dir().join(format!("layercache-idle-{}", std::process::id()));
        let runtime = Runtime::leak(
            Config::builder()
                .cache_type(CacheType::Filesystem)
                .cache_dir(&dir)
                .build(),
        );
        let spec = |name: &str, idle| FnSpec {
            time_to_idle: idle,
            ..FnSpec::new(name, name, crate::key::render_hashed::<u64>)
        };
        let plain: FnCache<u64, u64> = FnCache::with_runtime(spec("fs_plain", None), runtime);
        let idle: FnCache<u64, u64> = FnCache::with_runtime(spec("fs_idle", Some(IDLE)), runtime);
        assert!(plain.is_shared(), "the filesystem store is shared");
        assert!(!idle.is_shared(), "it cannot move an entry's expiry");
        assert!(idle.is_enabled());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_timeout_over_49_days_saturates_to_an_earlier_hard_deadline() {
        let e = stored(Some(Duration::from_secs(100 * 86_400)), at(0));
        assert!(hard_deadline(&e) < at(100 * 86_400));
        assert!(hard_deadline(&e) > at(49 * 86_400));
    }
}
