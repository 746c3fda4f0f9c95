//! Every shared backend passes the same conformance suite
//! (`tests/support/conformance.rs`), against a real server or real files.

#[path = "support/conformance.rs"]
mod conformance;

#[cfg(any(feature = "redis", feature = "memcached"))]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
mod redis {
    use std::sync::Arc;

    use layercache::shared::redis::RedisStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, Backend};
    use super::redis_server::RedisServer;

    fn store(url: &str) -> Arc<RedisStore> {
        Arc::new(
            RedisStore::open(
                url,
                "__layercache__:bus:conf".into(),
                &SharedSettings::default(),
            )
            .unwrap(),
        )
    }

    fn open() -> Backend {
        let server = RedisServer::start_unmonitored();
        Backend {
            store: store(&server.url()),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(server),
        }
    }

    fn open_down() -> Backend {
        let mut server = RedisServer::start_unmonitored();
        let url = server.url();
        server.stop();
        Backend {
            store: store(&url),
            max_value_size: 0,
            guard: Box::new(server),
        }
    }

    conformance_suite!(open, open_down);
    conformance_suite!(@tests open;
        a_delete_whose_caller_stops_waiting_still_publishes_its_notice,
        a_value_with_a_huge_ttl_is_read_back
    );
}

#[cfg(feature = "redis-cluster")]
#[path = "support/redis_cluster.rs"]
mod redis_cluster;

/// One 3-master cluster for the whole binary (started by the first test
/// that needs it); each test leases it, emptied, for itself, so the
/// suite's fixed keys and its "clear everything" test do not collide.
#[cfg(feature = "redis-cluster")]
mod cluster {
    use std::sync::Arc;

