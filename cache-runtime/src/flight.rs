//! Single-flight (step 2 of the pipeline): concurrent callers that miss the
//! same key in one process wait for one computation instead of each running
//! the function (cache breakdown).
//!
//! The first caller of a missing key becomes the *leader*: it asks the
//! shared tier, runs the function and writes back. Callers that arrive
//! meanwhile *follow*: they block (sync) or await (async) until the leader
//! is done and take a clone of its value.
//!
//! # When the leader has nothing to share
//!
//! - The function returned `Err` or an uncached `None`, or an invalidation
//!   raced it: the leader *lands empty* and each follower runs the function
//!   itself, as it would without a cache (an error is never cached or
//!   shared, and a failing origin is not serialized behind one caller).
//! - The leader panicked or its future was dropped (a cancelled or aborted
//!   task): the flight is *handed off*. Exactly one follower becomes the new
//!   leader and runs the function; the others keep waiting for it. So 100
//!   callers whose leader is aborted cost at most 2 runs of the function,
//!   not 101. A follower that is itself cancelled after taking over hands
//!   off again in the same way.
//!
//! # Recursion versus concurrency in one task
//!
//! A call is *recursive* when the key it joins is being computed by an
//! outer frame of the same call chain: the function (directly or through
//! others) calls itself with the same arguments while computing them.
//! Waiting would then wait for itself, so it runs alone instead. Every
//! other call follows, including calls polled concurrently inside one task
//! (`tokio::join!`, `join_all`, a dataloader's fan-out): they are siblings,
//! not callers of each other, and are coalesced into one run.
//!
//! The two are told apart by the *call chain*: the flights whose function
//! body is running beneath the current frame. A sync body runs with its
//! flight pushed on a thread-local stack; an async body is polled inside a
//! task-local scope holding its chain, which is in force only while that
//! body (and what it awaits inline) is being polled, so a sibling polled by
//! the same `join!` does not see it. A body that hands the same key to
//! *another* task or thread and waits for it there is not recognised as
//! recursion (nothing links the two chains): that call waits for the outer
//! one, which waits for it.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
}

/// Flight ids, unique in the process: the call chain names flights of
/// every function by them.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A computation in progress. The waiting machinery is allocated only when
/// a first follower arrives: a miss nobody else asks for costs no
/// allocation beyond the key.
struct InFlight<K, V> {
    hash: u64,
    key: K,
    id: u64,
    waiters: Option<Arc<Flight<V>>>,
}

/// Where a flight with followers stands.
enum State<V> {
    /// A leader is computing.
    Computing,
    /// The leader went away (panic, cancellation): the first follower to
    /// see this takes over.
    Abandoned,
    /// Done: the value to share, or `None` to compute alone.
    Landed(Option<V>),
}

/// What followers wait on.
pub(crate) struct Flight<V> {
    hash: u64,
    id: u64,
    state: Mutex<State<V>>,
    /// Wakes blocked (sync) followers.
    changed: Condvar,
    /// Wakes awaiting (async) followers.
    notify: tokio::sync::Notify,
}

/// What a caller that missed is to do.
pub(crate) enum Join<'a, K, V: Clone> {
    /// Compute, then [`Leader::land`] with the value to share.
    Lead(Leader<'a, K, V>),
    /// Wait for the leader: [`Flights::follow`] / [`Flights::follow_async`].
    Follow(Arc<Flight<V>>),
    /// Compute alone: an outer frame of this call chain leads the flight (recursion).
    Alone,
}

/// How following a flight ended.
pub(crate) enum Followed<'a, K, V: Clone> {
    /// The leader's value.
    Value(V),
    /// The leader landed empty: compute alone.
    Alone,
    /// The leader went away and this caller took over: compute, then land.
    Lead(Leader<'a, K, V>),
}

