//! The connections of one memcached store: one `memcache::exp::AsyncMetaClient`
//! (per-server pools of buffered tokio connections) per tokio runtime that
//! polls the store.
//!
//! A tokio socket belongs to the runtime whose I/O driver registered it and
//! dies with that runtime, so connections are never shared between
//! runtimes: layercache's I/O runtime has its own client (sync callers,
//! the polled bus, background work), and so does each async caller's
//! multi-thread runtime (no thread hand-off per operation), up to
//! [`MAX_RUNTIMES`] of them (a test suite makes one per test).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use memcache::exp::{AsyncMetaClient, Router};
use tokio::runtime::{Handle, Id};

use super::batch::Batch;

/// Runtimes whose clients are kept; the oldest is dropped beyond this.
const MAX_RUNTIMES: usize = 5;

/// Idle connections kept per server and runtime: enough for the rounds of
/// coalesced reads and the writes in flight at once; more are dialed under
/// a burst and closed when returned.
const MAX_IDLE: usize = 8;

/// Keys go to `xxh3_64(key) % servers`: the mapping of earlier releases,
/// the same in every process and build (the crate's default, rendezvous
/// over `DefaultHasher`, is neither).
struct Xxh3Modulo;

impl Router for Xxh3Modulo {
    fn route(&self, key: &[u8], servers: &[String]) -> usize {
        (xxhash_rust::xxh3::xxh3_64(key) % servers.len().max(1) as u64) as usize
    }
}

/// One runtime's client and its read coalescing.
pub(super) struct Conn {
    client: tokio::sync::OnceCell<AsyncMetaClient>,
    servers: Arc<[String]>,
    timeout: Duration,
    /// Concurrent GETs coalesced into multi-key gets (see [`super::batch`]).
    pub(super) batch: Batch,
    /// The runtime that drives this client's sockets and its rounds.
    pub(super) runtime: Handle,
}

impl Conn {
    /// The client, made on first use: only names are resolved here (a
    /// `host:port` literal needs no lookup); servers are dialed by the
    /// first operation on each, so one that is down is a failed operation,
    /// never an error at start-up. A failed lookup is tried again by the
    /// next operation.
    pub(super) async fn client(&self) -> Result<&AsyncMetaClient, memcache::exp::Error> {
        self.client
            .get_or_try_init(|| {
                AsyncMetaClient::builder()
                    .router(Xxh3Modulo)
                    .connect_timeout(Some(self.timeout))
                    .io_timeout(Some(self.timeout))
                    .max_idle(MAX_IDLE)
                    .connect_multiple_async(self.servers.iter().map(String::as_str))
            })
            .await
    }
}

/// Every runtime's [`Conn`] of one store.
pub(super) struct Conns {
    servers: Arc<[String]>,
    timeout: Duration,
    by_runtime: RwLock<Vec<(Id, Arc<Conn>)>>,
}

impl Conns {
    /// Connections to `servers`, each exchange bounded by `timeout` (at
    /// least 100 ms: the tier's own timeout cuts a call off sooner, and a
    /// dropped exchange drops its connection).
    pub(super) fn new(servers: &[String], timeout: Duration) -> Conns {
        Conns {
            servers: servers.into(),
            timeout: timeout.max(Duration::from_millis(100)),
            by_runtime: RwLock::new(Vec::new()),
        }
    }

    /// The connection of the runtime `handle`.
    pub(super) fn of(&self, handle: &Handle) -> Arc<Conn> {
        let id = handle.id();
        if let Some((_, conn)) = self
            .by_runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(i, _)| *i == id)
        {
            return conn.clone();
        }
        let mut all = self.by_runtime.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, conn)) = all.iter().find(|(i, _)| *i == id) {
            return conn.clone();
        }
        if all.len() >= MAX_RUNTIMES {
            all.remove(0);
        }
        let conn = Arc::new(Conn {
            client: tokio::sync::OnceCell::new(),
            servers: self.servers.clone(),
            timeout: self.timeout,
            batch: Batch::default(),
            runtime: handle.clone(),
        });
        all.push((id, conn.clone()));
        conn
    }

    /// Forgets every connection: the next operation dials afresh.
    pub(super) fn clear(&self) {
        self.by_runtime
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping of earlier releases (the blocking client's
    /// `xxh3_64(key) as usize % servers`), pinned: a fleet upgraded one
    /// process at a time keeps finding its keys.
    #[test]
    fn keys_go_to_the_servers_they_went_to_before() {
        let servers: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:11211")).collect();
        let keys = [
            "user:42",
            "search:rust:page:1",
            "lc:h:0123",
            "__layercache__:version:p:f",
        ];
        let routed: Vec<usize> = keys
            .iter()
            .map(|k| Xxh3Modulo.route(k.as_bytes(), &servers))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| xxhash_rust::xxh3::xxh3_64(k.as_bytes()) as usize % servers.len())
            .collect();
        assert_eq!(routed, before);
        assert_eq!(routed, [0, 0, 2, 1]);
    }
}