    use layercache::shared::redis_cluster::RedisClusterStore;
    use layercache::shared::SharedStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, eventually, run, Backend};
    use super::redis_cluster::{shared, Lease};

    fn store(nodes: &[String]) -> Arc<RedisClusterStore> {
        Arc::new(
            RedisClusterStore::open(
                nodes,
                "__layercache__:bus:conf".into(),
                &SharedSettings::default(),
            )
            .unwrap(),
        )
    }

    fn open() -> Backend {
        let lease = Lease::take();
        Backend {
            store: store(&shared().seeds()),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(lease),
        }
    }

    /// Seeds where nothing listens: a cluster that is gone.
    fn open_down() -> Backend {
        let ports: Vec<String> = (0..3)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                format!("redis://127.0.0.1:{}", l.local_addr().unwrap().port())
            })
            .collect();
        Backend {
            store: store(&ports),
            max_value_size: 0,
            guard: Box::new(()),
        }
    }

    conformance_suite!(open, open_down);
    conformance_suite!(@tests open;
        a_delete_whose_caller_stops_waiting_still_publishes_its_notice,
        a_value_with_a_huge_ttl_is_read_back
    );

    #[test]
    fn a_store_opened_while_the_whole_cluster_is_down_works_once_it_is_back() {
        let mut cluster = super::redis_cluster::RedisCluster::start();
        for i in 0..3 {
            cluster.kill_node(i);
        }
        let s = store(&cluster.seeds());
        run(|| async {
            assert!(s.set("startup:k", b"v".to_vec(), None).await.is_err());
        });
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster.wait_healthy();
        run(|| async {
            let took = eventually(std::time::Duration::from_secs(10), || async {
                s.set("startup:k", b"v".to_vec(), None).await.is_ok()
            })
            .await
            .expect("the store never reached the cluster that came back");
            assert_eq!(
                s.get("startup:k").await.unwrap().as_deref(),
                Some(&b"v"[..])
            );
            println!("the store reached the cluster {took:?} after it was back");
        });
    }

    #[test]
    fn keys_of_one_function_spread_over_every_master() {
        run(|| async {
            let b = open();
            let s = &*b.store;
            for i in 0..60 {
                s.set(&format!("app:user_profile:{i}"), b"v".to_vec(), None)
                    .await
                    .unwrap();
            }
            for node in 0..3 {
                let on = shared().keys_on(node);
                assert!(
                    on.len() >= 5,
                    "master {node} holds {} of 60 keys: entry keys carry no hash tag",
                    on.len()
                );
            }
            assert_eq!(s.delete_prefix("app:user_profile:").await.unwrap(), 60);
            for node in 0..3 {
                assert!(shared().keys_on(node).is_empty(), "swept on master {node}");
            }
        });
    }

    #[test]
    fn a_multi_key_delete_and_tags_work_across_slots() {
        run(|| async {
            let b = open();
            let s = &*b.store;
            let keys: Vec<String> = (0..30).map(|i| format!("multi:{i}")).collect();
            let nodes: std::collections::HashSet<usize> =
                keys.iter().map(|k| shared().node_of_key(k)).collect();
            assert_eq!(nodes.len(), 3, "the keys live on every master");
            for k in &keys {
                s.set(k, b"v".to_vec(), None).await.unwrap();
            }
            assert_eq!(
                s.delete(&keys[..20], Some("1\tx\tc\t\t")).await.unwrap(),
                20
            );
            assert_eq!(s.get(&keys[0]).await.unwrap(), None);
            assert!(s.get(&keys[25]).await.unwrap().is_some());

            let sets = [
                "__layercache__:tag:t:a".to_string(),
                "__layercache__:tag:t:b".to_string(),
            ];
            assert_ne!(
                shared().node_of_key(&sets[0]),
                shared().node_of_key(&sets[1])
            );
            for k in &keys[20..] {
                s.add_to_tags(&sets[..1], k, None).await.unwrap();
            }
            s.add_to_tags(&sets, &keys[29], Some(std::time::Duration::from_secs(60)))
                .await
                .unwrap();
            assert_eq!(s.delete_tag(&sets[0]).await.unwrap(), 10);
            for k in &keys[20..] {
                assert_eq!(s.get(k).await.unwrap(), None, "{k} was tagged");
            }
            assert_eq!(s.delete_tag(&sets[0]).await.unwrap(), 0, "the set is gone");
            assert_eq!(s.delete_tag(&sets[1]).await.unwrap(), 1);

            let ttl = std::time::Duration::from_millis(50);
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
        });
    }

    #[test]
    fn notices_published_on_any_node_reach_the_subscriber_on_one_node() {
        run(|| async {
            let b = open();
            let got = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = got.clone();
            let handler: layercache::shared::BusHandler =
                Arc::new(move |e| sink.lock().unwrap().push(e));
            // The subscriber is on the first seed; each notice goes to a random node.
            let bus = tokio::spawn(b.store.subscribe(handler).unwrap());
            eventually(std::time::Duration::from_secs(5), || async {
                !got.lock().unwrap().is_empty()
            })
            .await
            .expect("subscribed");
            for i in 0..20 {
                b.store.publish(&format!("notice {i}")).await.unwrap();
            }
            let took = eventually(std::time::Duration::from_secs(5), || async {
                got.lock().unwrap().len() == 21
            })
            .await;
            bus.abort();
            let got = got.lock().unwrap();
            assert!(took.is_some(), "{got:?}");
            assert_eq!(
                got[0],
                layercache::shared::BusEvent::Subscribed { after_gap: false }
            );
        });
    }
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "layercache-conf-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

mod filesystem {
    use std::sync::Arc;
    use std::time::Duration;