/// The leader's handle. Dropped without [`Leader::land`] (a panic, a
/// cancelled future) it hands the flight to a follower, so followers never
/// hang and do not stampede.
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
    /// Flights whose sync function body runs beneath the current frame.
    static SYNC_CHAIN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

tokio::task_local! {
    /// Flights whose async function body is being polled beneath the current frame.
    static ASYNC_CHAIN: Vec<u64>;
}

/// Whether an outer frame of the current call chain leads flight `id`.
fn in_chain(id: u64) -> bool {
    SYNC_CHAIN.with(|c| c.borrow().contains(&id))
        || ASYNC_CHAIN.try_with(|c| c.contains(&id)).unwrap_or(false)
}

/// Pops the sync chain on every way out of a body, unwinding included.
struct Popped;

impl Drop for Popped {
    fn drop(&mut self) {
        SYNC_CHAIN.with(|c| c.borrow_mut().pop());
    }
}

/// Runs a leader's sync function body as part of its call chain, so a
/// recursive call of the same key runs alone instead of waiting for itself.
pub(crate) fn run_led<R>(leader: Option<u64>, body: impl FnOnce() -> R) -> R {
    let Some(id) = leader else {
        return body();
    };
    SYNC_CHAIN.with(|c| c.borrow_mut().push(id));
    let _pop = Popped;
    body()
}

/// [`run_led`] for an async body: it is polled inside a task-local scope
/// holding the chain, which siblings polled by the same task do not see.
pub(crate) async fn run_led_async<F: Future>(leader: Option<u64>, body: F) -> F::Output {
    let Some(id) = leader else {
        return body.await;
    };
    let mut chain = ASYNC_CHAIN.try_with(Clone::clone).unwrap_or_default();
    chain.push(id);
    ASYNC_CHAIN.scope(chain, body).await
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
                }))
            }),
        }
    }

    /// Joins the flight of `key` (whose hash is `hash`), starting it when
    /// there is none.
    pub(crate) fn join(&self, key: &K, hash: u64) -> Join<'_, K, V> {
        let mut shard = lock(&self.shards[shard_of(hash)]);
        if let Some(f) = shard
            .table
            .find_mut(hash, |f| f.hash == hash && f.key == *key)
        {
            if in_chain(f.id) {
                return Join::Alone;
            }
            let id = f.id;
            let waiters = f.waiters.get_or_insert_with(|| {
                Arc::new(Flight {
                    hash,
                    id,
                    state: Mutex::new(State::Computing),
                    changed: Condvar::new(),
                    notify: tokio::sync::Notify::new(),
                })
            });
            return Join::Follow(waiters.clone());
        }
        Join::Lead(self.start(&mut shard, key, hash))
    }

    /// Starts the flight of `key` unless one is in progress, without ever
    /// following it: a refresh has a value to serve meanwhile. (A discarded
    /// [`Join::Follow`] would leave waiters that nobody is, and a leader
    /// that then ends without landing would keep its flight for them.)
    pub(crate) fn lead(&self, key: &K, hash: u64) -> Option<Leader<'_, K, V>> {
        let mut shard = lock(&self.shards[shard_of(hash)]);
        let busy = shard.table.find(hash, |f| f.hash == hash && f.key == *key);
        busy.is_none().then(|| self.start(&mut shard, key, hash))
    }

    fn start(&self, shard: &mut Shard<K, V>, key: &K, hash: u64) -> Leader<'_, K, V> {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        shard.table.insert_unique(
            hash,
            InFlight {
                hash,
                key: key.clone(),
                id,
                waiters: None,
            },
            |f| f.hash,
        );
        Leader {
            flights: self,
            hash,
            id,
            landed: false,
        }
    }

    /// Where `flight` stands for a follower: `None` while someone computes.
    /// Takes the flight over when its leader went away.
    fn settle(&self, flight: &Flight<V>, state: &mut State<V>) -> Option<Followed<'_, K, V>> {
        match state {
            State::Computing => None,
            State::Landed(v) => Some(match v.clone() {
                Some(v) => Followed::Value(v),
                None => Followed::Alone,
            }),
            State::Abandoned => {
                *state = State::Computing;
                Some(Followed::Lead(Leader {
                    flights: self,
                    hash: flight.hash,
                    id: flight.id,
                    landed: false,
                }))
            }
        }
    }

    /// Blocks until the flight lands, or until this caller takes it over.
    pub(crate) fn follow(&self, flight: &Flight<V>) -> Followed<'_, K, V> {
        let mut state = lock(&flight.state);
        loop {
            if let Some(done) = self.settle(flight, &mut state) {
                return done;
            }
            state = flight
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Awaits the flight's landing, or this caller's taking it over.
    pub(crate) async fn follow_async(&self, flight: &Flight<V>) -> Followed<'_, K, V> {
        loop {
            let notified = flight.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change in between still wakes us.
            notified.as_mut().enable();
            if let Some(done) = self.settle(flight, &mut lock(&flight.state)) {
                return done;
            }
            notified.await;
        }
    }

    /// Flights in progress (for tests).
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }
}

