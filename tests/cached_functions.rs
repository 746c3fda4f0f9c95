//! Behaviour of `#[cached]`, `#[cache_invalidate]` and `#[cache_put]` on the
//! default (in-process) configuration. Every test uses its own functions
//! (or serializes on a lock where two share one), so tests running in
//! parallel never disturb each other's entries or counters. Run with no
//! `CACHE_*` variables set (scripts/test.sh unsets them).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use layercache::{cache_invalidate, cache_put, cached, entry, fn_cache};
use serde::{Deserialize, Serialize};

macro_rules! counter {
    ($name:ident) => {
        static $name: AtomicUsize = AtomicUsize::new(0);
    };
}

// ---------------------------------------------------------------- basics

counter!(SQUARE_CALLS);
#[cached]
fn square(x: u64) -> u64 {
    SQUARE_CALLS.fetch_add(1, SeqCst);
    x * x
}

#[test]
fn same_arguments_run_the_function_once() {
    assert_eq!(square(12), 144);
    assert_eq!(square(12), 144);
    assert_eq!(square(12), 144);
    assert_eq!(SQUARE_CALLS.load(SeqCst), 1);
}

counter!(ECHO_CALLS);
#[cached(key_prefix = "echo")]
fn echo(text: &str, n: u32) -> String {
    ECHO_CALLS.fetch_add(1, SeqCst);
    format!("{text}#{n}")
}

counter!(ECHO_T_CALLS);
#[cached(key_prefix = "echo_t", key = "{text}:{n}")]
fn echo_templated(text: &str, n: u32) -> String {
    ECHO_T_CALLS.fetch_add(1, SeqCst);
    format!("{text}#{n}")
}

const AWKWARD: [&str; 12] = [
    "a:b",
    "a",
    "b:a",
    "*",
    "a*",
    "a b",
    " ",
    "",
    "ünï:cödé 空",
    "a%3Ab",
    "a\nb",
    "a:1",
];

fn two_rounds(f: fn(&str, u32) -> String, calls: &AtomicUsize) {
    for text in AWKWARD {
        for n in [1, 2] {
            assert_eq!(f(text, n), format!("{text}#{n}"));
        }
    }
    let first_round = calls.load(SeqCst);
    assert_eq!(
        first_round,
        AWKWARD.len() * 2,
        "every argument pair got its own entry"
    );
    for text in AWKWARD {
        for n in [1, 2] {
            assert_eq!(
                f(text, n),
                format!("{text}#{n}"),
                "cached value of {text:?}/{n}"
            );
        }
    }
    assert_eq!(calls.load(SeqCst), first_round, "second round was all hits");
}

#[test]
fn different_arguments_get_separate_entries_even_with_separators_wildcards_and_unicode() {
    two_rounds(echo, &ECHO_CALLS);
    assert_eq!(fn_cache!(echo).len(), (AWKWARD.len() * 2) as u64);
}

#[test]
fn templated_keys_escape_separators_wildcards_and_unicode_into_distinct_entries() {
    two_rounds(echo_templated, &ECHO_T_CALLS);
    assert_eq!(fn_cache!(echo_templated).len(), (AWKWARD.len() * 2) as u64);
    // The value's own ':' is escaped, so ("a:1", 2) cannot render like ("a", ...) plus a literal.
    assert_eq!(
        entry!(echo_templated("a:1", 2)).stable_key().unwrap(),
        "echo_t:a%3A1:2"
    );
    assert_eq!(
        entry!(echo_templated("*", 1)).stable_key().unwrap(),
        "echo_t:%2A:1"
    );
}

counter!(PAIR_CALLS);
#[cached(key_prefix = "pair", key = "{a}:{b}")]
fn pair(a: &str, b: &str) -> String {
    PAIR_CALLS.fetch_add(1, SeqCst);
    format!("{a}|{b}")
}

#[test]
fn template_values_are_escaped_so_a_separator_in_a_value_cannot_forge_another_key() {
    // Unescaped, both would render as "x:y:z".
    assert_eq!(pair("x:y", "z"), "x:y|z");
    assert_eq!(pair("x", "y:z"), "x|y:z");
    assert_eq!(PAIR_CALLS.load(SeqCst), 2);
    assert_eq!(
        entry!(pair("x:y", "z")).stable_key().unwrap(),
        "pair:x%3Ay:z"
    );
    assert_eq!(
        entry!(pair("x", "y:z")).stable_key().unwrap(),
        "pair:x:y%3Az"
    );
}

