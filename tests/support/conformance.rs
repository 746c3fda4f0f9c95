//! The conformance suite of [`SharedStore`]: what every shared backend
//! must do, written once and run against each (`tests/store_conformance.rs`).
//!
//! A backend module provides two openers, `fn open() -> Backend` (a fresh,
//! empty, working store) and `fn open_down() -> Backend` (a store whose
//! server is gone, or whose files cannot be used), and writes
//! `conformance_suite!(open, open_down);`, which expands to one `#[test]`
//! per behaviour below. Each test runs on its own multi-thread tokio
//! runtime, and the openers are called inside it.
//!
//! Timing is in milliseconds: TTLs of tens of ms, polled until they take
//! effect, with a generous limit so a loaded machine does not fail them.
#![allow(dead_code)]

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercache::shared::{SharedStore, RESERVED_PREFIX};

/// A store under test and whatever keeps it alive (a server process, a
/// temporary directory).
pub struct Backend {
    pub store: Arc<dyn SharedStore>,
    /// The largest value the backend is configured to take.
    pub max_value_size: usize,
    pub guard: Box<dyn Any + Send>,
}

/// Runs `check` on a fresh multi-thread runtime.
pub fn run<F: std::future::Future<Output = ()>>(check: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::time::timeout(Duration::from_secs(60), check())
            .await
            .expect("a conformance check hung for 60 s")
    });
}

/// Polls `f` every 5 ms until it is true, for at most `limit`; returns how long it took.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if f().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

async fn get(s: &dyn SharedStore, key: &str) -> Option<Vec<u8>> {
    s.get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
}

async fn set(s: &dyn SharedStore, key: &str, value: &[u8], ttl: Option<Duration>) {
    s.set(key, value.to_vec(), ttl)
        .await
        .unwrap_or_else(|e| panic!("set {key:?}: {e}"));
}

pub async fn a_value_set_is_read_back_and_overwritten(b: &Backend) {
    let s = &*b.store;
    assert_eq!(get(s, "conf:absent").await, None);
    set(s, "conf:k", b"one", Some(Duration::from_secs(60))).await;
    assert_eq!(get(s, "conf:k").await.as_deref(), Some(&b"one"[..]));
    set(s, "conf:k", b"two, longer than one", None).await;
    assert_eq!(
        get(s, "conf:k").await.as_deref(),
        Some(&b"two, longer than one"[..])
    );
    set(s, "conf:k", b"", None).await;
    assert_eq!(
        get(s, "conf:k").await.as_deref(),
        Some(&b""[..]),
        "an empty value is a value, not a miss"
    );
}

/// A TTL too long to add to the current time (`Duration::MAX`, or seconds
/// near `u64::MAX`) is "about forever": never an overflow, a panic or an
/// entry that expires at once.
pub async fn a_value_with_a_huge_ttl_is_read_back(b: &Backend) {
    let s = &*b.store;
    for (i, ttl) in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 1000),
        Duration::from_secs(200 * 365 * 24 * 3600),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("conf:huge:{i}");
        set(s, &key, b"kept", Some(ttl)).await;
        assert_eq!(get(s, &key).await.as_deref(), Some(&b"kept"[..]), "{ttl:?}");
        s.add_to_tags(&[format!("tag:huge:{i}")], &key, Some(ttl))
            .await
            .unwrap();
        assert!(s
            .try_lock(&format!("lock:huge:{i}"), "t", ttl)
            .await
            .unwrap());
        assert!(!s
            .try_lock(&format!("lock:huge:{i}"), "u", ttl)
            .await
            .unwrap());
    }
    // Still there after the tag and lock writes, and a tag still finds it.
    assert_eq!(get(s, "conf:huge:0").await.as_deref(), Some(&b"kept"[..]));
    assert_eq!(s.delete_tag("tag:huge:0").await.unwrap(), 1);
    assert_eq!(get(s, "conf:huge:0").await, None);
}

