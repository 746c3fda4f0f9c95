//! A SQLite database as the shared tier (`CACHE_TYPE=sqlite`,
//! `CACHE_SQLITE_PATH`; cargo feature `sqlite`): the guide's database
//! cache, for processes on one machine, with nothing to run.
//!
//! - **Schema**: one table `layercache (key TEXT PRIMARY KEY, value BLOB,
//!   expires_at INTEGER)` (Unix ms, `NULL` = never) with a partial index on
//!   `expires_at`; versions in `layercache_versions`, incremented by one
//!   `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` (atomic across
//!   processes); tag sets in `layercache_tags`.
//! - **Several processes**: WAL mode (readers never wait for the writer),
//!   `synchronous = NORMAL` (a cache needs no fsync per write), and a
//!   `busy_timeout` for the moments another process holds the write lock.
//! - **Expiry**: reads ignore expired rows; every [`PURGE_EVERY`] writes of
//!   a process, at most [`PURGE_BATCH`] expired rows are deleted
//!   (`DELETE ... WHERE rowid IN (SELECT rowid ... LIMIT n)`), so no write
//!   holds the lock for long.
//! - **Prefix deletion** is a range over the primary key (`key >= p AND
//!   key < p'`, `p'` = `p` with its last byte raised), in batches: no
//!   `LIKE`, so `%` and `_` in a key are plain characters.
//! - **Healing**: at most every [`CHECK_FILE_EVERY`] an operation checks
//!   that the path still names the file the pool opened (device and
//!   inode). A database deleted or replaced under a running process is
//!   reopened (logged at WARN), so that process does not go on writing to
//!   an unlinked file while new processes share a new one; a deleted
//!   file's orphaned `-wal` and `-shm` are removed first, so they cannot be
//!   replayed into the new database.
//! - **Connections**: a pool of two (`Mutex<Connection>` each; a caller
//!   takes a free one, or waits on one). SQLite serialises writers anyway,
//!   and two readers match the machines this runs on; every call runs on
//!   the blocking pool (`spawn_blocking`), never on an async worker.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::polled::PolledBus;
use super::{
    run_blocking, BoxFuture, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
    RESERVED_PREFIX,
};

/// Writes between two purges of expired rows (per process).
pub const PURGE_EVERY: u64 = 100;
/// Expired rows deleted per purge, and rows per prefix-deletion batch.
pub const PURGE_BATCH: u32 = 500;
/// Connections per store.
const POOL: usize = 2;
/// How often operations check that the database file is still the one
/// open (see the module docs).
pub const CHECK_FILE_EVERY: Duration = Duration::from_millis(100);
/// How long a connection waits for another process's write lock; the
/// caller is bounded by the tier's timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The SQLite store. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    writes: AtomicU64,
    bus: PolledBus,
    /// Device and inode of the file the pool has open.
    file: Mutex<Option<FileId>>,
    /// When the file was last checked, Unix ms.
    checked_ms: AtomicU64,
}

type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        // Without inodes only a deleted file is noticed.
        std::fs::metadata(path).ok().map(|_| (0, 0))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The expiry (Unix ms) of an entry written now with `ttl`, saturating:
/// `Duration::MAX` is "about forever", never an overflow.
fn expires_at(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1))
}

fn to_shared(err: rusqlite::Error) -> SharedError {
    use rusqlite::ErrorCode;
    let kind = match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Timeout,
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            ErrorKind::Connection
        }
        _ => ErrorKind::Server,
    };
    SharedError::new(kind, format!("sqlite: {err}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layercache (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS layercache_expires_at ON layercache (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS layercache_versions (
    key TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layercache_tags (
    tag TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tag, member)
);
";

/// The smallest string above every string that starts with `prefix`, as
/// bytes (`None` when there is none: every byte is 0xFF, impossible in
/// UTF-8, or the prefix is empty).
fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Asks for WAL mode (readers and one writer at once, across processes)
/// and returns the journal mode SQLite answers with: the one in force. A
/// database that cannot use WAL (a filesystem without shared memory, an
/// in-memory database) keeps another mode; that is logged, not an error,
/// since the store still works, only with readers and writers taking
/// turns.
fn enable_wal(conn: &Connection, path: &Path) -> Result<String, rusqlite::Error> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %path.display(),
            journal_mode = %mode,
            "layercache: the SQLite database is not in WAL mode (journal_mode is {mode}): \
             readers and writers will wait for each other"
        );
    }
    Ok(mode)
}