#[test]
fn hashed_keys_are_the_namespace_and_32_hex_digits() {
    let key = entry!(square(42)).stable_key().unwrap();
    let (ns, hash) = key.rsplit_once(':').unwrap();
    assert_eq!(ns, "cached_functions::square");
    // Pinned: the stable hash of the signature `(u64)` and (42u64,) (see
    // cache-runtime's key tests); it changed when keys began to cover the
    // argument types.
    assert_eq!(hash, "715a9215e0d00cc0c3a243c62855a70a");
}

// The same function before and after its argument type changed (a deploy).
mod before_the_change {
    #[layercache::cached(key_prefix = "retyped")]
    pub fn retyped(id: u32) -> u64 {
        u64::from(id)
    }
}
mod after_the_change {
    #[layercache::cached(key_prefix = "retyped")]
    pub fn retyped(id: u64) -> u64 {
        id
    }
}
#[layercache::cached(key_prefix = "retyped_pair")]
fn retyped_pair(a: u8, b: u8) -> u64 {
    u64::from(a) + u64::from(b)
}
#[layercache::cached(key_prefix = "retyped_pair")]
fn retyped_array(ab: [u8; 2]) -> u64 {
    u64::from(ab[0]) + u64::from(ab[1])
}

#[test]
fn changing_an_argument_type_changes_the_key() {
    let old = entry!(before_the_change::retyped(7)).stable_key().unwrap();
    let new = entry!(after_the_change::retyped(7)).stable_key().unwrap();
    assert_ne!(old, new, "equal encodings, other types: another key");
    let pair = entry!(retyped_pair(1, 2)).stable_key().unwrap();
    let array = entry!(retyped_array([1, 2])).stable_key().unwrap();
    assert_ne!(pair, array, "two arguments are not one array of two");
    assert!(pair.starts_with("retyped_pair:") && array.starts_with("retyped_pair:"));
}

// ---------------------------------------------------------------- expiry

counter!(SHORT_CALLS);
#[cached(timeout_ms = 500)]
fn short_lived(x: u32) -> u32 {
    SHORT_CALLS.fetch_add(1, SeqCst);
    x + 1
}

