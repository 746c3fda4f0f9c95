//! Redis Cluster as the shared tier (cargo feature `redis-cluster`,
//! `CACHE_TYPE=redis-cluster`, `CACHE_REDIS_NODES`), through redis-rs's
//! async cluster client.
//!
//! - **Data** goes over one [`ClusterConnection`]: multiplexed, cloned per
//!   operation, it keeps a connection per node, routes each command by its
//!   key's slot, follows `MOVED`/`ASK`, refreshes the slot map and
//!   reconnects by itself. It is created without waiting for any node, so
//!   a cluster that is down at start-up costs counted misses, not an error.
//! - **Multi-key commands never cross slots**: `UNLINK` of several keys is
//!   split per slot by redis-rs (and the counts summed); a version bump is
//!   a pipeline on one key; locks are one key.
//! - **Tags** cannot be one Lua script over the keys of many slots: each
//!   tag set is updated by its own script (atomic per set), and deleting a
//!   tag reads the set, unlinks its members, then removes exactly those
//!   members from the set. In a cluster, tag operations are therefore *not*
//!   atomic across keys: a member added while a tag is being deleted stays
//!   in the set (and is deleted by the next invalidation of the tag).
//! - **Prefix invalidation** runs `SCAN MATCH <escaped prefix>* COUNT 500`
//!   on every master the slot map names (never `KEYS`) and unlinks what it
//!   finds; keys under [`RESERVED_PREFIX`] are kept. A master that does not
//!   answer fails the whole sweep (an honest error, not a partial success).
//! - **Notices**: a classic `PUBLISH` in a cluster reaches the subscribers
//!   of every node, so a notice is published on any node (another one is
//!   tried when it fails), and each process subscribes through a plain
//!   pub/sub connection to one node, from the seeds and then the masters
//!   it learned. When that node goes away the process subscribes on
//!   another one and reports [`BusEvent::Subscribed`] with `after_gap`, so
//!   local copies that may have missed notices are dropped. A delete with
//!   a notice (`UNLINK`, then `PUBLISH`: different slots, no pipeline) runs
//!   as one task of its own, so a caller that stops waiting cannot leave
//!   the keys deleted and the notice unsent.
//! - **No hash tags** in entry keys: `{…}` would put every entry of a
//!   function on one slot, so one hot function would load one master.
//!   Entries spread over all slots by their full key; version keys and tag
//!   sets are single keys anyway.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Value};

use super::redis::{
    classify, escape_glob, listen, redact, single_key, ADD_TO_TAGS_SCRIPT, SCAN_COUNT,
};
use super::{
    BoxFuture, BusEvent, BusHandler, ErrorKind, SharedError, SharedSettings, SharedStore,
    RESERVED_PREFIX,
};

/// Keys unlinked per command when a tag is deleted.
const UNLINK_BATCH: usize = 500;
/// Longest a subscription attempt on one node may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis Cluster store.
pub struct RedisClusterStore {
    client: ClusterClient,
    /// Replaced by [`SharedStore::reset`]; cloned per operation.
    conn: RwLock<ClusterConnection>,
    /// The seed nodes, for the pub/sub connection (credentials and TLS
    /// of discovered masters are taken from the first).
    seeds: Vec<ConnectionInfo>,
    /// Masters seen by the last prefix sweep or subscription attempt.
    masters: Arc<Mutex<Vec<(String, u16)>>>,
    channel: String,
    describe: String,
}

fn cluster_kind(err: &RedisError) -> ErrorKind {
    use redis::ServerErrorKind as S;
    match err.kind() {
        // No connection to the node that owns the slot, or the cluster says
        // it is down: the store is unhealthy, as a refused connection is.
        redis::ErrorKind::ClusterConnectionNotFound
        | redis::ErrorKind::Server(S::ClusterDown | S::MasterDown | S::TryAgain) => {
            ErrorKind::Connection
        }
        _ => classify(err),
    }
}

