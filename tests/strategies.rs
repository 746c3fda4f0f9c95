//! Protection strategies on the in-process tier, timed by an injected
//! clock: TTL jitter (guide 7.3, cache avalanche) and negative caching
//! (guide 7.2, cache penetration). The clock is shared by the whole test
//! binary, so tests that move it hold `CLOCK_LOCK`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use layercache::{cached, entry, fn_cache, Clock, Config, MockClock};

fn clock() -> &'static MockClock {
    static MOCK: OnceLock<MockClock> = OnceLock::new();
    MOCK.get_or_init(|| {
        let (clock, mock) = Clock::mock();
        layercache::init(Config::builder().clock(clock).build()).unwrap();
        mock
    })
}

static CLOCK_LOCK: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------- jitter

#[cached(timeout = 100, jitter = 0.1, max_entries = 20000)]
fn jittered(id: u32) -> u32 {
    id
}

#[cached(timeout = 100, max_entries = 20000)]
fn unjittered(id: u32) -> u32 {
    id
}

const N: u32 = 10_000;

fn alive(f: impl Fn(u32) -> bool) -> usize {
    (0..N).filter(|i| f(*i)).count()
}

#[test]
fn jitter_spreads_expiries_over_plus_minus_ten_percent_and_none_outside() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for i in 0..N {
        jittered(i);
        unjittered(i);
    }
    let jit = |i| entry!(jittered(i)).is_cached();
    let flat = |i| entry!(unjittered(i)).is_cached();
    let mut seen = Vec::new();
    let mut at = Duration::ZERO;
    for (t_ms, min, max) in [
        (89_999, N as usize, N as usize), // nothing expires before 90 s
        (92_000, 8_500, 9_500),           // ~10 % in [90, 92)
        (100_000, 4_500, 5_500),          // ~half before 100 s
        (108_000, 500, 1_500),            // ~10 % after 108 s
        (110_001, 0, 0),                  // nothing lives past 110 s
    ] {
        let t = Duration::from_millis(t_ms);
        mock.advance(t - at);
        at = t;
        let n = alive(jit);
        seen.push((t_ms, n));
        assert!(
            (min..=max).contains(&n),
            "at {t_ms} ms {n} jittered entries alive, expected {min}..={max}: {seen:?}"
        );
    }
    // Without jitter every entry expired at exactly 100 s.
    assert_eq!(alive(flat), 0);
    println!("jittered entries alive (ms, count): {seen:?}");
}

#[cached(timeout = 100, max_entries = 20000)]
fn flat_again(id: u32) -> u32 {
    id
}

#[test]
fn without_jitter_every_entry_expires_at_the_same_instant() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for i in 0..N {
        flat_again(i);
    }
    mock.advance(Duration::from_millis(99_999));
    assert_eq!(alive(|i| entry!(flat_again(i)).is_cached()), N as usize);
    mock.advance(Duration::from_millis(2));
    assert_eq!(alive(|i| entry!(flat_again(i)).is_cached()), 0);
}

// ---------------------------------------------------------------- negative caching

static FIND_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300, cache_none = true, none_timeout = 5)]
fn find_user(id: u64) -> Option<String> {
    FIND_CALLS.fetch_add(1, SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[test]
fn a_missing_id_runs_the_function_once_per_none_timeout() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    for _ in 0..1000 {
        assert_eq!(find_user(404), None);
    }
    assert_eq!(FIND_CALLS.load(SeqCst), 1, "1000 calls, one origin call");
    assert_eq!(
        entry!(find_user(404)).get(),
        Some(None),
        "a cached None is an entry, not a miss"
    );
    assert_eq!(entry!(find_user(405)).get(), None, "a miss is not an entry");

    assert_eq!(find_user(7).as_deref(), Some("user 7"));
    assert_eq!(FIND_CALLS.load(SeqCst), 2);

    mock.advance(Duration::from_millis(5_001));
    assert_eq!(find_user(404), None);
    assert_eq!(
        FIND_CALLS.load(SeqCst),
        3,
        "the None expired after none_timeout"
    );
    assert_eq!(find_user(7).as_deref(), Some("user 7"));
    assert_eq!(
        FIND_CALLS.load(SeqCst),
        3,
        "a Some lives for the function's timeout"
    );
    let s = fn_cache!(find_user).stats();
    assert_eq!(s.misses, 3);
    assert_eq!(s.hits, 1000, "999 + 1 calls answered: {s:?}");
}

static PLAIN_FIND_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300)]
fn find_without_negative_caching(id: u64) -> Option<String> {
    PLAIN_FIND_CALLS.fetch_add(1, SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[test]
fn without_cache_none_a_none_is_not_cached() {
    clock(); // the runtime is configured with the mock clock before any call
    for _ in 0..10 {
        assert_eq!(find_without_negative_caching(404), None);
    }
    assert_eq!(PLAIN_FIND_CALLS.load(SeqCst), 10);
}

// ---------------------------------------------------------------- fail-safe

static PRICE_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PRICE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 10, stale_if_error = 60)]
fn price(id: u64) -> Result<u64, String> {
    PRICE_CALLS.fetch_add(1, SeqCst);
    if PRICE_FAILS.load(SeqCst) {
        Err("pricing service down".into())
    } else {
        Ok(id * 10)
    }
}

