//! Concurrent GETs on one connection coalesced into MGETs.
//!
//! Under many concurrent callers the server, not the network, is the limit:
//! every `GET` is a command to parse, look up and answer, and on a small
//! host redis-server and the application share the cores. Callers of one
//! process that ask for different keys at the same moment can share one
//! command instead.
//!
//! - A GET that finds fewer than [`MAX_ROUNDS_IN_FLIGHT`] rounds on the wire
//!   goes at once, alone, as a plain `GET` from the caller's own task: a
//!   lone caller pays nothing (two uncontended lock operations).
//! - A GET that finds them all busy adds its key to the next round and
//!   waits. When a round on the wire comes back, the next round (every key
//!   queued meanwhile) goes as one `MGET`, sent by a task of its own.
//!
//! No caller waits longer than one round trip before its key is sent, and
//! each waiter still has the tier's timeout around it. A round has the same
//! timeout, so a server that stops answering cannot hold the queue; the
//! breaker then replaces the connection (and with it this state).
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

use super::Direct;

/// Rounds on the wire at once per connection before callers start to
/// share them. Two keep the server busy while the process reads the
/// previous answer; more only split the queue into smaller `MGET`s.
pub(super) const MAX_ROUNDS_IN_FLIGHT: usize = 2;

/// A GET's answer.
type Reply = RedisResult<Option<Vec<u8>>>;

/// The coalescing state of one connection.
#[derive(Default)]
pub(super) struct Batch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Rounds sent and not yet answered (or being sent).
    in_flight: usize,
    /// The next round, filling up while every slot is taken.
    next: Option<Round>,
}

/// Keys waiting to go as one `MGET`, and who waits for each.
struct Round {
    cmd: Cmd,
    waiters: Vec<oneshot::Sender<Reply>>,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET key` on `direct`'s connection `conn`, coalesced with the other
/// callers' GETs when the connection is busy.
pub(super) async fn get(direct: Arc<Direct>, conn: MultiplexedConnection, key: &str) -> Reply {
    let waiting = {
        let mut state = direct.batch.lock();
        if state.in_flight < MAX_ROUNDS_IN_FLIGHT {
            state.in_flight += 1;
            None
        } else {
            let round = state.next.get_or_insert_with(|| Round {
                cmd: redis::cmd("MGET"),
                waiters: Vec::new(),
            });
            round.cmd.arg(key);
            let (tx, rx) = oneshot::channel();
            round.waiters.push(tx);
            Some(rx)
        }
    };
    if let Some(rx) = waiting {
        return rx.await.unwrap_or_else(|_| {
            Err(RedisError::from((
                RedisErrorKind::Io,
                "the round carrying this GET was dropped",
            )))
        });
    }
    // A slot of our own: a plain GET, sized once and sent without the boxed
    // futures of `AsyncCommands` / `ConnectionLike`.
    let mut slot = Slot { direct, conn };
    let mut cmd = Cmd::with_capacity(2, 3 + key.len());
    cmd.arg("GET").arg(key);
    let reply = slot
        .conn
        .send_packed_command(&cmd)
        .await
        .and_then(Value::extract_error)
        .and_then(|v| Ok(redis::from_redis_value::<Option<Vec<u8>>>(v)?));
    slot.direct.check_reply(&reply);
    reply
}

/// A round's place on the wire. Given back when dropped (answered,
/// timed out or cancelled): the next round, if keys are queued, takes it
/// over; otherwise it is freed.
struct Slot {
    direct: Arc<Direct>,
    conn: MultiplexedConnection,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let next = {
            let mut state = self.direct.batch.lock();
            let next = state.next.take();
            if next.is_none() {
                state.in_flight -= 1;
            }
            next
        };
        if let Some(round) = next {
            let slot = Slot {
                direct: self.direct.clone(),
                conn: self.conn.clone(),
            };
            // On the connection's runtime (a dropped caller may be
            // anywhere); a runtime that is shutting down drops the task,
            // and its waiters get an error.
            let handle = self.direct.runtime.clone();
            handle.spawn(send_round(slot, round));
        }
    }
}

/// Sends `round` as one `MGET` and hands each waiter its value.
async fn send_round(mut slot: Slot, round: Round) {
    let budget = slot.direct.round_timeout;
    let reply = match tokio::time::timeout(budget, slot.conn.send_packed_command(&round.cmd)).await
    {
        Ok(reply) => {
            let reply = reply.and_then(Value::extract_error);
            slot.direct.check_reply(&reply);
            reply
        }
        // Not a broken connection (the breaker judges timeouts): a timeout.
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer to MGET within the tier's timeout",
        ))),
    };
    let values = match reply {
        Ok(Value::Array(values)) if values.len() == round.waiters.len() => values,
        Ok(other) => {
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
