//! A directory as the shared tier (`CACHE_TYPE=filesystem`, `CACHE_DIR`),
//! for processes on one machine (or one shared volume), like
//! Flask-Caching's `FileSystemCache`.
//!
//! - **One file per key**, named by the xxh3-128 hash of the key (32 hex
//!   digits): no key, whatever its `/`, `..` or `\`, names a path; the
//!   full key is in the file's header, so a hash collision reads as a miss,
//!   never as another key's value.
//! - **Atomic writes**: a value is written to a temporary file in the same
//!   directory (`.{hash}.{pid}.{n}.tmp`) and renamed over the entry, so a
//!   reader, in this process or another, sees the old file or the new one,
//!   never a part of one. Files are not `fsync`ed: after a power loss an
//!   entry may be lost or empty, which reads as a miss.
//! - **Expiry**: the header holds the expiry time (Unix ms); an expired
//!   file is a miss and is removed by the read that finds it, and by the
//!   sweep.
//! - **The bound** (`CACHE_THRESHOLD` entries): every few writes a sweep
//!   runs on the blocking pool: it counts the entries, reads the headers of
//!   at most [`SWEEP_SCAN`] of them (from a random place in the directory),
//!   removes the expired ones, and while the count is over the threshold
//!   removes the oldest (by modification time) of those it read. Memory is
//!   bounded by the scan, not by the directory.
//! - **Versions and the invalidation log** are entries too, under
//!   [`RESERVED_PREFIX`]: never removed by prefix
//!   deletion nor evicted by age. A version is incremented under an
//!   exclusive `flock` of `.versions.lock` (through `fs4`): the kernel
//!   releases the lock when its holder dies, so unlike an `O_EXCL` lock
//!   file there is never a stale lock to guess about (`std::fs::File::lock`
//!   would do the same but needs Rust 1.89).
//! - **Tag sets and locks** (`tags = [...]`, `lock = true`) are entries
//!   too, changed only under the same lock: a tag set holds its members'
//!   keys and lives as long as the longest-lived of them; a lock is an
//!   entry holding its owner's token, with the lock's TTL.
//! - **Healing**: a `CACHE_DIR` deleted under a running process is
//!   re-created (logged at WARN) by the next write or lock that finds it
//!   missing, so sharing resumes without a restart; the invalidation log
//!   then reads as wiped, which every process answers as a gap. Something
//!   else in an entry's place (a directory) is a corrupt miss for that key
//!   and is replaced by the next write, never a failure of the store.
//! - **Blocking I/O** runs on the blocking pool of the runtime that polls
//!   the operation (`spawn_blocking`), never on an async worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::polled::PolledBus;
use super::{
    run_blocking, BoxFuture, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
    RESERVED_PREFIX,
};

const MAGIC: &[u8; 4] = b"LCFS";
const FORMAT: u8 = 1;
/// magic, format, expires at (u64 LE, 0 = never), key length (u32 LE).
const HEADER: usize = 4 + 1 + 8 + 4;
/// Headers read per sweep, at most.
pub const SWEEP_SCAN: usize = 1000;
/// Temporary files older than this were left by a writer that died.
const STALE_TMP: Duration = Duration::from_secs(60);
/// Longest wait for the directory's lock before an operation gives up
/// with a timeout.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// Keys longer than this are refused (a header is read in one go).
const MAX_KEY: usize = 64 * 1024;

/// Largest tag set file read, in bytes (at least the largest entry file):
/// a set lists keys, so it can outgrow any value. A larger one is an error,
/// never an empty set (that would forget its members).
const MAX_TAG_SET: u64 = 64 << 20;
/// Tag sets are pruned of members whose entries are gone when a write
/// makes them cross a power of two from this size up (amortized O(1)).
const PRUNE_FROM: usize = 4096;

pub use crate::config::DEFAULT_THRESHOLD;

/// The filesystem store. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    threshold: u64,
    /// Largest file read, in bytes (values are bounded by the tier's size limit).
    max_file: u64,
    writes: AtomicU64,
    sweep_every: u64,
    sweeping: AtomicBool,
    /// Entries counted by the last sweep (where the next scan may start).
    last_count: AtomicU64,
    tmp_seq: AtomicU64,
    bus: PolledBus,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io_err(what: &str, path: &Path, err: io::Error) -> SharedError {
    SharedError::new(
        ErrorKind::Server,
        format!("{what} {}: {err}", path.display()),
    )
}