pub async fn delete_removes_keys_and_counts_only_those_that_existed(b: &Backend) {
    let s = &*b.store;
    set(s, "conf:d1", b"1", None).await;
    set(s, "conf:d2", b"2", Some(Duration::from_secs(60))).await;
    set(s, "conf:d3", b"3", None).await;
    let n = s
        .delete(&keys(&["conf:d1", "conf:d2", "conf:never"]), None)
        .await
        .unwrap();
    assert_eq!(n, 2, "two of the three keys existed");
    assert_eq!(get(s, "conf:d1").await, None);
    assert_eq!(get(s, "conf:d2").await, None);
    assert_eq!(get(s, "conf:d3").await.as_deref(), Some(&b"3"[..]));
    assert_eq!(s.delete(&keys(&["conf:d1"]), None).await.unwrap(), 0);
    assert_eq!(s.delete(&[], None).await.unwrap(), 0, "nothing to delete");
    // A notice may ride along; the count is the same.
    assert_eq!(
        s.delete(&keys(&["conf:d3"]), Some("1\tx\tc\t\t"))
            .await
            .unwrap(),
        1
    );
}

pub async fn entries_expire_after_their_millisecond_ttl(b: &Backend) {
    let s = &*b.store;
    set(s, "conf:short", b"v", Some(Duration::from_millis(60))).await;
    set(s, "conf:long", b"v", Some(Duration::from_secs(60))).await;
    set(s, "conf:forever", b"v", None).await;
    assert!(get(s, "conf:short").await.is_some(), "alive before its ttl");
    let took = eventually(Duration::from_secs(3), || async {
        get(s, "conf:short").await.is_none()
    })
    .await
    .expect("a 60 ms entry was still there after 3 s");
    assert!(took >= Duration::from_millis(30), "gone after {took:?}");
    assert!(get(s, "conf:long").await.is_some());
    assert!(get(s, "conf:forever").await.is_some());
    assert_eq!(
        s.delete(&keys(&["conf:short"]), None).await.unwrap(),
        0,
        "an expired entry does not count as existing"
    );
}

/// Sliding expiration (`time_to_idle`): a store that can touch keeps an
/// entry read with `get_and_touch` past its first TTL, lets an unread one
/// expire, and never creates a missing key; one that cannot says so and
/// answers the call with an error.
pub async fn a_touching_read_moves_the_expiry_or_the_store_says_it_cannot(b: &Backend) {
    let s = &*b.store;
    let ttl = Duration::from_secs(1);
    set(s, "conf:touched", b"t", Some(ttl)).await;
    set(s, "conf:untouched", b"u", Some(ttl)).await;
    if !s.can_touch() {
        assert!(s.get_and_touch("conf:touched", ttl).await.is_err());
        return;
    }
    let started = Instant::now();
    // Three TTLs: memcached keeps items whole seconds (rounded up, plus one).
    while started.elapsed() < ttl * 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            s.get_and_touch("conf:touched", ttl)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"t"[..]),
            "read every 100 ms, after {:?}",
            started.elapsed()
        );
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            get(s, "conf:untouched").await.is_none()
        })
        .await
        .is_some(),
        "an entry nobody read outlived its ttl"
    );
    assert_eq!(s.get_and_touch("conf:missing", ttl).await.unwrap(), None);
    assert_eq!(
        get(s, "conf:missing").await,
        None,
        "a touch creates nothing"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(s, "conf:touched").await.is_none()
        })
        .await
        .is_some(),
        "a touched entry outlived its last touch"
    );
}

/// Keys holding characters that are patterns somewhere: glob (`*?[]`),
/// SQL `LIKE` (`%_`), paths (`/`, `..`, `\`).
const TRICKY_PREFIXES: &[&str] = &["p*", "p?", "p[a]", "p%", "p_", "p/..", "p\\"];

