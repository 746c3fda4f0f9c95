//! Concurrent GETs on one connection coalesced into MGETs.
//!
//! Under many concurrent callers the server, not the network, is the limit:
//! every `GET` is a command to read, parse, look up and answer, and on a
//! small host redis-server and the application share the cores. Callers of
//! one process that ask for different keys at the same moment can share
//! one command instead.
//!
//! - A GET that finds nothing on the wire and nothing queued goes at once,
//!   alone, as a plain `GET` from the caller's own task: a lone caller pays
//!   two uncontended lock operations.
//! - A GET that finds the connection busy adds its key to the next round,
//!   and the first to do so spawns the task that sends it. That task first
//!   yields, so every caller already runnable on the runtime queues its key
//!   too, then sends the round as one `MGET` and hands each waiter its
//!   value. It does not wait for the commands already on the wire: rounds
//!   are pipelined like single commands, so a few concurrent callers lose
//!   nothing against plain GETs, while many share a few commands a round.
//!   (Holding a round until the wire is free makes bigger rounds, and was
//!   about 10 % faster at 64 callers, but it serialises two callers.)
//!
//! A waiter sets no timer of its own: it hands its budget to the round
//! (`take_budget`), whose one timer answers every waiter with a timeout by
//! the round's first key's time plus the shortest budget, never later than
//! any waiter's own deadline. A server that stops answering cannot hold a
//! queue; the breaker then replaces the connection (and with it this
//! state). A plain GET keeps the caller's timer.
//!
//! The round's task is spawned from the caller's worker, where tokio runs
//! it next (and no other worker steals it): a task that blocks that worker
//! without yielding holds the round up to its waiters' timeouts, as it
//! holds every other task queued on that worker.
//!
//! `MGET` answers `nil` for a key holding another type where `GET` answers
//! `WRONGTYPE`: both are a miss to the pipeline, whose write-back replaces
//! the key.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Cmd, ErrorKind as RedisErrorKind, RedisError, RedisResult, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{to_shared, Direct};
use crate::shared::exec::take_budget;
use crate::shared::{BoxFuture, SharedError};

/// A GET's answer.
type Reply = RedisResult<Option<Vec<u8>>>;

/// The coalescing state of one connection.
#[derive(Default)]
pub(super) struct Batch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Commands sent and not yet answered (or being sent).
    in_flight: usize,
    /// The next round, filling up until its task runs.
    next: Option<Round>,
    /// Whether a task is on its way to send `next`.
    flush_scheduled: bool,
}