#[cached(timeout = 10)]
fn price_without_fail_safe(id: u64) -> Result<u64, String> {
    if PRICE_FAILS.load(SeqCst) {
        Err("pricing service down".into())
    } else {
        Ok(id * 10)
    }
}

#[test]
fn an_error_within_stale_if_error_returns_the_expired_value_and_is_counted() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    PRICE_FAILS.store(false, SeqCst);
    assert_eq!(price(1), Ok(10));
    assert_eq!(price_without_fail_safe(1), Ok(10));
    mock.advance(Duration::from_secs(11)); // both expired
    PRICE_FAILS.store(true, SeqCst);
    assert_eq!(price(1), Ok(10), "the stale value stands in for the error");
    assert_eq!(
        price_without_fail_safe(1),
        Err("pricing service down".into()),
        "without stale_if_error the error reaches the caller"
    );
    let calls = PRICE_CALLS.load(SeqCst);
    assert_eq!(price(1), Ok(10), "still failing, still stale");
    assert_eq!(
        PRICE_CALLS.load(SeqCst),
        calls,
        "a failing function is not asked again within the throttle (30 s by default)"
    );
    let s = fn_cache!(price).stats();
    assert_eq!(s.stale_hits, 2, "{s:?}");
    assert_eq!(s.not_cached, 1, "an error is never stored");

    mock.advance(Duration::from_secs(60)); // 71 s after the write: past the window
    assert_eq!(price(1), Err("pricing service down".into()));
    assert_eq!(
        price(2),
        Err("pricing service down".into()),
        "nothing stale for a new key"
    );

    PRICE_FAILS.store(false, SeqCst);
    assert_eq!(price(1), Ok(10));
    entry!(price(1)).invalidate();
    PRICE_FAILS.store(true, SeqCst);
    assert_eq!(
        price(1),
        Err("pricing service down".into()),
        "an invalidated value is never served stale"
    );
    PRICE_FAILS.store(false, SeqCst);
}

// ---------------------------------------------------------------- conditions

static ADMIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
fn is_admin() -> bool {
    ADMIN.load(SeqCst)
}

static DASH_CALLS: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 60, unless = is_admin)]
fn dashboard(id: u64) -> String {
    DASH_CALLS.fetch_add(1, SeqCst);
    format!("dashboard {id} #{}", DASH_CALLS.load(SeqCst))
}

#[test]
fn unless_bypasses_the_cache_for_that_call_only() {
    clock(); // the runtime is configured with the mock clock before any call
    let first = dashboard(1);
    assert_eq!(dashboard(1), first, "cached for ordinary users");
    ADMIN.store(true, SeqCst);
    let fresh = dashboard(1);
    assert_ne!(fresh, first, "an admin always sees a fresh page");
    assert_ne!(dashboard(1), fresh, "and it is not stored");
    ADMIN.store(false, SeqCst);
    assert_eq!(
        dashboard(1),
        first,
        "the cached entry is still there for others"
    );
    let s = fn_cache!(dashboard).stats();
    assert_eq!(s.bypassed, 2);
    assert_eq!(
        (s.hits, s.misses),
        (2, 1),
        "bypassed calls are neither: {s:?}"
    );
}

static FLAG_CALLS: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 60, unless = refresh)]
fn report(id: u64, refresh: bool) -> usize {
    let _ = id;
    FLAG_CALLS.fetch_add(1, SeqCst)
}

