//! A function's link to the shared tier (steps 3 and 5 there): its keys
//! and versions, reads, writes, backfill, tag sets and the notices and
//! outbox entries its invalidations send.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::local::Generation;
use super::policy::min_ttl;
use super::{FnCache, Key, Value};
use crate::codec::{self, CodecError, EnvelopeError, Meta};
use crate::key::KeyError;
use crate::metrics::SharedMetrics;
use crate::runtime::Runtime;
use crate::shared::outbox::Pending;
use crate::shared::{self, ErrorKind, Notice, SharedError, Tier};
use crate::value::CacheValue;

/// A function's link to the shared tier.
pub(crate) struct SharedLink {
    /// Whose registry hears of this function's version bumps.
    runtime: &'static Runtime,
    pub(super) tier: &'static Tier,
    /// The function's namespace and version group, as its notices and
    /// outbox entries name them.
    namespace: String,
    group: Option<String>,
    /// The function's version in the shared tier ([`UNKNOWN_VERSION`] until read).
    pub(super) version: AtomicU64,
    /// Its version group's version (0 without a group).
    pub(super) group_version: AtomicU64,
    /// Whether the value type survives the codec: unknown until the first
    /// write checks it, then ok or broken. A type the codec cannot read
    /// back (a `Serialize` impl that writes what its `Deserialize` does not
    /// read) would make every call a GET, a failed decode and a SET.
    pub(super) codec: std::sync::atomic::AtomicU8,
}

const CODEC_UNKNOWN: u8 = 0;
const CODEC_OK: u8 = 1;
const CODEC_BROKEN: u8 = 2;

/// The version of a function not yet read from the shared tier.
const UNKNOWN_VERSION: u64 = u64::MAX;

/// `span`, or [`tracing::Span::none`] when no subscriber wants it: a
/// disabled span still carries its metadata (for the `log` bridge), so
/// entering and recording it costs work on every call for nothing.
fn wanted(span: tracing::Span) -> tracing::Span {
    if span.is_disabled() {
        tracing::Span::none()
    } else {
        span
    }
}

/// Whether the shared tier is asked for the function's own value type (not
/// another type, as the manual cache does).
fn is_value_type<T: 'static, V: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<V>()
}