/// Keys waiting to go as one `MGET`, and who waits for each.
struct Round {
    cmd: Cmd,
    waiters: Vec<oneshot::Sender<Reply>>,
    /// When the first key was queued: the round answers every waiter by
    /// `opened + budget`, before any of their own budgets runs out.
    opened: Instant,
    /// The shortest budget of its waiters.
    budget: Duration,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET key` on `direct`'s connection `conn`, coalesced with the other
/// callers' GETs when the connection is busy. A coalesced GET takes over
/// the caller's budget (see `take_budget`): the round's one timer bounds
/// all its waiters, so none of them sets a timer of its own.
pub(super) fn get<'a>(
    direct: &Arc<Direct>,
    conn: &MultiplexedConnection,
    key: &'a str,
) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
    let mut state = direct.batch.lock();
    if state.in_flight == 0 && state.next.is_none() {
        state.in_flight += 1;
        drop(state);
        // Nothing else on the wire: a plain GET from the caller's own task,
        // under the caller's timer.
        let slot = Slot {
            direct: direct.clone(),
            conn: conn.clone(),
        };
        return Box::pin(async move { slot.get(key).await.map_err(to_shared) });
    }
    let budget = take_budget().unwrap_or(direct.round_timeout);
    let round = state.next.get_or_insert_with(|| Round {
        cmd: redis::cmd("MGET"),
        waiters: Vec::new(),
        opened: Instant::now(),
        budget,
    });
    round.cmd.arg(key);
    round.budget = round.budget.min(budget);
    let (tx, rx) = oneshot::channel();
    round.waiters.push(tx);
    let flush = !std::mem::replace(&mut state.flush_scheduled, true);
    drop(state);
    if flush {
        let flusher = Flusher {
            direct: direct.clone(),
            conn: conn.clone(),
            armed: true,
        };
        direct.runtime.spawn(flusher.run());
    }
    Box::pin(async move {
        rx.await
            .unwrap_or_else(|_| {
                Err(RedisError::from((
                    RedisErrorKind::Io,
                    "the round carrying this GET was dropped",
                )))
            })
            .map_err(to_shared)
    })
}

/// A command on the wire; counted out when dropped (answered, timed out
/// or cancelled).
struct Slot {
    direct: Arc<Direct>,
    conn: MultiplexedConnection,
}

impl Slot {
    /// A plain `GET`, sized once and sent without the boxed futures of
    /// `AsyncCommands`.
    async fn get(mut self, key: &str) -> Reply {
        let mut cmd = Cmd::with_capacity(2, 3 + key.len());
        cmd.arg("GET").arg(key);
        let reply = self
            .conn
            .send_packed_command(&cmd)
            .await
            .and_then(Value::extract_error)
            .and_then(|v| Ok(redis::from_redis_value::<Option<Vec<u8>>>(v)?));
        self.direct.check_reply(&reply);
        reply
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.direct.batch.lock().in_flight -= 1;
    }
}

/// The task that sends the next round.
struct Flusher {
    direct: Arc<Direct>,
    conn: MultiplexedConnection,
    /// Until it takes the round: the round is its to send.
    armed: bool,
}

impl Flusher {
    async fn run(mut self) {
        // Every caller already runnable on this worker queues its key first.
        tokio::task::yield_now().await;
        let round = {
            let mut state = self.direct.batch.lock();
            state.flush_scheduled = false;
            self.armed = false;
            let round = state.next.take();
            if round.is_some() {
                state.in_flight += 1;
            }
            round
        };
        let Some(round) = round else { return };
        let slot = Slot {
            direct: self.direct.clone(),
            conn: self.conn.clone(),
        };
        send_round(slot, round).await;
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Dropped before it ran (its runtime shutting down): its waiters
        // get an error rather than waiting for a round that never goes.
        if self.armed {
            let mut state = self.direct.batch.lock();
            state.flush_scheduled = false;
            state.next = None;
        }
    }
}

/// Sends `round` as one `MGET` and hands each waiter its value.
async fn send_round(mut slot: Slot, round: Round) {
    let deadline = round.opened + round.budget;
    let reply =
        match tokio::time::timeout_at(deadline, slot.conn.send_packed_command(&round.cmd)).await {
            Ok(reply) => {
                let reply = reply.and_then(Value::extract_error);
                slot.direct.check_reply(&reply);
                reply
            }
            // Not a broken connection (the breaker judges timeouts): a timeout.
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to MGET within its callers' timeout",
            ))),
        };
    let values = match reply {
        Ok(Value::Array(values)) if values.len() == round.waiters.len() => values,
        Ok(other) => {
            // Replies on this connection are out of step: replace it.
            slot.direct.broken.store(true, Relaxed);
            let err = RedisError::from((
                RedisErrorKind::Parse,
                "MGET answered with something other than one value per key",
                format!("{other:?}"),
            ));
            return answer_all(round.waiters, &err);
        }
        Err(err) => return answer_all(round.waiters, &err),
    };
    for (tx, value) in round.waiters.into_iter().zip(values) {
        let value = match value {
            Value::Nil => Ok(None),
            value => redis::from_redis_value::<Option<Vec<u8>>>(value).map_err(RedisError::from),
        };
        // A waiter that gave up (its timeout) is simply not answered.
        let _ = tx.send(value);
    }
    drop(slot);
}

fn answer_all(waiters: Vec<oneshot::Sender<Reply>>, err: &RedisError) {
    for tx in waiters {
        let _ = tx.send(Err(err.clone()));
    }
}

impl Direct {
    /// Marks the connection broken after an error it cannot recover from.
    pub(super) fn check_reply<T>(&self, reply: &RedisResult<T>) {
        if matches!(reply, Err(e) if e.is_unrecoverable_error()) {
            self.broken.store(true, Relaxed);
        }
    }
}

/// The tier's timeout, for rounds no caller's timer covers.
pub(super) fn round_timeout(tier_timeout: Duration) -> Duration {
    tier_timeout.max(Duration::from_millis(1))
}