#[test]
fn an_entry_expires_after_timeout_ms() {
    assert_eq!(short_lived(1), 2);
    assert_eq!(short_lived(1), 2);
    assert_eq!(SHORT_CALLS.load(SeqCst), 1);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(short_lived(1), 2);
    assert_eq!(SHORT_CALLS.load(SeqCst), 2, "expired entry was recomputed");
    let stats = fn_cache!(short_lived).stats();
    assert_eq!(stats.expired, 1);
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

// ---------------------------------------------------------------- Result and Option

counter!(FALLIBLE_CALLS);
#[cached(key_prefix = "fallible")]
fn fallible(id: u32) -> Result<String, String> {
    FALLIBLE_CALLS.fetch_add(1, SeqCst);
    if id == 0 {
        Err("no such id".into())
    } else {
        Ok(format!("item {id}"))
    }
}

#[test]
fn err_is_never_cached_and_ok_is() {
    assert!(fallible(0).is_err());
    assert!(fallible(0).is_err());
    assert_eq!(
        FALLIBLE_CALLS.load(SeqCst),
        2,
        "Err ran the function each time"
    );
    assert_eq!(fallible(1), Ok("item 1".into()));
    assert_eq!(fallible(1), Ok("item 1".into()));
    assert_eq!(FALLIBLE_CALLS.load(SeqCst), 3);
    let s = layercache::stats();
    let f = s.function("fallible").unwrap();
    assert_eq!(f.not_cached, 2);
    assert_eq!(f.entries, 1);
}

counter!(LOOKUP_CALLS);
#[cached]
fn lookup(id: u32) -> Option<u32> {
    LOOKUP_CALLS.fetch_add(1, SeqCst);
    id.is_multiple_of(2).then_some(id * 10)
}

#[test]
fn none_is_not_cached_and_some_is() {
    assert_eq!(lookup(1), None);
    assert_eq!(lookup(1), None);
    assert_eq!(LOOKUP_CALLS.load(SeqCst), 2);
    assert_eq!(lookup(2), Some(20));
    assert_eq!(lookup(2), Some(20));
    assert_eq!(LOOKUP_CALLS.load(SeqCst), 3);
}

counter!(QUESTION_CALLS);
#[cached]
fn parses(text: &str) -> Result<u32, std::num::ParseIntError> {
    QUESTION_CALLS.fetch_add(1, SeqCst);
    let n: u32 = text.parse()?;
    if n > 100 {
        return Ok(100);
    }
    Ok(n)
}

#[test]
fn early_return_and_question_mark_in_the_body_keep_their_meaning() {
    assert!(parses("x").is_err());
    assert_eq!(parses("500"), Ok(100));
    assert_eq!(parses("500"), Ok(100));
    assert_eq!(parses("7"), Ok(7));
    assert_eq!(QUESTION_CALLS.load(SeqCst), 3);
}

// ---------------------------------------------------------------- invalidation

counter!(PROFILE_CALLS);
#[cached(timeout = 300, key_prefix = "user_profile")]
fn get_user_profile(user_id: u64) -> Result<String, String> {
    PROFILE_CALLS.fetch_add(1, SeqCst);
    Ok(format!("profile {user_id} v{}", PROFILE_CALLS.load(SeqCst)))
}

#[cache_invalidate(get_user_profile(user_id))]
fn update_user(user_id: u64, fail: bool) -> Result<(), String> {
    if fail {
        Err("database down".into())
    } else {
        Ok(())
    }
}

#[test]
fn invalidating_one_call_drops_that_entry_only_and_only_after_success() {
    let a = get_user_profile(1).unwrap();
    let b = get_user_profile(2).unwrap();
    assert!(update_user(1, true).is_err());
    assert_eq!(
        get_user_profile(1).unwrap(),
        a,
        "a failed update keeps the entry"
    );
    update_user(1, false).unwrap();
    assert!(!entry!(get_user_profile(1)).is_cached());
    assert_ne!(
        get_user_profile(1).unwrap(),
        a,
        "recomputed after the update"
    );
    assert_eq!(
        get_user_profile(2).unwrap(),
        b,
        "the other user stayed cached"
    );
}

counter!(SEARCH_CALLS);
#[cached(timeout = 60, key_prefix = "search", key = "{query}:page:{page}")]
fn search(query: &str, page: u32) -> Vec<String> {
    SEARCH_CALLS.fetch_add(1, SeqCst);
    vec![format!("{query}@{page}")]
}

#[cache_invalidate(all = search)]
fn reindex() {}

#[cache_invalidate(prefix = "search:rust")]
fn reindex_rust() {}

#[cache_invalidate(prefix = "search:{query}:")]
fn reindex_query(query: &str) {}

fn searched_pages(queries: &[(&str, u32)]) -> Vec<bool> {
    queries
        .iter()
        .map(|(q, p)| entry!(search(q, *p)).is_cached())
        .collect()
}

#[test]
fn invalidating_all_prefix_and_templated_prefix_leave_the_rest_cached() {
    let _serial = SEARCH_LOCK.lock().unwrap();
    let calls = [
        ("rust", 1),
        ("rust", 2),
        ("rustacean", 1),
        ("python", 1),
        ("ru*", 1),
        ("r*", 1),
    ];
    for (q, p) in calls {
        search(q, p);
    }
    assert_eq!(searched_pages(&calls), vec![true; 6]);

    // A value holding `*` is escaped: it drops its own entries, not every query starting with "r".
    reindex_query("r*");
    assert_eq!(
        searched_pages(&calls),
        vec![true, true, true, true, true, false]
    );

    // A literal prefix matches on the rendered key: "rust" and "rustacean".
    reindex_rust();
    assert_eq!(
        searched_pages(&calls),
        vec![false, false, false, true, true, false]
    );

    reindex();
    assert_eq!(searched_pages(&calls), vec![false; 6]);
    assert_eq!(fn_cache!(search).len(), 0);
}

static SEARCH_LOCK: Mutex<()> = Mutex::new(());

#[test]
fn the_global_prefix_api_matches_the_attribute() {
    let _serial = SEARCH_LOCK.lock().unwrap();
    search("go", 1);
    search("go:lang", 1);
    let removed =
        layercache::invalidate_prefix(&format!("search:{}:", layercache::key::escape("go")));
    assert_eq!(removed, 1);
    assert!(!entry!(search("go", 1)).is_cached());
    assert!(entry!(search("go:lang", 1)).is_cached());
}

counter!(ORDER_CALLS);
static ORDER_LOG: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

#[cached(key_prefix = "order")]
fn ordered(id: u32) -> u32 {
    ORDER_CALLS.fetch_add(1, SeqCst);
    id
}

#[cache_invalidate(ordered(id), before = true)]
fn invalidate_before(id: u32) {
    let cached = entry!(ordered(id)).is_cached();
    ORDER_LOG.lock().unwrap().push(if cached {
        "before:still-cached"
    } else {
        "before:gone"
    });
}

#[cache_invalidate(ordered(id))]
fn invalidate_after(id: u32) {
    let cached = entry!(ordered(id)).is_cached();
    ORDER_LOG.lock().unwrap().push(if cached {
        "after:still-cached"
    } else {
        "after:gone"
    });
}

#[test]
fn before_true_invalidates_before_the_body_and_the_default_after_it() {
    ordered(1);
    invalidate_before(1);
    ordered(1);
    invalidate_after(1);
    assert!(!entry!(ordered(1)).is_cached());
    assert_eq!(
        *ORDER_LOG.lock().unwrap(),
        vec!["before:gone", "after:still-cached"]
    );
}

counter!(STACK_A);
counter!(STACK_B);
#[cached]
fn stack_a(id: u32) -> u32 {
    STACK_A.fetch_add(1, SeqCst);
    id
}
#[cached]
fn stack_b(id: u32) -> u32 {
    STACK_B.fetch_add(1, SeqCst);
    id
}

#[cache_invalidate(stack_a(id))]
#[cache_invalidate(stack_b(id), stack_b(id + 1))]
fn update_both(id: u32) {}

#[test]
fn stacked_attributes_and_several_targets_all_apply() {
    stack_a(1);
    stack_b(1);
    stack_b(2);
    stack_b(3);
    update_both(1);
    assert!(!entry!(stack_a(1)).is_cached());
    assert!(!entry!(stack_b(1)).is_cached());
    assert!(!entry!(stack_b(2)).is_cached());
    assert!(entry!(stack_b(3)).is_cached());
}

// ---------------------------------------------------------------- cache_put

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

counter!(USER_CALLS);
#[cached(key_prefix = "user")]
fn get_user(id: u64) -> Option<User> {
    USER_CALLS.fetch_add(1, SeqCst);
    Some(User {
        id,
        name: "from db".into(),
    })
}

#[cache_put(get_user(user.id))]
fn save_user(user: User) -> Result<User, String> {
    if user.name.is_empty() {
        return Err("empty name".into());
    }
    Ok(user)
}

#[test]
fn cache_put_stores_the_returned_value_as_the_targets_entry() {
    assert_eq!(get_user(5).unwrap().name, "from db");
    save_user(User {
        id: 5,
        name: "Ada".into(),
    })
    .unwrap();
    assert_eq!(get_user(5).unwrap().name, "Ada", "served the put value");
    assert!(save_user(User {
        id: 5,
        name: String::new()
    })
    .is_err());
    assert_eq!(get_user(5).unwrap().name, "Ada", "an Err stores nothing");
    assert_eq!(USER_CALLS.load(SeqCst), 1);
}

#[test]
fn entry_handles_prime_read_and_invalidate_one_call() {
    entry!(get_user(77)).put(User {
        id: 77,
        name: "primed".into(),
    });
    assert_eq!(get_user(77).unwrap().name, "primed");
    assert!(entry!(get_user(77)).invalidate());
    assert!(!entry!(get_user(77)).invalidate(), "nothing left to drop");
}

// ---------------------------------------------------------------- methods

#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct Repo {
    tenant: String,
}