fn to_shared(err: RedisError) -> SharedError {
    let kind = cluster_kind(&err);
    if kind == ErrorKind::Connection {
        super::redis::tls::report(&err);
    }
    SharedError::new(kind, redact(&err.to_string()))
}

/// `host:port` as redis-rs names a node (the host may be an IPv6 address).
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// A seed given as a bare `host:port` is a `redis://` URL.
fn seed_url(node: &str) -> String {
    let node = node.trim();
    if node.contains("://") {
        node.to_string()
    } else {
        format!("redis://{node}")
    }
}

impl RedisClusterStore {
    /// A store for the cluster reached through `nodes` (seed URLs,
    /// `redis://[user[:password]@]host:port`, or `rediss://` with the `tls`
    /// feature; a bare `host:port` is read as `redis://host:port`). Does
    /// not wait for any node: the connection is made in the background and
    /// retried by the operations, so a cluster that is down at start-up is
    /// not an error here.
    pub fn open(
        nodes: &[String],
        channel: String,
        settings: &SharedSettings,
    ) -> Result<RedisClusterStore, SharedError> {
        Self::open_with_tls(nodes, channel, settings, &crate::RedisTls::default())
    }

    /// [`RedisClusterStore::open`] trusting the CA and presenting the
    /// client certificate of `tls` on `rediss://` seeds, for the data
    /// connections and the bus alike (see [`RedisTls`](crate::RedisTls)).
    pub fn open_with_tls(
        nodes: &[String],
        channel: String,
        settings: &SharedSettings,
        tls: &crate::RedisTls,
    ) -> Result<RedisClusterStore, SharedError> {
        let urls: Vec<String> = nodes.iter().map(|n| seed_url(n)).collect();
        let describe = format!(
            "redis-cluster {}",
            urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",")
        );
        let invalid = |e: String| {
            SharedError::new(
                ErrorKind::Connection,
                format!("invalid CACHE_REDIS_NODES {describe}: {e}"),
            )
        };
        if urls.is_empty() {
            return Err(invalid("no seed node".into()));
        }
        let mut seeds = Vec::with_capacity(urls.len());
        for url in &urls {
            // Through a client, which puts the CA and client certificate
            // into a `rediss://` seed (and installs the crypto provider).
            let info = if url.starts_with("rediss://") {
                super::redis::tls::client(url, tls)?
                    .get_connection_info()
                    .clone()
            } else {
                url.as_str()
                    .into_connection_info()
                    .map_err(|e| invalid(e.to_string()))?
            };
            seeds.push(info);
        }
        let patience = settings.timeout.max(Duration::from_millis(100));
        let client = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(patience * 4)
            // Per attempt and overall; the tier's own timeout is shorter
            // and bounds every call, this only ends abandoned requests.
            .response_timeout((patience * 20).max(Duration::from_secs(1)))
            // A few quick retries (MOVED after a failover, a reconnect),
            // not redis-rs's default of 16 with waits of seconds.
            .retries(2)
            .min_retry_wait(5)
            .max_retry_wait(100);
        #[cfg(feature = "tls")]
        let client = match super::redis::tls::certificates(tls)? {
            Some(certs) if urls.iter().any(|u| u.starts_with("rediss://")) => client.certs(certs),
            _ => client,
        };
        let client = client.build().map_err(|e| invalid(e.to_string()))?;
        let conn = Self::connect(&client);
        Ok(RedisClusterStore {
            client,
            conn: RwLock::new(conn),
            seeds,
            masters: Arc::new(Mutex::new(Vec::new())),
            channel,
            describe,
        })
    }

    /// A connection that connects in the background, driven by the I/O
    /// runtime whoever calls.
    fn connect(client: &ClusterClient) -> ClusterConnection {
        let _guard = super::io_runtime().enter();
        client.get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new())
    }

    /// The pub/sub channel of invalidation notices.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    fn conn(&self) -> ClusterConnection {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The masters of the slot map, as `(host, port)`; an error when one of
    /// them does not answer.
    pub async fn masters(&self) -> Result<Vec<(String, u16)>, SharedError> {
        let masters = masters_of(&mut self.conn()).await?;
        *self.masters.lock().unwrap_or_else(|e| e.into_inner()) = masters.clone();
        Ok(masters)
    }

    /// Unlinks `keys` (split per slot by redis-rs); how many existed.
    async fn unlink<K: redis::ToRedisArgs + Sync>(
        conn: &mut ClusterConnection,
        keys: &[K],
    ) -> Result<u64, SharedError> {
        if keys.is_empty() {
            return Ok(0);
        }
        redis::cmd("UNLINK")
            .arg(keys)
            .query_async::<u64>(conn)
            .await
            .map_err(to_shared)
    }

    /// Sweeps one master: `SCAN` there, `UNLINK` what matches.
    async fn delete_prefix_on(
        &self,
        (host, port): (String, u16),
        pattern: &str,
    ) -> Result<u64, SharedError> {
        let mut conn = self.conn();
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = conn
                .route_command(scan, route.clone())
                .await
                .map_err(to_shared)?;
            let (next, keys): (u64, Vec<Vec<u8>>) =
                redis::from_redis_value(reply).map_err(|e| to_shared(e.into()))?;
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !k.starts_with(RESERVED_PREFIX.as_bytes()))
                .collect();
            deleted += Self::unlink(&mut conn, &keys).await?;
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// Every master of `conn`'s slot map, asked to answer `PING` (so a master
/// that is down fails the answer instead of being skipped).
async fn masters_of(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, SharedError> {
    let reply = conn
        .route_command(
            redis::cmd("PING"),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        )
        .await
        .map_err(to_shared)?;
    let Value::Map(answers) = reply else {
        return Err(SharedError::new(
            ErrorKind::Server,
            format!("unexpected answer to PING on every master: {reply:?}"),
        ));
    };
    let mut masters = Vec::with_capacity(answers.len());
    for (address, answer) in answers {
        if let Value::ServerError(e) = answer {
            return Err(SharedError::new(
                ErrorKind::Server,
                format!("a master answered PING with {e:?}"),
            ));
        }
        let address: String = redis::from_redis_value(address).map_err(|e| to_shared(e.into()))?;
        let master = split_address(&address).ok_or_else(|| {
            SharedError::new(ErrorKind::Server, format!("not a node address: {address}"))
        })?;
        masters.push(master);
    }
    Ok(masters)
}

impl SharedStore for RedisClusterStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(to_shared)
        })
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            redis::cmd("GETEX")
                .arg(key)
                .arg("PX")
                .arg(super::redis::px(ttl))
                .query_async(&mut conn)
                .await
                .map_err(to_shared)
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
        let mut conn = self.conn();
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(super::redis::px(ttl));
            }
            cmd.query_async::<()>(&mut conn).await.map_err(to_shared)
        })
    }

    fn delete<'a>(
        &'a self,
        keys: &'a [String],
        notice: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let mut conn = self.conn();
        let Some(notice) = notice else {
            return Box::pin(async move { Self::unlink(&mut conn, keys).await });
        };
        // Keys of many slots cannot share a pipeline with the notice:
        // delete first, then tell the others (never the other way round),
        // as one task of its own, so a caller that stops waiting (the
        // tier's timeout) cannot leave the keys deleted and the notice
        // unsent (other processes would keep their copies, with no gap to
        // see).
        let (keys, channel, notice) = (keys.to_vec(), self.channel.clone(), notice.to_string());
        Box::pin(super::polled::detached(async move {
            let deleted = Self::unlink(&mut conn, &keys).await;
            // The notice goes out even when a key's master is down: the
            // other processes' local copies must go whatever the shared
            // tier could do (the failure is still returned, and counted).
            publish_on_any_node(&mut conn, &channel, &notice).await?;
            deleted
        }))
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        Box::pin(async move {
            let pattern = format!("{}*", escape_glob(prefix));
            let masters = self.masters().await?;
            let sweeps = masters
                .into_iter()
                .map(|m| self.delete_prefix_on(m, &pattern));
            let counts = futures_util::future::try_join_all(sweeps).await?;
            Ok(counts.into_iter().sum())
        })
    }

    fn read_version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            single_key::read_version(&mut conn, key)
                .await
                .map_err(to_shared)
        })
    }

    fn bump_version<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<u64, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            single_key::bump_version(&mut conn, key, now_ms)
                .await
                .map_err(to_shared)
        })
    }

    fn publish<'a>(&'a self, notice: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move { publish_on_any_node(&mut conn, &self.channel, notice).await })
    }

    fn subscribe(&self, handler: BusHandler) -> Option<BoxFuture<'static, ()>> {
        let bus = Bus {
            seeds: self.seeds.clone(),
            masters: self.masters.clone(),
            channel: self.channel.clone(),
            client: self.client.clone(),
        };
        Some(Box::pin(bus.run(handler)))
    }

    fn reset(&self) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Self::connect(&self.client);
        tracing::info!(store = %self.describe, "layercache: replaced a Redis Cluster connection that stopped answering");
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            single_key::try_lock(&mut conn, key, token, ttl)
                .await
                .map_err(to_shared)
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            single_key::unlock(&mut conn, key, token)
                .await
                .map_err(to_shared)
        })
    }

    fn add_to_tags<'a>(
        &'a self,
        sets: &'a [String],
        member: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let conn = self.conn();
        Box::pin(async move {
            // The sets live in different slots: one script per set.
            let ttl_arg: i64 = ttl.map_or(-1, |t| super::redis::px(t) as i64);
            let adds = sets.iter().map(|set| {
                let mut conn = conn.clone();
                async move {
                    redis::cmd("EVAL")
                        .arg(ADD_TO_TAGS_SCRIPT)
                        .arg(1)
                        .arg(set)
                        .arg(member)
                        .arg(ttl_arg)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map_err(to_shared)
                }
            });
            futures_util::future::try_join_all(adds).await.map(drop)
        })
    }

    fn delete_tag<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<u64, SharedError>> {
        let mut conn = self.conn();
        Box::pin(async move {
            let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
                .arg(set)
                .query_async(&mut conn)
                .await
                .map_err(to_shared)?;
            for batch in members.chunks(UNLINK_BATCH) {
                Self::unlink(&mut conn, batch).await?;
                // Only the members read: one added meanwhile stays tagged.
                redis::cmd("SREM")
                    .arg(set)
                    .arg(batch)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(to_shared)?;
            }
            Ok(members.len() as u64)
        })
    }
}