/// The file name of `key`: its 128-bit hash in hex.
pub fn file_name(key: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

/// What an entry file's header says.
struct Head {
    expires_at: u64,
    key: Vec<u8>,
}

impl Head {
    fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// Parses the header of `bytes` (at least the header and the key); `None`
/// when the file is not one of ours.
fn parse_head(bytes: &[u8]) -> Option<(Head, usize)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC || bytes[4] != FORMAT {
        return None;
    }
    let expires_at = u64::from_le_bytes(bytes[5..13].try_into().ok()?);
    let key_len = u32::from_le_bytes(bytes[13..17].try_into().ok()?) as usize;
    let end = HEADER.checked_add(key_len)?;
    let key = bytes.get(HEADER..end)?.to_vec();
    Some((Head { expires_at, key }, end))
}

/// Reads the header of the file at `path` (not the value).
fn read_head(path: &Path) -> io::Result<Option<Head>> {
    let mut file = File::open(path)?;
    let mut fixed = [0u8; HEADER];
    if file.read_exact(&mut fixed).is_err() {
        return Ok(None);
    }
    let key_len = u32::from_le_bytes(fixed[13..17].try_into().expect("4 bytes")) as usize;
    if &fixed[..4] != MAGIC || fixed[4] != FORMAT || key_len > MAX_KEY {
        return Ok(None);
    }
    let mut all = fixed.to_vec();
    all.resize(HEADER + key_len, 0);
    if file.read_exact(&mut all[HEADER..]).is_err() {
        return Ok(None);
    }
    Ok(parse_head(&all).map(|(h, _)| h))
}

impl FsStore {
    /// A store in `dir` (created if missing) keeping about `threshold`
    /// entries (at least 1), with its invalidation log on `channel`,
    /// polled every `settings.bus_poll_interval`.
    pub fn open(
        dir: impl Into<PathBuf>,
        threshold: u64,
        channel: &str,
        settings: &SharedSettings,
    ) -> Result<FsStore, SharedError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create CACHE_DIR", &dir, e))?;
        let threshold = threshold.max(1);
        Ok(FsStore {
            inner: Arc::new(Inner {
                dir,
                threshold,
                max_file: (settings.max_value_size as u64)
                    .saturating_add((HEADER + MAX_KEY) as u64),
                writes: AtomicU64::new(0),
                sweep_every: (threshold / 10).clamp(1, 100),
                sweeping: AtomicBool::new(false),
                last_count: AtomicU64::new(0),
                tmp_seq: AtomicU64::new(0),
                bus: PolledBus::new(channel, settings.bus_poll_interval),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file that holds `key` (whether or not it exists).
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.inner.dir.join(file_name(key))
    }

    /// Whether a sweep of this store is running (one started in the
    /// background by a write, or [`FsStore::sweep_now`]).
    pub fn sweep_in_progress(&self) -> bool {
        self.inner.sweeping.load(Relaxed)
    }

    /// Runs one sweep now, on this thread (see the module docs); returns
    /// the number of entries left.
    /// Waits for a background sweep of this store to end first, so the
    /// two never run at once (and the count returned is the directory's).
    pub fn sweep_now(&self) -> Result<u64, SharedError> {
        while self.inner.sweeping.swap(true, Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let done = SweepDone(self.inner.clone());
        done.0.sweep()
    }
}

/// Marks the store's sweep as ended when dropped: after the sweep ran, or
/// when its task was dropped before it ran (its runtime shutting down), so
/// a sweep that never ran cannot stop every later one from starting.
struct SweepDone(Arc<Inner>);

impl Drop for SweepDone {
    fn drop(&mut self) {
        self.0.sweeping.store(false, Relaxed);
    }
}

impl Inner {
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// The value under `key`, if it is there, ours, for this key and alive.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SharedError> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot open", &path, e)),
        };
        let mut bytes = Vec::new();
        (&file)
            .take(self.max_file + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| match e.kind() {
                // Not a file: that key is unusable, the store is fine.
                io::ErrorKind::IsADirectory => SharedError::new(
                    ErrorKind::Corrupt,
                    format!("{} is a directory, not an entry", path.display()),
                ),
                _ => io_err("cannot read", &path, e),
            })?;
        if bytes.len() as u64 > self.max_file {
            tracing::debug!(path = %path.display(), "layercache: an entry file larger than any value we write; a miss");
            return Ok(None);
        }
        let Some((head, at)) = parse_head(&bytes) else {
            // Not written by us: a miss (the next write replaces it).
            return Ok(None);
        };
        if head.key != key.as_bytes() {
            tracing::debug!(
                key,
                "layercache: hash collision in the filesystem store; a miss"
            );
            return Ok(None);
        }
        if head.expired(now_ms()) {
            remove_if_same(&path, &file);
            return Ok(None);
        }
        bytes.drain(..at);
        Ok(Some(bytes))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), SharedError> {
        if key.len() > MAX_KEY {
            return Err(SharedError::new(
                ErrorKind::Server,
                format!(
                    "key of {} bytes is too long for the filesystem store",
                    key.len()
                ),
            ));
        }
        let expires_at = ttl.map_or(0, |t| now_ms().saturating_add(ttl_ms(t)));
        let mut bytes = Vec::with_capacity(HEADER + key.len() + value.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&expires_at.to_le_bytes());
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(value);
        self.write_atomically(&file_name(key), &bytes)
    }

    /// Writes `bytes` to a temporary file in the directory and renames it
    /// over `name`: readers see the old file or the new one, whole.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), SharedError> {
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Relaxed)
        ));
        let create = || OpenOptions::new().write(true).create_new(true).open(&tmp);
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.recreate_dir()?;
                create()
            }
            other => other,
        };
        let target = self.dir.join(name);
        let written = file
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| match fs::rename(&tmp, &target) {
                Err(e) if target.is_dir() => {
                    // Not ours (nothing we write is a directory): replace it.
                    tracing::warn!(path = %target.display(), "layercache: a directory in place of a cache entry; replacing it");
                    fs::remove_dir_all(&target).and_then(|()| fs::rename(&tmp, &target)).map_err(|_| e)
                }
                other => other,
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("cannot write", &target, e));
        }
        Ok(())
    }

    /// Re-creates the directory after it was deleted under us.
    fn recreate_dir(&self) -> Result<(), SharedError> {
        tracing::warn!(dir = %self.dir.display(), "layercache: CACHE_DIR was deleted; re-creating it");
        fs::create_dir_all(&self.dir)
            .map_err(|e| io_err("cannot re-create CACHE_DIR", &self.dir, e))
    }

    /// Removes the entry of each key that is ours; counts the live ones.
    fn delete(&self, keys: &[String]) -> Result<u64, SharedError> {
        let now = now_ms();
        let mut n = 0;
        for key in keys {
            let path = self.path(key);
            match read_head(&path) {
                Ok(Some(head)) if head.key == key.as_bytes() => match fs::remove_file(&path) {
                    Ok(()) => n += u64::from(!head.expired(now)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("cannot remove", &path, e)),
                },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot read", &path, e)),
            }
        }
        Ok(n)
    }

    /// Scans the directory, one header at a time.
    fn delete_prefix(&self, prefix: &str) -> Result<u64, SharedError> {
        let now = now_ms();
        let mut n = 0;
        let entries = match fs::read_dir(&self.dir) {
            // Deleted under us: nothing to delete (the next write re-creates it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            other => other.map_err(|e| io_err("cannot list", &self.dir, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &self.dir, e))?;
            if !is_entry_name(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let Ok(Some(head)) = read_head(&path) else {
                continue;
            };
            if head.key.starts_with(prefix.as_bytes())
                && !head.key.starts_with(RESERVED_PREFIX.as_bytes())
                && fs::remove_file(&path).is_ok()
            {
                n += u64::from(!head.expired(now));
            }
        }
        Ok(n)
    }

    fn read_version(&self, key: &str) -> Result<u64, SharedError> {
        Ok(self
            .get(key)?
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Runs `f` while holding the directory's lock (an exclusive `flock` of
    /// `.versions.lock`), so read-modify-write steps of several processes
    /// (versions, tag sets, locks) never interleave.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, SharedError>) -> Result<T, SharedError> {
        self.locked_within(LOCK_WAIT, f)
    }

    /// [`Inner::locked`], giving up with a timeout after `wait`: a holder
    /// that is stopped (not dead: the kernel would release its lock) must
    /// not park blocking-pool threads without bound.
    fn locked_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce() -> Result<T, SharedError>,
    ) -> Result<T, SharedError> {
        let lock_path = self.dir.join(".versions.lock");
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&lock_path)
        };
        let lock = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.recreate_dir()?;
                open()
            }
            other => other,
        }
        .map_err(|e| io_err("cannot open", &lock_path, e))?;
        let deadline = std::time::Instant::now() + wait;
        let mut pause = Duration::from_micros(50);
        loop {
            match fs4::FileExt::try_lock(&lock) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {}
                Err(fs4::TryLockError::Error(e)) => {
                    return Err(io_err("cannot lock", &lock_path, e))
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(SharedError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} was held by another process for {wait:?}",
                        lock_path.display()
                    ),
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let result = f();
        drop(lock); // closing the file releases the lock
        result
    }

    /// Increments the version under `key` under the directory's lock, so
    /// no two processes read the same number.
    fn bump_version(&self, key: &str, now_ms: u64) -> Result<u64, SharedError> {
        self.locked(|| {
            let current = self
                .get(key)?
                .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok());
            let next = current.map_or(now_ms.saturating_add(1), |v| v.saturating_add(1));
            self.set(key, next.to_string().as_bytes(), None)?;
            Ok(next)
        })
    }

    /// The members and expiry (Unix ms, 0 = never) of the tag set `set`,
    /// if alive. Read with its own bound ([`MAX_TAG_SET`]): a set larger
    /// than any value is still a set, and one larger than that bound is an
    /// error, never an empty set.
    fn read_tag_set(&self, set: &str) -> Result<Option<(Vec<u8>, u64)>, SharedError> {
        let path = self.path(set);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot open", &path, e)),
        };
        let bound = MAX_TAG_SET.max(self.max_file);
        let mut bytes = Vec::new();
        (&file)
            .take(bound + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err("cannot read", &path, e))?;
        if bytes.len() as u64 > bound {
            return Err(SharedError::new(
                ErrorKind::Server,
                format!("tag set {} is larger than {bound} bytes", path.display()),
            ));
        }
        let Some((head, at)) = parse_head(&bytes) else {
            return Ok(None);
        };
        if head.key != set.as_bytes() {
            return Ok(None);
        }
        if head.expired(now_ms()) {
            remove_if_same(&path, &file);
            return Ok(None);
        }
        bytes.drain(..at);
        Ok(Some((bytes, head.expires_at)))
    }

    /// Whether the entry of `key` is there and alive (its header only).
    fn is_live(&self, key: &[u8], now: u64) -> bool {
        let Ok(key) = std::str::from_utf8(key) else {
            return false;
        };
        matches!(read_head(&self.path(key)), Ok(Some(head)) if head.key == key.as_bytes() && !head.expired(now))
    }

    /// Adds `member` to each tag set, under the directory's lock. A set is
    /// an entry holding its members (each a `u32` LE length and the key),
    /// living as long as its longest-lived member.
    fn add_to_tags(
        &self,
        sets: &[String],
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<(), SharedError> {
        self.locked(|| {
            let now = now_ms();
            let wanted = ttl.map_or(0, |t| now.saturating_add(ttl_ms(t)));
            for set in sets {
                let (mut members, expires_at) = self.read_tag_set(set)?.unwrap_or_default();
                let known = decode_members(&members).any(|m| m == member.as_bytes());
                let expires_at = match (expires_at, wanted) {
                    (0, _) if !members.is_empty() => 0,
                    (_, 0) => 0,
                    (a, b) => a.max(b),
                };
                if known && expires_at == 0 {
                    continue;
                }
                if !known {
                    let before = members.len();
                    members.extend_from_slice(&(member.len() as u32).to_le_bytes());
                    members.extend_from_slice(member.as_bytes());
                    if crosses_power_of_two(before, members.len()) {
                        // Members whose entries expired or went would stay
                        // forever: drop them, once per doubling.
                        members = encode_members(
                            decode_members(&members)
                                .filter(|m| *m == member.as_bytes() || self.is_live(m, now)),
                        );
                    }
                }
                let ttl = (expires_at != 0)
                    .then(|| Duration::from_millis(expires_at.saturating_sub(now).max(1)));
                self.set(set, &members, ttl)?;
            }
            Ok(())
        })
    }

    /// Deletes every member of the tag set `set`, and the set.
    fn delete_tag(&self, set: &str) -> Result<u64, SharedError> {
        self.locked(|| {
            let Some((members, _)) = self.read_tag_set(set)? else {
                return Ok(0);
            };
            let keys: Vec<String> = decode_members(&members)
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            self.delete(&keys)?;
            self.delete(&[set.to_string()])?;
            // As the trait says: the members named, deleted now or not.
            Ok(keys.len() as u64)
        })
    }

    /// Takes the lock `key` for `ttl` unless a live one is there.
    fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, SharedError> {
        self.locked(|| {
            if self.get(key)?.is_some() {
                return Ok(false);
            }
            self.set(key, token.as_bytes(), Some(ttl))?;
            Ok(true)
        })
    }

    /// Releases the lock `key` if it still holds `token`.
    fn unlock(&self, key: &str, token: &str) -> Result<(), SharedError> {
        self.locked(|| {
            if self.get(key)?.as_deref() == Some(token.as_bytes()) {
                self.delete(&[key.to_string()])?;
            }
            Ok(())
        })
    }

    /// Starts a sweep on the blocking pool every `sweep_every` writes,
    /// unless one is running.
    fn after_write(self: &Arc<Self>) {
        if !self
            .writes
            .fetch_add(1, Relaxed)
            .is_multiple_of(self.sweep_every)
            || self.sweeping.swap(true, Relaxed)
        {
            return;
        }
        let done = SweepDone(self.clone());
        let handle =
            tokio::runtime::Handle::try_current().unwrap_or_else(|_| super::io_runtime().clone());
        handle.spawn_blocking(move || {
            if let Err(err) = done.0.sweep() {
                tracing::warn!(%err, "layercache: sweeping the cache directory failed");
            }
            drop(done);
        });
    }

    fn sweep(&self) -> Result<u64, SharedError> {
        let now = now_ms();
        let last = self.last_count.load(Relaxed) as usize;
        let start = fastrand::usize(0..=last.saturating_sub(SWEEP_SCAN));
        let mut count: u64 = 0;
        let mut position = 0usize;
        let mut candidates: Vec<(SystemTime, PathBuf)> = Vec::new();
        let mut removed = 0u64;
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            other => other.map_err(|e| io_err("cannot list", &self.dir, e))?,
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if !is_entry_name(&name) {
                if name.to_string_lossy().ends_with(".tmp") {
                    remove_stale_tmp(&entry.path());
                }
                continue;
            }
            count += 1;
            position += 1;
            if position <= start || candidates.len() >= SWEEP_SCAN {
                continue;
            }
            let path = entry.path();
            let Ok(Some(head)) = read_head(&path) else {
                continue;
            };
            if head.expired(now) {
                if fs::remove_file(&path).is_ok() {
                    count -= 1;
                    removed += 1;
                }
            } else if !head.key.starts_with(RESERVED_PREFIX.as_bytes()) {
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    candidates.push((modified, path));
                }
            }
        }
        let mut evicted = 0u64;
        if count > self.threshold {
            candidates.sort_unstable_by_key(|(t, _)| *t);
            for (_, path) in candidates {
                if count <= self.threshold {
                    break;
                }
                if fs::remove_file(&path).is_ok() {
                    count -= 1;
                    evicted += 1;
                }
            }
        }
        self.last_count.store(count, Relaxed);
        tracing::debug!(dir = %self.dir.display(), entries = count, expired = removed, evicted, "layercache: swept the cache directory");
        Ok(count)
    }
}