counter!(REPO_CALLS);
// On the block, `#[cached]` names the methods' caches `module::Repo::method`.
#[cached]
impl Repo {
    #[cached(key_prefix = "repo_item", key = "{self.tenant}:{id}")]
    fn item(&self, id: u32) -> String {
        REPO_CALLS.fetch_add(1, SeqCst);
        format!("{}/{id}", self.tenant)
    }

    #[cached]
    fn whole(&self, id: u32) -> String {
        REPO_CALLS.fetch_add(1, SeqCst);
        format!("{}#{id}", self.tenant)
    }

    #[cached]
    fn build(id: u32) -> Self {
        Repo {
            tenant: format!("t{id}"),
        }
    }

    #[cache_invalidate(self.item(id))]
    fn update_item(&mut self, id: u32) {}

    #[cache_invalidate(all = Self::whole)]
    fn reset(&self) {}
}

#[test]
fn methods_key_on_the_fields_named_in_the_template_or_on_self() {
    let mut a = Repo { tenant: "a".into() };
    let b = Repo { tenant: "b".into() };
    assert_eq!(a.item(1), "a/1");
    assert_eq!(b.item(1), "b/1");
    assert_eq!(a.item(1), "a/1");
    assert_eq!(a.whole(1), "a#1");
    assert_eq!(b.whole(1), "b#1");
    assert_eq!(b.whole(1), "b#1");
    assert_eq!(REPO_CALLS.load(SeqCst), 4);

    a.update_item(1);
    assert!(!entry!(a.item(1)).is_cached());
    assert!(entry!(b.item(1)).is_cached());

    a.reset();
    assert!(!entry!(b.whole(1)).is_cached());
    assert_eq!(Repo::build(3), Repo::build(3));
    assert_eq!(
        fn_cache!(Repo::whole).name(),
        "cached_functions::Repo::whole"
    );
}

