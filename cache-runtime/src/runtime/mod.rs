//! The runtime: one value holding what every cache of a process shares:
//! the [`Config`], the shared tier opened from it (with its bus and
//! outbox), and the registry of function caches.
//!
//! The process has one, [`global`], configured by [`init`] or, on first
//! use, from the environment; [`config`] and [`tier`] are its accessors.
//! Tests can build isolated runtimes with [`Runtime::leak`].

use std::sync::OnceLock;
use std::time::Duration;

use crate::config::Config;
use crate::shared::{self, Tier};

mod bus;
mod registry;
mod versions;

pub(crate) use registry::{bump_each_namespace, Registered, Registry};

/// What every cache of a process shares.
pub(crate) struct Runtime {
    config: Config,
    tier: OnceLock<Option<&'static Tier>>,
    registry: Registry,
}

impl Runtime {
    /// A runtime for `config`, leaked (caches and their background tasks
    /// hold it for the life of the process).
    pub(crate) fn leak(config: Config) -> &'static Runtime {
        Box::leak(Box::new(Runtime::new(config)))
    }

    fn new(config: Config) -> Runtime {
        Runtime {
            config,
            tier: OnceLock::new(),
            registry: Registry::default(),
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The caches registered with this runtime.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The shared tier, opened on first use; `None` when the configuration
    /// has no shared tier (or it could not be opened, which is logged).
    pub(crate) fn tier(&'static self) -> Option<&'static Tier> {
        if !self.config.cache_type().is_shared() {
            return None;
        }
        *self.tier.get_or_init(|| self.open_tier())
    }

    fn open_tier(&'static self) -> Option<&'static Tier> {
        let store = match shared::build_store(&self.config) {
            Ok(Some(store)) => store,
            Ok(None) => return None,
            Err(err) => {
                tracing::error!(%err, "layercache: cannot set up the shared tier; caching in-process only");
                return None;
            }
        };
        let tier: &'static Tier = Box::leak(Box::new(Tier::new(store, &self.config)));
        tracing::info!(store = %tier.describe(), timeout = ?tier.timeout(), "layercache: shared tier ready");
        if tier.key_prefix().is_empty() {
            tracing::warn!("layercache: CACHE_KEY_PREFIX is empty, so prefix invalidation matches every key of the shared database, not only this application's; set a prefix when the database is shared");
        }
        tier.start_bus(bus::bus_handler(self, tier));
        tier.start_outbox(move |tier, op| bus::replay(self, tier, op));
        versions::start(self, tier);
        // Give the bus one timeout to come up before the first call caches
        // anything: the first subscription drops local copies of shared
        // entries (notices before it were missed), which is free now and a
        // wasted local copy later.
        tier.await_bus(tier.timeout());
        Some(tier)
    }

    /// Replays the outbox now, for at most `deadline`; returns what could
    /// not be applied.
    pub(crate) async fn flush_outbox(
        &'static self,
        tier: &'static Tier,
        deadline: Duration,
    ) -> Vec<shared::outbox::Pending> {
        tier.flush_outbox(deadline, move |tier, op| bus::replay(self, tier, op))
            .await
    }
}

static GLOBAL: OnceLock<&'static Runtime> = OnceLock::new();

/// The process's runtime: the one [`init`] set up, or else one configured
/// from the environment on first use.
#[inline]
pub(crate) fn global() -> &'static Runtime {
    GLOBAL.get_or_init(|| {
        Runtime::leak(match Config::from_env() {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(%err, variable = err.variable(), "layercache: invalid cache configuration in the environment, using defaults");
                Config::default()
            }
        })
    })
}

/// [`init`] was called after the runtime was already set up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("layercache is already initialized (init was called twice, or after the first cached call configured it from the environment)")]
pub struct AlreadyInitialized;

/// Sets the process-wide configuration. Call it once, before the first
/// cached call; without it the first call reads the environment
/// ([`Config::from_env`]).
///
/// ```
/// use layercache_runtime::{init, CacheType, Config};
/// init(Config::builder().cache_type(CacheType::Null).build()).unwrap();
/// assert!(init(Config::default()).is_err(), "a second init is refused");
/// ```
pub fn init(config: Config) -> Result<(), AlreadyInitialized> {
    let mut config = Some(config);
    GLOBAL.get_or_init(|| Runtime::leak(config.take().expect("taken once")));
    match config {
        None => {
            tracing::debug!(cache_type = %global().config().cache_type(), "layercache initialized");
            Ok(())
        }
        Some(_) => Err(AlreadyInitialized),
    }
}

/// The process-wide configuration, read from the environment on first use
/// when [`init`] was not called. An invalid environment is logged (naming
/// the variable) and the defaults are used, so a typo cannot take the
/// service down; call [`Config::from_env`] at start-up to fail fast instead.
pub fn config() -> &'static Config {
    global().config()
}

/// The process's shared tier, opened from the configuration on first use;
/// `None` when the configuration has no shared tier (or it could not be
/// opened, which is logged).
pub fn tier() -> Option<&'static Tier> {
    global().tier()
}