    use layercache::shared::filesystem::FsStore;
    use layercache::shared::SharedStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, Backend, TRICKY_KEYS};
    use super::TempDir;

    fn fs_store(dir: &std::path::Path, threshold: u64) -> FsStore {
        FsStore::open(
            dir,
            threshold,
            "__layercache__:bus:conf",
            &SharedSettings::default(),
        )
        .unwrap()
    }

    fn open() -> Backend {
        let dir = TempDir::new("fs");
        Backend {
            store: Arc::new(fs_store(&dir.0, 100_000)),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(dir),
        }
    }

    /// The directory is replaced by a plain file after the store opened it.
    fn open_down() -> Backend {
        let dir = TempDir::new("fs-down");
        let store = fs_store(&dir.0, 100);
        std::fs::remove_dir_all(&dir.0).unwrap();
        std::fs::write(&dir.0, b"not a directory").unwrap();
        Backend {
            store: Arc::new(store),
            max_value_size: 0,
            guard: Box::new(dir),
        }
    }

    conformance_suite!(open, open_down);
    conformance_suite!(@tests open;
        a_delete_whose_caller_stops_waiting_still_publishes_its_notice,
        a_value_with_a_huge_ttl_is_read_back
    );

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Every file under `dir`, recursively.
    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// A store whose values are small, so a tag set soon outgrows them.
    fn small_value_store(dir: &std::path::Path) -> FsStore {
        let settings = SharedSettings {
            max_value_size: 256,
            ..SharedSettings::default()
        };
        FsStore::open(dir, 100_000, "__layercache__:bus:conf", &settings).unwrap()
    }

    #[test]
    fn a_tag_set_larger_than_any_value_still_deletes_every_member() {
        let dir = TempDir::new("fs-big-tag");
        let store = small_value_store(&dir.0);
        rt().block_on(async {
            let keys: Vec<String> = (0..400)
                .map(|i| format!("big-tag:{i:04}:{}", "k".repeat(200)))
                .collect();
            let set = ["tag:big".to_string()];
            for k in &keys {
                store.set(k, b"v".to_vec(), None).await.unwrap();
                store.add_to_tags(&set, k, None).await.unwrap();
            }
            let set_file = std::fs::metadata(store.path_of("tag:big")).unwrap().len();
            assert!(set_file > 64 * 1024 + 256, "the set is {set_file} bytes");
            assert_eq!(store.delete_tag("tag:big").await.unwrap(), 400);
            for k in &keys {
                assert_eq!(store.get(k).await.unwrap(), None, "{k} outlived its tag");
            }
        });
    }

    #[test]
    fn a_tag_set_forgets_members_whose_entries_are_gone() {
        let dir = TempDir::new("fs-prune-tag");
        let store = small_value_store(&dir.0);
        rt().block_on(async {
            let set = ["tag:churn".to_string()];
            for i in 0..400 {
                let k = format!("churn:{i:04}:{}", "k".repeat(200));
                store.set(&k, b"v".to_vec(), None).await.unwrap();
                store.add_to_tags(&set, &k, None).await.unwrap();
                store.delete(&[k], None).await.unwrap();
            }
            let set_file = std::fs::metadata(store.path_of("tag:churn")).unwrap().len();
            // 400 members of 212 bytes would be 85 KB.
            assert!(
                set_file < 9000,
                "the set kept dead members: {set_file} bytes"
            );
            let live = format!("churn:live:{}", "k".repeat(200));
            store.set(&live, b"v".to_vec(), None).await.unwrap();
            store.add_to_tags(&set, &live, None).await.unwrap();
            store.delete_tag("tag:churn").await.unwrap();
            assert_eq!(store.get(&live).await.unwrap(), None);
        });
    }

    #[test]
    fn keys_that_look_like_paths_stay_inside_the_directory_as_hashed_file_names() {
        let parent = TempDir::new("fs-traversal");
        let dir = parent.0.join("cache");
        let store = fs_store(&dir, 1000);
        rt().block_on(async {
            for k in TRICKY_KEYS
                .iter()
                .chain(&["../escaped", "../../../../tmp/escaped"])
            {
                store.set(k, b"v".to_vec(), None).await.unwrap();
            }
        });
        assert!(!parent.0.join("escaped").exists());
        let files = files_under(&parent.0);
        assert!(
            files.iter().all(|f| f.parent() == Some(dir.as_path())),
            "a file outside the cache directory: {files:?}"
        );
        assert_eq!(files.len(), TRICKY_KEYS.len() + 2);
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(
                name.len() == 32 && name.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}"
            );
        }
    }

    #[test]
    fn a_hash_collision_reads_as_a_miss_not_as_the_other_key_s_value() {
        let dir = TempDir::new("fs-collision");
        let store = fs_store(&dir.0, 1000);
        rt().block_on(async {
            store.set("victim", b"secret".to_vec(), None).await.unwrap();
            // Pretend "attacker" hashes to the same file: put victim's file there.
            std::fs::copy(store.path_of("victim"), store.path_of("attacker")).unwrap();
            assert_eq!(store.get("attacker").await.unwrap(), None);
            assert_eq!(
                store.delete(&["attacker".to_string()], None).await.unwrap(),
                0
            );
            assert!(
                store.path_of("attacker").exists(),
                "another key's file is not deleted"
            );
            assert_eq!(store.get("victim").await.unwrap(), Some(b"secret".to_vec()));
        });
    }

    #[test]
    fn files_not_written_by_us_read_as_a_miss_and_are_replaced_by_the_next_write() {
        let dir = TempDir::new("fs-garbage");
        let store = fs_store(&dir.0, 1000);
        rt().block_on(async {
            for garbage in [
                &b""[..],
                b"LCFS",
                b"LCFS\x01\0\0\0\0\0\0\0\0\xff\xff\xff\xff",
                b"random bytes",
            ] {
                std::fs::write(store.path_of("k"), garbage).unwrap();
                assert_eq!(store.get("k").await.unwrap(), None, "{garbage:?}");
                assert_eq!(store.read_version("k").await.unwrap(), 0);
            }
            store.set("k", b"ours".to_vec(), None).await.unwrap();
            assert_eq!(store.get("k").await.unwrap(), Some(b"ours".to_vec()));
        });
    }

    #[test]
    fn entries_survive_a_restart_of_the_store() {
        let dir = TempDir::new("fs-restart");
        rt().block_on(async {
            let first = fs_store(&dir.0, 1000);
            first.set("kept", b"v".to_vec(), None).await.unwrap();
            first
                .bump_version("__layercache__:version:f", 5)
                .await
                .unwrap();
        });
        rt().block_on(async {
            let second = fs_store(&dir.0, 1000);
            assert_eq!(second.get("kept").await.unwrap(), Some(b"v".to_vec()));
            assert_eq!(
                second
                    .read_version("__layercache__:version:f")
                    .await
                    .unwrap(),
                6
            );
        });
    }

    #[test]
    fn an_expired_file_is_removed_by_the_read_that_finds_it() {
        let dir = TempDir::new("fs-expired-read");
        let store = fs_store(&dir.0, 1000);
        rt().block_on(async {
            store
                .set("k", b"v".to_vec(), Some(Duration::from_millis(20)))
                .await
                .unwrap();
            assert!(store.path_of("k").exists());
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(store.get("k").await.unwrap(), None);
            assert!(!store.path_of("k").exists());
        });
    }

    #[test]
    fn the_sweep_removes_expired_files_then_the_oldest_down_to_the_threshold_and_keeps_versions() {
        let dir = TempDir::new("fs-threshold");
        let store = fs_store(&dir.0, 20);
        rt().block_on(async {
            let v = store
                .bump_version("__layercache__:version:f", 1)
                .await
                .unwrap();
            for i in 0..10 {
                store
                    .set(
                        &format!("short:{i}"),
                        b"v".to_vec(),
                        Some(Duration::from_millis(10)),
                    )
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            for i in 0..40 {
                store
                    .set(&format!("live:{i}"), b"v".to_vec(), None)
                    .await
                    .unwrap();
                if i == 9 {
                    // Modification times must tell old from new.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let left = store.sweep_now().unwrap();
            assert!(left <= 20, "{left} entries left over a threshold of 20");
            let entries = std::fs::read_dir(&dir.0)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().len() == 32)
                .count() as u64;
            assert_eq!(entries, left);
            for i in 0..10 {
                assert_eq!(store.get(&format!("short:{i}")).await.unwrap(), None);
                assert_eq!(
                    store.get(&format!("live:{i}")).await.unwrap(),
                    None,
                    "the oldest go first"
                );
            }
            assert!(
                store.get("live:39").await.unwrap().is_some(),
                "the newest stay"
            );
            assert_eq!(
                store
                    .read_version("__layercache__:version:f")
                    .await
                    .unwrap(),
                v
            );
        });
    }

    /// Waits, up to a deadline, for the store's background sweep to end.
    fn wait_for_the_background_sweep(store: &FsStore) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.sweep_in_progress() {
            assert!(
                std::time::Instant::now() < deadline,
                "a background sweep ran for 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn writes_keep_the_directory_near_its_threshold_without_an_explicit_sweep() {
        let dir = TempDir::new("fs-auto-sweep");
        let threshold = 50;
        // A sweep starts every `threshold / 10` writes, unless one is running.
        let sweep_every = 5;
        let store = fs_store(&dir.0, threshold);
        // Kept for the whole test: the sweeps run on its blocking pool.
        let rt = rt();
        let write = |from: usize, to: usize| {
            rt.block_on(async {
                for i in from..to {
                    store
                        .set(&format!("k:{i}"), vec![1; 100], None)
                        .await
                        .unwrap();
                }
            })
        };
        let files = || std::fs::read_dir(&dir.0).unwrap().count() as u64;
        write(0, 500);
        wait_for_the_background_sweep(&store);
        assert!(
            files() < 500,
            "no background sweep removed anything: {} files",
            files()
        );
        // A burst can outrun the sweeps (a write that comes while one runs
        // starts none), so the files of its last writes may still be there.
        // The next writes start a sweep that sees all of them; only the
        // writes made while it runs can be left over.
        write(500, 500 + sweep_every);
        wait_for_the_background_sweep(&store);
        let left = files();
        assert!(
            left <= threshold + sweep_every as u64,
            "{left} files for a threshold of {threshold}"
        );
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use layercache::shared::sqlite::SqliteStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, Backend};
    use super::TempDir;

    fn open() -> Backend {
        let dir = TempDir::new("sqlite");
        let store = SqliteStore::open(
            dir.0.join("cache.db"),
            "__layercache__:bus:conf",
            &SharedSettings::default(),
        )
        .unwrap();
        Backend {
            store: Arc::new(store),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(dir),
        }
    }

    /// The database and its WAL files are overwritten with bytes that are not a database.
    fn open_down() -> Backend {
        let dir = TempDir::new("sqlite-down");
        let path = dir.0.join("cache.db");
        let store = SqliteStore::open(&path, "__layercache__:bus:conf", &SharedSettings::default())
            .unwrap();
        // In place (same inodes), so the open connections see it.
        for f in ["cache.db", "cache.db-wal", "cache.db-shm"] {
            std::fs::write(dir.0.join(f), vec![0x5a; 64 * 1024]).unwrap();
        }
        Backend {
            store: Arc::new(store),
            max_value_size: 0,
            guard: Box::new(dir),
        }
    }

    conformance_suite!(open, open_down);
    conformance_suite!(@tests open;
        a_delete_whose_caller_stops_waiting_still_publishes_its_notice,
        a_value_with_a_huge_ttl_is_read_back
    );
}

#[cfg(feature = "memcached")]
#[path = "support/memcached_server.rs"]
mod memcached_server;

#[cfg(feature = "memcached")]
mod memcached {
    use std::sync::Arc;

    use layercache::shared::memcached::MemcachedStore;
    use layercache::shared::SharedStore;
    use layercache::SharedSettings;

    use super::conformance::{conformance_suite, Backend};
    use super::memcached_server::MemcachedServer;

    fn store(address: String) -> Arc<MemcachedStore> {
        Arc::new(
            MemcachedStore::open(
                &[address],
                "__layercache__:bus:conf",
                &SharedSettings::default(),
            )
            .unwrap(),
        )
    }

    fn open() -> Backend {
        let server = MemcachedServer::start();
        Backend {
            store: store(server.address()),
            max_value_size: SharedSettings::default().max_value_size,
            guard: Box::new(server),
        }
    }

    fn open_down() -> Backend {
        let mut server = MemcachedServer::start();
        let address = server.address();
        server.stop();
        Backend {
            store: store(address),
            max_value_size: 0,
            guard: Box::new(server),
        }
    }

    conformance_suite!(open, open_down, without_prefix_deletion);
    conformance_suite!(@tests open;
        a_delete_whose_caller_stops_waiting_still_publishes_its_notice,
        a_value_with_a_huge_ttl_is_read_back
    );

    /// A server that accepts connections and never answers (a hung
    /// memcached): every operation fails, as a timeout, once the client's
    /// read timeout passes (the tier's timeout, at least 100 ms), so no
    /// blocking thread waits on it for longer, and nothing hangs.
    #[test]
    fn operations_on_a_server_that_never_answers_fail_with_a_timeout_and_never_hang() {
        use std::time::{Duration, Instant};

        use layercache::shared::{ErrorKind, SharedError, SharedStore};

        let silent = super::redis_server::SilentServer::start();
        let settings = SharedSettings {
            timeout: Duration::from_millis(50),
            ..SharedSettings::default()
        };
        let s = MemcachedStore::open(
            &[format!("127.0.0.1:{}", silent.port())],
            "__layercache__:bus:conf",
            &settings,
        )
        .unwrap();
        // The read timeout plus generous room for a loaded machine.
        let bound = Duration::from_millis(100 + 900);
        let keys = ["deaf:k".to_string()];
        let sets = ["tag:deaf".to_string()];
        super::conformance::run(|| async move {
            let (mut kinds, mut slowest) = (Vec::new(), Duration::ZERO);
            macro_rules! fails_in_time {
                ($op:expr) => {{
                    let started = Instant::now();
                    let r = tokio::time::timeout(Duration::from_secs(10), $op)
                        .await
                        .unwrap_or_else(|_| panic!("{} hung", stringify!($op)));
                    let took = started.elapsed();
                    let err: SharedError = r.map(|_| ()).expect_err(stringify!($op));
                    assert!(took < bound, "{} took {took:?}", stringify!($op));
                    slowest = slowest.max(took);
                    kinds.push(err.kind);
                }};
            }
            fails_in_time!(s.get("deaf:k"));
            fails_in_time!(s.set("deaf:k", b"v".to_vec(), None));
            fails_in_time!(s.delete(&keys, Some("1\tx\tc\t\t")));
            fails_in_time!(s.read_version("__layercache__:version:deaf"));
            fails_in_time!(s.bump_version("__layercache__:version:deaf", 1));
            fails_in_time!(s.try_lock("lock:deaf", "t", Duration::from_secs(1)));
            fails_in_time!(s.add_to_tags(&sets, "deaf:k", None));
            fails_in_time!(s.delete_tag("tag:deaf"));
            fails_in_time!(s.publish("1\tx\tc\t\t"));
            assert!(
                kinds.contains(&ErrorKind::Timeout),
                "a server that never answers is a timeout, not a refusal: {kinds:?}"
            );
            println!("failures {kinds:?}, the slowest after {slowest:?}");
        });
        assert!(silent.connections_accepted() >= 1, "the client connected");
    }

    /// Many callers of one runtime reading at once share multi-key
    /// exchanges: whatever rounds their reads fall into, each caller gets
    /// the value of its own key (hashed keys included), a missing key is a
    /// miss for its caller alone, and the callers do not each hold a
    /// connection.
    #[test]
    fn concurrent_reads_coalesced_into_batches_give_each_caller_its_own_value() {
        super::conformance::run(|| async {
            let b = open();
            let s = b.store.clone();
            let key = |i: usize| {
                if i.is_multiple_of(5) {
                    format!("batch key with spaces {i}")
                } else {
                    format!("batch:{i}")
                }
            };
            for i in (0..64usize).filter(|i| !i.is_multiple_of(7)) {
                s.set(&key(i), format!("value-{i}").into_bytes(), None)
                    .await
                    .unwrap();
            }
            let readers: Vec<_> = (0..64)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for _ in 0..50 {
                            let got = s.get(&key(i)).await.unwrap();
                            let want =
                                (!i.is_multiple_of(7)).then(|| format!("value-{i}").into_bytes());
                            assert_eq!(got, want, "caller {i}");
                        }
                    })
                })
                .collect();
            for r in readers {
                r.await.unwrap();
            }
            // Reads that waited for an exchange in flight went in a shared
            // one: a few connections served the 64 callers (one read per
            // exchange dials about one connection per caller: 67 here).
            let stats = server_stats(&b);
            assert_eq!(stats["cmd_get"], 64 * 50, "every read reached the server");
            assert!(
                stats["total_connections"] < 32,
                "64 concurrent readers shared exchanges: {stats:?}"
            );
        });
    }

    /// `stats` of the server behind `b`.
    fn server_stats(b: &Backend) -> std::collections::HashMap<String, u64> {
        use std::io::{BufRead, Write};
        let server = b.guard.downcast_ref::<MemcachedServer>().unwrap();
        let mut conn = std::net::TcpStream::connect(server.address()).unwrap();
        conn.write_all(b"stats\r\n").unwrap();
        let mut out = std::collections::HashMap::new();
        for line in std::io::BufReader::new(conn).lines() {
            let line = line.unwrap();
            if line.starts_with("END") {
                break;
            }
            let mut f = line.split(' ').skip(1);
            if let (Some(k), Some(v)) = (f.next(), f.next()) {
                if let Ok(v) = v.parse() {
                    out.insert(k.to_string(), v);
                }
            }
        }
        out
    }

    /// A lock is memcached's `add`, whose answer says whether it stored:
    /// of many processes racing for one lock exactly one holds it, and a
    /// lock re-taken after it expired is not released by its old holder.
    #[test]
    fn try_lock_is_the_answer_of_add_exactly_one_racer_wins() {
        use std::time::Duration;

        super::conformance::run(|| async {
            let b = open();
            let racers: Vec<_> = (0..16)
                .map(|i| {
                    let s = b.store.clone();
                    tokio::spawn(async move {
                        s.try_lock("lock:race", &format!("t{i}"), Duration::from_secs(30))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut won = 0;
            for r in racers {
                won += usize::from(r.await.unwrap());
            }
            assert_eq!(won, 1, "one racer holds the lock");

            let s = &*b.store;
            let short = Duration::from_millis(10);
            assert!(s.try_lock("lock:old", "old", short).await.unwrap());
            // memcached counts whole seconds: the lock is gone within 2 s.
            let retaken = super::conformance::eventually(Duration::from_secs(3), || async {
                s.try_lock("lock:old", "new", Duration::from_secs(30))
                    .await
                    .unwrap()
            })
            .await;
            assert!(retaken.is_some(), "the expired lock was taken again");
            s.unlock("lock:old", "old").await.unwrap();
            assert!(
                !s.try_lock("lock:old", "third", short).await.unwrap(),
                "the old holder did not release the new holder's lock"
            );
        });
    }

    /// A server killed while callers read: the reads fail with a
    /// connection error (counted by the tier, never a panic or a hang),
    /// and once it is back the same store reads and writes again on fresh
    /// connections, without being reopened.
    #[test]
    fn reads_during_a_restart_fail_as_connection_errors_then_hit_again() {
        use std::time::Duration;

        use layercache::shared::ErrorKind;

        super::conformance::run(|| async {
            let mut server = MemcachedServer::start();
            let s = store(server.address());
            s.set("restart:k", b"before".to_vec(), None).await.unwrap();
            assert_eq!(s.get("restart:k").await.unwrap(), Some(b"before".to_vec()));
            server.stop();
            let failed: Vec<_> = (0..16)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move { s.get("restart:k").await })
                })
                .collect();
            for f in failed {
                let err = f.await.unwrap().expect_err("the server is down");
                assert_eq!(err.kind, ErrorKind::Connection, "{err}");
            }
            server.restart();
            let back = super::conformance::eventually(Duration::from_secs(2), || async {
                s.set("restart:k", b"after".to_vec(), None).await.is_ok()
            })
            .await;
            assert!(back.is_some(), "writes resume after the restart");
            let readers: Vec<_> = (0..16)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move { s.get("restart:k").await.unwrap() })
                })
                .collect();
            for r in readers {
                assert_eq!(r.await.unwrap(), Some(b"after".to_vec()));
            }
        });
    }

    /// A value over the server's item size (`-I 2m` here) is refused with
    /// a clear server error, and the store goes on working: the next write
    /// and reads on the same connections succeed.
    #[test]
    fn a_value_over_the_item_size_is_a_server_error_and_the_store_keeps_working() {
        use layercache::shared::ErrorKind;

        super::conformance::run(|| async {
            let b = open();
            let s = &*b.store;
            let err = s
                .set("huge", vec![7u8; 3 << 20], None)
                .await
                .expect_err("3 MiB does not fit a 2 MiB item");
            assert_eq!(err.kind, ErrorKind::Server, "{err}");
            assert_eq!(s.get("huge").await.unwrap(), None);
            s.set("small", b"fits".to_vec(), None).await.unwrap();
            assert_eq!(s.get("small").await.unwrap(), Some(b"fits".to_vec()));
        });
    }

    /// memcached evicts any item and a restarted server forgets its keys:
    /// a lost version key must not bring back numbers used before.
    #[test]
    fn a_lost_version_key_reads_as_a_number_above_every_one_used_before() {
        super::conformance::run(|| async {
            let b = open();
            let s = &*b.store;
            let key = "__layercache__:version:conf:lost";
            // Versions counted up from 1 (as bumps passed an early `now`).
            let mut used = vec![0];
            for _ in 0..5 {
                used.push(s.bump_version(key, 1).await.unwrap());
            }
            // Behind the store's back: as an eviction would.
            let deleted = s.delete(&[key.to_string()], None).await;
            assert!(deleted.is_ok(), "{deleted:?}");
            let after = s.read_version(key).await.unwrap();
            let highest = *used.iter().max().unwrap();
            assert!(
                after > highest,
                "a lost version read as {after}, not above {highest} ({used:?})"
            );
            assert_eq!(s.read_version(key).await.unwrap(), after, "it is kept");
            assert_eq!(s.bump_version(key, 1).await.unwrap(), after + 1);
        });
    }
}
