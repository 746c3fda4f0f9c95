//! Single-flight (guide 7.1, cache breakdown): concurrent callers that miss
//! the same key in one process wait for one computation. In-process
//! configuration; every test has its own functions. Run with no `CACHE_*`
//! variables set (scripts/test.sh unsets them).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use layercache::{cached, entry, fn_cache};

macro_rules! counter {
    ($name:ident) => {
        static $name: AtomicUsize = AtomicUsize::new(0);
    };
}

/// Starts `n` threads that call `f(i)` at the same moment; their handles.
fn together<T: Send + 'static>(
    n: u64,
    f: impl Fn(u64) -> T + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<T>> {
    let start = Arc::new(Barrier::new(n as usize));
    let f = Arc::new(f);
    (0..n)
        .map(|i| {
            let (start, f) = (start.clone(), f.clone());
            std::thread::spawn(move || {
                start.wait();
                f(i)
            })
        })
        .collect()
}

/// Long enough for every caller to arrive while the first one computes.
const ORIGIN_MS: u64 = 100;

counter!(ASYNC_CALLS);
#[cached(key_prefix = "sf_async")]
async fn slow_async(id: u64) -> String {
    ASYNC_CALLS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(ORIGIN_MS)).await;
    format!("value {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_async_callers_of_a_cold_key_run_the_function_once() {
    let tasks: Vec<_> = (0..500).map(|_| tokio::spawn(slow_async(7))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "value 7");
    }
    assert_eq!(
        ASYNC_CALLS.load(SeqCst),
        1,
        "one origin call for 500 callers"
    );
    let s = fn_cache!(slow_async).stats();
    assert_eq!(s.misses, 1);
    assert_eq!(s.hits, 499, "everyone else was answered: {s:?}");
    assert!(
        s.coalesced >= 1,
        "callers that arrived during the computation waited for it: {s:?}"
    );
    assert_eq!(s.requests(), 500);
}

counter!(SYNC_CALLS);
#[cached(key_prefix = "sf_sync")]
fn slow_sync(id: u64) -> u64 {
    SYNC_CALLS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(ORIGIN_MS));
    id * 2
}

#[test]
fn sixty_four_threads_on_a_cold_key_run_the_function_once() {
    for t in together(64, |_| slow_sync(21)) {
        assert_eq!(t.join().unwrap(), 42);
    }
    assert_eq!(SYNC_CALLS.load(SeqCst), 1, "one origin call for 64 threads");
    let s = fn_cache!(slow_sync).stats();
    assert_eq!((s.misses, s.hits), (1, 63), "{s:?}");
    assert!(s.coalesced >= 1, "{s:?}");
}

counter!(KEYS_CALLS);
#[cached(key_prefix = "sf_keys")]
fn per_key(id: u64) -> u64 {
    KEYS_CALLS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    id
}

#[test]
fn different_keys_compute_in_parallel_each_once() {
    for (i, t) in together(32, |i| per_key(i % 4)).into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), i as u64 % 4);
    }
    assert_eq!(KEYS_CALLS.load(SeqCst), 4, "one computation per key");
}

// ---------------------------------------------------------------- failures

static PANIC_NOW: AtomicBool = AtomicBool::new(true);
counter!(PANIC_CALLS);
#[cached(key_prefix = "sf_panic")]
fn panics_while_flagged(id: u64) -> u64 {
    PANIC_CALLS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    if PANIC_NOW.load(SeqCst) {
        panic!("origin failure for {id}");
    }
    id
}