fn open_connection(path: &Path, busy: Duration) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    // Switching a new file to WAL takes an exclusive lock, and SQLite
    // answers "database is locked" at once, without its busy handler, when
    // another process is doing the same: a fleet starting together. Each
    // step is idempotent, so the setup is retried until the busy timeout.
    let deadline = Instant::now() + busy;
    let mut pause = Duration::from_millis(1);
    loop {
        let setup = enable_wal(&conn, path)
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.execute_batch(SCHEMA));
        match setup {
            Err(err) if is_busy(&err) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            other => return other.map(|()| conn),
        }
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl SqliteStore {
    /// A store in the database file `path` (created, with its directory,
    /// if missing), with its invalidation log on `channel`.
    pub fn open(
        path: impl Into<PathBuf>,
        channel: &str,
        settings: &SharedSettings,
    ) -> Result<SqliteStore, SharedError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                SharedError::new(
                    ErrorKind::Connection,
                    format!("cannot create the directory of {}: {e}", path.display()),
                )
            })?;
        }
        let conns = (0..POOL)
            .map(|_| open_connection(&path, BUSY_TIMEOUT).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                let mut err = to_shared(e);
                err.message = format!("{} ({})", err.message, path.display());
                err
            })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                file: Mutex::new(file_id(&path)),
                checked_ms: AtomicU64::new(now_ms() as u64),
                path,
                conns,
                next: AtomicUsize::new(0),
                writes: AtomicU64::new(0),
                bus: PolledBus::new(channel, settings.bus_poll_interval),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled connection, on the blocking pool.
    fn with<'a, T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> BoxFuture<'a, Result<T, SharedError>> {
        let inner = self.inner.clone();
        Box::pin(run_blocking(move || {
            inner.heal();
            let mut conn = inner.connection();
            f(&inner, &mut conn).map_err(to_shared)
        }))
    }
}

impl Inner {
    /// Reopens the pool when the database file was deleted or replaced
    /// (checked at most every [`CHECK_FILE_EVERY`]).
    fn heal(&self) {
        let now = now_ms() as u64;
        let last = self.checked_ms.load(Relaxed);
        if now < last.saturating_add(CHECK_FILE_EVERY.as_millis() as u64)
            || self
                .checked_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let mut known = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let current = file_id(&self.path);
        if current.is_some() && current == *known {
            return;
        }
        if current.is_none() {
            tracing::warn!(path = %self.path.display(), "layercache: the SQLite database was deleted; creating it again");
            for suffix in ["-wal", "-shm"] {
                let mut orphan = self.path.clone().into_os_string();
                orphan.push(suffix);
                let _ = std::fs::remove_file(orphan);
            }
        } else {
            tracing::warn!(path = %self.path.display(), "layercache: the SQLite database file was replaced; reopening it");
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        for conn in &self.conns {
            match open_connection(&self.path, BUSY_TIMEOUT) {
                Ok(fresh) => *conn.lock().unwrap_or_else(|e| e.into_inner()) = fresh,
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), %err, "layercache: cannot reopen the SQLite database; trying again later");
                    return;
                }
            }
        }
        *known = file_id(&self.path);
    }

    /// A free connection, else the next one in turn (waiting for it).
    fn connection(&self) -> MutexGuard<'_, Connection> {
        for c in &self.conns {
            if let Ok(guard) = c.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Relaxed) % self.conns.len();
        self.conns[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes a batch of expired rows every [`PURGE_EVERY`] writes.
    fn after_write(&self, conn: &Connection) {
        if self.writes.fetch_add(1, Relaxed) % PURGE_EVERY != PURGE_EVERY - 1 {
            return;
        }
        let now = now_ms();
        let purged = conn
            .execute(
                "DELETE FROM layercache WHERE rowid IN \
                 (SELECT rowid FROM layercache WHERE expires_at <= ?1 LIMIT ?2)",
                params![now, PURGE_BATCH],
            )
            .and_then(|n| {
                conn.execute(
                    "DELETE FROM layercache_tags WHERE rowid IN \
                     (SELECT rowid FROM layercache_tags WHERE expires_at <= ?1 LIMIT ?2)",
                    params![now, PURGE_BATCH],
                )
                .map(|_| n)
            });
        match purged {
            Ok(n) => tracing::debug!(purged = n, "layercache: purged expired sqlite rows"),
            Err(err) => tracing::warn!(%err, "layercache: purging expired sqlite rows failed"),
        }
    }
}