pub async fn delete_prefix_is_literal_and_keeps_reserved_keys(b: &Backend) {
    let s = &*b.store;
    for p in TRICKY_PREFIXES {
        set(s, &format!("lit:{p}:1"), b"x", None).await;
        set(
            s,
            &format!("lit:{p}:2"),
            b"x",
            Some(Duration::from_secs(60)),
        )
        .await;
    }
    // What each prefix would also match as a pattern.
    let bystanders = [
        "lit:pX:1", "lit:pa:1", "lit:pZ:1", "lit:p:1", "lit:q:1", "lit:p/x", "lit:P*:1", "lit;p*:1",
    ];
    for k in bystanders {
        set(s, k, b"x", None).await;
    }
    let reserved = format!("{RESERVED_PREFIX}version:lit:p*");
    set(s, &reserved, b"7", None).await;
    for p in TRICKY_PREFIXES {
        let n = s.delete_prefix(&format!("lit:{p}:")).await.unwrap();
        assert_eq!(n, 2, "prefix lit:{p}: deletes exactly its two keys");
        assert_eq!(get(s, &format!("lit:{p}:1")).await, None);
    }
    for k in bystanders {
        assert!(get(s, k).await.is_some(), "{k:?} was deleted by a pattern");
    }
    assert!(get(s, &reserved).await.is_some());
    assert_eq!(
        s.delete_prefix(RESERVED_PREFIX).await.unwrap(),
        0,
        "reserved keys are kept even when named"
    );
    assert!(get(s, &reserved).await.is_some());
}

pub async fn deleting_the_empty_prefix_clears_everything_but_reserved_keys(b: &Backend) {
    let s = &*b.store;
    for i in 0..25 {
        set(s, &format!("clear:{i}"), b"x", None).await;
    }
    set(s, "other", b"x", Some(Duration::from_secs(60))).await;
    let v = s
        .bump_version("__layercache__:version:clear", 1000)
        .await
        .unwrap();
    assert_eq!(s.delete_prefix("").await.unwrap(), 26);
    assert_eq!(get(s, "clear:3").await, None);
    assert_eq!(get(s, "other").await, None);
    assert_eq!(
        s.read_version("__layercache__:version:clear")
            .await
            .unwrap(),
        v,
        "versions survive a clear"
    );
}