#[test]
fn a_panicking_leader_releases_every_waiter_and_the_next_call_computes_again() {
    let threads = together(16, |_| std::panic::catch_unwind(|| panics_while_flagged(3)));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        tx.send(results).unwrap();
    });
    // A waiter that hung would never report: fail instead of hanging the suite.
    let results = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("every caller returns after the leader panicked");
    assert!(
        results.iter().all(|r| r.is_err()),
        "each caller ran the still-panicking function itself (a retry), none got a value"
    );
    assert!(PANIC_CALLS.load(SeqCst) >= 2, "the waiters retried");
    assert!(!entry!(panics_while_flagged(3)).is_cached());
    PANIC_NOW.store(false, SeqCst);
    let before = PANIC_CALLS.load(SeqCst);
    assert_eq!(panics_while_flagged(3), 3, "the next call computes again");
    assert_eq!(PANIC_CALLS.load(SeqCst), before + 1);
    assert_eq!(panics_while_flagged(3), 3);
    assert_eq!(
        PANIC_CALLS.load(SeqCst),
        before + 1,
        "and its value is cached"
    );
}

static ASYNC_PANIC_NOW: AtomicBool = AtomicBool::new(true);
counter!(ASYNC_PANIC_CALLS);
#[cached(key_prefix = "sf_async_panic")]
async fn async_panics_while_flagged(id: u64) -> u64 {
    // Only the first run is slow (so the others arrive during it): after
    // a panic the flight passes to one waiter at a time.
    if ASYNC_PANIC_CALLS.fetch_add(1, SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    if ASYNC_PANIC_NOW.load(SeqCst) {
        panic!("origin failure for {id}");
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_waiters_of_a_panicking_leader_all_return() {
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async_panics_while_flagged(4)))
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(30), async {
        let mut panicked = 0;
        for t in tasks {
            if t.await.is_err_and(|e| e.is_panic()) {
                panicked += 1;
            }
        }
        panicked
    })
    .await
    .expect("no waiter hangs");
    assert_eq!(
        all, 100,
        "every caller saw the failure (each took the flight over in turn and panicked too)"
    );
    ASYNC_PANIC_NOW.store(false, SeqCst);
    assert_eq!(async_panics_while_flagged(4).await, 4);
}

counter!(ERR_CALLS);
#[cached(key_prefix = "sf_err")]
fn fails_once(id: u64) -> Result<u64, String> {
    let n = ERR_CALLS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    if n == 0 {
        Err("the first computation fails".into())
    } else {
        Ok(id)
    }
}

#[test]
fn an_err_is_never_shared_waiters_compute_themselves() {
    let results: Vec<_> = together(8, |_| fails_once(5))
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let errs = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(errs, 1, "only the leader saw its own error: {results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .all(|v| *v == 5));
    assert_eq!(fails_once(5), Ok(5));
}

counter!(CANCEL_CALLS);
#[cached(key_prefix = "sf_cancel")]
async fn slow_to_cancel(id: u64) -> u64 {
    CANCEL_CALLS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over_to_its_waiters() {
    let leader = tokio::spawn(slow_to_cancel(9));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let follower = tokio::spawn(slow_to_cancel(9));
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the waiter does not wait for a cancelled computation")
        .unwrap();
    assert_eq!(got, 9);
    assert_eq!(
        CANCEL_CALLS.load(SeqCst),
        2,
        "the waiter took over and computed"
    );
}

counter!(ABORT_CALLS);
#[cached(key_prefix = "sf_abort")]
async fn slow_to_abort(id: u64) -> u64 {
    if ABORT_CALLS.fetch_add(1, SeqCst) == 0 {
        // The first run only ends by being aborted.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_waiters_whose_leader_is_aborted_cost_at_most_two_runs() {
    let leader = tokio::spawn(slow_to_abort(11));
    while ABORT_CALLS.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..100).map(|_| tokio::spawn(slow_to_abort(11))).collect();
    // Time for the waiters to join the flight (one that comes later
    // finds the flight handed over or gone: the bound holds either way).
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        let mut got = Vec::new();
        for w in waiters {
            got.push(w.await.unwrap());
        }
        got
    })
    .await
    .expect("no waiter hangs");
    assert!(got.iter().all(|v| *v == 11));
    assert_eq!(
        ABORT_CALLS.load(SeqCst),
        2,
        "the aborted run and one waiter's takeover; the other 99 waited for it"
    );
}