/// Publishes on a random node (every node relays a classic `PUBLISH` to
/// the whole cluster); after a failure, on every master in turn until one
/// takes it.
async fn publish_on_any_node(
    conn: &mut ClusterConnection,
    channel: &str,
    notice: &str,
) -> Result<(), SharedError> {
    let mut publish = redis::cmd("PUBLISH");
    publish.arg(channel).arg(notice);
    let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
    let first = match conn.route_command(publish.clone(), random).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    // Fan out to the masters: published once per master that answers;
    // subscribers drop a local copy twice at worst.
    match conn.route_command(publish, all).await {
        Ok(Value::Map(answers)) if answers.iter().any(|(_, a)| matches!(a, Value::Int(_))) => {
            Ok(())
        }
        _ => Err(to_shared(first)),
    }
}

/// The invalidation bus of one process: a pub/sub connection to one node
/// at a time.
struct Bus {
    seeds: Vec<ConnectionInfo>,
    masters: Arc<Mutex<Vec<(String, u16)>>>,
    channel: String,
    client: ClusterClient,
}

impl Bus {
    /// Where to subscribe next: the seeds, then the masters learned (the
    /// latter with the first seed's credentials and TLS).
    fn candidates(&self) -> Vec<ConnectionInfo> {
        let mut out = self.seeds.clone();
        let template = &self.seeds[0];
        for (host, port) in self
            .masters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let addr = match template.addr() {
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => ConnectionAddr::Tcp(host.clone(), *port),
            };
            if !out.iter().any(|c| *c.addr() == addr) {
                out.push(template.clone().set_addr(addr));
            }
        }
        out
    }

    /// Asks the cluster for its masters (best effort, bounded), so a
    /// subscription can move to a node that was not among the seeds.
    async fn learn_masters(&self) {
        // Driven by the runtime that runs the bus (the I/O runtime).
        let learn = async {
            let mut conn = self.client.get_async_connection().await?;
            Ok::<_, RedisError>(masters_of(&mut conn).await)
        };
        if let Ok(Ok(Ok(masters))) = tokio::time::timeout(SUBSCRIBE_TIMEOUT, learn).await {
            *self.masters.lock().unwrap_or_else(|e| e.into_inner()) = masters;
        }
    }

    /// Keeps a subscription up for the life of the process, moving to
    /// another node whenever the current one is lost.
    async fn run(self, handler: BusHandler) {
        let mut ever_subscribed = false;
        let mut next = 0usize;
        let mut failed_in_a_row = 0usize;
        let mut backoff = Duration::from_millis(20);
        loop {
            let candidates = self.candidates();
            let node = candidates[next % candidates.len()].clone();
            next = next.wrapping_add(1);
            let subscribed = async {
                let client = redis::Client::open(node.clone())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, RedisError>(pubsub)
            };
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
                Ok(Ok(pubsub)) => {
                    failed_in_a_row = 0;
                    backoff = Duration::from_millis(20);
                    tracing::debug!(
                        channel = self.channel,
                        node = ?node.addr(),
                        after_gap = ever_subscribed,
                        "layercache: invalidation bus subscribed"
                    );
                    handler(BusEvent::Subscribed {
                        after_gap: ever_subscribed,
                    });
                    ever_subscribed = true;
                    listen(pubsub, &handler).await;
                    tracing::warn!(
                        channel = self.channel,
                        node = ?node.addr(),
                        "layercache: invalidation bus connection lost; subscribing on another node"
                    );
                    handler(BusEvent::Down {
                        reason: "connection lost".into(),
                        refused: false,
                    });
                    // Start the next round on the node after this one.
                    continue;
                }
                Ok(Err(err)) => {
                    super::redis::tls::report(&err);
                    tracing::debug!(%err, node = ?node.addr(), "layercache: cannot subscribe to the invalidation bus on this node");
                    handler(BusEvent::Down {
                        refused: super::redis::is_refusal(&err),
                        reason: redact(&err.to_string()),
                    });
                }
                Err(_) => tracing::debug!(
                    node = ?node.addr(),
                    "layercache: subscribing to the invalidation bus timed out"
                ),
            }
            failed_in_a_row += 1;
            if failed_in_a_row.is_multiple_of(candidates.len()) {
                // A whole round failed: learn the masters again, then wait.
                self.learn_masters().await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_split_at_the_last_colon() {
        assert_eq!(
            split_address("127.0.0.1:7000"),
            Some(("127.0.0.1".into(), 7000))
        );
        assert_eq!(split_address("::1:7000"), Some(("::1".into(), 7000)));
        assert_eq!(split_address("[::1]:7000"), Some(("::1".into(), 7000)));
        assert_eq!(split_address("host"), None);
        assert_eq!(split_address("host:port"), None);
    }

    #[test]
    fn bare_seeds_are_redis_urls() {
        assert_eq!(seed_url(" 10.0.0.1:7000 "), "redis://10.0.0.1:7000");
        assert_eq!(seed_url("rediss://h:1"), "rediss://h:1");
    }

    #[test]
    fn seeds_with_different_passwords_are_refused_without_a_panic() {
        let err = RedisClusterStore::open(
            &["redis://:a@h1:7000".into(), "redis://:b@h2:7000".into()],
            "c".into(),
            &SharedSettings::default(),
        )
        .err()
        .expect("refused");
        assert!(err.message.contains("password"), "{err}");
        assert!(!err.message.contains(":a@"), "no password in {err}");
    }
}