impl<K, V: Clone> Leader<'_, K, V> {
    /// The flight's id, for [`run_led`] / [`run_led_async`].
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Ends the flight: followers get a clone of what `value` returns (it
    /// is called only when someone follows), or compute themselves when it
    /// is `None`.
    pub(crate) fn land(mut self, value: impl FnOnce() -> Option<V>) {
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
            flight.set(State::Landed(value()));
        }
    }
}

impl<V> Flight<V> {
    fn set(&self, state: State<V>) {
        *lock(&self.state) = state;
        self.changed.notify_all();
        self.notify.notify_waiters();
    }
}

impl<K, V: Clone> Leader<'_, K, V> {
    /// Ends this leader's part without a value for its followers: the first
    /// of them to wake takes the flight over and computes for the others
    /// (as when a leader panics), or the flight ends if none waits.
    pub(crate) fn hand_over(self) {
        drop(self);
    }
}

impl<K, V: Clone> Drop for Leader<'_, K, V> {
    /// A leader that never landed (its body panicked or was cancelled):
    /// with followers, the flight stays and the first of them to wake
    /// takes it over; without, it ends.
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let waiters = {
            let mut shard = lock(&self.flights.shards[shard_of(self.hash)]);
            match shard.table.find_entry(self.hash, |f| f.id == self.id) {
                Ok(entry) if entry.get().waiters.is_some() => entry.get().waiters.clone(),
                Ok(entry) => {
                    entry.remove();
                    None
                }
                Err(_) => None,
            }
        };
        if let Some(flight) = waiters {
            flight.set(State::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins `key` on another thread, signals once joined, then follows.
    fn follower<'s, 'f: 's>(
        s: &'s std::thread::Scope<'s, 'f>,
        flights: &'f Flights<u64, u64>,
        key: u64,
        then_land: Option<u64>,
    ) -> (
        std::sync::mpsc::Receiver<()>,
        std::thread::ScopedJoinHandle<'s, &'static str>,
    ) {
        let (joined, on_joined) = std::sync::mpsc::channel();
        let h = s.spawn(move || {
            let join = flights.join(&key, key);
            joined.send(()).unwrap();
            let Join::Follow(f) = join else {
                panic!("another thread follows")
            };
            match flights.follow(&f) {
                Followed::Value(_) => "value",
                Followed::Alone => "alone",
                Followed::Lead(l) => {
                    l.land(|| then_land);
                    "lead"
                }
            }
        });
        (on_joined, h)
    }

    #[test]
    fn followers_of_a_landed_flight_get_its_value_and_the_key_is_free_again() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&1, 1) else {
            panic!("the first caller leads")
        };
        let got = std::thread::scope(|s| {
            let (joined, h) = follower(s, &flights, 1, None);
            joined.recv().unwrap();
            leader.land(|| Some(7));
            h.join().unwrap()
        });
        assert_eq!(got, "value");
        assert_eq!(flights.in_progress(), 0);
        assert!(matches!(flights.join(&1, 1), Join::Lead(_)));
    }

    #[test]
    fn a_refresh_finding_a_flight_leaves_no_waiters_behind_to_keep_it_alive() {
        let flights: Flights<u64, u64> = Flights::new();
        let first = flights
            .lead(&3, 3)
            .expect("no flight yet: the refresh leads");
        assert!(flights.lead(&3, 3).is_none(), "one flight per key");
        drop(first); // a refresh that ends without a value to share
        assert_eq!(flights.in_progress(), 0);
        assert!(flights.lead(&3, 3).is_some(), "the next refresh may start");
    }

    #[test]
    fn a_leader_landing_empty_lets_each_follower_compute_alone() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&2, 2) else {
            panic!("the first caller leads")
        };
        let got = std::thread::scope(|s| {
            let (a_joined, a) = follower(s, &flights, 2, None);
            let (b_joined, b) = follower(s, &flights, 2, None);
            a_joined.recv().unwrap();
            b_joined.recv().unwrap();
            leader.land(|| None); // an `Err`: nothing to share
            [a.join().unwrap(), b.join().unwrap()]
        });
        assert_eq!(got, ["alone", "alone"]);
        assert_eq!(flights.in_progress(), 0);
    }

    #[test]
    fn a_leader_dropped_without_landing_hands_the_flight_to_exactly_one_follower() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&7, 7) else {
            panic!("the first caller leads")
        };
        let mut got = std::thread::scope(|s| {
            let followers: Vec<_> = (0..8).map(|_| follower(s, &flights, 7, Some(49))).collect();
            for (joined, _) in &followers {
                joined.recv().unwrap();
            }
            drop(leader); // as during a panic's unwinding or a cancelled future
            followers
                .into_iter()
                .map(|(_, h)| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        got.sort_unstable();
        assert_eq!(
            got,
            ["lead", "value", "value", "value", "value", "value", "value", "value"]
        );
        assert_eq!(flights.in_progress(), 0);
    }

    #[test]
    fn a_leader_dropped_with_no_follower_ends_its_flight() {
        let flights: Flights<u64, u64> = Flights::new();
        drop(flights.join(&5, 5));
        assert_eq!(flights.in_progress(), 0);
    }

    #[test]
    fn only_a_call_beneath_the_leader_s_body_runs_alone() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&3, 3) else {
            panic!("the first caller leads")
        };
        assert!(
            matches!(flights.join(&3, 3), Join::Follow(_)),
            "outside the body: a concurrent caller, not recursion"
        );
        run_led(Some(leader.id()), || {
            assert!(matches!(flights.join(&3, 3), Join::Alone), "recursion");
            assert!(
                matches!(flights.join(&4, 4), Join::Lead(_)),
                "other keys are independent"
            );
        });
        assert!(
            matches!(flights.join(&3, 3), Join::Follow(_)),
            "the chain is popped"
        );
    }

    #[test]
    fn an_async_body_s_chain_is_seen_by_what_it_awaits_but_not_by_siblings_in_the_same_task() {
        let flights: Flights<u64, u64> = Flights::new();
        let Join::Lead(leader) = flights.join(&8, 8) else {
            panic!("the first caller leads")
        };
        let id = leader.id();
        let (inner, sibling) = pollster::block_on(async {
            let body = run_led_async(Some(id), async {
                tokio::task::yield_now().await;
                matches!(flights.join(&8, 8), Join::Alone)
            });
            let sibling = async {
                tokio::task::yield_now().await;
                matches!(flights.join(&8, 8), Join::Follow(_))
            };
            futures_util::future::join(body, sibling).await
        });
        assert!(inner, "the body's own recursive call runs alone");
        assert!(sibling, "a sibling polled by the same task follows");
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
