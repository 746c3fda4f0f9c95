//! An invalidation bus for stores without publish/subscribe (filesystem,
//! SQLite, memcached), made of the store's own operations: a numbered log
//! of notices that every process polls.
//!
//! - **Publish**: `bump_version` of the sequence key (an atomic increment
//!   in every store) gives the notice a number `n`; the notice is stored
//!   under `{channel}:n:{n}` for [`PolledBus::notice_ttl`].
//! - **Subscribe**: every poll interval, read the sequence number; deliver
//!   the notices between the last one seen and it, in order.
//!
//! Whatever cannot be delivered becomes a gap, which the pipeline answers
//! as it answers a lost Redis subscription (drop the local copies of shared
//! entries, re-read the versions): a notice missing for longer than
//! [`MISSING_GRACE`] (its publisher died between the two writes, or the
//! store evicted it), more than [`MAX_BATCH`] notices behind (the process
//! was stalled), or a sequence number that went backwards (the store was
//! wiped). So a process is never stale for longer than one poll interval
//! plus one read, or it drops everything it holds from the shared tier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BoxFuture, BusEvent, BusHandler, SharedError, SharedStore};

/// Notices further behind than this are not replayed: a gap instead.
pub const MAX_BATCH: u64 = 1000;
/// How long a numbered notice may be missing (its publisher is between its
/// two writes) before it counts as lost.
pub const MISSING_GRACE: Duration = Duration::from_millis(500);
/// Longest a store operation of the poll loop may take.
const POLL_OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `unit` as a task of its own on the runtime polling this future (or
/// layercache's I/O runtime) and waits for it: dropping the wait does not
/// cancel the unit.
pub(super) async fn detached<T: Send + 'static>(
    unit: impl std::future::Future<Output = Result<T, SharedError>> + Send + 'static,
) -> Result<T, SharedError> {
    let handle =
        tokio::runtime::Handle::try_current().unwrap_or_else(|_| super::io_runtime().clone());
    handle.spawn(unit).await.unwrap_or_else(|e| {
        Err(SharedError::new(
            super::ErrorKind::Server,
            format!("a store operation failed: {e}"),
        ))
    })
}

/// The polled bus of one store.
#[derive(Debug, Clone)]
pub struct PolledBus {
    seq_key: String,
    notice_prefix: String,
    interval: Duration,
    notice_ttl: Duration,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PolledBus {
    /// A bus on `channel` (a key under the reserved prefix), polled every
    /// `interval`. Notices are kept for 20 intervals, at least 10 s: a
    /// process that could not poll for longer sees a gap.
    pub fn new(channel: &str, interval: Duration) -> PolledBus {
        let interval = interval.max(Duration::from_millis(1));
        PolledBus {
            seq_key: format!("{channel}:seq"),
            notice_prefix: format!("{channel}:n:"),
            interval,
            notice_ttl: interval.saturating_mul(20).max(Duration::from_secs(10)),
        }
    }

    /// How often subscribers poll: the staleness bound of local copies
    /// (plus one store read).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long a notice is kept in the store.
    pub fn notice_ttl(&self) -> Duration {
        self.notice_ttl
    }

    fn notice_key(&self, n: u64) -> String {
        format!("{}{n}", self.notice_prefix)
    }

    /// Numbers `notice` and stores it (two store operations), as one task
    /// of its own: a caller that stops waiting (the tier's timeout) cannot
    /// leave a number taken and its notice unwritten.
    pub fn publish(
        &self,
        store: Arc<dyn SharedStore>,
        notice: &str,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let published = self.delete_then_publish(store, None, Some(notice));
        Box::pin(async move { published.await.map(drop) })
    }

    /// Runs `delete` (when given), then publishes `notice` (when given), as
    /// one task of its own, and waits for it: dropping the returned future
    /// (the tier's timeout) does not cancel the task, so a delete is never
    /// left without its notice (which no process would see as a gap).
    pub fn delete_then_publish(
        &self,
        store: Arc<dyn SharedStore>,
        delete: Option<BoxFuture<'static, Result<u64, SharedError>>>,
        notice: Option<&str>,
    ) -> BoxFuture<'static, Result<u64, SharedError>> {
        let (bus, notice) = (self.clone(), notice.map(str::to_string));
        Box::pin(detached(async move {
            let n = match delete {
                Some(delete) => delete.await?,
                None => 0,
            };
            if let Some(notice) = notice {
                bus.publish_now(&*store, &notice).await?;
            }
            Ok(n)
        }))
    }

