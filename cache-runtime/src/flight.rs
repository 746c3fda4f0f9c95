//! Single-flight (step 2 of the pipeline): concurrent callers that miss the
//! same key in one process wait for one computation instead of each running
//! the function (cache breakdown).
//!
//! The first caller of a missing key becomes the *leader*: it asks the
//! shared tier, runs the function and writes back. Callers that arrive
//! meanwhile *follow*: they block (sync) or await (async) until the leader
//! is done and take a clone of its value.
//!
//! A leader that ends without a value to share (the function returned
//! `Err` or an uncached `None`, panicked, was cancelled, or an invalidation
//! raced it) hands its followers nothing: each of them then runs the
//! function itself, as it would without a cache. Nobody waits for a flight
//! that can no longer land, and an error is never cached or shared.
//!
//! A caller that would follow its own flight (a function that calls itself
//! with the same arguments, on the same thread or task) runs alone instead
//! of waiting for itself.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

const SHARDS: usize = 16;

/// The flights of one function. Looked up by a hash the pipeline has
/// already computed (the key's guard hash), confirmed by key equality.
pub(crate) struct Flights<K, V> {
    shards: [CachePadded<Mutex<Shard<K, V>>>; SHARDS],
}

struct Shard<K, V> {
    table: HashTable<InFlight<K, V>>,
    next_id: u64,
}

/// A computation in progress. The waiting machinery is allocated only when
/// a first follower arrives: a miss nobody else asks for costs no
/// allocation beyond the key.
struct InFlight<K, V> {
    hash: u64,
    key: K,
    id: u64,
    leader_thread: usize,
    leader_task: Option<tokio::task::Id>,
    waiters: Option<Arc<Flight<V>>>,
}

/// What followers wait on.
pub(crate) struct Flight<V> {
    /// `Some` once landed: the value to share, or `None` to compute alone.
    state: Mutex<Option<Option<V>>>,
    /// Wakes blocked (sync) followers.
    landed: Condvar,
    /// Wakes awaiting (async) followers.
    notify: tokio::sync::Notify,
}

/// What a caller that missed is to do.
pub(crate) enum Join<'a, K, V: Clone> {
    /// Compute, then [`Leader::land`] with the value to share.
    Lead(Leader<'a, K, V>),
    /// Wait for the leader: [`Flight::wait`] / [`Flight::wait_async`].
    Follow(Arc<Flight<V>>),
    /// Compute alone: this caller is the flight's own leader (recursion).
    Alone,
}

/// The leader's handle. Dropped without [`Leader::land`] (a panic, a
/// cancelled future) it lands with nothing, so followers never hang.
pub(crate) struct Leader<'a, K, V: Clone> {
    flights: &'a Flights<K, V>,
    hash: u64,
    id: u64,
    landed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic while holding these locks in a way that
    // leaves them inconsistent; keep going rather than cascade a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    static THREAD_TOKEN: u8 = const { 0 };
}

/// Identifies the current thread among live ones (without touching the
/// reference count of `std::thread::current()`).
fn thread_token() -> usize {
    THREAD_TOKEN.with(|t| t as *const u8 as usize)
}

fn shard_of(hash: u64) -> usize {
    // The table uses the low and the top bits; pick the shard from the middle.
    (hash >> 32) as usize % SHARDS
}

impl<K: Eq + Clone, V: Clone> Flights<K, V> {
    pub(crate) fn new() -> Flights<K, V> {
        Flights {
            shards: std::array::from_fn(|_| {
                CachePadded::new(Mutex::new(Shard {
                    table: HashTable::new(),
                    next_id: 0,
                }))
            }),
        }
    }

    /// Joins the flight of `key` (whose hash is `hash`), starting it when
    /// there is none.
    pub(crate) fn join(&self, key: &K, hash: u64) -> Join<'_, K, V> {
        let mut shard = lock(&self.shards[shard_of(hash)]);
        let task = tokio::task::try_id();
        if let Some(f) = shard
            .table
            .find_mut(hash, |f| f.hash == hash && f.key == *key)
        {
            let own = match (f.leader_task, task) {
                (Some(leader), Some(me)) => leader == me,
                (None, None) => f.leader_thread == thread_token(),
                _ => false,
            };
            if own {
                return Join::Alone;
            }
            let waiters = f.waiters.get_or_insert_with(|| {
                Arc::new(Flight {
                    state: Mutex::new(None),
                    landed: Condvar::new(),
                    notify: tokio::sync::Notify::new(),
                })
            });
            return Join::Follow(waiters.clone());
        }
        let id = shard.next_id;
        shard.next_id += 1;
        shard.table.insert_unique(
            hash,
            InFlight {
                hash,
                key: key.clone(),
                id,
                leader_thread: thread_token(),
                leader_task: task,
                waiters: None,
            },
            |f| f.hash,
        );
        Join::Lead(Leader {
            flights: self,
            hash,
            id,
            landed: false,
        })
    }

    /// Flights in progress (for tests).
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }
}

