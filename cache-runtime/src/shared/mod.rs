//! The shared tier: a store every process of a fleet reads and writes
//! (Redis, Redis Cluster, memcached, SQLite or a directory; each backend is a
//! submodule, most behind a cargo feature), reached through the
//! [`SharedStore`] trait and guarded by a [`Tier`] that makes it fail-open.
//!
//! Every operation the pipeline sends to the store goes through
//! `Tier::call`, which
//!
//! - skips the store while the circuit breaker is open (a counted *skip*),
//! - bounds the operation by the tier's timeout (a counted *timeout*),
//! - counts every other failure by kind, and times every round trip.
//!
//! A failed shared operation never fails the call: the pipeline goes on to
//! the function and returns its value.
//!
//! The store's I/O runs on a small runtime owned by layercache (one
//! thread, `layercache-io`). Async callers poll the store's futures inline,
//! inside that runtime's context, so they work from any executor; sync
//! callers block on them with a thread-parking `block_on`, which neither
//! builds a runtime per call nor deadlocks inside a tokio runtime, because
//! the connection is driven by layercache's own thread. Async callers on a
//! multi-thread tokio runtime with I/O and timers instead get a connection
//! driven by their own runtime (`caller_runtime`), as a raw redis-rs user
//! would, so no other thread is involved per operation. Sync callers of
//! Redis send on a blocking connection of their own thread instead
//! (`redis/blocking.rs`), when one of the pool's is free.

pub mod filesystem;
#[cfg(feature = "memcached")]
#[cfg_attr(docsrs, doc(cfg(feature = "memcached")))]
pub mod memcached;
pub mod outbox;
pub mod polled;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "redis-cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
pub mod redis_cluster;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

mod exec;
mod notice;
mod open;
mod store;
mod tier;

// Types the tier's users name through `shared::`; each lives in its layer.
pub use crate::config::{
    SharedSettings, DEFAULT_BUS_POLL_INTERVAL, DEFAULT_MAX_VALUE_SIZE, DEFAULT_SHARED_TIMEOUT,
    MAX_SHARED_TIMEOUT,
};
pub use crate::error::{ErrorKind, SharedError};
pub use crate::metrics::{BusHealth, BusStatus, SharedStats, TierStats};
pub(crate) use exec::{block_on, io_runtime, run_blocking};
pub use exec::{operation_runtime, SHARED_SAMPLE_EVERY};
pub(crate) use notice::Notice;
pub(crate) use open::build_store;
pub use store::{
    BoxFuture, BusEvent, BusHandler, SharedStore, BUS_DOWN_LOCAL_TIMEOUT, RESERVED_PREFIX,
};
pub(crate) use tier::HeldLock;
pub use tier::Tier;

/// The process's shared tier (see [`crate::config`]): kept at this path for
/// callers of earlier versions.
pub use crate::runtime::tier;
