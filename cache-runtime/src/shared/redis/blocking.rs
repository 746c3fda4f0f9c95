//! Blocking connections for sync callers, so a sync shared operation runs
//! on the caller's own thread: one `write` and one `read` on a socket it
//! holds, instead of two hand-offs through layercache's I/O thread
//! (`block_on` → the multiplexed connection's task → a futex wake back),
//! which cost a sync hit about 6x a raw blocking `GET` in wall-clock time.
//!
//! - **Bounded by the tier's timeout.** A connection is opened with the
//!   timeout as its connect (and handshake) budget, and its read and write
//!   timeouts are what is left of it; a pooled connection keeps the whole
//!   timeout on its socket. A stopped server is a counted timeout, a dead
//!   one a counted connection error, never a hang.
//! - **Bounded in size, never waited for.** At most [`pool_size`]
//!   connections exist; when every one is busy the operation takes the
//!   async path (the I/O thread's multiplexed connection) rather than wait
//!   or open more sockets: a burst of sync callers costs the hop it cost
//!   before, not a connection per thread.
//! - **A connection that failed is dropped**, unless the server answered
//!   (`WRONGTYPE`, `NOPERM`: the reply was read whole, so the stream is in
//!   step). After a timeout a late answer could otherwise be read as the
//!   next command's.
//! - **Recovers by itself after a restart.** A pooled connection that finds
//!   its server gone (reset, end of stream) drops every idle connection
//!   (they are to the same dead server) and the operation is tried once
//!   more on a fresh one, within what is left of the timeout. The commands
//!   sent here may run twice then: a GET, SET, UNLINK, PUBLISH, a version
//!   read or bump (a second bump only retires one more version), a lock
//!   attempt (a lost reply leaves the lock to expire, as a crash would).
//!
//! Not r2d2 (redis-rs's `r2d2` feature, already a dependency for
//! memcached): its `get` waits for a free connection, its `try_get` answers
//! `None` below the size limit while a connection is opened in the
//! background, it pings on every checkout by default (a second round trip)
//! and runs threads of its own; none of it gives a per-operation deadline
//! or retires the pool on a restart. A `Vec` under a mutex does what is
//! needed here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult};

/// How many blocking connections a store keeps at most: one per core, at
/// least 4 (sync callers often outnumber cores, waiting on the network
/// rather than the CPU), at most 16.
pub(super) fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(4, 16)
}

/// The shortest socket timeout set (zero would mean "none" to the OS).
const MIN_SOCKET_TIMEOUT: Duration = Duration::from_millis(1);

/// A pooled connection and the pool generation it belongs to.
struct Idle {
    conn: Connection,
    generation: u64,
}

/// The blocking connections of one store.
pub(super) struct Pool {
    client: Client,
    /// Every sync operation's bound (the tier's timeout).
    timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    /// Connections idle or leased (or being opened).
    open: AtomicUsize,
    size: usize,
    /// Bumped to retire every connection opened before (a restart was
    /// seen, or the tier reset the store).
    generation: AtomicU64,
}

/// A slot of the pool, held for one operation: a pooled connection, or
/// the right to open one.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Idle>,
}

impl Pool {
    pub(super) fn new(client: Client, timeout: Duration, size: usize) -> Pool {
        Pool {
            client,
            timeout: timeout.max(MIN_SOCKET_TIMEOUT),
            idle: Mutex::new(Vec::with_capacity(size)),
            open: AtomicUsize::new(0),
            size,
            generation: AtomicU64::new(0),
        }
    }

    /// A slot for one operation; `None` when every connection is busy.
    pub(super) fn lease(&self) -> Option<Lease<'_>> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if pooled.is_some() {
            return Some(Lease {
                pool: self,
                conn: pooled,
            });
        }
        let mut open = self.open.load(Relaxed);
        loop {
            if open >= self.size {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(open, open + 1, Relaxed, Relaxed)
            {
                Ok(_) => {
                    return Some(Lease {
                        pool: self,
                        conn: None,
                    })
                }
                Err(now) => open = now,
            }
        }
    }

    /// Retires every connection: idle ones now, leased ones when returned.
    pub(super) fn reset(&self) {
        self.generation.fetch_add(1, Relaxed);
        let retired = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        self.open.fetch_sub(retired.len(), Relaxed);
    }

    /// A new connection, opened within what is left before `deadline`, with
    /// that as its socket timeouts.
    fn connect(&self, deadline: Instant) -> RedisResult<Idle> {
        let generation = self.generation.load(Relaxed);
        let left = left(deadline)?;
        let conn = self.client.get_connection_with_timeout(left)?;
        let left = left_or_min(deadline);
        conn.set_read_timeout(Some(left))?;
        conn.set_write_timeout(Some(left))?;
        Ok(Idle { conn, generation })
    }
}