    /// Numbers `notice` and stores it, in this future.
    async fn publish_now(&self, store: &dyn SharedStore, notice: &str) -> Result<(), SharedError> {
        let n = store.bump_version(&self.seq_key, unix_ms()).await?;
        store
            .set(
                &self.notice_key(n),
                notice.as_bytes().to_vec(),
                Some(self.notice_ttl),
            )
            .await
    }

    /// The poll loop, forever (see the module docs).
    pub fn subscribe(
        &self,
        store: Arc<dyn SharedStore>,
        handler: BusHandler,
    ) -> BoxFuture<'static, ()> {
        let bus = self.clone();
        Box::pin(async move { bus.poll_loop(store, handler).await })
    }

    async fn poll_loop(self, store: Arc<dyn SharedStore>, handler: BusHandler) {
        let mut last: Option<u64> = None;
        let mut ever = false;
        let mut failing = false;
        // The first missing notice and since when it has been missing.
        let mut missing: Option<(u64, Instant)> = None;
        loop {
            let read = tokio::time::timeout(POLL_OP_TIMEOUT, store.read_version(&self.seq_key))
                .await
                .unwrap_or_else(|_| {
                    Err(SharedError::new(
                        super::ErrorKind::Timeout,
                        "polling the bus timed out",
                    ))
                });
            match read {
                Err(err) => {
                    if !failing {
                        tracing::warn!(%err, "layercache: cannot poll the invalidation log; retrying");
                        // As a lost subscription: `stats()` says the bus is
                        // down, and local copies of shared entries are
                        // capped until it is back.
                        handler(BusEvent::Down {
                            reason: format!("cannot poll the invalidation log: {err}"),
                            refused: false,
                        });
                    }
                    failing = true;
                }
                Ok(current) => {
                    if failing {
                        tracing::info!("layercache: invalidation log reachable again");
                        failing = false;
                        if last.is_some() {
                            // Notices may have expired from the log meanwhile:
                            // answered as a gap, like a Redis resubscription.
                            handler(BusEvent::Subscribed { after_gap: true });
                        }
                    }
                    match last {
                        None => {
                            handler(BusEvent::Subscribed { after_gap: ever });
                            ever = true;
                            last = Some(current);
                        }
                        Some(seen)
                            if current < seen || current.saturating_sub(seen) > MAX_BATCH =>
                        {
                            tracing::warn!(seen, current, "layercache: notices were lost; dropping local copies of shared entries");
                            handler(BusEvent::Subscribed { after_gap: true });
                            last = Some(current);
                            missing = None;
                        }
                        Some(seen) => {
                            last = Some(
                                self.deliver(&*store, &handler, seen, current, &mut missing)
                                    .await,
                            );
                        }
                    }
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Delivers notices `seen + 1 ..= current` in order; returns the last
    /// one handled (delivered, or given up as a gap).
    async fn deliver(
        &self,
        store: &dyn SharedStore,
        handler: &BusHandler,
        seen: u64,
        current: u64,
        missing: &mut Option<(u64, Instant)>,
    ) -> u64 {
        let mut last = seen;
        for n in seen.saturating_add(1)..=current {
            let got = tokio::time::timeout(POLL_OP_TIMEOUT, store.get(&self.notice_key(n))).await;
            match got {
                Ok(Ok(Some(bytes))) => {
                    *missing = None;
                    match String::from_utf8(bytes) {
                        Ok(text) => handler(BusEvent::Message(text)),
                        Err(_) => {
                            tracing::debug!(n, "layercache: ignoring a notice that is not text")
                        }
                    }
                    last = n;
                }
                Ok(Ok(None)) => {
                    let since = match missing {
                        Some((m, since)) if *m == n => *since,
                        _ => {
                            *missing = Some((n, Instant::now()));
                            return last;
                        }
                    };
                    if since.elapsed() < MISSING_GRACE {
                        return last;
                    }
                    tracing::warn!(n, "layercache: an invalidation notice is missing; dropping local copies of shared entries");
                    *missing = None;
                    handler(BusEvent::Subscribed { after_gap: true });
                    return current;
                }
                // Try again at the next poll.
                Ok(Err(_)) | Err(_) => return last,
            }
        }
        last
    }
}