struct Typed<T>(T);

counter!(TYPED_CALLS);
impl<T: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de> + 'static> Typed<T> {
    // `in_impl` names the cache as `#[cached]` on the block would.
    #[cached(in_impl = "Typed", key = "{id}")]
    fn get(&self, id: u32) -> T {
        TYPED_CALLS.fetch_add(1, SeqCst);
        self.0.clone()
    }
}

#[test]
fn a_method_of_a_generic_impl_gets_one_cache_per_instantiation() {
    let ints = Typed(7u64);
    let strings = Typed(String::from("seven"));
    assert_eq!(ints.get(1), 7);
    assert_eq!(strings.get(1), "seven");
    assert_eq!(ints.get(1), 7);
    assert_eq!(strings.get(1), "seven");
    assert_eq!(TYPED_CALLS.load(SeqCst), 2);
}

// ---------------------------------------------------------------- async

counter!(ASYNC_CALLS);
#[cached(timeout = 300, key_prefix = "async_profile")]
async fn async_profile(user_id: u64) -> Result<String, String> {
    ASYNC_CALLS.fetch_add(1, SeqCst);
    tokio::task::yield_now().await;
    Ok(format!("async {user_id}"))
}

#[cache_invalidate(async_profile(user_id))]
async fn async_update(user_id: u64) -> Result<(), String> {
    tokio::task::yield_now().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_functions_are_cached_and_invalidated_under_tokio() {
    assert_eq!(async_profile(9).await.unwrap(), "async 9");
    assert_eq!(async_profile(9).await.unwrap(), "async 9");
    assert_eq!(ASYNC_CALLS.load(SeqCst), 1);
    async_update(9).await.unwrap();
    assert_eq!(async_profile(9).await.unwrap(), "async 9");
    assert_eq!(ASYNC_CALLS.load(SeqCst), 2);
    // The future of a cached async fn is Send: it can be spawned.
    let spawned = tokio::spawn(async_profile(10)).await.unwrap();
    assert_eq!(spawned.unwrap(), "async 10");
}

// ---------------------------------------------------------------- metrics

counter!(METRIC_CALLS);
#[cached(key_prefix = "metrics_script", key = "{id}")]
fn scripted(id: u32) -> Result<u32, String> {
    METRIC_CALLS.fetch_add(1, SeqCst);
    if id == 0 {
        Err("zero".into())
    } else {
        Ok(id)
    }
}

#[cache_invalidate(scripted(id))]
fn touch(id: u32) {}

#[test]
fn metrics_count_exactly_after_a_scripted_sequence() {
    for id in [1, 1, 2, 1, 0, 0, 2] {
        let _ = scripted(id);
    }
    touch(1);
    let _ = scripted(1);
    let stats = layercache::stats();
    let s = stats
        .function("metrics_script")
        .expect("registered on first call");
    // calls: 1 miss, 1 hit, 2 miss, 1 hit, 0 miss (Err), 0 miss (Err), 2 hit, [invalidate 1], 1 miss
    assert_eq!(s.hits, 3);
    assert_eq!(s.local_hits, 3);
    assert_eq!(s.shared_hits, 0);
    assert_eq!(s.misses, 5);
    assert_eq!(s.not_cached, 2);
    assert_eq!(s.invalidations, 1);
    assert_eq!(s.entries, 2);
    assert_eq!(s.origin_latency.count, 5);
    assert!((s.hit_rate() - 3.0 / 8.0).abs() < 1e-12);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["hits"], 3);
    assert_eq!(json["hit_rate"], 0.375);
    assert_eq!(json["origin_latency"]["count"], 5);
    assert!(
        stats.to_string().contains("metrics_script"),
        "the table names the function"
    );
}