/// Time left before `deadline`, or a timeout error when none is.
fn left(deadline: Instant) -> RedisResult<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < MIN_SOCKET_TIMEOUT {
        return Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no time left for the shared operation",
        )));
    }
    Ok(left)
}

fn left_or_min(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_SOCKET_TIMEOUT)
}

/// Whether the stream is still in step after `err`: the server answered
/// with an error reply, read whole.
fn in_step(err: &RedisError) -> bool {
    err.code().is_some()
        && !err.is_timeout()
        && !err.is_io_error()
        && !err.is_connection_dropped()
        && !err.is_unrecoverable_error()
}

/// Whether `err` says the server behind a pooled connection went away (a
/// restart), not that it is slow: worth one more try on a fresh connection.
fn server_gone(err: &RedisError) -> bool {
    !err.is_timeout()
        && (err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_io_error()
            || err.is_unrecoverable_error())
}

impl Lease<'_> {
    /// Runs `op` on this slot's connection (opened first when there is
    /// none), retrying once on a fresh connection when a pooled one finds
    /// its server gone.
    pub(super) fn run<T>(
        mut self,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let pool = self.pool;
        let deadline = Instant::now() + pool.timeout;
        let reused = self.conn.is_some();
        let result = self.attempt(deadline, &mut op);
        match result {
            Err(err) if reused && server_gone(&err) => {
                // Every idle connection was to the same server: retire them
                // all rather than fail one caller per connection.
                pool.reset();
                self.attempt(deadline, &mut op)
            }
            result => result,
        }
    }

    fn attempt<T>(
        &mut self,
        deadline: Instant,
        op: &mut impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let fresh = self.conn.is_none();
        let mut idle = match self.conn.take() {
            Some(idle) => idle,
            None => self.pool.connect(deadline)?,
        };
        let result = op(&mut idle.conn);
        let keep = match &result {
            Ok(_) => true,
            Err(err) => in_step(err),
        };
        if keep {
            if fresh {
                // Opened within this operation with what was left: give the
                // pooled socket the whole timeout back (a failure to do so
                // retires it).
                let whole = Some(self.pool.timeout);
                if idle.conn.set_read_timeout(whole).is_err()
                    || idle.conn.set_write_timeout(whole).is_err()
                {
                    return result;
                }
            }
            self.conn = Some(idle);
        }
        result
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let pool = self.pool;
        match self.conn.take() {
            Some(idle) if idle.generation == pool.generation.load(Relaxed) => {
                pool.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(idle);
            }
            // Retired, failed, or never opened: its slot is free again.
            _ => {
                pool.open.fetch_sub(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(size: usize) -> Pool {
        // Nothing listens there; leasing a slot does not connect.
        let client = Client::open("redis://127.0.0.1:1/").unwrap();
        Pool::new(client, Duration::from_millis(50), size)
    }

    #[test]
    fn a_lease_past_the_pool_size_is_refused_at_once_and_a_returned_slot_is_leased_again() {
        let pool = pool(2);
        let a = pool.lease().expect("first slot");
        let _b = pool.lease().expect("second slot");
        assert!(pool.lease().is_none(), "every slot busy: the async path");
        drop(a);
        assert!(pool.lease().is_some(), "a returned slot is free again");
    }

    #[test]
    fn a_connection_that_cannot_be_opened_is_an_error_that_frees_its_slot() {
        let pool = pool(1);
        let err = pool
            .lease()
            .expect("a slot")
            .run(|c| redis::cmd("PING").query::<String>(c))
            .expect_err("nothing listens on port 1");
        assert!(err.is_connection_refusal() || err.is_io_error(), "{err}");
        assert!(
            pool.lease().is_some(),
            "the failed connection's slot is free"
        );
    }
}