impl SharedStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.inner.path.display())
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let key = key.to_string();
        self.with(move |_, conn| {
            // As bytes whatever the column holds: a value edited by hand
            // (`UPDATE ... SET value = 'x'`) is then a corrupt miss that the
            // next write replaces, not an error on every read.
            conn.prepare_cached(
                "SELECT CAST(value AS BLOB) FROM layercache WHERE key = ?1 \
                 AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .query_row(params![key, now_ms()], |r| r.get(0))
            .optional()
        })
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let key = key.to_string();
        let expires = expires_at(ttl);
        self.with(move |_, conn| {
            // One statement: a row that expired is neither returned nor revived.
            conn.prepare_cached(
                "UPDATE layercache SET expires_at = ?3 WHERE key = ?1 \
                 AND (expires_at IS NULL OR expires_at > ?2) RETURNING CAST(value AS BLOB)",
            )?
            .query_row(params![key, now_ms(), expires], |r| r.get(0))
            .optional()
        })
    }

    fn can_touch(&self) -> bool {
        true
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let key = key.to_string();
        let expires_at = ttl.map(expires_at);
        self.with(move |inner, conn| {
            conn.prepare_cached(
                "INSERT INTO layercache (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )?
            .execute(params![key, value, expires_at])?;
            inner.after_write(conn);
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let owned = keys.to_vec();
        let deleted = self.with(move |_, conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            let mut n = 0u64;
            {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM layercache WHERE key = ?1 RETURNING expires_at")?;
                for key in &owned {
                    let expires: Option<Option<i64>> =
                        stmt.query_row([key], |r| r.get(0)).optional()?;
                    if let Some(expires) = expires {
                        n += u64::from(expires.is_none_or(|e| e > now));
                    }
                }
            }
            tx.commit()?;
            Ok(n)
        });
        self.inner.bus.delete_then_publish(
            Arc::new(self.clone()),
            (!keys.is_empty()).then_some(deleted),
            notice,
        )
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let start = prefix.to_string();
        let end = prefix_end(prefix);
        self.with(move |_, conn| {
            // The reserved keys form one range too: ':' + 1 = ';'.
            let reserved_end = prefix_end(RESERVED_PREFIX).expect("not empty");
            let now = now_ms();
            let mut deleted = 0u64;
            loop {
                let mut stmt = conn.prepare_cached(
                    "DELETE FROM layercache WHERE rowid IN (SELECT rowid FROM layercache \
                     WHERE key >= ?1 AND (?2 IS NULL OR key < CAST(?2 AS TEXT)) \
                     AND NOT (key >= ?3 AND key < CAST(?4 AS TEXT)) LIMIT ?5) \
                     RETURNING expires_at",
                )?;
                let rows = stmt
                    .query_map(
                        params![start, end, RESERVED_PREFIX, reserved_end, PURGE_BATCH],
                        |r| r.get::<_, Option<i64>>(0),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                deleted += rows.iter().filter(|e| e.is_none_or(|e| e > now)).count() as u64;
                if rows.len() < PURGE_BATCH as usize {
                    return Ok(deleted);
                }
            }
        })
    }

    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let key = key.to_string();
        self.with(move |_, conn| {
            let v: Option<i64> = conn
                .prepare_cached("SELECT version FROM layercache_versions WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            Ok(v.map_or(0, |v| v.max(0) as u64))
        })
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let key = key.to_string();
        let start = i64::try_from(now_ms.saturating_add(1)).unwrap_or(i64::MAX);
        self.with(move |_, conn| {
            let v: i64 = conn
                .prepare_cached(
                    "INSERT INTO layercache_versions (key, version) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET version = version + 1 RETURNING version",
                )?
                .query_row(params![key, start], |r| r.get(0))?;
            Ok(v.max(0) as u64)
        })
    }

    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        self.inner.bus.publish(Arc::new(self.clone()), notice)
    }

    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>> {
        Some(self.inner.bus.subscribe(Arc::new(self.clone()), handler))
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        let (key, token) = (key.to_string(), token.as_bytes().to_vec());
        let now = now_ms();
        let expires_at = expires_at(ttl);
        self.with(move |_, conn| {
            // Taken when the row is new, or replaces an expired one.
            let changed = conn
                .prepare_cached(
                    "INSERT INTO layercache (key, value, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
                     WHERE layercache.expires_at IS NOT NULL AND layercache.expires_at <= ?4",
                )?
                .execute(params![key, token, expires_at, now])?;
            Ok(changed == 1)
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (key, token) = (key.to_string(), token.as_bytes().to_vec());
        self.with(move |_, conn| {
            conn.prepare_cached("DELETE FROM layercache WHERE key = ?1 AND value = ?2")?
                .execute(params![key, token])?;
            Ok(())
        })
    }

    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (sets, member) = (sets.to_vec(), member.to_string());
        let expires_at = ttl.map(expires_at);
        self.with(move |_, conn| {
            let tx = conn.transaction()?;
            {
                // A set lives as long as its longest-lived member (NULL = forever).
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO layercache_tags (tag, member, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tag, member) DO UPDATE SET expires_at = CASE \
                     WHEN excluded.expires_at IS NULL OR layercache_tags.expires_at IS NULL THEN NULL \
                     ELSE max(excluded.expires_at, layercache_tags.expires_at) END",
                )?;
                for set in &sets {
                    stmt.execute(params![set, member, expires_at])?;
                }
            }
            tx.commit()
        })
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let set = set.to_string();
        self.with(move |_, conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM layercache WHERE key IN \
                 (SELECT member FROM layercache_tags WHERE tag = ?1)",
                [&set],
            )?;
            let named = tx.execute("DELETE FROM layercache_tags WHERE tag = ?1", [&set])?;
            tx.commit()?;
            Ok(named as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test's database, removed on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(name: &str) -> TempDb {
            static N: AtomicU64 = AtomicU64::new(0);
            TempDb(std::env::temp_dir().join(format!(
                "layercache-sqlite-{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Relaxed)
            )))
        }

        fn path(&self) -> PathBuf {
            self.0.join("cache.db")
        }

        fn open(&self) -> SqliteStore {
            SqliteStore::open(
                self.path(),
                "__layercache__:bus:t",
                &SharedSettings::default(),
            )
            .unwrap()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_new_store_s_database_is_in_wal_mode_on_every_connection() {
        let db = TempDb::new("wal");
        let store = db.open();
        for conn in &store.inner.conns {
            let mode: String = conn
                .lock()
                .unwrap()
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        // WAL is a property of the file: another process opening it sees it.
        let other = Connection::open(db.path()).unwrap();
        let mode: String = other
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn stores_opened_at_the_same_moment_on_a_new_file_all_open() {
        // A fleet starting together: every process switches the new file to
        // WAL and creates the schema at once. 50 rounds of 4 openers.
        for round in 0..50 {
            let db = TempDb::new("together");
            std::fs::create_dir_all(&db.0).unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (db.path(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStore::open(path, "__layercache__:bus:t", &SharedSettings::default())
                            .map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
    }

    #[test]
    fn a_database_that_cannot_use_wal_reports_its_journal_mode_and_still_opens() {
        // An in-memory database has no WAL: SQLite keeps "memory".
        let conn = Connection::open_in_memory().unwrap();
        let mode = enable_wal(&conn, Path::new(":memory:")).unwrap();
        assert_eq!(mode, "memory");
    }

    #[test]
    fn the_table_has_a_partial_expiry_index_that_the_purge_uses() {
        let db = TempDb::new("index");
        let store = db.open();
        let conn = store.inner.conns[0].lock().unwrap();
        let (table, sql): (String, String) = conn
            .query_row(
                "SELECT tbl_name, sql FROM sqlite_master \
                 WHERE type = 'index' AND name = 'layercache_expires_at'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(table, "layercache");
        assert!(
            sql.contains("(expires_at)") && sql.contains("WHERE expires_at IS NOT NULL"),
            "{sql}"
        );
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT rowid FROM layercache WHERE expires_at <= ?1 LIMIT ?2",
            )
            .unwrap()
            .query_map(params![now_ms(), PURGE_BATCH], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("layercache_expires_at")),
            "the purge scans the table: {plan:?}"
        );
    }

    /// Rows written with a 1 ms TTL, once it has passed: inserted directly,
    /// so that no purge runs while they are written.
    fn insert_expired(conn: &Connection, from: usize, n: usize) {
        let past = now_ms() - 1;
        let mut stmt = conn
            .prepare("INSERT INTO layercache (key, value, expires_at) VALUES (?1, x'00', ?2)")
            .unwrap();
        for i in from..from + n {
            stmt.execute(params![format!("expired:{i}"), past]).unwrap();
        }
    }

    fn count(conn: &Connection, sql: &str) -> u64 {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
    }

    #[test]
    fn every_hundredth_write_purges_one_batch_of_expired_rows_and_keeps_live_ones() {
        let db = TempDb::new("purge");
        let store = db.open();
        let side = Connection::open(db.path()).unwrap();
        let expired_rows = 2 * PURGE_BATCH as usize + 123;
        insert_expired(&side, 0, expired_rows);
        side.execute(
            "INSERT INTO layercache_tags (tag, member, expires_at) VALUES ('t', 'expired:0', ?1)",
            [now_ms() - 1],
        )
        .unwrap();
        let expired = |c: &Connection| {
            count(
                c,
                "SELECT count(*) FROM layercache WHERE key LIKE 'expired:%'",
            )
        };
        let rt = rt();
        let mut written = 0u64;
        let mut write = |n: u64| {
            rt.block_on(async {
                for _ in 0..n {
                    // Live rows: one without a TTL, the others for a minute.
                    let ttl = (written > 0).then(|| Duration::from_secs(60));
                    store
                        .set(&format!("live:{written}"), b"v".to_vec(), ttl)
                        .await
                        .unwrap();
                    written += 1;
                }
            })
        };
        write(PURGE_EVERY - 1);
        assert_eq!(
            expired(&side),
            expired_rows as u64,
            "no purge before the 100th write"
        );
        let mut left = expired_rows as u64;
        while left > 0 {
            write(1);
            let now = expired(&side);
            assert_eq!(
                now,
                left.saturating_sub(u64::from(PURGE_BATCH)),
                "one purge deletes one batch of {PURGE_BATCH}"
            );
            left = now;
            write(PURGE_EVERY - 1);
            assert_eq!(expired(&side), left, "no purge between two");
        }
        assert_eq!(
            count(&side, "SELECT count(*) FROM layercache_tags"),
            0,
            "expired tag rows go too"
        );
        assert_eq!(
            count(
                &side,
                "SELECT count(*) FROM layercache WHERE key LIKE 'live:%'"
            ),
            written,
            "every live row is kept"
        );
    }

    #[test]
    fn a_value_edited_into_text_or_a_number_reads_as_bytes_and_is_replaced() {
        let db = TempDb::new("edited");
        let path = db.path();
        let store = db.open();
        rt().block_on(async {
            store.set("k", b"ours".to_vec(), None).await.unwrap();
            // What someone with the sqlite3 CLI might do.
            let cli = Connection::open(&path).unwrap();
            for (edit, read) in [
                (
                    "UPDATE layercache SET value = 'x' WHERE key = 'k'",
                    &b"x"[..],
                ),
                ("UPDATE layercache SET value = 42 WHERE key = 'k'", b"42"),
                ("UPDATE layercache SET value = 1.5 WHERE key = 'k'", b"1.5"),
            ] {
                cli.execute(edit, []).unwrap();
                assert_eq!(
                    store.get("k").await.unwrap().as_deref(),
                    Some(read),
                    "{edit}"
                );
            }
            store.set("k", b"ours again".to_vec(), None).await.unwrap();
            assert_eq!(
                store.get("k").await.unwrap().as_deref(),
                Some(&b"ours again"[..])
            );
        });
    }

    #[test]
    fn the_end_of_a_prefix_range_is_the_prefix_with_its_last_byte_raised() {
        assert_eq!(prefix_end("ab").as_deref(), Some(&b"ac"[..]));
        assert_eq!(prefix_end("a:").as_deref(), Some(&b"a;"[..]));
        assert_eq!(prefix_end(""), None);
        // "é" is C3 A9: the range ends at C3 AA.
        assert_eq!(prefix_end("é").as_deref(), Some(&[0xC3, 0xAA][..]));
    }
}
