//! Concurrent GETs of one runtime coalesced into multi-key gets, as the
//! Redis store coalesces GETs into MGETs (see `shared/redis/batch.rs`).
//!
//! memcached answers a batch of `mg` commands written at once for about
//! the cost of one: the server reads them in one `read`, and answers in
//! one `write`. So:
//!
//! - A GET that finds no exchange in flight and nothing queued goes at
//!   once, alone, from the caller's own task.
//! - A GET that finds one in flight adds its key to the next round, and
//!   the first to do so spawns the task that sends it. That task first
//!   yields, so every caller already runnable on the runtime queues its
//!   key too, then sends the round as one batch (one write per server,
//!   on a pooled connection of its own, so rounds overlap like single
//!   commands) and hands each waiter its answer.
//!
//! A round has the tier's timeout of its own (no caller's timer covers
//! it), and each waiter keeps its caller's, so a server that stops
//! answering cannot hold a queue. Dropping a round mid-exchange drops its
//! connection, as the client does for any cancelled exchange.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use memcache::exp::Get;
use tokio::sync::oneshot;

use super::conn::Conn;
use super::{hit, to_shared};
use crate::error::{ErrorKind, SharedError};

/// A GET's answer: the stored bytes, if any.
type Reply = Result<Option<Vec<u8>>, SharedError>;

/// The coalescing state of one runtime's connection.
#[derive(Default)]
pub(super) struct Batch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Exchanges sent and not yet answered (or being sent).
    in_flight: usize,
    /// The next round, filling up until its task runs.
    next: Option<Round>,
    /// Whether a task is on its way to send `next`.
    flush_scheduled: bool,
}

/// Keys waiting to go as one batch, and who waits for each.
struct Round {
    keys: Vec<String>,
    waiters: Vec<oneshot::Sender<Reply>>,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bytes under the server key `key`, read on `conn`, coalesced with
/// the other callers' reads when an exchange is in flight.
pub(super) async fn get(conn: Arc<Conn>, key: &str, round_timeout: Duration) -> Reply {
    let waiting = {
        let mut state = conn.batch.lock();
        if state.in_flight == 0 && state.next.is_none() {
            state.in_flight += 1;
            None
        } else {
            let round = state.next.get_or_insert_with(|| Round {
                keys: Vec::new(),
                waiters: Vec::new(),
            });
            round.keys.push(key.to_string());
            let (tx, rx) = oneshot::channel();
            round.waiters.push(tx);
            let flush = !std::mem::replace(&mut state.flush_scheduled, true);
            Some((rx, flush))
        }
    };
    if let Some((rx, flush)) = waiting {
        if flush {
            let flusher = Flusher {
                conn: conn.clone(),
                armed: true,
                round_timeout,
            };
            conn.runtime.spawn(flusher.run());
        }
        return rx.await.unwrap_or_else(|_| {
            Err(SharedError::new(
                ErrorKind::Connection,
                "memcached: the round carrying this read was dropped",
            ))
        });
    }
    // Nothing else in flight: a plain get from the caller's own task.
    let slot = Slot(conn);
    let client = slot.0.client().await.map_err(to_shared)?;
    let got = client.run(Get::new(key)).await.map_err(to_shared)?;
    drop(slot);
    Ok(hit(got))
}

/// An exchange in flight; counted out when dropped (answered, timed out
/// or cancelled).
struct Slot(Arc<Conn>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.batch.lock().in_flight -= 1;
    }
}

/// The task that sends the next round.
struct Flusher {
    conn: Arc<Conn>,
    /// Until it takes the round: the round is its to send.
    armed: bool,
    round_timeout: Duration,
}

impl Flusher {
    async fn run(mut self) {
        // Every caller already runnable on this worker queues its key first.
        tokio::task::yield_now().await;
        let round = {
            let mut state = self.conn.batch.lock();
            state.flush_scheduled = false;
            self.armed = false;
            let round = state.next.take();
            if round.is_some() {
                state.in_flight += 1;
            }
            round
        };
        let Some(round) = round else { return };
        let slot = Slot(self.conn.clone());
        let budget = self.round_timeout;
        let answers = tokio::time::timeout(budget, send_round(&slot.0, &round.keys))
            .await
            .unwrap_or_else(|_| {
                Err(SharedError::new(
                    ErrorKind::Timeout,
                    format!("memcached: no answer to a batched get within {budget:?}"),
                ))
            });
        drop(slot);
        match answers {
            Ok(values) => {
                for (tx, value) in round.waiters.into_iter().zip(values) {
                    // A waiter that gave up (its timeout) is simply not answered.
                    let _ = tx.send(value);
                }
            }
            Err(err) => {
                for tx in round.waiters {
                    let _ = tx.send(Err(err.clone()));
                }
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Dropped before it ran (its runtime shutting down): its waiters
        // get an error rather than waiting for a round that never goes.
        if self.armed {
            let mut state = self.conn.batch.lock();
            state.flush_scheduled = false;
            state.next = None;
        }
    }
}

/// Sends `keys` as one batch (one exchange per server); one answer per key.
async fn send_round(conn: &Conn, keys: &[String]) -> Result<Vec<Reply>, SharedError> {
    let client = conn.client().await.map_err(to_shared)?;
    let results = client
        .run_many(keys.iter().map(Get::new))
        .await
        .map_err(to_shared)?;
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(got) => Ok(hit(got)),
            Err(e) => Err(to_shared(e)),
        })
        .collect())
}