/// `ttl` in whole ms (at least 1), saturating: `Duration::MAX` is "about
/// forever", never an overflow.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Whether growing from `before` to `after` bytes crosses a power of two
/// of at least [`PRUNE_FROM`].
fn crosses_power_of_two(before: usize, after: usize) -> bool {
    after >= PRUNE_FROM && (before < PRUNE_FROM || before.ilog2() != after.ilog2())
}

/// A tag set's value for `members`.
fn encode_members<'a>(members: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// The members of a tag set's value (length-prefixed keys); stops at the
/// first malformed one.
fn decode_members(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let member = bytes.get(4..4 + len)?;
        bytes = &bytes[4 + len..];
        Some(member)
    })
}

/// Entry files are named by 32 hex digits; everything else (temporary
/// files, the lock) starts with a dot.
fn is_entry_name(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.len() == 32 && b.iter().all(u8::is_ascii_hexdigit)
}

fn remove_stale_tmp(path: &Path) {
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_TMP);
    if old {
        let _ = fs::remove_file(path);
    }
}

/// Removes the expired file at `path` unless a writer has replaced it
/// since `file` was opened (it would be a fresh value).
fn remove_if_same(path: &Path, file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let same = match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            let _ = fs::remove_file(path);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
    }
}

impl SharedStore for FsStore {
    fn describe(&self) -> String {
        format!("filesystem:{}", self.inner.dir.display())
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        Box::pin(run_blocking(move || inner.get(&key)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        Box::pin(async move {
            let after = inner.clone();
            run_blocking(move || inner.set(&key, &value, ttl)).await?;
            after.after_write();
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (inner, owned) = (self.inner.clone(), keys.to_vec());
        let delete: Option<BoxFuture<'static, _>> =
            (!owned.is_empty()).then(|| Box::pin(run_blocking(move || inner.delete(&owned))) as _);
        self.inner
            .bus
            .delete_then_publish(Arc::new(self.clone()), delete, notice)
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (inner, prefix) = (self.inner.clone(), prefix.to_string());
        Box::pin(run_blocking(move || inner.delete_prefix(&prefix)))
    }

    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        Box::pin(run_blocking(move || inner.read_version(&key)))
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        Box::pin(run_blocking(move || inner.bump_version(&key, now_ms)))
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
        let (inner, key, token) = (self.inner.clone(), key.to_string(), token.to_string());
        Box::pin(run_blocking(move || inner.try_lock(&key, &token, ttl)))
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (inner, key, token) = (self.inner.clone(), key.to_string(), token.to_string());
        Box::pin(run_blocking(move || inner.unlock(&key, &token)))
    }

    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let (inner, sets, member) = (self.inner.clone(), sets.to_vec(), member.to_string());
        Box::pin(run_blocking(move || inner.add_to_tags(&sets, &member, ttl)))
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let (inner, set) = (self.inner.clone(), set.to_string());
        Box::pin(run_blocking(move || inner.delete_tag(&set)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_with_a_deadline_then_a_timeout() {
        let dir = std::env::temp_dir().join(format!(
            "layercache-fs-lockwait-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let store = FsStore::open(
            &dir,
            100,
            "__layercache__:bus:t",
            &SharedSettings::default(),
        )
        .unwrap();
        let holder = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".versions.lock"))
            .unwrap();
        fs4::FileExt::lock(&holder).unwrap();
        let started = std::time::Instant::now();
        let err = store
            .inner
            .locked_within(Duration::from_millis(30), || Ok(()))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(holder);
        assert!(store
            .inner
            .locked_within(Duration::from_millis(30), || Ok(()))
            .is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sweep_dropped_before_it_ran_does_not_stop_later_sweeps() {
        let dir = std::env::temp_dir().join(format!(
            "layercache-fs-dropped-sweep-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let store =
            FsStore::open(&dir, 1, "__layercache__:bus:t", &SharedSettings::default()).unwrap();
        // A write from a runtime that has shut down: its sweep task is
        // dropped without running.
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = gone.handle().clone();
        drop(gone);
        {
            let _in_gone = handle.enter();
            store.inner.after_write();
        }
        assert!(
            !store.sweep_in_progress(),
            "the dropped sweep still counts as running"
        );
        // The next write starts a sweep (threshold 1: every write), which runs.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            store.set("a", b"v".to_vec(), None).await.unwrap();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.sweep_in_progress() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            store.inner.last_count.load(Relaxed),
            1,
            "a sweep ran and counted the entry"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