static EXPR_CALLS: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 60, unless = id == 0)]
fn account(id: u64) -> usize {
    EXPR_CALLS.fetch_add(1, SeqCst)
}

#[test]
fn unless_takes_an_argument_flag_or_an_expression_over_the_arguments() {
    clock(); // the runtime is configured with the mock clock before any call
    assert_eq!(report(1, false), report(1, false));
    assert_ne!(
        report(1, true),
        report(1, true),
        "refresh = true skips the cache"
    );
    assert_eq!(account(5), account(5));
    assert_ne!(account(0), account(0), "id 0 is never cached");
}

#[allow(clippy::ptr_arg)] // `cache_if` takes `&R` of the return type
fn worth_caching(r: &Vec<u32>) -> bool {
    !r.is_empty()
}

static SEARCH_CALLS: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 60, cache_if = worth_caching)]
fn search(query: &str) -> Vec<u32> {
    SEARCH_CALLS.fetch_add(1, SeqCst);
    if query.is_empty() {
        vec![]
    } else {
        vec![query.len() as u32]
    }
}

#[test]
fn cache_if_vetoes_storing_a_result() {
    clock(); // the runtime is configured with the mock clock before any call
    search("rust");
    search("rust");
    assert_eq!(SEARCH_CALLS.load(SeqCst), 1, "a non-empty result is stored");
    search("");
    search("");
    assert_eq!(SEARCH_CALLS.load(SeqCst), 3, "an empty result is not");
    assert_eq!(fn_cache!(search).stats().not_cached, 2);
}

static PAGE_CALLS: AtomicUsize = AtomicUsize::new(0);
#[cached(
    timeout = 60,
    cache_if = |r: &Result<(u16, String), String>| matches!(r, Ok((200, _))),
    unless = id > 1000
)]
async fn page(id: u64) -> Result<(u16, String), String> {
    PAGE_CALLS.fetch_add(1, SeqCst);
    if id.is_multiple_of(2) {
        Ok((200, format!("page {id}")))
    } else {
        Ok((404, "not found".into()))
    }
}

#[tokio::test]
async fn conditions_work_on_async_functions_with_a_closure() {
    clock(); // the runtime is configured with the mock clock before any call
    page(2).await.unwrap();
    page(2).await.unwrap();
    assert_eq!(PAGE_CALLS.load(SeqCst), 1, "a 200 is stored");
    page(3).await.unwrap();
    page(3).await.unwrap();
    assert_eq!(PAGE_CALLS.load(SeqCst), 3, "a 404 is not");
    page(2000).await.unwrap();
    page(2000).await.unwrap();
    assert_eq!(PAGE_CALLS.load(SeqCst), 5, "ids over 1000 bypass the cache");
    assert_eq!(fn_cache!(page).stats().bypassed, 2);
}

// ---------------------------------------------------------------- refresh-ahead

/// Waits (real time, at most 5 s) until `done` holds: a background refresh
/// runs on another thread while the mock clock stands still.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

static NEWS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 10, refresh_ahead = 0.8)]
fn news(region: u32) -> String {
    let n = NEWS_RUNS.fetch_add(1, SeqCst) + 1;
    std::thread::sleep(Duration::from_millis(20));
    format!("news {region} v{n}")
}

#[test]
fn refresh_ahead_keeps_callers_off_the_origin_under_steady_traffic() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    let stats = || fn_cache!(news).stats();
    assert_eq!(news(1), "news 1 v1");
    mock.advance(Duration::from_secs(7));
    assert_eq!(news(1), "news 1 v1");
    assert_eq!(
        NEWS_RUNS.load(SeqCst),
        1,
        "no refresh before 80 % of the timeout"
    );
    mock.advance(Duration::from_millis(1_500));
    assert_eq!(
        news(1),
        "news 1 v1",
        "a due hit answers at once with the current value"
    );
    wait_for("the background refresh", || stats().refreshes == 1);
    mock.advance(Duration::from_secs(2)); // the first value would have expired at 10 s
    assert_eq!(news(1), "news 1 v2", "the refreshed value replaced it");

    // Steady traffic: a call every 500 ms for 100 s.
    let runs_before = NEWS_RUNS.load(SeqCst);
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        mock.advance(Duration::from_millis(500));
        let t = std::time::Instant::now();
        news(1);
        slowest = slowest.max(t.elapsed());
        // Let a refresh this call started finish before time moves on.
        wait_for("refreshes to settle", || {
            let s = stats();
            s.refreshes == s.refreshes_started
        });
    }
    let s = stats();
    assert_eq!(
        s.misses, 1,
        "after the first call no caller ran the function: {s:?}"
    );
    assert_eq!(s.expired, 0, "no entry ever expired under traffic");
    let refreshes = NEWS_RUNS.load(SeqCst) - runs_before;
    assert!(
        (11..=13).contains(&refreshes),
        "about one refresh per 8 s window over 100 s: {refreshes}"
    );
    println!(
        "refresh-ahead: {refreshes} refreshes in 100 s of traffic; slowest call {slowest:?} (the function takes 20 ms)"
    );
}