/// Moves `version` up to `to`, never down: notices of two bumps may arrive
/// out of order, and going back would revive keys the later bump retired.
fn raise_version(version: &AtomicU64, to: u64) {
    let mut cur = version.load(SeqCst);
    while cur == UNKNOWN_VERSION || cur < to {
        match version.compare_exchange(cur, to, SeqCst, SeqCst) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

impl SharedKey {
    pub(super) fn stable(&self) -> &str {
        &self.full[self.stable.clone()]
    }

    /// The key of the distributed lock (`lock = true`) on this entry.
    pub(super) fn lock_key(&self) -> String {
        format!("{}lock:{}", shared::RESERVED_PREFIX, self.full)
    }
}

/// Why a shared lookup found nothing: the key to write back under (`None`
/// when the tier failed: a write would likely cost a second timeout) and
/// the local tag either way.
#[derive(Default)]
pub(crate) struct SharedMiss {
    pub(super) key: Option<SharedKey>,
    pub(super) tag: u64,
}

impl SharedMiss {
    pub(super) fn at(key: SharedKey) -> SharedMiss {
        SharedMiss {
            tag: key.tag,
            key: Some(key),
        }
    }
}

/// A call's full key (`{CACHE_KEY_PREFIX}:{stable key}`, in one buffer),
/// key check and local tag.
pub(crate) struct Rendered {
    pub(super) buf: String,
    pub(super) stable_at: usize,
    pub(super) check: u64,
    pub(super) tag: u64,
}

impl Rendered {
    /// The local tag (and generation-slot hash) of the call.
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }
}

/// A call's key in the shared tier, computed once per miss.
pub(crate) struct SharedKey {
    /// `{CACHE_KEY_PREFIX}:{stable}[:v{version}]`: what is stored.
    pub(super) full: String,
    /// Where `{ns}:{suffix}` (what notices and prefix invalidation name) sits in `full`.
    pub(super) stable: std::ops::Range<usize>,
    /// Hash of `stable`: the local entry's tag.
    pub(super) tag: u64,
    /// The key check written into envelopes.
    pub(super) check: u64,
    /// The stored bytes failed verification: replace or delete them.
    pub(super) corrupt: bool,
}

impl SharedLink {
    pub(super) fn new(
        runtime: &'static Runtime,
        tier: &'static Tier,
        namespace: String,
        group: Option<String>,
    ) -> SharedLink {
        SharedLink {
            runtime,
            tier,
            version: AtomicU64::new(UNKNOWN_VERSION),
            group_version: AtomicU64::new(if group.is_some() { UNKNOWN_VERSION } else { 0 }),
            codec: AtomicU8::new(CODEC_UNKNOWN),
            namespace,
            group,
        }
    }

    /// The function's and its group's versions as this process knows
    /// them; `None` while either is unknown.
    pub(super) fn known_versions(&self) -> Option<(u64, u64)> {
        let (v, g) = (self.version.load(SeqCst), self.group_version.load(SeqCst));
        (v != UNKNOWN_VERSION && g != UNKNOWN_VERSION).then_some((v, g))
    }

    /// The function (`group` false) or its group moved to `version`.
    pub(super) fn raise(&self, group: bool, version: u64) {
        raise_version(
            if group {
                &self.group_version
            } else {
                &self.version
            },
            version,
        );
    }

    /// Notices may have been lost: both versions are read again.
    pub(super) fn forget_versions(&self) {
        self.version.store(UNKNOWN_VERSION, SeqCst);
        if self.group.is_some() {
            self.group_version.store(UNKNOWN_VERSION, SeqCst);
        }
    }

    /// The notice telling other processes to drop their copies of `stable`.
    pub(super) fn key_notice(&self, stable: &str) -> String {
        Notice::Key {
            namespace: &self.namespace,
            stable,
        }
        .encode(self.tier.instance())
    }

    /// Queues the deletion of the shared entry `stable` in the outbox
    /// (see [`shared::outbox`]); `name` is the function's, for the log.
    pub(super) fn defer(&self, name: &str, stable: String, err: &SharedError) {
        tracing::debug!(name, %err, "layercache: the shared tier did not take an invalidation; it waits in the outbox");
        self.tier.defer(Pending::Key {
            namespace: self.namespace.clone(),
            stable,
            group: self.group.clone(),
        });
    }

    /// Whether a pending invalidation in the outbox may cover this
    /// function's shared entries: its shared reads wait for it.
    pub(super) fn outbox_blocks(&self) -> bool {
        self.tier
            .outbox
            .blocks(&self.namespace, self.group.as_deref())
    }

    /// The function's version in the shared tier, read once and then kept
    /// up to date by notices.
    async fn version(&self, m: &SharedMetrics) -> Result<u64, SharedError> {
        self.known_version(m, &self.version, || self.tier.version_key(&self.namespace))
            .await
    }

    /// The version of the function's group, read once and then kept up
    /// to date by notices; 0 without a group.
    async fn group_version(&self, m: &SharedMetrics) -> Result<u64, SharedError> {
        match &self.group {
            Some(group) => {
                self.known_version(m, &self.group_version, || self.tier.group_key(group))
                    .await
            }
            None => Ok(0),
        }
    }

    /// `cell`, or the number under `key()` in the shared tier when `cell`
    /// is still unknown.
    async fn known_version(
        &self,
        m: &SharedMetrics,
        cell: &AtomicU64,
        key: impl FnOnce() -> String,
    ) -> Result<u64, SharedError> {
        let v = cell.load(SeqCst);
        if v != UNKNOWN_VERSION {
            return Ok(v);
        }
        let key = key();
        let read = self
            .tier
            .call(Some(m), self.tier.timeout(), |s| s.read_version(&key))
            .await?;
        // A notice may have set a newer version while we read: keep it.
        let _ = cell.compare_exchange(UNKNOWN_VERSION, read, SeqCst, SeqCst);
        Ok(cell.load(SeqCst))
    }

    /// Moves the function to a new version (`invalidate_all`), tells
    /// other processes, or leaves the bump in the outbox; entries that
    /// never expire are swept, since nothing else would remove them.
    pub(super) async fn bump(&self, m: &SharedMetrics, name: &str, never_expires: bool) {
        let tier = self.tier;
        let key = tier.version_key(&self.namespace);
        let now_ms = tier.clock().unix_millis();
        let bumped = tier
            .call(Some(m), tier.timeout(), |s| s.bump_version(&key, now_ms))
            .await;
        match bumped {
            Ok(version) => {
                raise_version(&self.version, version);
                // Every cache on this namespace (view caches and the manual
                // cache share the empty one) adopts the same number.
                self.runtime
                    .registry()
                    .namespace_moved(&self.namespace, version);
                if never_expires {
                    // Entries that never expire would stay under the old
                    // version forever: sweep them in the background.
                    let prefix = format!("{}:", tier.full_key(&self.namespace));
                    tier.spawn_prefix_delete(prefix);
                }
                let notice = Notice::All {
                    namespace: &self.namespace,
                    version,
                }
                .encode(tier.instance());
                if tier.bus_refused() {
                    return;
                }
                if let Err(err) = tier.publish(&notice).await {
                    tracing::debug!(name, %err, "layercache: could not tell other processes about an invalidation; it waits in the outbox");
                    tier.defer(Pending::All {
                        namespace: self.namespace.clone(),
                    });
                }
            }
            Err(err) => {
                // Unknown now: the next shared lookup re-reads it (after the
                // outbox has moved it on).
                self.version.store(UNKNOWN_VERSION, SeqCst);
                tracing::debug!(name, %err, "layercache: could not move the function to a new shared version; the bump waits in the outbox");
                tier.defer(Pending::All {
                    namespace: self.namespace.clone(),
                });
            }
        }
    }

    /// The shared key of a rendered call: its stable key under the
    /// function's (and group's) current version. On failure, the error and
    /// the local tag (0 when the key could not even be rendered).
    pub(super) async fn key(
        &self,
        m: &SharedMetrics,
        rendered: Result<Rendered, KeyError>,
    ) -> Result<SharedKey, (SharedError, u64)> {
        let Rendered {
            buf: mut full,
            stable_at,
            check,
            tag,
        } = rendered.map_err(|e| {
            m.record_error(ErrorKind::Encode);
            (SharedError::new(ErrorKind::Encode, e.to_string()), 0)
        })?;
        let version = self.version(m).await.map_err(|e| (e, tag))?;
        let group_version = self.group_version(m).await.map_err(|e| (e, tag))?;
        let stable = stable_at..full.len();
        if version != 0 {
            let _ = write!(full, ":v{version}");
        }
        if group_version != 0 {
            let _ = write!(full, ":g{group_version}");
        }
        Ok(SharedKey {
            stable,
            full,
            tag,
            check,
            corrupt: false,
        })
    }
}

impl<K: Key, V: Value> FnCache<K, V> {
    /// Deletes the shared entry and tells other processes; `true` when the
    /// shared tier held it.
    pub(super) async fn invalidate_shared(&self, link: &SharedLink, key: &K) -> bool {
        let m = &self.metrics.shared;
        let result = async {
            let sk = match self.shared_key(link, key).await {
                Ok(sk) => sk,
                Err((err, _)) => {
                    // The function's version could not be read (say its
                    // cluster node is down), so the stored key is unknown;
                    // other processes can still drop their local copies.
                    if let Ok(stable) = self.stable_key(key) {
                        let notice = link.key_notice(&stable);
                        if !link.tier.bus_refused() {
                            let _ = link.tier.publish(&notice).await;
                        }
                    }
                    return Err(err);
                }
            };
            let notice = link.key_notice(sk.stable());
            // A refused bus refuses PUBLISH too, which would fail the delete.
            let notice = (!link.tier.bus_refused()).then_some(notice);
            let keys = [sk.full];
            link.tier
                .call(Some(m), link.tier.timeout(), |s| {
                    s.delete(&keys, notice.as_deref())
                })
                .await
        }
        .await;
        match result {
            Ok(n) => n > 0,
            Err(err) => {
                self.defer_key(link, key, &err);
                false
            }
        }
    }

    /// Queues the invalidation of `key` in the outbox (see [`shared::outbox`]).
    pub(super) fn defer_key(&self, link: &SharedLink, key: &K, err: &SharedError) {
        // No stable key, no shared entry to delete.
        if let Ok(stable) = self.stable_key(key) {
            link.defer(self.name(), stable, err);
        }
    }

    /// How long a new local copy lives: `ttl`, capped while the bus is
    /// down by `local_timeout` (or [`shared::BUS_DOWN_LOCAL_TIMEOUT`]),
    /// since no notice would drop it.
    pub(super) fn cap_while_bus_down(&self, ttl: Option<Duration>) -> Option<Duration> {
        match &self.shared {
            Some(link) if link.tier.bus_is_down() => min_ttl(ttl, Some(self.bus_down_cap())),
            _ => ttl,
        }
    }

    /// The call's shared key. On failure, the error and the local tag (0
    /// when the key cannot even be rendered): a local copy must carry its
    /// tag even when the shared tier is down, or a later notice from
    /// another process could not find it.
    pub(super) async fn shared_key(
        &self,
        link: &SharedLink,
        key: &K,
    ) -> Result<SharedKey, (SharedError, u64)> {
        link.key(&self.metrics.shared, self.rendered(key)).await
    }

    /// The stable key of `key`, its key check and its tag, rendered once per call.
    pub(crate) fn rendered(&self, key: &K) -> Result<Rendered, KeyError> {
        let prefix = self
            .shared
            .as_ref()
            .map_or("", |link| link.tier.key_prefix());
        let mut buf = String::with_capacity(prefix.len() + self.namespace.len() + 48);
        if !prefix.is_empty() {
            buf.push_str(prefix);
            buf.push(':');
        }
        let stable_at = buf.len();
        if !self.namespace.is_empty() {
            buf.push_str(&self.namespace);
            buf.push(':');
        }
        let check = (self.render)(key, &mut buf)?;
        let tag = xxhash_rust::xxh3::xxh3_64(&buf.as_bytes()[stable_at..]);
        Ok(Rendered {
            buf,
            stable_at,
            check,
            tag,
        })
    }

    /// Step 3: the shared tier, decoding a `T` (the value type for a
    /// function; the caller's type for the manual cache).
    /// `Ok(value, remaining life, tag)` on a hit; otherwise what the
    /// write-back needs.
    pub(crate) async fn shared_get<T: DeserializeOwned + 'static>(
        &self,
        link: &SharedLink,
        rendered: Result<Rendered, KeyError>,
    ) -> Result<(T, Option<Duration>, u64), SharedMiss> {
        let m = &self.metrics.shared;
        if (link.codec.load(SeqCst) == CODEC_BROKEN && is_value_type::<T, V>())
            || link.outbox_blocks()
        {
            return Err(SharedMiss {
                key: None,
                tag: rendered.map_or(0, |r| r.tag),
            });
        }
        let mut sk = match link.key(&self.metrics.shared, rendered).await {
            Ok(sk) => sk,
            Err((_, tag)) => return Err(SharedMiss { key: None, tag }),
        };
        let tag = sk.tag;
        let span = wanted(tracing::trace_span!(
            "layercache.shared",
            function = self.name(),
            op = "get",
            outcome = tracing::field::Empty
        ));
        // A function with `time_to_idle` moves the entry's expiry as it reads it.
        let touch = self.policy.idle_touch();
        let get = link
            .tier
            .call(Some(m), link.tier.timeout(), |s| match touch {
                Some(ttl) => s.get_and_touch(&sk.full, ttl),
                None => s.get(&sk.full),
            });
        let got = if span.is_none() {
            get.await
        } else {
            tracing::Instrument::instrument(get, span.clone()).await
        };
        let bytes = match got {
            Ok(bytes) => bytes,
            Err(err) if err.kind == ErrorKind::Corrupt => {
                // The store could not read this key as a value (counted by
                // the tier): a miss whose write-back replaces it.
                span.record("outcome", "corrupt");
                m.record_miss();
                tracing::warn!(name = self.name(), key = %sk.full, %err, "layercache: unusable shared key; treating as a miss and replacing it");
                sk.corrupt = true;
                return Err(SharedMiss::at(sk));
            }
            Err(_) => {
                span.record("outcome", "error");
                return Err(SharedMiss { key: None, tag });
            }
        };
        self.open_shared(link, sk, bytes, &span)
    }

    /// Several keys' step 3 at once (the manual cache's `get_many`): one
    /// `get_many` of the store (one `MGET` on Redis), each answer decoded as
    /// [`FnCache::shared_get`] does. `None` for each key not found, not
    /// usable or not asked (a failing tier: every key).
    pub(crate) async fn shared_get_many<T: DeserializeOwned + 'static>(
        &self,
        link: &SharedLink,
        rendered: Vec<Result<Rendered, KeyError>>,
    ) -> Vec<Option<(T, Option<Duration>, u64)>> {
        let m = &self.metrics.shared;
        let mut found: Vec<Option<(T, Option<Duration>, u64)>> =
            rendered.iter().map(|_| None).collect();
        if (link.codec.load(SeqCst) == CODEC_BROKEN && is_value_type::<T, V>())
            || link.outbox_blocks()
        {
            return found;
        }
        let mut keys = Vec::with_capacity(rendered.len());
        for (i, r) in rendered.into_iter().enumerate() {
            if let Ok(sk) = link.key(m, r).await {
                keys.push((i, sk));
            }
        }
        let fulls: Vec<String> = keys.iter().map(|(_, sk)| sk.full.clone()).collect();
        let span = wanted(tracing::trace_span!(
            "layercache.shared",
            function = self.name(),
            op = "get_many",
            keys = fulls.len(),
            outcome = tracing::field::Empty
        ));
        let get = link
            .tier
            .call(Some(m), link.tier.timeout(), |s| s.get_many(&fulls));
        let Ok(answers) = tracing::Instrument::instrument(get, span.clone()).await else {
            span.record("outcome", "error");
            return found;
        };
        for ((i, sk), bytes) in keys.into_iter().zip(answers) {
            found[i] = self.open_shared(link, sk, bytes, &span).ok();
        }
        found
    }

    /// Decodes what the store answered for `sk`: a hit, or a miss (counted)
    /// for nothing, an expired envelope or bytes that are not this key's `T`.
    fn open_shared<T: DeserializeOwned + 'static>(
        &self,
        link: &SharedLink,
        mut sk: SharedKey,
        bytes: Option<Vec<u8>>,
        span: &tracing::Span,
    ) -> Result<(T, Option<Duration>, u64), SharedMiss> {
        let m = &self.metrics.shared;
        let Some(bytes) = bytes else {
            span.record("outcome", "miss");
            m.record_miss();
            return Err(SharedMiss::at(sk));
        };
        match link.tier.settings().codec.open::<T>(&bytes, sk.check) {
            Ok((value, meta)) => {
                let now_ms = link.tier.clock().unix_millis();
                let remaining = match meta.expires_at_ms {
                    0 => None,
                    at if at > now_ms => Some(Duration::from_millis(at - now_ms)),
                    // Expired by its own clock (Redis had not dropped it yet).
                    _ => {
                        span.record("outcome", "expired");
                        m.record_miss();
                        return Err(SharedMiss::at(sk));
                    }
                };
                span.record("outcome", "hit");
                Ok((value, remaining, sk.tag))
            }
            Err(err) => {
                span.record("outcome", "corrupt");
                m.record_error(ErrorKind::Corrupt);
                m.record_miss();
                if err == EnvelopeError::Type {
                    // A deploy that changed the type, or the manual cache read as another type.
                    tracing::debug!(name = self.name(), key = %sk.full, "layercache: shared value of another type; a miss");
                } else if err == EnvelopeError::Key {
                    // Almost always a function with other argument types under
                    // the same templated key (a deploy, a shared `key_prefix`).
                    tracing::debug!(name = self.name(), key = %sk.full, "layercache: shared value written for other arguments or argument types; a miss");
                } else {
                    tracing::warn!(name = self.name(), key = %sk.full, %err, len = bytes.len(), "layercache: unusable bytes under a shared key; treating as a miss and replacing them");
                }
                sk.corrupt = true;
                Err(SharedMiss::at(sk))
            }
        }
    }

    /// Step 5 for the shared tier: seal and store `value` unless an
    /// invalidation raced the computation or it is too large.
    pub(crate) async fn shared_put<T: CacheValue>(
        &self,
        link: &SharedLink,
        sk: &SharedKey,
        value: &T,
        generation: Generation,
        ttl: Option<Duration>,
    ) -> bool {
        let m = &self.metrics.shared;
        if !self.local.is_current(generation) {
            return false;
        }
        let now_ms = link.tier.clock().unix_millis();
        let meta = Meta {
            type_fingerprint: codec::type_fingerprint::<T>(),
            key_check: sk.check,
            written_at_ms: now_ms,
            expires_at_ms: ttl.map_or(0, |t| {
                now_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            }),
        };
        let settings = link.tier.settings();
        let bytes = match settings.codec.seal(value, &meta, settings.max_value_size) {
            Ok(bytes) => bytes,
            Err(CodecError::TooLarge { limit }) => {
                // Encoding stopped at the limit: the value cost `limit` bytes, not its size.
                m.record_error(ErrorKind::Oversize);
                tracing::debug!(
                    name = self.name(),
                    limit,
                    "layercache: value over the shared size limit; kept in-process only"
                );
                if sk.corrupt {
                    self.delete_entry(link, sk).await;
                }
                return false;
            }
            Err(err) => {
                m.record_error(ErrorKind::Encode);
                tracing::warn!(name = self.name(), %err, "layercache: cannot encode a value for the shared tier; kept in-process only");
                return false;
            }
        };
        if is_value_type::<T, V>() && link.codec.load(SeqCst) != CODEC_OK {
            // Once per function: can the codec read this type back?
            if let Err(err) = settings.codec.open::<T>(&bytes, sk.check) {
                if link.codec.swap(CODEC_BROKEN, SeqCst) != CODEC_BROKEN {
                    tracing::error!(name = self.name(), %err, codec = settings.codec.as_str(), "layercache: the value type does not survive the codec; this function stays in-process");
                }
                m.record_error(ErrorKind::Encode);
                return false;
            }
            link.codec.store(CODEC_OK, SeqCst);
        }
        let len = bytes.len();
        let stored = link
            .tier
            .call(Some(m), link.tier.timeout(), |s| {
                // Kept past the envelope's expiry for the fail-safe window.
                s.set(&sk.full, bytes, self.policy.stored_ttl(ttl))
            })
            .await;
        if let Err(err) = &stored {
            if err.kind == ErrorKind::Timeout {
                // The SET may still run when a stalled server wakes up,
                // after an invalidation that made this value old: have the
                // outbox delete the key once the server answers.
                link.defer(self.name(), sk.stable().to_string(), err);
            }
        }
        let stored = stored.is_ok();
        if stored {
            m.record_write(len);
            // An invalidation may have deleted the key while the SET was in
            // flight; the value may predate it, so take it out again.
            if !self.local.is_current(generation) {
                self.delete_entry(link, sk).await;
                return false;
            }
        }
        stored
    }

    /// Deletes the entry under `sk`, best effort: bytes that failed
    /// verification when nothing replaces them, or a write an invalidation
    /// overtook.
    pub(crate) async fn delete_entry(&self, link: &SharedLink, sk: &SharedKey) {
        let keys = [sk.full.clone()];
        let _ = link
            .tier
            .call(Some(&self.metrics.shared), link.tier.timeout(), |s| {
                s.delete(&keys, None)
            })
            .await;
    }

    /// A shared hit: count it and keep a local copy for the rest of its
    /// life (capped by `local_timeout`), unless an invalidation raced it.
    pub(crate) fn backfill(
        &self,
        key: K,
        local_copy: impl FnOnce() -> V,
        remaining: Option<Duration>,
        generation: Generation,
        tag: u64,
    ) {
        self.metrics.record_shared_hit();
        if !self.local.on {
            // No local tier: no copy to make (a clone per shared hit otherwise).
            return;
        }
        self.write_back_with_timeout(
            key,
            local_copy(),
            generation,
            min_ttl(remaining, self.policy.local_ttl),
            tag,
        );
    }

    /// Stores `local` in this process and `shared` (the same value, in its
    /// serializable form) in the shared tier, for `ttl`; then tells other
    /// processes to drop the copies it replaces (an explicit write is an
    /// update, unlike a write-back after a miss).
    pub(crate) async fn put_shared<T: CacheValue>(
        &self,
        link: &SharedLink,
        key: K,
        local: V,
        shared: &T,
        ttl: Option<Duration>,
    ) {
        let (sk, tag) = match self.shared_key(link, &key).await {
            Ok(sk) => {
                let tag = sk.tag;
                (Some(sk), tag)
            }
            Err((_, tag)) => (None, tag),
        };
        let Some(sk) = sk else {
            // The old value may still be in the shared tier: it must go.
            self.defer_key(
                link,
                &key,
                &SharedError::new(ErrorKind::Skipped, "no version"),
            );
            self.put_local(key, local, min_ttl(ttl, self.policy.local_ttl), tag);
            return;
        };
        self.put_local(key.clone(), local, min_ttl(ttl, self.policy.local_ttl), tag);
        // After the put's own bump: only a later invalidation cancels the write.
        let generation = self.local.generation(tag);
        let published = if self.shared_put(link, &sk, shared, generation, ttl).await {
            let notice = link.key_notice(sk.stable());
            link.tier.bus_refused() || link.tier.publish(&notice).await.is_ok()
        } else {
            false
        };
        if !published && self.local.is_current(generation) {
            // Not written (down, oversize) or not announced: whatever the
            // shared tier or other processes hold for the key is older.
            let err = SharedError::new(ErrorKind::Skipped, "put not written or not announced");
            self.defer_key(link, &key, &err);
        }
    }

    /// Step 5 outside a `#[cached]` call (the manual cache's
    /// get-or-insert): `local` here and `shared` in the shared tier, for
    /// `ttl`, unless an invalidation happened since `generation`.
    pub(crate) async fn write_back_everywhere<T: CacheValue>(
        &self,
        link: &SharedLink,
        key: K,
        local: V,
        shared: &T,
        generation: Generation,
        ttl: Option<Duration>,
    ) {
        match self.shared_key(link, &key).await {
            Ok(sk) => {
                let local_ttl = min_ttl(ttl, self.policy.local_ttl);
                self.write_back_with_timeout(key, local, generation, local_ttl, sk.tag);
                self.shared_put(link, &sk, shared, generation, ttl).await;
            }
            Err((_, tag)) => self.write_back_with_timeout(
                key,
                local,
                generation,
                min_ttl(ttl, self.policy.local_ttl),
                tag,
            ),
        }
    }

    /// Whether the shared tier holds a fresh envelope under `key`, of any type.
    pub(crate) async fn shared_contains(&self, link: &SharedLink, key: &K) -> bool {
        if link.outbox_blocks() {
            return false;
        }
        let Ok(sk) = self.shared_key(link, key).await else {
            return false;
        };
        let found = link
            .tier
            .call(Some(&self.metrics.shared), link.tier.timeout(), |s| {
                s.get(&sk.full)
            })
            .await;
        let now_ms = link.tier.clock().unix_millis();
        matches!(found, Ok(Some(bytes)) if codec::read_meta(&bytes)
            .is_ok_and(|(_, m)| m.key_check == sk.check && (m.expires_at_ms == 0 || m.expires_at_ms > now_ms)))
    }

    /// Step 5 for the shared tier: store the computed value, or delete the
    /// unusable bytes it replaces when it is not cacheable.
    pub(super) async fn write_shared(
        &self,
        link: &SharedLink,
        sk: &SharedKey,
        stored: Option<(&V, Option<Duration>)>,
        generation: Generation,
        tags: &[String],
    ) where
        V: CacheValue,
    {
        match stored {
            Some((v, ttl)) => {
                let stored = self.shared_put(link, sk, v, generation, ttl).await;
                if stored && !tags.is_empty() {
                    // Record the key under each tag, kept as long as the entry.
                    let sets: Vec<String> = tags.iter().map(|t| link.tier.tag_key(t)).collect();
                    let ttl = self.policy.shared_ttl(ttl);
                    let m = &self.metrics.shared;
                    let tagged = link
                        .tier
                        .call(Some(m), link.tier.timeout(), |s| {
                            s.add_to_tags(&sets, &sk.full, ttl)
                        })
                        .await;
                    if let Err(err) = tagged {
                        // A value missing from its tag sets would outlive a
                        // tag invalidation: take it out of the shared tier.
                        tracing::warn!(name = self.name(), %err, "layercache: could not record a shared entry under its tags; deleting it from the shared tier");
                        let keys = [sk.full.clone()];
                        if let Err(err) = link
                            .tier
                            .call(Some(m), link.tier.timeout(), |s| s.delete(&keys, None))
                            .await
                        {
                            tracing::warn!(name = self.name(), %err, "layercache: could not delete a shared entry missing from its tags; a tag invalidation may miss it until it expires");
                        }
                    }
                }
            }
            None if sk.corrupt => self.delete_entry(link, sk).await,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_only_moves_up_even_when_notices_arrive_out_of_order() {
        let v = AtomicU64::new(UNKNOWN_VERSION);
        raise_version(&v, 5);
        assert_eq!(
            v.load(SeqCst),
            5,
            "an unknown version takes the first one seen"
        );
        raise_version(&v, 9);
        raise_version(&v, 7);
        assert_eq!(
            v.load(SeqCst),
            9,
            "a late notice of an older bump is ignored"
        );
    }
}
