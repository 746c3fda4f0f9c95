//! Sliding expiration (`time_to_idle`) in the local tier, decided by an
//! injected clock: an entry read often enough stays, an unread one
//! expires, and `timeout` caps a read one.

#[path = "support/mock_runtime.rs"]
mod mock_runtime;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use layercache::{cache_invalidate, cached, fn_cache};
use mock_runtime::clock;

/// The clock is the whole process's: tests take turns moving it.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

static READ_OFTEN: AtomicUsize = AtomicUsize::new(0);
#[cached(time_to_idle = 60)]
fn read_often(x: u32) -> u32 {
    READ_OFTEN.fetch_add(1, SeqCst);
    x
}

static LEFT_ALONE: AtomicUsize = AtomicUsize::new(0);
#[cached(time_to_idle_ms = 60_000)]
fn left_alone(x: &str) -> usize {
    LEFT_ALONE.fetch_add(1, SeqCst);
    x.len()
}

static CAPPED: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 100, time_to_idle = 30)]
fn capped(x: u32) -> u32 {
    CAPPED.fetch_add(1, SeqCst);
    x
}

static ASYNC_IDLE: AtomicUsize = AtomicUsize::new(0);
#[cached(time_to_idle = 60, key = "{x}")]
async fn async_idle(x: u32) -> Option<u32> {
    ASYNC_IDLE.fetch_add(1, SeqCst);
    Some(x)
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);
#[cached(time_to_idle = 60)]
fn dropped(x: u32) -> u32 {
    DROPPED.fetch_add(1, SeqCst);
    x
}

#[cache_invalidate(dropped(x))]
fn update_dropped(x: u32) {
    let _ = x;
}

#[test]
fn an_entry_read_every_20_s_outlives_its_60_s_idle_time_and_the_default_timeout() {
    let _turn = turn();
    let mock = clock();
    read_often(1);
    // 10 minutes: ten idle periods, and twenty times the default timeout
    // (30 s), which `time_to_idle` alone does not apply.
    for _ in 0..30 {
        mock.advance(Duration::from_secs(20));
        assert_eq!(read_often(1), 1);
    }
    assert_eq!(READ_OFTEN.load(SeqCst), 1, "every read was a hit");
    assert_eq!(fn_cache!(read_often).stats().local_hits, 30);
}

#[test]
fn an_entry_unread_for_its_idle_time_expires() {
    let _turn = turn();
    let mock = clock();
    left_alone("abc");
    mock.advance(Duration::from_secs(59));
    left_alone("abc");
    assert_eq!(LEFT_ALONE.load(SeqCst), 1, "read at 59 s of 60");
    // The read at 59 s moved the deadline to 119 s: 60 s unread from there.
    mock.advance(Duration::from_secs(59));
    left_alone("abc");
    assert_eq!(
        LEFT_ALONE.load(SeqCst),
        1,
        "still fresh 59 s after the read"
    );
    mock.advance(Duration::from_secs(60));
    left_alone("abc");
    assert_eq!(
        LEFT_ALONE.load(SeqCst),
        2,
        "expired 60 s after the last read"
    );
    assert_eq!(fn_cache!(left_alone).stats().expired, 1);
}

#[test]
fn timeout_caps_an_entry_however_often_it_is_read() {
    let _turn = turn();
    let mock = clock();
    capped(1);
    for _ in 0..9 {
        mock.advance(Duration::from_secs(10));
        capped(1);
    }
    assert_eq!(CAPPED.load(SeqCst), 1, "read every 10 s up to 90 s: hits");
    mock.advance(Duration::from_secs(10));
    capped(1);
    assert_eq!(CAPPED.load(SeqCst), 2, "expired at its 100 s timeout");
}

#[test]
fn an_async_function_slides_too() {
    let _turn = turn();
    let mock = clock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        async_idle(7).await;
        for _ in 0..5 {
            mock.advance(Duration::from_secs(50));
            assert_eq!(async_idle(7).await, Some(7));
        }
        assert_eq!(ASYNC_IDLE.load(SeqCst), 1, "read every 50 s of 60");
        mock.advance(Duration::from_secs(60));
        async_idle(7).await;
        assert_eq!(ASYNC_IDLE.load(SeqCst), 2, "unread for 60 s");
    });
}

#[test]
fn invalidation_drops_an_idle_entry() {
    let _turn = turn();
    clock();
    dropped(3);
    update_dropped(3);
    dropped(3);
    assert_eq!(DROPPED.load(SeqCst), 2);
}