counter!(BOUNDED_CALLS);
#[cached(max_entries = 64)]
fn bounded(id: u32) -> u32 {
    BOUNDED_CALLS.fetch_add(1, SeqCst);
    id
}

#[test]
fn max_entries_bounds_the_local_tier_and_evictions_are_counted() {
    for id in 0..1_000 {
        bounded(id);
    }
    let s = fn_cache!(bounded).stats();
    assert!(s.entries <= 64, "{} entries over a bound of 64", s.entries);
    assert!(s.evictions >= 1_000 - 64, "{} evictions", s.evictions);
}

// ---------------------------------------------------------------- robustness

counter!(PANIC_CALLS);
#[cached(key_prefix = "panicky")]
fn panicky(id: u32) -> u32 {
    if PANIC_CALLS.fetch_add(1, SeqCst) == 0 {
        panic!("first call fails");
    }
    id
}

#[test]
fn a_panicking_function_stores_nothing_is_counted_and_the_next_call_computes() {
    let caught = std::panic::catch_unwind(|| panicky(1));
    assert!(caught.is_err(), "the panic reaches the caller");
    assert_eq!(panicky(1), 1);
    assert_eq!(panicky(1), 1);
    assert_eq!(PANIC_CALLS.load(SeqCst), 2);
    let s = fn_cache!(panicky).stats();
    assert_eq!(s.origin_panics, 1);
    assert_eq!(s.hits, 1);
}