static HEADLINE_RUNS: AtomicUsize = AtomicUsize::new(0);
static HEADLINE_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(timeout = 20, refresh_ahead = 0.5)]
async fn headlines(id: u64) -> String {
    let n = HEADLINE_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(10)).await;
    if HEADLINE_PANICS.load(SeqCst) {
        panic!("headline service broke");
    }
    format!("headlines {id} v{n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard serializes the tests that move the shared mock clock; this
// test's future is driven by `block_on`, so holding it across awaits is fine.
#[allow(clippy::await_holding_lock)]
async fn async_refresh_ahead_runs_one_background_task_per_key() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    let stats = || fn_cache!(headlines).stats();
    assert_eq!(headlines(1).await, "headlines 1 v1");
    mock.advance(Duration::from_secs(11));
    // Many concurrent due hits start one refresh.
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(headlines(1))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), "headlines 1 v1");
    }
    let started = std::time::Instant::now();
    while stats().refreshes < 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "no refresh");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(HEADLINE_RUNS.load(SeqCst), 2, "one refresh for 50 due hits");
    assert_eq!(headlines(1).await, "headlines 1 v2");

    // A refresh that panics is counted; callers keep the current value.
    HEADLINE_PANICS.store(true, SeqCst);
    mock.advance(Duration::from_secs(11));
    assert_eq!(headlines(1).await, "headlines 1 v2");
    let started = std::time::Instant::now();
    while stats().origin_panics < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no panic counted"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    HEADLINE_PANICS.store(false, SeqCst);
    assert_eq!(
        headlines(1).await,
        "headlines 1 v2",
        "still the current value"
    );
    let started = std::time::Instant::now();
    while stats().refreshes < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no refresh after the panic"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        headlines(1).await,
        "headlines 1 v4",
        "the next due hit refreshed again"
    );
    assert_eq!(stats().misses, 1);
}

static BULLETIN_RUNS: AtomicUsize = AtomicUsize::new(0);
/// While set, a run of `bulletin` waits; cleared, a run that waited panics.
static BULLETIN_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(timeout = 10, refresh_ahead = 0.5)]
fn bulletin(id: u64) -> String {
    let n = BULLETIN_RUNS.fetch_add(1, SeqCst) + 1;
    let held = BULLETIN_HELD.load(SeqCst);
    while BULLETIN_HELD.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!held, "bulletin service broke");
    format!("bulletin {id} v{n}")
}

#[test]
fn a_due_hit_during_a_refresh_that_fails_does_not_stop_the_next_refresh() {
    let _lock = CLOCK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mock = clock();
    let stats = || fn_cache!(bulletin).stats();
    assert_eq!(bulletin(1), "bulletin 1 v1");
    mock.advance(Duration::from_secs(6)); // due: past half of the timeout
    BULLETIN_HELD.store(true, SeqCst);
    assert_eq!(bulletin(1), "bulletin 1 v1", "this hit starts a refresh");
    wait_for("the refresh to run", || BULLETIN_RUNS.load(SeqCst) == 2);
    assert_eq!(bulletin(1), "bulletin 1 v1", "a due hit while it runs");
    BULLETIN_HELD.store(false, SeqCst); // the refresh panics
    wait_for("the failed refresh to end", || stats().refreshes == 1);
    assert_eq!(stats().refreshes_started, 1, "one refresh at a time");
    assert_eq!(bulletin(1), "bulletin 1 v1", "the entry kept its value");
    wait_for("the next refresh", || stats().refreshes == 2);
    assert_eq!(stats().refreshes_started, 2, "the next due hit refreshed");
    assert_eq!(bulletin(1), "bulletin 1 v3");
    assert_eq!(stats().misses, 1);
}