impl<K, V: Clone> Leader<'_, K, V> {
    /// Ends the flight: followers get a clone of what `value` returns (it
    /// is called only when someone follows), or compute themselves when it
    /// is `None`.
    pub(crate) fn land(mut self, value: impl FnOnce() -> Option<V>) {
        self.finish(value);
    }

    fn finish(&mut self, value: impl FnOnce() -> Option<V>) {
        if self.landed {
            return;
        }
        self.landed = true;
        // Later callers start a new flight (or hit the tier just written).
        let waiters = {
            let mut shard = lock(&self.flights.shards[shard_of(self.hash)]);
            match shard.table.find_entry(self.hash, |f| f.id == self.id) {
                Ok(entry) => entry.remove().0.waiters,
                Err(_) => None,
            }
        };
        if let Some(flight) = waiters {
            *lock(&flight.state) = Some(value());
            flight.landed.notify_all();
            flight.notify.notify_waiters();
        }
    }
}

impl<K, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        self.finish(|| None);
    }
}

impl<V: Clone> Flight<V> {
    fn outcome(&self) -> Option<Option<V>> {
        lock(&self.state).clone()
    }

    /// Blocks until the leader lands; its value, or `None` to compute alone.
    pub(crate) fn wait(&self) -> Option<V> {
        let mut state = lock(&self.state);
        loop {
            if let Some(landed) = state.as_ref() {
                return landed.clone();
            }
            state = self.landed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Awaits the leader's landing; its value, or `None` to compute alone.
    pub(crate) async fn wait_async(&self) -> Option<V> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a landing in between still wakes us.
            notified.as_mut().enable();
            if let Some(v) = self.outcome() {
                return v;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_of_a_landed_flight_get_its_value_and_the_key_is_free_again() {
        let flights: Flights<u64, String> = Flights::new();
        let Join::Lead(leader) = flights.join(&1, 1) else {
            panic!("the first caller leads")
        };
        let follower = std::thread::scope(|s| {
            let (joined, on_joined) = std::sync::mpsc::channel();
            let fl = &flights;
            let h = s.spawn(move || {
                let join = fl.join(&1, 1);
                joined.send(()).unwrap();
                match join {
                    Join::Follow(f) => f.wait(),
                    _ => panic!("another thread follows"),
                }
            });
            on_joined.recv().unwrap();
            leader.land(|| Some("v".to_string()));
            h.join().unwrap()
        });
        assert_eq!(follower.as_deref(), Some("v"));
        assert_eq!(flights.in_progress(), 0);
        assert!(matches!(flights.join(&1, 1), Join::Lead(_)));
    }

    #[test]
    fn a_leader_dropped_without_landing_releases_its_followers_empty_handed() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&7, 7) else {
            panic!("the first caller leads")
        };
        let got = std::thread::scope(|s| {
            let (joined, on_joined) = std::sync::mpsc::channel();
            let fl = &flights;
            let h = s.spawn(move || {
                let join = fl.join(&7, 7);
                joined.send(()).unwrap();
                match join {
                    Join::Follow(f) => f.wait(),
                    _ => panic!("another thread follows"),
                }
            });
            on_joined.recv().unwrap();
            drop(leader); // as during a panic's unwinding
            h.join().unwrap()
        });
        assert_eq!(got, None, "nothing to share: the follower computes alone");
        assert_eq!(flights.in_progress(), 0);
    }

    #[test]
    fn the_leader_joining_its_own_flight_runs_alone_instead_of_waiting_for_itself() {
        let flights: Flights<u64, u64> = Flights::new();
        let _leader = flights.join(&3, 3);
        assert!(matches!(flights.join(&3, 3), Join::Alone));
        assert!(
            matches!(flights.join(&4, 4), Join::Lead(_)),
            "other keys are independent"
        );
    }

    #[test]
    fn keys_whose_hashes_collide_are_separate_flights() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(a) = flights.join(&1, 99) else {
            panic!("leads")
        };
        let Join::Lead(b) = flights.join(&2, 99) else {
            panic!("a colliding key is not the same flight")
        };
        assert_eq!(flights.in_progress(), 2);
        b.land(|| Some(2));
        assert_eq!(flights.in_progress(), 1, "landing one leaves the other");
        a.land(|| Some(1));
        assert_eq!(flights.in_progress(), 0);
    }
}