pub async fn versions_start_at_zero_and_every_bump_returns_a_new_higher_number(b: &Backend) {
    let s = &*b.store;
    let key = format!("{RESERVED_PREFIX}version:conf:fn");
    // Missing: 0, or (a store that may lose its version keys: memcached)
    // the current Unix time in ms, kept, so lost numbers are not reused.
    let test_started_ms = unix_ms();
    let missing = s.read_version(&key).await.unwrap();
    assert!(
        missing == 0 || missing >= test_started_ms,
        "missing = 0 or now, not {missing}"
    );
    assert_eq!(s.read_version(&key).await.unwrap(), missing, "and stays");
    let now_ms = 1_700_000_000_000;
    let first = s.bump_version(&key, now_ms).await.unwrap();
    assert_eq!(
        first,
        missing.max(now_ms) + 1,
        "a missing version starts from now"
    );
    assert_eq!(s.read_version(&key).await.unwrap(), first);
    let second = s.bump_version(&key, now_ms + 999_999).await.unwrap();
    assert_eq!(second, first + 1, "an existing version is incremented");
    // Concurrent bumps: every caller gets its own number, none lost.
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (store, key) = (b.store.clone(), key.clone());
            tokio::spawn(async move { store.bump_version(&key, 0).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, ((second + 1)..=(second + 40)).collect::<Vec<_>>());
    assert_eq!(s.read_version(&key).await.unwrap(), second + 40);
    // A version that is not a number (not written by us) reads as 0.
    set(
        s,
        &format!("{RESERVED_PREFIX}version:conf:junk"),
        b"not a number",
        None,
    )
    .await;
    assert_eq!(
        s.read_version(&format!("{RESERVED_PREFIX}version:conf:junk"))
            .await
            .unwrap(),
        0
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A value whose bytes say how long it is and what it was filled from, so a
/// torn read (parts of two writes, or a short file) is detected.
fn checked_value(writer: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(12));
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    let fill = (writer.wrapping_mul(31).wrapping_add(seq) % 251) as u8;
    v.resize(len.max(12), fill);
    v
}

/// Panics unless `v` is one whole [`checked_value`].
pub fn assert_whole(v: &[u8]) {
    assert!(v.len() >= 12, "a torn value of {} bytes", v.len());
    let len = u32::from_le_bytes(v[0..4].try_into().unwrap()) as usize;
    let writer = u32::from_le_bytes(v[4..8].try_into().unwrap());
    let seq = u32::from_le_bytes(v[8..12].try_into().unwrap());
    assert_eq!(
        v.len(),
        len.max(12),
        "length of writer {writer}'s value {seq}"
    );
    assert_eq!(
        v,
        &checked_value(writer, seq, len)[..],
        "writer {writer}'s value {seq} is torn"
    );
}

pub async fn concurrent_writers_never_produce_a_torn_value(b: &Backend) {
    let store = b.store.clone();
    let shared_keys = ["torn:a", "torn:b", "torn:c"];
    let mut tasks = Vec::new();
    for writer in 0..12u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..40u32 {
                // Sizes from 12 bytes to ~96 KiB: several pages, several writes.
                let len = 12 + ((writer as usize * 7919 + seq as usize * 104_729) % 98_000);
                let key = if seq.is_multiple_of(2) {
                    shared_keys[(seq as usize / 2) % 3].to_string()
                } else {
                    format!("torn:own:{writer}")
                };
                store
                    .set(&key, checked_value(writer, seq, len), None)
                    .await
                    .unwrap();
                for k in shared_keys.iter().map(|k| k.to_string()).chain([key]) {
                    if let Some(v) = store.get(&k).await.unwrap() {
                        assert_whole(&v);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a writer panicked: a read was torn");
    }
    for k in shared_keys {
        assert_whole(&get(&*store, k).await.expect("written"));
    }
    for writer in 0..12 {
        let v = get(&*store, &format!("torn:own:{writer}")).await.unwrap();
        assert_whole(&v);
        let seq = u32::from_le_bytes(v[8..12].try_into().unwrap());
        assert_eq!(seq, 39, "each writer's own key holds its last write");
    }
}

pub async fn a_value_at_the_size_limit_round_trips(b: &Backend) {
    let s = &*b.store;
    let big: Vec<u8> = (0..b.max_value_size).map(|i| (i * 7 % 256) as u8).collect();
    set(s, "conf:big", &big, Some(Duration::from_secs(60))).await;
    assert_eq!(get(s, "conf:big").await.as_deref(), Some(&big[..]));
}

pub async fn bytes_we_did_not_write_come_back_unchanged(b: &Backend) {
    let s = &*b.store;
    let samples: [&[u8]; 5] = [
        b"\0\0\0\0",
        b"\xff\xfe not utf-8 \xc3\x28",
        b"LC\x01 a forged envelope header",
        b"LCFS\x01 our file magic, inside a value",
        b"\r\nEND\r\nSTORED\r\n",
    ];
    for (i, v) in samples.iter().enumerate() {
        set(s, &format!("garbage:{i}"), v, None).await;
    }
    for (i, v) in samples.iter().enumerate() {
        assert_eq!(get(s, &format!("garbage:{i}")).await.as_deref(), Some(*v));
    }
}

/// Keys that are paths, wildcards, separators, long or not ASCII.
pub const TRICKY_KEYS: &[&str] = &[
    "../../etc/passwd",
    "/etc/passwd",
    "a/b/../../c",
    "..",
    ".",
    "a\\b",
    "*",
    "?",
    "[a-z]",
    "%",
    "_",
    "with space",
    "tab\there",
    "line\nbreak",
    "ünïcödé:ключ",
    "",
];

pub async fn keys_with_paths_wildcards_and_separators_stay_distinct(b: &Backend) {
    let s = &*b.store;
    let long = "k".repeat(400);
    let mut all: Vec<String> = TRICKY_KEYS.iter().map(|k| k.to_string()).collect();
    all.push(long.clone());
    all.push(format!("{long}x"));
    for (i, k) in all.iter().enumerate() {
        set(s, k, format!("value {i}").as_bytes(), None).await;
    }
    for (i, k) in all.iter().enumerate() {
        assert_eq!(
            get(s, k).await,
            Some(format!("value {i}").into_bytes()),
            "key {k:?}"
        );
    }
    assert_eq!(s.delete(&all, None).await.unwrap(), all.len() as u64);
}

pub async fn operations_on_a_store_that_is_down_fail_with_a_shared_error(b: &Backend) {
    let s = &*b.store;
    let limit = Duration::from_secs(5);
    let started = Instant::now();
    macro_rules! fails {
        ($op:expr) => {
            let r = tokio::time::timeout(limit, $op)
                .await
                .unwrap_or_else(|_| panic!("{} hung", stringify!($op)));
            assert!(
                r.is_err(),
                "{} did not fail: {:?}",
                stringify!($op),
                r.map(|_| ())
            );
        };
    }
    fails!(s.set("down:k", b"v".to_vec(), None));
    fails!(s.get("down:k"));
    fails!(s.delete(&keys(&["down:k"]), None));
    fails!(s.bump_version("__layercache__:version:down", 1));
    fails!(s.read_version("__layercache__:version:down"));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "failing took {elapsed:?}"
    );
}

pub async fn a_store_that_cannot_list_keys_refuses_prefix_deletion_and_deletes_nothing(
    b: &Backend,
) {
    let s = &*b.store;
    assert!(!s.can_delete_prefix());
    set(s, "lit:a", b"x", None).await;
    let err = s.delete_prefix("lit:").await.unwrap_err();
    assert!(err.message.contains("prefix"), "{err}");
    assert!(get(s, "lit:a").await.is_some());
}

/// `lock = true` and `tags = [...]` need these: a lock has one holder
/// until it is released by that holder or expires; a tag set names its
/// members, and deleting it deletes them and itself.
pub async fn a_lock_is_held_until_released_or_expired_and_tag_sets_delete_their_members(
    b: &Backend,
) {
    let s = &*b.store;
    let ttl = Duration::from_millis(50);
    assert!(s.try_lock("lock:k", "a", ttl).await.unwrap());
    assert!(!s.try_lock("lock:k", "b", ttl).await.unwrap(), "held by a");
    s.unlock("lock:k", "b").await.unwrap();
    assert!(
        !s.try_lock("lock:k", "b", ttl).await.unwrap(),
        "b cannot release a's lock"
    );
    s.unlock("lock:k", "a").await.unwrap();
    assert!(
        s.try_lock("lock:k", "b", ttl).await.unwrap(),
        "released by a"
    );
    let expired = eventually(Duration::from_secs(3), || async {
        s.try_lock("lock:k", "c", ttl).await.unwrap()
    })
    .await;
    assert!(expired.is_some(), "the lock expired");

    for k in ["t:1", "t:2", "t:3"] {
        s.set(k, b"v".to_vec(), None).await.unwrap();
    }
    let sets = ["tag:user:1".to_string(), "tag:user:2".to_string()];
    s.add_to_tags(&sets, "t:1", None).await.unwrap();
    s.add_to_tags(&sets[..1], "t:2", Some(ttl)).await.unwrap();
    assert_eq!(s.delete_tag("tag:user:1").await.unwrap(), 2);
    assert_eq!(s.get("t:1").await.unwrap(), None);
    assert_eq!(s.get("t:2").await.unwrap(), None);
    assert!(s.get("t:3").await.unwrap().is_some(), "not tagged");
    assert_eq!(
        s.delete_tag("tag:user:1").await.unwrap(),
        0,
        "the set went too"
    );
    assert_eq!(s.delete_tag("tag:user:2").await.unwrap(), 1);

    // A set grows by distinct members, not by writes of one member.
    s.set("t:4", b"v".to_vec(), None).await.unwrap();
    let set = ["tag:rewritten".to_string()];
    for _ in 0..100 {
        s.add_to_tags(&set, "t:4", Some(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    assert_eq!(s.delete_tag("tag:rewritten").await.unwrap(), 1);
    assert_eq!(s.get("t:4").await.unwrap(), None);
}

/// A caller that stops waiting for a delete with a notice (the tier's
/// timeout drops the future) must not leave the key deleted and the notice
/// unsent: other processes would keep their copies with no gap to see.
/// The future is polled once, the key watched until it is gone, and then
/// the future is dropped, as a timeout between the two steps would.
pub async fn a_delete_whose_caller_stops_waiting_still_publishes_its_notice(b: &Backend) {
    use layercache::shared::BusEvent;
    use std::sync::Mutex;
    let s = &*b.store;
    // A notice before subscribing: the log exists, so the subscriber
    // starts from its current number and replays what follows.
    s.publish("1\tconf\tc\t\t").await.unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = {
        let (got, up) = (got.clone(), up.clone());
        Arc::new(move |event| match event {
            BusEvent::Message(m) => got.lock().unwrap().push(m),
            BusEvent::Subscribed { .. } => up.store(true, std::sync::atomic::Ordering::SeqCst),
            BusEvent::Down { .. } => {}
        })
    };
    let Some(subscription) = b.store.subscribe(handler) else {
        return;
    };
    let task = tokio::spawn(subscription);
    let subscribed = eventually(Duration::from_secs(5), || async {
        up.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert!(subscribed.is_some(), "no subscription");
    set(s, "conf:cancelled", b"v", None).await;
    let notice = "1\tconf\tk\tns\tcancelled";
    let targets = keys(&["conf:cancelled"]);
    let mut delete = s.delete(&targets, Some(notice));
    std::future::poll_fn(|cx| {
        let _ = delete.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    let deleted = eventually(Duration::from_secs(5), || async {
        get(s, "conf:cancelled").await.is_none()
    })
    .await;
    drop(delete);
    assert!(
        deleted.is_some(),
        "the delete did not start when first polled"
    );
    let published = eventually(Duration::from_secs(5), || async {
        got.lock().unwrap().iter().any(|m| m == notice)
    })
    .await;
    task.abort();
    assert!(
        published.is_some(),
        "the key was deleted but its notice never reached the bus: {:?}",
        got.lock().unwrap()
    );
}

/// One `#[test]` per behaviour of the suite, for the backend opened by
/// `$open` (and, for the failure test, `$open_down`). A store that cannot
/// list its keys (memcached) says `without_prefix_deletion`: its two prefix
/// tests are replaced by one that checks the refusal (the pipeline then
/// uses versions, tested in `tests/backend_fleet.rs`).
#[allow(unused_macros)]
macro_rules! conformance_suite {
    ($open:path, $open_down:path, without_prefix_deletion) => {
        conformance_suite!(@common $open, $open_down);
        conformance_suite!(@tests $open;
            a_store_that_cannot_list_keys_refuses_prefix_deletion_and_deletes_nothing
        );
    };
    ($open:path, $open_down:path) => {
        conformance_suite!(@common $open, $open_down);
        conformance_suite!(@tests $open;
            delete_prefix_is_literal_and_keeps_reserved_keys,
            deleting_the_empty_prefix_clears_everything_but_reserved_keys
        );
    };
    (@common $open:path, $open_down:path) => {
        conformance_suite!(@tests $open;
            a_value_set_is_read_back_and_overwritten,
            delete_removes_keys_and_counts_only_those_that_existed,
            entries_expire_after_their_millisecond_ttl,
            versions_start_at_zero_and_every_bump_returns_a_new_higher_number,
            concurrent_writers_never_produce_a_torn_value,
            a_value_at_the_size_limit_round_trips,
            bytes_we_did_not_write_come_back_unchanged,
            keys_with_paths_wildcards_and_separators_stay_distinct,
            a_touching_read_moves_the_expiry_or_the_store_says_it_cannot,
            a_lock_is_held_until_released_or_expired_and_tag_sets_delete_their_members
        );
        #[test]
        fn operations_on_a_store_that_is_down_fail_with_a_shared_error() {
            $crate::conformance::run(|| async {
                let b = $open_down();
                $crate::conformance::operations_on_a_store_that_is_down_fail_with_a_shared_error(&b).await
            });
        }
    };
    (@tests $open:path; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(|| async {
                    let b = $open();
                    $crate::conformance::$name(&b).await
                });
            }
        )*
    };
}
pub(crate) use conformance_suite;