counter!(PANIC_ONCE_CALLS);
#[cached(key_prefix = "sf_panic_once")]
fn panics_the_first_time(id: u64) -> u64 {
    let n = PANIC_ONCE_CALLS.fetch_add(1, SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    if n == 0 {
        panic!("the first computation of {id} panics");
    }
    id
}

#[test]
fn a_panicking_leader_hands_its_flight_to_one_waiter_and_the_rest_share_its_value() {
    let results: Vec<_> = together(16, |_| {
        std::panic::catch_unwind(|| panics_the_first_time(6))
    })
    .into_iter()
    .map(|t| t.join().unwrap())
    .collect();
    let panicked = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(panicked, 1, "only the leader saw its own panic");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .all(|v| *v == 6));
    assert_eq!(
        PANIC_ONCE_CALLS.load(SeqCst),
        2,
        "the panicked run and one takeover"
    );
}

counter!(VOIDED_CALLS);
static VOIDED_GATE: std::sync::Mutex<
    Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
> = std::sync::Mutex::new(None);

#[cached(key_prefix = "sf_voided")]
fn voided_once(id: u64) -> u64 {
    let n = VOIDED_CALLS.fetch_add(1, SeqCst) as u64;
    // The first run tells the test it computes, then waits until the entry
    // has been invalidated.
    let gate = VOIDED_GATE.lock().unwrap().take();
    if let Some((started, resume)) = gate {
        started.send(()).unwrap();
        resume.recv().unwrap();
    }
    id * 10 + n
}

#[test]
fn a_leader_whose_result_an_invalidation_voided_hands_its_flight_to_one_waiter() {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    *VOIDED_GATE.lock().unwrap() = Some((started_tx, resume_rx));
    let leader = std::thread::spawn(|| voided_once(4));
    started_rx.recv().unwrap();
    let waiters = together(16, |_| voided_once(4));
    std::thread::sleep(Duration::from_millis(20)); // the waiters join the flight
    entry!(voided_once(4)).invalidate();
    resume_tx.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        40,
        "the leader returns its own result"
    );
    let got: Vec<u64> = waiters.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        got.iter().all(|v| *v == 41),
        "no waiter took the voided value; all share the new one: {got:?}"
    );
    assert_eq!(
        VOIDED_CALLS.load(SeqCst),
        2,
        "the voided run and one takeover, not one run per waiter"
    );
}

counter!(JOIN_CALLS);
#[cached(key_prefix = "sf_join")]
async fn joined_in_one_task(id: u64) -> u64 {
    JOIN_CALLS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    id
}

#[tokio::test(flavor = "current_thread")]
async fn three_calls_of_one_cold_key_joined_in_one_task_run_the_function_once() {
    let got = tokio::join!(
        joined_in_one_task(3),
        joined_in_one_task(3),
        joined_in_one_task(3)
    );
    assert_eq!(got, (3, 3, 3));
    assert_eq!(
        JOIN_CALLS.load(SeqCst),
        1,
        "siblings in one task are coalesced"
    );
    let all = futures_util::future::join_all((0..10).map(|_| joined_in_one_task(4))).await;
    assert!(all.iter().all(|v| *v == 4));
    assert_eq!(JOIN_CALLS.load(SeqCst), 2, "join_all too");
}

// ---------------------------------------------------------------- nesting

counter!(SAME_KEY_CALLS);
/// Calls itself with the same key (`depth` is not part of it).
#[cached(key_prefix = "sf_same_key", key = "{id}")]
fn same_key_again(id: u64, depth: u32) -> u64 {
    SAME_KEY_CALLS.fetch_add(1, SeqCst);
    if depth == 0 {
        id
    } else {
        same_key_again(id, depth - 1) + 1
    }
}