counter!(FIB_CALLS);
#[cached]
fn fib(n: u64) -> u64 {
    FIB_CALLS.fetch_add(1, SeqCst);
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn a_recursive_cached_function_does_not_deadlock_and_computes_each_argument_once() {
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(FIB_CALLS.load(SeqCst), 91);
}

counter!(RACE_CALLS);
static RACE_GATE: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>> =
    Mutex::new(None);

#[cached(key_prefix = "race")]
fn racy(id: u32) -> u32 {
    RACE_CALLS.fetch_add(1, SeqCst);
    // Tell the test we are computing, then wait until it has invalidated.
    if let Some((started, resume)) = RACE_GATE.lock().unwrap().take() {
        started.send(()).unwrap();
        resume.recv().unwrap();
    }
    id
}

#[test]
fn an_invalidation_during_a_computation_keeps_its_stale_result_out_of_the_cache() {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    *RACE_GATE.lock().unwrap() = Some((started_tx, resume_rx));
    let worker = std::thread::spawn(|| racy(1));
    started_rx.recv().unwrap();
    assert!(!entry!(racy(1)).invalidate(), "nothing cached yet");
    resume_tx.send(()).unwrap();
    assert_eq!(worker.join().unwrap(), 1);
    assert!(
        !entry!(racy(1)).is_cached(),
        "the computation that raced an invalidation was not stored"
    );
    assert_eq!(fn_cache!(racy).stats().not_cached, 1);
    racy(1);
    assert!(entry!(racy(1)).is_cached());
}

counter!(THREAD_CALLS);
#[cached(key_prefix = "threads")]
fn shared_across_threads(id: u32) -> u32 {
    THREAD_CALLS.fetch_add(1, SeqCst);
    id * 3
}

#[test]
fn many_threads_read_the_same_entries_consistently() {
    for id in 0..16 {
        shared_across_threads(id);
    }
    let handles: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                for round in 0..1_000u32 {
                    let id = round % 16;
                    assert_eq!(shared_across_threads(id), id * 3);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(THREAD_CALLS.load(SeqCst), 16);
    let s = fn_cache!(shared_across_threads).stats();
    assert_eq!(s.hits, 8_000);
    assert!(s.hit_latency.count > 0, "some hits were timed");
}

// ---------------------------------------------------------------- paths, async methods, associated functions

mod users {
    use super::*;

    counter!(NAME_CALLS);
    #[cached(key_prefix = "users_name")]
    pub fn name(id: u64) -> String {
        NAME_CALLS.fetch_add(1, SeqCst);
        format!("user {id}")
    }

    pub fn name_calls() -> usize {
        NAME_CALLS.load(SeqCst)
    }
}

#[cache_invalidate(users::name(id))]
fn rename(id: u64) {}

#[test]
fn targets_in_other_modules_are_named_by_path() {
    users::name(1);
    users::name(1);
    assert_eq!(users::name_calls(), 1);
    rename(1);
    assert!(!entry!(users::name(1)).is_cached());
}

struct Service {
    region: &'static str,
}

counter!(SERVICE_CALLS);
impl Service {
    #[cached(key_prefix = "service_quote", key = "{self.region}:{item}")]
    async fn quote(&self, item: u32) -> Result<String, String> {
        SERVICE_CALLS.fetch_add(1, SeqCst);
        tokio::task::yield_now().await;
        Ok(format!("{}:{item}", self.region))
    }

    #[cache_invalidate(self.quote(item))]
    async fn reprice(&self, item: u32) -> Result<(), String> {
        Ok(())
    }

    #[cached(in_impl, key_prefix = "service_default_region")]
    fn default_region(fallback: u32) -> u32 {
        SERVICE_CALLS.fetch_add(100, SeqCst);
        fallback
    }
}

#[tokio::test]
async fn async_methods_and_associated_functions_are_cached() {
    let eu = Service { region: "eu" };
    assert_eq!(eu.quote(1).await.unwrap(), "eu:1");
    assert_eq!(eu.quote(1).await.unwrap(), "eu:1");
    assert_eq!(SERVICE_CALLS.load(SeqCst), 1);
    eu.reprice(1).await.unwrap();
    assert!(!entry!(eu.quote(1)).is_cached());
    assert_eq!(Service::default_region(5), 5);
    assert_eq!(Service::default_region(5), 5);
    assert_eq!(SERVICE_CALLS.load(SeqCst), 101);
}

// ---------------------------------------------------------------- review findings

counter!(HYGIENE_CALLS);
#[cached]
#[allow(non_snake_case)]
fn hygiene(__lc_key: u32, __lc_cache: u32) -> u32 {
    HYGIENE_CALLS.fetch_add(1, SeqCst);
    __lc_key + __lc_cache
}

#[test]
fn argument_names_never_collide_with_generated_locals() {
    assert_eq!(hygiene(1, 2), 3);
    assert_eq!(hygiene(1, 2), 3);
    assert_eq!(HYGIENE_CALLS.load(SeqCst), 1);
}

counter!(OWNED_CALLS);
#[cached(key_prefix = "owned_arg")]
fn owned_arg(name: String) -> usize {
    OWNED_CALLS.fetch_add(1, SeqCst);
    name.len()
}

#[cache_invalidate(owned_arg(name))]
fn consume(name: String) -> String {
    name // the body still owns its argument: the target's key was built from a clone
}

#[test]
fn targets_with_owned_arguments_do_not_move_them_out_of_the_body() {
    owned_arg("ada".to_string());
    assert_eq!(consume("ada".to_string()), "ada");
    assert!(!entry!(owned_arg("ada".to_string())).is_cached());
}

counter!(BORROW_TARGET_CALLS);
#[cached]
fn borrow_target(x: u32) -> u32 {
    BORROW_TARGET_CALLS.fetch_add(1, SeqCst);
    x
}

#[cache_invalidate(all = borrow_target)]
fn evens(limit: u64) -> impl Iterator<Item = u64> {
    (0..limit).filter(|n| n.is_multiple_of(2))
}

struct Buffer(Vec<u8>);

impl Buffer {
    #[cache_invalidate(borrow_target(2))]
    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[test]
fn invalidating_functions_may_return_impl_trait_and_borrows() {
    borrow_target(1);
    assert_eq!(evens(5).collect::<Vec<_>>(), vec![0, 2, 4]);
    assert!(
        !entry!(borrow_target(1)).is_cached(),
        "the impl Trait function invalidated"
    );
    borrow_target(2);
    let mut b = Buffer(vec![1]);
    b.bytes_mut().push(2);
    assert_eq!(b.0, vec![1, 2]);
    assert!(
        !entry!(borrow_target(2)).is_cached(),
        "the borrowing method invalidated"
    );
}

#[cached]
fn with_local_impl(x: u32) -> u32 {
    struct Doubler;
    impl Doubler {
        fn new() -> Self {
            Doubler
        }
        fn apply(&self, x: u32) -> u32 {
            x * 2
        }
    }
    Doubler::new().apply(x)
}

#[test]
fn self_inside_a_nested_item_does_not_make_a_free_function_a_method() {
    assert_eq!(with_local_impl(4), 8);
    assert!(entry!(with_local_impl(4)).is_cached());
}

type ApiResult<T> = Result<T, String>;

counter!(ALIAS_TARGET_CALLS);
#[cached]
fn alias_target(id: u32) -> u32 {
    ALIAS_TARGET_CALLS.fetch_add(1, SeqCst);
    id
}

#[cache_invalidate(alias_target(id), output = "result")]
fn alias_update(id: u32, fail: bool) -> ApiResult<()> {
    if fail {
        Err("failed".into())
    } else {
        Ok(())
    }
}

#[cache_put(alias_target(id), output = "result")]
fn alias_store(id: u32, value: u32) -> ApiResult<u32> {
    if value == 0 {
        Err("zero".into())
    } else {
        Ok(value)
    }
}

#[test]
fn invalidate_and_put_on_an_aliased_result_follow_the_output_option() {
    alias_target(1);
    assert!(alias_update(1, true).is_err());
    assert!(
        entry!(alias_target(1)).is_cached(),
        "an Err of the alias does not invalidate"
    );
    alias_update(1, false).unwrap();
    assert!(!entry!(alias_target(1)).is_cached());
    assert!(alias_store(1, 0).is_err());
    assert!(
        !entry!(alias_target(1)).is_cached(),
        "an Err of the alias stores nothing"
    );
    alias_store(1, 42).unwrap();
    assert_eq!(entry!(alias_target(1)).get(), Some(42));
}

counter!(ALIAS_CALLS);
#[cached(output = "result")]
fn aliased(id: u32) -> ApiResult<u32> {
    ALIAS_CALLS.fetch_add(1, SeqCst);
    if id == 0 {
        Err("zero".into())
    } else {
        Ok(id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SearchResult {
    hits: u32,
}

#[cached]
fn search_result(hits: u32) -> SearchResult {
    SearchResult { hits }
}

#[test]
fn output_mode_follows_the_type_name_or_the_output_option() {
    assert!(aliased(0).is_err());
    assert!(aliased(0).is_err());
    assert_eq!(
        ALIAS_CALLS.load(SeqCst),
        2,
        "Err of an aliased Result is not cached"
    );
    // A struct whose name merely ends in "Result" is an ordinary value.
    assert_eq!(search_result(3), SearchResult { hits: 3 });
    assert!(entry!(search_result(3)).is_cached());
}

#[cached(key_prefix = "tenant_data", key = "{tenant}:{id}")]
fn tenant_data(tenant: &str, id: u32) -> String {
    format!("{tenant}/{id}")
}

#[cache_invalidate(prefix = "{tenant}")]
fn drop_tenant(tenant: &str) {}

#[test]
fn a_prefix_template_that_renders_empty_drops_nothing() {
    tenant_data("acme", 1);
    drop_tenant("");
    assert!(
        entry!(tenant_data("acme", 1)).is_cached(),
        "an empty prefix must not wipe the caches"
    );
    assert_eq!(layercache::invalidate_prefix(""), 0);
}

#[test]
fn a_manual_value_computed_while_its_key_was_deleted_is_not_stored() {
    let cache = layercache::sync::Cache::global();
    let v = cache.get_or_insert_with("review:raced", Duration::from_secs(60), || {
        cache.delete("review:raced"); // another request deletes the key mid-computation
        7u32
    });
    assert_eq!(v, 7, "the caller still gets its value");
    assert_eq!(
        cache.get::<u32>("review:raced"),
        None,
        "but the possibly stale value is not cached"
    );
}