// ---------------------------------------------------------------- versioned groups

static CATALOG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300, key_prefix = "catalog_item", versioned = "catalog")]
fn catalog_item(id: u64) -> String {
    CATALOG_RUNS.fetch_add(1, SeqCst);
    format!("item {id}")
}

#[cached(timeout = 300, key_prefix = "catalog_price", versioned = "catalog")]
fn catalog_price(id: u64) -> u64 {
    CATALOG_RUNS.fetch_add(1, SeqCst);
    id * 100
}

static OUTSIDER_RUNS: AtomicUsize = AtomicUsize::new(0);
#[cached(timeout = 300, key_prefix = "not_in_catalog")]
fn outsider(id: u64) -> u64 {
    OUTSIDER_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn bump_version_drops_every_entry_of_the_group_and_nothing_else() {
    clock(); // the runtime is configured with the mock clock before any call
    for id in 0..10 {
        catalog_item(id);
        catalog_price(id);
        outsider(id);
    }
    assert_eq!(CATALOG_RUNS.load(SeqCst), 20);
    assert_eq!(layercache::bump_version("catalog"), 20);
    assert_eq!(layercache::bump_version("no_such_group"), 0);
    for id in 0..10 {
        catalog_item(id);
        catalog_price(id);
        outsider(id);
    }
    assert_eq!(CATALOG_RUNS.load(SeqCst), 40, "the group recomputed");
    assert_eq!(
        OUTSIDER_RUNS.load(SeqCst),
        10,
        "other functions kept theirs"
    );
}

// ---------------------------------------------------------------- tags

static TAGGED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(timeout = 300, key_prefix = "tag_profile", tags = ["user:{user_id}"])]
fn tagged_profile(user_id: u64) -> String {
    TAGGED_RUNS.fetch_add(1, SeqCst);
    format!("profile {user_id}")
}

#[cached(timeout = 300, key_prefix = "tag_orders", tags = ["user:{user_id}", "orders"])]
fn tagged_orders(user_id: u64, page: u32) -> Vec<u32> {
    TAGGED_RUNS.fetch_add(1, SeqCst);
    vec![user_id as u32, page]
}

#[layercache::cache_invalidate(tag = "user:{user_id}")]
fn update_user_everywhere(user_id: u64) {
    let _ = user_id;
}

fn call_all_tagged() -> usize {
    let before = TAGGED_RUNS.load(SeqCst);
    for user in [1, 2] {
        tagged_profile(user);
        tagged_orders(user, 0);
        tagged_orders(user, 1);
    }
    TAGGED_RUNS.load(SeqCst) - before
}

static TAGGED_SEARCH_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A template key: the tags are rendered from the arguments at the call.
#[cached(timeout = 300, key_prefix = "tag_search", key = "{query}", tags = ["q:{query}"])]
fn tagged_search(query: &str) -> usize {
    TAGGED_SEARCH_RUNS.fetch_add(1, SeqCst);
    query.len()
}

#[test]
fn tags_work_with_template_keys_and_borrowed_arguments() {
    clock();
    tagged_search("rust");
    tagged_search("go");
    tagged_search("rust");
    assert_eq!(TAGGED_SEARCH_RUNS.load(SeqCst), 2);
    assert_eq!(layercache::invalidate_tag("q:rust"), 1);
    tagged_search("rust");
    tagged_search("go");
    assert_eq!(
        TAGGED_SEARCH_RUNS.load(SeqCst),
        3,
        "only the tagged query recomputed"
    );
}

#[test]
fn a_tag_invalidation_drops_every_entry_carrying_it_across_functions() {
    clock(); // the runtime is configured with the mock clock before any call
    assert_eq!(call_all_tagged(), 6, "cold");
    assert_eq!(call_all_tagged(), 0, "warm");
    update_user_everywhere(1);
    assert_eq!(
        call_all_tagged(),
        3,
        "user 1's profile and two order pages, in two functions"
    );
    assert_eq!(layercache::invalidate_tag("orders"), 4, "every order page");
    assert_eq!(call_all_tagged(), 4);
    assert_eq!(
        layercache::invalidate_tag("user:3"),
        0,
        "a tag nobody carries"
    );
    assert_eq!(call_all_tagged(), 0);
}