#[test]
fn a_sync_function_calling_itself_with_the_same_key_completes() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(same_key_again(5, 3)).unwrap());
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the inner call does not wait for the outer one");
    assert_eq!(got, 8);
    assert_eq!(SAME_KEY_CALLS.load(SeqCst), 4, "each frame ran its body");
}

counter!(ASYNC_SAME_KEY_CALLS);
/// The async twin of `same_key_again`.
#[cached(key_prefix = "sf_async_same_key", key = "{id}")]
async fn async_same_key_again(id: u64, depth: u32) -> u64 {
    ASYNC_SAME_KEY_CALLS.fetch_add(1, SeqCst);
    tokio::task::yield_now().await;
    if depth == 0 {
        id
    } else {
        Box::pin(async_same_key_again(id, depth - 1)).await + 1
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_function_calling_itself_with_the_same_key_completes() {
    let got = tokio::time::timeout(Duration::from_secs(10), async_same_key_again(5, 3))
        .await
        .expect("the inner call does not wait for the outer one");
    assert_eq!(got, 8);
    assert_eq!(
        ASYNC_SAME_KEY_CALLS.load(SeqCst),
        4,
        "each frame ran its body"
    );
}

counter!(FIB_CALLS);
#[cached(key_prefix = "sf_fib")]
fn fib(n: u64) -> u64 {
    FIB_CALLS.fetch_add(1, SeqCst);
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

counter!(OUTER_CALLS);
#[cached(key_prefix = "sf_outer")]
fn outer(n: u64) -> u64 {
    OUTER_CALLS.fetch_add(1, SeqCst);
    fib(n) + 1
}

#[test]
fn cached_functions_calling_cached_functions_never_deadlock() {
    for t in together(8, |_| (fib(60), outer(40))) {
        assert_eq!(t.join().unwrap(), (1_548_008_755_920, 102_334_156));
    }
    assert_eq!(FIB_CALLS.load(SeqCst), 61, "each fib(n) computed once");
    assert_eq!(OUTER_CALLS.load(SeqCst), 1);
}

counter!(SELF_CALLS);
#[cached(key_prefix = "sf_self")]
fn calls_itself_once(id: u64, depth: u32) -> u64 {
    SELF_CALLS.fetch_add(1, SeqCst);
    if depth == 0 {
        id
    } else {
        // Same key as an outer frame's would be a loop in any program; a
        // different key is a new flight: neither waits for itself.
        calls_itself_once(id, depth - 1) + calls_itself_once(id, depth - 1)
    }
}

#[test]
fn a_function_calling_itself_with_other_arguments_does_not_wait_for_itself() {
    assert_eq!(calls_itself_once(1, 10), 1024);
    assert_eq!(SELF_CALLS.load(SeqCst), 11);
}

// ---------------------------------------------------------------- manual cache

#[test]
fn the_manual_get_or_insert_runs_make_once_for_concurrent_callers() {
    static MAKES: AtomicUsize = AtomicUsize::new(0);
    let cache = layercache::sync::Cache::global();
    for t in together(32, move |_| {
        cache.get_or_insert_with("sf_manual_report", Duration::from_secs(60), || {
            MAKES.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_millis(ORIGIN_MS));
            "report".to_string()
        })
    }) {
        assert_eq!(t.join().unwrap(), "report");
    }
    assert_eq!(MAKES.load(SeqCst), 1, "one make for 32 callers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_manual_get_or_insert_runs_make_once_for_concurrent_callers() {
    static MAKES: AtomicUsize = AtomicUsize::new(0);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async {
                layercache::future::Cache::global()
                    .get_or_insert_with("sf_manual_async", Duration::from_secs(60), async {
                        MAKES.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(ORIGIN_MS)).await;
                        7u64
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 7);
    }
    assert_eq!(MAKES.load(SeqCst), 1, "one make for 200 tasks");
}
