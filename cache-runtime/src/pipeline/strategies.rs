//! The strategies that act on a miss: fail-safe (`stale_if_error`) and
//! the distributed lock (`lock = true`); refresh-ahead is in `refresh`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use super::shared_link::{SharedKey, SharedLink, SharedMiss};
use super::{FnCache, Key};
use crate::clock::{Clock, Timestamp};
use crate::shared;
use crate::value::CacheValue;

/// First and longest pause between polls of the shared tier while another
/// process holds a key's lock.
pub(super) const LOCK_POLL_FIRST: Duration = Duration::from_millis(2);
pub(super) const LOCK_POLL_MAX: Duration = Duration::from_millis(50);

/// The distributed lock's outcome after a shared miss.
pub(super) enum Locked<V> {
    /// This process computes; it releases the lock after the write-back.
    Held(shared::HeldLock),
    /// The holder's value arrived in the shared tier.
    Found((V, Option<Duration>, u64)),
    /// Compute without the lock (no lock configured, a failing tier, or a
    /// holder that never delivered).
    Proceed,
}

impl<K: Key, V: CacheValue> FnCache<K, V> {
    /// Fail-safe: the value of `key` that expired less than the
    /// `stale_if_error` window ago, locally or in the shared tier (a
    /// fresh one another process wrote meanwhile is taken too).
    pub(super) async fn stale_value(&self, key: &K) -> Option<V>
    where
        V: CacheValue,
    {
        let window = self.policy.stale?;
        if let Some(v) = self.local.stale(key, window) {
            return Some(v);
        }
        let link = self.shared.as_ref().filter(|link| !link.outbox_blocks())?;
        let sk = self.shared_key(link, key).await.ok()?;
        let bytes = link
            .tier
            .call(Some(&self.metrics.shared), link.tier.timeout(), |s| {
                s.get(&sk.full)
            })
            .await
            .ok()??;
        let (value, meta) = link
            .tier
            .settings()
            .codec
            .open::<V>(&bytes, sk.check)
            .ok()?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let now_ms = link.tier.clock().unix_millis();
        (meta.expires_at_ms == 0 || now_ms < meta.expires_at_ms.saturating_add(window_ms))
            .then_some(value)
    }

    /// Step 4 failed (`Err`): a stale value in its place, if the function
    /// has `stale_if_error` and one is within the window.
    pub(super) async fn fail_safe(&self, key: &K) -> Option<V>
    where
        V: CacheValue,
    {
        self.policy.stale?;
        let v = self.stale_value(key).await?;
        self.metrics.record_stale_hit();
        tracing::debug!(
            name = self.name(),
            "layercache: the function failed; serving a stale value (stale_if_error)"
        );
        Some(v)
    }

    /// Distributed single-flight (`lock = true`), after a shared miss:
    /// take the key's lock in the shared tier and, once it is held, read
    /// the shared tier again (a holder that finished just before may have
    /// stored the value) before computing; or wait for the process holding
    /// it to store the value. A holder that dies
    /// releases by the lock's expiry; a shared tier that fails lets the
    /// caller compute (fail-open), as does a wait longer than twice the
    /// lock's life.
    ///
    /// A refresh passes when its local copy expires: only a value that
    /// outlives the copy answers it (the shared tier holds the
    /// copy's own value until another process stores a fresher one), and
    /// its polls come fast enough to see the holder's value land before
    /// the copy expires.
    pub(super) async fn lock_or_wait(
        &self,
        link: &SharedLink,
        key: &K,
        sk: &SharedKey,
        copy_expires: Option<Timestamp>,
    ) -> Locked<V>
    where
        V: CacheValue,
    {
        let Some(ttl) = self.policy.lock else {
            return Locked::Proceed;
        };
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let lock_key = sk.lock_key();
        let token = format!("{}:{}", link.tier.instance(), TOKENS.fetch_add(1, SeqCst));
        let m = &self.metrics.shared;
        let started = self.local.clock.now();
        // The refreshed copy's life left: it runs out as this waits.
        let left = |clock: &Clock| copy_expires.map(|t| t.nanos_since(clock.now()));
        let mut backoff = LOCK_POLL_FIRST;
        loop {
            match link
                .tier
                .try_lock(m, lock_key.clone(), token.clone(), ttl)
                .await
            {
                Ok(Some(held)) => {
                    // The previous holder may have written the value and
                    // released the lock between this caller's miss and its
                    // lock: look again, or the origin runs twice.
                    let found = self.shared_get::<V>(link, self.rendered(key)).await;
                    return match found {
                        Ok(found) if outlives(&found, left(&self.local.clock)) => {
                            held.release().await;
                            Locked::Found(found)
                        }
                        _ => Locked::Held(held),
                    };
                }
                Ok(None) => {}
                Err(_) => return Locked::Proceed,
            }
            if self.local.clock.now().nanos_since(started) > 2 * ttl.as_nanos() as u64 {
                tracing::warn!(name = self.name(), key = %sk.full, "layercache: gave up waiting for another process's computation; computing here");
                return Locked::Proceed;
            }
            // Another process computes: wait for its value.
            link.tier
                .pause(poll_pause(backoff, left(&self.local.clock)))
                .await;
            backoff = (backoff * 2).min(LOCK_POLL_MAX);
            match self.shared_get::<V>(link, self.rendered(key)).await {
                Ok(found) if outlives(&found, left(&self.local.clock)) => {
                    self.metrics.record_lock_wait();
                    return Locked::Found(found);
                }
                // The tier failed: compute rather than wait on it.
                Err(SharedMiss { key: None, .. }) => return Locked::Proceed,
                _ => {}
            }
        }
    }
}

/// Whether a value found in the shared tier answers a waiter: any value
/// after a miss; for a refresh, one that lives over a millisecond longer
/// than the local copy (`left` ns; the margin covers the shared tier's
/// millisecond expiry times).
pub(super) fn outlives<V>(found: &(V, Option<Duration>, u64), left: Option<u64>) -> bool {
    match (found.1, left) {
        (Some(remaining), Some(left)) => remaining.as_nanos() > u128::from(left) + 1_000_000,
        _ => true,
    }
}

/// The pause before the next poll of a lock's holder: the backoff, but
/// while a refreshed copy is alive (`left` ns), at most a quarter of its
/// life left, so the holder's value is seen before the copy expires.
fn poll_pause(backoff: Duration, left: Option<u64>) -> Duration {
    match left {
        Some(left) if left > 0 => backoff.min(Duration::from_nanos(left / 4).max(LOCK_POLL_FIRST)),
        _ => backoff,
    }
}
