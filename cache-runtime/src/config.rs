//! Configuration: [`Config`], its builder, and the environment (the
//! guide's variable names).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;
mod backends;
mod profile;
mod redis_address;
mod secrets;
mod tiers;

pub use backends::CacheType;
use backends::{
    check_backend_location, check_redis_nodes, check_redis_tls, parse_redis_nodes, parse_servers,
    validate_redis_url, TLS_FIELDS, TLS_VARIABLES,
};

use profile::Profile;
pub use profile::{DEFAULT_PROFILE, DEFAULT_PROFILE_FILE};
pub(crate) use secrets::redact_passwords;
pub use secrets::RedisTls;

pub use tiers::{
    LocalStoreKind, SharedSettings, DEFAULT_BUS_POLL_INTERVAL, DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_SHARED_TIMEOUT, DEFAULT_THRESHOLD, MAX_SHARED_TIMEOUT,
};

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable (or builder field) holds a value that cannot be used.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name, e.g. `CACHE_DEFAULT_TIMEOUT`.
        variable: &'static str,
        /// The value found.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// The profile file cannot be used: it is missing or not TOML, the
    /// profile `CACHE_ENV` names is not in it, or a key in it is unknown.
    #[error("{file}: {reason}")]
    Profile {
        /// `CACHE_ENV` when the profile is missing, else `CACHE_CONFIG_FILE`.
        variable: &'static str,
        /// The file, as named (`layercache.toml` by default).
        file: String,
        /// What is wrong, naming the table and key.
        reason: String,
    },
    /// A value read from a profile is invalid (`source` names the key).
    #[error("{source} (from [{table}] in {file})")]
    InProfile {
        /// The file, as named.
        file: String,
        /// The profile (table) the value was read from.
        table: String,
        /// What is wrong with the value.
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
        // A Redis URL's password must not reach logs through the error.
        ConfigError::Invalid {
            variable,
            value: redact_passwords(value),
            reason: redact_passwords(&reason.into()),
        }
    }

    /// The name of the offending variable (for a value read from a profile
    /// file, the key it was written under).
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Invalid { variable, .. } | ConfigError::Profile { variable, .. } => {
                variable
            }
            ConfigError::InProfile { source, .. } => source.variable(),
        }
    }
}

/// Everything the runtime needs to know, set once per process.
///
/// ```
/// use std::time::Duration;
/// use layercache_runtime::{CacheType, Config};
///
/// let config = Config::builder()
///     .cache_type(CacheType::Simple)
///     .default_timeout(Duration::from_secs(60))
///     .key_prefix("myapp")
///     .build();
/// assert_eq!(config.default_timeout(), Some(Duration::from_secs(60)));
/// ```
#[derive(Clone)]
pub struct Config {
    cache_type: CacheType,
    default_timeout: Option<Duration>,
    key_prefix: String,
    default_max_entries: u64,
    local_store: LocalStoreKind,
    clock: Clock,
    redis_url: String,
    shared: SharedSettings,
    ttl_jitter: f64,
    metrics: bool,
    cache_dir: Option<PathBuf>,
    cache_threshold: u64,
    sqlite_path: Option<PathBuf>,
    memcached_servers: Vec<String>,
    redis_nodes: Vec<String>,
    redis_tls: RedisTls,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // By hand, so the passwords in the Redis URLs are never printed.
        let nodes: Vec<_> = self
            .redis_nodes
            .iter()
            .map(|n| secrets::Redacted(n))
            .collect();
        f.debug_struct("Config")
            .field("cache_type", &self.cache_type)
            .field("default_timeout", &self.default_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("default_max_entries", &self.default_max_entries)
            .field("local_store", &self.local_store)
            .field("clock", &self.clock)
            .field("redis_url", &secrets::Redacted(&self.redis_url))
            .field("shared", &self.shared)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("metrics", &self.metrics)
            .field("cache_dir", &self.cache_dir)
            .field("cache_threshold", &self.cache_threshold)
            .field("sqlite_path", &self.sqlite_path)
            .field("memcached_servers", &self.memcached_servers)
            .field("redis_nodes", &nodes)
            .field("redis_tls", &self.redis_tls)
            .finish()
    }
}

/// Every variable [`Config::from_env`] reads besides `CACHE_ENV` and
/// `CACHE_CONFIG_FILE` (which choose the profile): the keys a profile may hold.
const VARIABLES: &[&str] = &[
    "CACHE_TYPE",
    "CACHE_DEFAULT_TIMEOUT",
    "CACHE_KEY_PREFIX",
    "CACHE_MAX_ENTRIES",
    "CACHE_REDIS_URL",
    "CACHE_REDIS_HOST",
    "CACHE_REDIS_PORT",
    "CACHE_REDIS_DB",
    "CACHE_REDIS_PASSWORD",
    "CACHE_REDIS_CA_CERT",
    "CACHE_REDIS_CLIENT_CERT",
    "CACHE_REDIS_CLIENT_KEY",
    "CACHE_SHARED_TIMEOUT_MS",
    "CACHE_MAX_VALUE_SIZE",
    "CACHE_CODEC",
    "CACHE_TTL_JITTER",
    "CACHE_METRICS",
    "CACHE_NO_NULL_WARNING",
    "CACHE_DIR",
    "CACHE_THRESHOLD",
    "CACHE_SQLITE_PATH",
    "CACHE_MEMCACHED_SERVERS",
    "CACHE_REDIS_NODES",
    "CACHE_BUS_POLL_MS",
];

/// The memcached server used when `CACHE_MEMCACHED_SERVERS` is not set.
pub const DEFAULT_MEMCACHED_SERVER: &str = "127.0.0.1:11211";

/// The Redis URL used when `CACHE_REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// The default timeout of a function without `timeout`/`timeout_ms`: 300 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The default bound of a function's local tier without `max_entries`.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_type: CacheType::Simple,
            default_timeout: Some(DEFAULT_TIMEOUT),
            key_prefix: String::new(),
            default_max_entries: DEFAULT_MAX_ENTRIES,
            local_store: LocalStoreKind::default(),
            clock: Clock::system(),
            redis_url: DEFAULT_REDIS_URL.to_string(),
            shared: SharedSettings::default(),
            ttl_jitter: 0.0,
            metrics: true,
            cache_dir: None,
            cache_threshold: DEFAULT_THRESHOLD,
            sqlite_path: None,
            memcached_servers: vec![DEFAULT_MEMCACHED_SERVER.to_string()],
            redis_nodes: Vec::new(),
            redis_tls: RedisTls::default(),
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// The defaults, overridden by the profile file when there is one,
    /// overridden by the environment: `CACHE_TYPE`,
    /// `CACHE_DEFAULT_TIMEOUT` (whole seconds, `0` = never expire),
    /// `CACHE_KEY_PREFIX`, `CACHE_MAX_ENTRIES`, `CACHE_REDIS_URL` (or
    /// `CACHE_REDIS_HOST`, `CACHE_REDIS_PORT`, `CACHE_REDIS_DB` and
    /// `CACHE_REDIS_PASSWORD`, defaults `127.0.0.1`, 6379, 0 and none, from
    /// which the URL is built; setting both the URL and a part is an error),
    /// `CACHE_SHARED_TIMEOUT_MS` (per shared operation, default 50) and
    /// `CACHE_MAX_VALUE_SIZE` (bytes, default 1 MiB), `CACHE_CODEC`
    /// (`msgpack`, the default, or `json`) and `CACHE_TTL_JITTER`
    /// (a fraction in `[0, 1)`, default 0). The other shared backends:
    /// `CACHE_DIR` and `CACHE_THRESHOLD` (entries, default 10 000) for
    /// `filesystem`, `CACHE_SQLITE_PATH` for `sqlite`,
    /// `CACHE_MEMCACHED_SERVERS` (`host:port,host:port`, default
    /// `127.0.0.1:11211`) for `memcached`, `CACHE_REDIS_NODES` (seed nodes,
    /// `redis://host:port,host:port`, required) for `redis-cluster`, and
    /// `CACHE_BUS_POLL_MS` (how often filesystem, SQLite and memcached are
    /// polled for invalidations, default 100). `CACHE_TYPE=null` logs a
    /// warning that caching is off unless `CACHE_NO_NULL_WARNING=true`.
    /// Unset or empty variables keep their defaults (or the profile's value).
    ///
    /// The profile file is `CACHE_CONFIG_FILE` (an error if it cannot be
    /// read), else [`DEFAULT_PROFILE_FILE`] (`layercache.toml`) in the
    /// working directory when it exists; `CACHE_ENV` picks its table
    /// (default `development`; an error if the table, or any file, is
    /// missing). See [`Config::from_profile`] for its format. This is also
    /// what the first cached call reads when [`init`](crate::init) was not
    /// called.
    ///
    /// ```
    /// // With none of the variables set and no layercache.toml, this is the default configuration.
    /// let config = layercache_runtime::Config::from_env().expect("valid environment");
    /// # let _ = config;
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// The table `env` of the profile file at `path`, overridden by the
    /// environment's variables as in [`Config::from_env`] (`path` and `env`
    /// stand for `CACHE_CONFIG_FILE` and `CACHE_ENV`). The file holds one
    /// table per environment (the guide's `[development]`, `[production]`
    /// and `[testing]`, or any other name), and each table the environment
    /// variables' names, written as the guide writes them
    /// (`CACHE_TYPE = "redis"`, `CACHE_REDIS_PORT = 6379`; a list such as
    /// `CACHE_MEMCACHED_SERVERS = ["a:11211", "b:11211"]` is joined with
    /// commas). A missing file or table, a key that is not a variable (in
    /// any table), or a value that is not valid is a [`ConfigError`] naming
    /// the file, the table and the key.
    ///
    /// ```
    /// use layercache_runtime::{CacheType, Config};
    ///
    /// let path = std::env::temp_dir().join(format!("layercache-doc-{}.toml", std::process::id()));
    /// std::fs::write(&path, r#"
    /// [development]
    /// CACHE_TYPE = "simple"
    /// CACHE_DEFAULT_TIMEOUT = 300
    ///
    /// [testing]
    /// CACHE_TYPE = "null"
    /// CACHE_NO_NULL_WARNING = true
    /// "#).unwrap();
    /// let config = Config::from_profile(&path, "testing").unwrap();
    /// assert_eq!(config.cache_type(), CacheType::Null);
    /// let err = Config::from_profile(&path, "staging").unwrap_err();
    /// assert!(err.to_string().contains("no [staging] profile"), "{err}");
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_profile(path: impl AsRef<Path>, env: &str) -> Result<Config, ConfigError> {
        let path = path.as_ref().display().to_string();
        Config::from_lookup(|name| match name {
            "CACHE_CONFIG_FILE" => Some(path.clone()),
            "CACHE_ENV" => Some(env.to_string()),
            _ => std::env::var(name).ok(),
        })
    }

    /// Like [`Config::from_env`], reading variables through `lookup`
    /// (for tests, or for configuration held in a map). The profile file is
    /// found as there, through `lookup`'s `CACHE_CONFIG_FILE` and `CACHE_ENV`.
    ///
    /// ```
    /// use layercache_runtime::Config;
    /// let err = Config::from_lookup(|name| (name == "CACHE_DEFAULT_TIMEOUT").then(|| "-5".to_string()))
    ///     .unwrap_err();
    /// assert_eq!(err.variable(), "CACHE_DEFAULT_TIMEOUT");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let profile = Profile::find(&env)?;
        let get = |name: &str| {
            env(name).or_else(|| profile.as_ref()?.get(name).filter(|v| !v.trim().is_empty()))
        };
        Config::from_values(&get).map_err(|err| match &profile {
            // Said only when the file's value is the one used, not one the environment overrode.
            Some(p) if env(err.variable()).is_none() && p.get(err.variable()).is_some() => {
                ConfigError::InProfile {
                    file: p.file.clone(),
                    table: p.table.clone(),
                    source: Box::new(err),
                }
            }
            _ => err,
        })
    }

    /// The configuration the variables' values describe.
    fn from_values(get: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(v) = get("CACHE_TYPE") {
            config.cache_type = v.parse()?;
        }
        if let Some(v) = get("CACHE_DEFAULT_TIMEOUT") {
            let secs = parse_u64(
                "CACHE_DEFAULT_TIMEOUT",
                &v,
                "a whole number of seconds (0 = never expire)",
            )?;
            config.default_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(v) = get("CACHE_KEY_PREFIX") {
            config.key_prefix = validate_key_prefix("CACHE_KEY_PREFIX", &v)?;
        }
        if let Some(v) = get("CACHE_MAX_ENTRIES") {
            let n = parse_u64(
                "CACHE_MAX_ENTRIES",
                &v,
                "a positive whole number of entries",
            )?;
            if n == 0 {
                return Err(ConfigError::invalid(
                    "CACHE_MAX_ENTRIES",
                    &v,
                    "must be at least 1",
                ));
            }
            config.default_max_entries = n;
        }
        if let Some(url) = redis_address::redis_url(get)? {
            config.redis_url = url;
        }
        let path = |name| get(name).map(|v| PathBuf::from(v.trim()));
        config.redis_tls = RedisTls {
            ca_cert: path(TLS_VARIABLES[0]),
            client_cert: path(TLS_VARIABLES[1]),
            client_key: path(TLS_VARIABLES[2]),
        };
        check_redis_tls(&config.redis_tls, TLS_VARIABLES)?;
        if let Some(v) = get("CACHE_SHARED_TIMEOUT_MS") {
            let ms = parse_u64(
                "CACHE_SHARED_TIMEOUT_MS",
                &v,
                "a positive whole number of milliseconds",
            )?;
            if ms == 0 {
                return Err(ConfigError::invalid(
                    "CACHE_SHARED_TIMEOUT_MS",
                    &v,
                    "must be at least 1 (a shared operation without a time limit could hang every call)",
                ));
            }
            config.shared.timeout = Duration::from_millis(ms).min(MAX_SHARED_TIMEOUT);
        }
        if let Some(v) = get("CACHE_MAX_VALUE_SIZE") {
            let n = parse_u64("CACHE_MAX_VALUE_SIZE", &v, "a whole number of bytes")?;
            config.shared.max_value_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(v) = get("CACHE_CODEC") {
            config.shared.codec = v
                .parse()
                .map_err(|_| ConfigError::invalid("CACHE_CODEC", &v, "expected msgpack or json"))?;
        }
        if let Some(v) = get("CACHE_TTL_JITTER") {
            let j = v.trim().parse::<f64>().map_err(|_| {
                ConfigError::invalid(
                    "CACHE_TTL_JITTER",
                    &v,
                    "expected a fraction like 0.1 (each timeout spread by ±10 %)",
                )
            })?;
            config.ttl_jitter = validate_jitter("CACHE_TTL_JITTER", &v, j)?;
        }
        if let Some(v) = get("CACHE_METRICS") {
            config.metrics = parse_switch("CACHE_METRICS", &v)?;
        }
        let quiet_null = match get("CACHE_NO_NULL_WARNING") {
            Some(v) => parse_switch("CACHE_NO_NULL_WARNING", &v)?,
            None => false,
        };
        if config.cache_type == CacheType::Null && !quiet_null {
            // Flask-Caching's warning: a null cache left in production is a silent slowdown.
            tracing::warn!("layercache: CACHE_TYPE=null, caching is off and every call runs its function (CACHE_NO_NULL_WARNING=true silences this)");
        }
        if let Some(v) = get("CACHE_DIR") {
            config.cache_dir = Some(PathBuf::from(v.trim()));
        }
        if let Some(v) = get("CACHE_THRESHOLD") {
            let n = parse_u64("CACHE_THRESHOLD", &v, "a positive whole number of entries")?;
            if n == 0 {
                return Err(ConfigError::invalid(
                    "CACHE_THRESHOLD",
                    &v,
                    "must be at least 1",
                ));
            }
            config.cache_threshold = n;
        }
        if let Some(v) = get("CACHE_SQLITE_PATH") {
            config.sqlite_path = Some(PathBuf::from(v.trim()));
        }
        if let Some(v) = get("CACHE_MEMCACHED_SERVERS") {
            config.memcached_servers = parse_servers("CACHE_MEMCACHED_SERVERS", &v)?;
        }
        if let Some(v) = get("CACHE_REDIS_NODES") {
            config.redis_nodes = parse_redis_nodes("CACHE_REDIS_NODES", &v)?;
        }
        if let Some(v) = get("CACHE_BUS_POLL_MS") {
            /// One hour: longer is a typo, not a staleness bound.
            const MAX_BUS_POLL_MS: u64 = 3_600_000;
            let ms = parse_u64(
                "CACHE_BUS_POLL_MS",
                &v,
                "a positive whole number of milliseconds",
            )?;
            if ms == 0 {
                return Err(ConfigError::invalid(
                    "CACHE_BUS_POLL_MS",
                    &v,
                    "must be at least 1",
                ));
            }
            if ms > MAX_BUS_POLL_MS {
                return Err(ConfigError::invalid(
                    "CACHE_BUS_POLL_MS",
                    &v,
                    "must be at most 3600000 (one hour): it bounds how long another process's copy outlives an invalidation",
                ));
            }
            config.shared.bus_poll_interval = Duration::from_millis(ms);
        }
        check_backend_location(&config, "CACHE_DIR", "CACHE_SQLITE_PATH")?;
        check_redis_nodes(&config, "CACHE_REDIS_NODES")?;
        Ok(config)
    }

    /// Which tiers serve cached calls.
    pub fn cache_type(&self) -> CacheType {
        self.cache_type
    }
    /// Timeout of functions that set none; `None` means entries never expire.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }
    /// Namespace put in front of every key in shared tiers (empty for none).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }
    /// Local-tier bound of functions that set no `max_entries`.
    pub fn default_max_entries(&self) -> u64 {
        self.default_max_entries
    }
    /// The store behind the local tier.
    pub fn local_store(&self) -> LocalStoreKind {
        self.local_store
    }
    /// The clock used for expiry and latency.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
    /// The Redis server of `CACHE_TYPE=redis` (`CACHE_REDIS_URL`).
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }
    /// Timeout, size limit and circuit breaker of the shared tier.
    pub fn shared(&self) -> &SharedSettings {
        &self.shared
    }
    /// The TTL jitter of functions that set no `jitter`: each entry's
    /// timeout is spread uniformly over `±jitter` of itself (TTL jitter, against cache avalanche).
    pub fn ttl_jitter(&self) -> f64 {
        self.ttl_jitter
    }
    /// Whether functions count hits, misses and latencies (`CACHE_METRICS`,
    /// default on). Off, [`stats()`](crate::stats) reports zero counters
    /// (entries are still counted).
    pub fn metrics(&self) -> bool {
        self.metrics
    }
    /// The directory of `CACHE_TYPE=filesystem` (`CACHE_DIR`).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }
    /// How many entries the filesystem store keeps (`CACHE_THRESHOLD`).
    pub fn cache_threshold(&self) -> u64 {
        self.cache_threshold
    }
    /// The database file of `CACHE_TYPE=sqlite` (`CACHE_SQLITE_PATH`).
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref()
    }
    /// The `host:port` servers of `CACHE_TYPE=memcached` (`CACHE_MEMCACHED_SERVERS`).
    pub fn memcached_servers(&self) -> &[String] {
        &self.memcached_servers
    }
    /// The seed nodes of `CACHE_TYPE=redis-cluster` (`CACHE_REDIS_NODES`),
    /// each a `redis://[user[:password]@]host:port` URL (a bare
    /// `host:port` is read as `redis://host:port`); empty when not set.
    pub fn redis_nodes(&self) -> &[String] {
        &self.redis_nodes
    }
    /// The CA and client certificate of `rediss://` connections, for Redis
    /// and Redis Cluster (`CACHE_REDIS_CA_CERT`, `CACHE_REDIS_CLIENT_CERT`,
    /// `CACHE_REDIS_CLIENT_KEY`).
    pub fn redis_tls(&self) -> &RedisTls {
        &self.redis_tls
    }
}

fn validate_jitter(variable: &'static str, value: &str, j: f64) -> Result<f64, ConfigError> {
    if j.is_finite() && (0.0..1.0).contains(&j) {
        Ok(j)
    } else {
        Err(ConfigError::invalid(
            variable,
            value,
            "must be at least 0 and below 1 (0.1 spreads each timeout by ±10 %)",
        ))
    }
}

fn parse_switch(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(ConfigError::invalid(
            variable,
            value,
            "expected `on` or `off` (or true/false, 1/0)",
        )),
    }
}

fn parse_u64(variable: &'static str, value: &str, expected: &str) -> Result<u64, ConfigError> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err(ConfigError::invalid(
            variable,
            value,
            format!("must not be negative; expected {expected}"),
        ));
    }
    v.parse::<u64>()
        .map_err(|_| ConfigError::invalid(variable, value, format!("expected {expected}")))
}

fn validate_key_prefix(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    if let Some(c) = value.chars().find(|c| {
        matches!(c, '*' | '?' | '[' | ']' | '\\' | '{' | '}') || c.is_whitespace() || c.is_control()
    }) {
        return Err(ConfigError::invalid(
            variable,
            value,
            format!("must not contain {c:?}: glob characters, braces and white space would break prefix matching"),
        ));
    }
    Ok(value.trim_end_matches(':').to_string())
}

/// Builds a [`Config`]; see [`Config::builder`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Which tiers serve cached calls (default [`CacheType::Simple`]).
    pub fn cache_type(mut self, cache_type: CacheType) -> Self {
        self.0.cache_type = cache_type;
        self
    }
    /// Timeout of functions that set none (default 300 s). `Duration::ZERO` means never expire.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.0.default_timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }
    /// Namespace put in front of every key in shared tiers (`CACHE_KEY_PREFIX`).
    /// A trailing `:` is dropped; glob characters and white space are refused by [`ConfigBuilder::try_build`].
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.0.key_prefix = prefix.into();
        self
    }
    /// Local-tier bound of functions that set no `max_entries` (default 10 000, at least 1).
    pub fn default_max_entries(mut self, max_entries: u64) -> Self {
        self.0.default_max_entries = max_entries.max(1);
        self
    }
    /// The store behind the local tier (default [`LocalStoreKind::QuickCache`]).
    pub fn local_store(mut self, kind: LocalStoreKind) -> Self {
        self.0.local_store = kind;
        self
    }
    /// The clock for expiry and latency (default [`Clock::system`]; tests use [`Clock::mock`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.0.clock = clock;
        self
    }
    /// The Redis server of `CacheType::Redis` (default [`DEFAULT_REDIS_URL`]).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.0.redis_url = url.into();
        self
    }
    /// Longest a shared operation may take (default 50 ms, at least 1 ms, at most 60 s);
    /// after it the call goes on to the function.
    pub fn shared_timeout(mut self, timeout: Duration) -> Self {
        self.0.shared.timeout = timeout.clamp(Duration::from_millis(1), MAX_SHARED_TIMEOUT);
        self
    }
    /// Values whose encoding is larger are not written to the shared tier
    /// (default 1 MiB); they are counted as `oversize`.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.0.shared.max_value_size = bytes;
        self
    }
    /// How values are encoded in the shared tier (`CACHE_CODEC`, default
    /// [`CodecKind::MessagePack`](crate::codec::CodecKind)). Processes that
    /// share a tier should agree: a value written with another codec is a miss.
    ///
    /// ```
    /// use layercache_runtime::{codec::CodecKind, Config};
    ///
    /// let config = Config::builder().codec(CodecKind::Json).build();
    /// assert_eq!(config.shared().codec, CodecKind::Json);
    /// ```
    pub fn codec(mut self, codec: crate::codec::CodecKind) -> Self {
        self.0.shared.codec = codec;
        self
    }
    /// The circuit breaker: after `failures` consecutive failures, skip the
    /// shared tier for `cooldown`, then probe it (default 5 and 500 ms).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.0.shared.breaker_threshold = failures.max(1);
        self.0.shared.breaker_cooldown = cooldown;
        self
    }
    /// Spreads each entry's timeout uniformly over `±jitter` of itself, so
    /// entries written together do not expire together (against cache
    /// avalanche). A fraction in `[0, 1)`; default 0; a function's own
    /// `jitter = ...` wins.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.0.ttl_jitter = jitter;
        self
    }
    /// Turns the per-function counters and latency histograms on (the
    /// default) or off (`CACHE_METRICS`); the local hit path then skips
    /// even its one counter increment.
    pub fn metrics(mut self, on: bool) -> Self {
        self.0.metrics = on;
        self
    }
    /// The directory of `CacheType::Filesystem` (`CACHE_DIR`; required by it).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.0.cache_dir = Some(dir.into());
        self
    }
    /// How many entries the filesystem store keeps (`CACHE_THRESHOLD`,
    /// default 10 000, at least 1): beyond it, expired entries and then the
    /// oldest are removed.
    pub fn cache_threshold(mut self, entries: u64) -> Self {
        self.0.cache_threshold = entries.max(1);
        self
    }
    /// The database file of `CacheType::Sqlite` (`CACHE_SQLITE_PATH`; required by it).
    pub fn sqlite_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.sqlite_path = Some(path.into());
        self
    }
    /// The `host:port` servers of `CacheType::Memcached`
    /// (`CACHE_MEMCACHED_SERVERS`, default `127.0.0.1:11211`); keys are
    /// spread over them by hash.
    pub fn memcached_servers<S: Into<String>>(
        mut self,
        servers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.0.memcached_servers = servers.into_iter().map(Into::into).collect();
        self
    }
    /// The seed nodes of `CacheType::RedisCluster` (`CACHE_REDIS_NODES`;
    /// required by it): `redis://[user[:password]@]host:port` URLs or bare
    /// `host:port`. A few masters are enough: the client learns the rest of
    /// the cluster from them.
    pub fn redis_nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.0.redis_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }
    /// The CA to trust and the client certificate to present on
    /// `rediss://` connections to Redis or Redis Cluster (see [`RedisTls`]).
    pub fn redis_tls(mut self, tls: RedisTls) -> Self {
        self.0.redis_tls = tls;
        self
    }
    /// How often a backend without publish/subscribe (filesystem, SQLite,
    /// memcached) is polled for invalidations (`CACHE_BUS_POLL_MS`, default
    /// 100 ms, at least 1 ms): how long another process's local copy may
    /// outlive an invalidation.
    pub fn bus_poll_interval(mut self, interval: Duration) -> Self {
        self.0.shared.bus_poll_interval = interval.max(Duration::from_millis(1));
        self
    }
    /// The configuration, or the first invalid field.
    pub fn try_build(mut self) -> Result<Config, ConfigError> {
        check_backend_location(&self.0, "cache_dir", "sqlite_path")?;
        if self.0.memcached_servers.is_empty() {
            return Err(ConfigError::invalid(
                "memcached_servers",
                "",
                "at least one `host:port` server",
            ));
        }
        self.0.memcached_servers =
            parse_servers("memcached_servers", &self.0.memcached_servers.join(","))?;
        if !self.0.redis_nodes.is_empty() {
            self.0.redis_nodes = parse_redis_nodes("redis_nodes", &self.0.redis_nodes.join(","))?;
        }
        check_redis_nodes(&self.0, "redis_nodes")?;
        check_redis_tls(&self.0.redis_tls, TLS_FIELDS)?;
        let j = self.0.ttl_jitter;
        self.0.ttl_jitter = validate_jitter("ttl_jitter", &j.to_string(), j)?;
        self.0.key_prefix = validate_key_prefix("key_prefix", &self.0.key_prefix)?;
        self.0.redis_url = validate_redis_url("redis_url", &self.0.redis_url)?;
        Ok(self.0)
    }
    /// The configuration. An invalid `key_prefix` is logged and dropped, an
    /// invalid `redis_url` is logged and the default used (a missing
    /// `cache_dir` or `sqlite_path` is logged when the shared tier starts,
    /// which then stays off); use
    /// [`ConfigBuilder::try_build`] to get the error instead.
    pub fn build(self) -> Config {
        let mut config = self.0;
        if let Err(err) =
            validate_key_prefix("key_prefix", &config.key_prefix).map(|p| config.key_prefix = p)
        {
            tracing::error!(%err, "layercache: ignoring invalid key_prefix");
            config.key_prefix = String::new();
        }
        if let Err(err) = validate_redis_url("redis_url", &config.redis_url) {
            tracing::error!(%err, "layercache: ignoring invalid redis_url");
            config.redis_url = DEFAULT_REDIS_URL.to_string();
        }
        let j = config.ttl_jitter;
        if let Err(err) = validate_jitter("ttl_jitter", &j.to_string(), j) {
            tracing::error!(%err, "layercache: ignoring invalid ttl_jitter");
            config.ttl_jitter = 0.0;
        }
        if !config.redis_nodes.is_empty() {
            match parse_redis_nodes("redis_nodes", &config.redis_nodes.join(",")) {
                Ok(nodes) => config.redis_nodes = nodes,
                // Kept as given: the cluster tier then fails to start, which is logged.
                Err(err) => tracing::error!(%err, "layercache: invalid redis_nodes"),
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn empty_environment_gives_the_defaults() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.cache_type(), CacheType::Simple);
        assert_eq!(c.default_timeout(), Some(DEFAULT_TIMEOUT));
        assert_eq!(c.key_prefix(), "");
        assert_eq!(c.default_max_entries(), DEFAULT_MAX_ENTRIES);
    }

    #[test]
    fn the_guides_variables_are_read() {
        let c = Config::from_lookup(env(&[
            ("CACHE_TYPE", "NULL"),
            ("CACHE_DEFAULT_TIMEOUT", "60"),
            ("CACHE_KEY_PREFIX", "myapp:"),
            ("CACHE_MAX_ENTRIES", "5"),
        ]))
        .unwrap();
        assert_eq!(c.cache_type(), CacheType::Null);
        assert_eq!(c.default_timeout(), Some(Duration::from_secs(60)));
        assert_eq!(c.key_prefix(), "myapp");
        assert_eq!(c.default_max_entries(), 5);
    }

    #[test]
    fn zero_timeout_means_never_expire() {
        let c = Config::from_lookup(env(&[("CACHE_DEFAULT_TIMEOUT", "0")])).unwrap();
        assert_eq!(c.default_timeout(), None);
    }

    #[test]
    fn a_misspelt_cache_type_names_the_variable_and_the_choices() {
        let err = Config::from_lookup(env(&[("CACHE_TYPE", "rediss")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_TYPE");
        let msg = err.to_string();
        assert!(msg.starts_with("CACHE_TYPE=\"rediss\" is invalid"), "{msg}");
        assert!(msg.contains("`simple`"), "{msg}");
        assert!(msg.contains("`null`"), "{msg}");
    }

    #[test]
    fn a_negative_timeout_is_refused_with_the_variable_named() {
        let err = Config::from_lookup(env(&[("CACHE_DEFAULT_TIMEOUT", "-5")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CACHE_DEFAULT_TIMEOUT=\"-5\" is invalid: must not be negative; expected a whole number of seconds (0 = never expire)"
        );
    }

    #[test]
    fn a_non_numeric_timeout_and_a_zero_bound_are_refused() {
        let err = Config::from_lookup(env(&[("CACHE_DEFAULT_TIMEOUT", "5m")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_DEFAULT_TIMEOUT");
        let err = Config::from_lookup(env(&[("CACHE_MAX_ENTRIES", "0")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_MAX_ENTRIES");
    }

    #[test]
    fn metrics_can_be_turned_off_by_environment_or_builder_and_bad_values_name_the_variable() {
        let from = |v: &str| {
            let v = v.to_string();
            Config::from_lookup(move |n| (n == "CACHE_METRICS").then(|| v.clone()))
        };
        assert!(Config::default().metrics(), "on by default");
        assert!(!from("off").unwrap().metrics());
        assert!(from("TRUE").unwrap().metrics());
        assert_eq!(from("maybe").unwrap_err().variable(), "CACHE_METRICS");
        assert!(!Config::builder().metrics(false).build().metrics());
    }

    #[test]
    fn ttl_jitter_is_a_fraction_below_one_from_the_environment_or_the_builder() {
        let from = |v: &str| {
            let v = v.to_string();
            Config::from_lookup(move |n| (n == "CACHE_TTL_JITTER").then(|| v.clone()))
        };
        assert_eq!(from("0.1").unwrap().ttl_jitter(), 0.1);
        assert_eq!(Config::default().ttl_jitter(), 0.0, "off by default");
        for bad in ["1", "1.5", "-0.1", "NaN", "ten percent"] {
            let err = from(bad).unwrap_err();
            assert_eq!(err.variable(), "CACHE_TTL_JITTER", "{bad}");
        }
        let err = Config::builder().ttl_jitter(2.0).try_build().unwrap_err();
        assert_eq!(err.variable(), "ttl_jitter");
        assert_eq!(
            Config::builder().ttl_jitter(2.0).build().ttl_jitter(),
            0.0,
            "build() drops an invalid jitter (and logs it)"
        );
    }

    #[test]
    fn a_key_prefix_with_glob_characters_is_refused() {
        let err = Config::from_lookup(env(&[("CACHE_KEY_PREFIX", "app*")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_KEY_PREFIX");
        assert!(Config::builder().key_prefix("a b").try_build().is_err());
    }

    #[test]
    fn redis_settings_are_read_and_checked() {
        let c = Config::from_lookup(env(&[
            ("CACHE_REDIS_URL", "redis://:pw@10.0.0.1:6380/2"),
            ("CACHE_SHARED_TIMEOUT_MS", "20"),
            ("CACHE_MAX_VALUE_SIZE", "4096"),
        ]))
        .unwrap();
        assert_eq!(c.redis_url(), "redis://:pw@10.0.0.1:6380/2");
        assert_eq!(c.shared().timeout, Duration::from_millis(20));
        assert_eq!(c.shared().max_value_size, 4096);
        let err = Config::from_lookup(env(&[("CACHE_REDIS_URL", "http://x")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_URL");
        let err = Config::from_lookup(env(&[("CACHE_SHARED_TIMEOUT_MS", "0")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_SHARED_TIMEOUT_MS");
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_without_the_feature_names_the_feature() {
        let msg = "redis".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("enable the `redis` cargo feature"), "{msg}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_is_a_cache_type_with_the_feature() {
        assert_eq!("Redis".parse::<CacheType>().unwrap(), CacheType::Redis);
        assert!(CacheType::Redis.is_shared());
    }

    #[test]
    fn filesystem_is_always_a_cache_type_and_needs_cache_dir() {
        assert_eq!(
            "FileSystem".parse::<CacheType>().unwrap(),
            CacheType::Filesystem
        );
        assert!(CacheType::Filesystem.is_shared());
        let err = Config::from_lookup(env(&[("CACHE_TYPE", "filesystem")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_DIR");
        assert!(
            err.to_string().contains("CACHE_TYPE=filesystem needs"),
            "{err}"
        );
        let c = Config::from_lookup(env(&[
            ("CACHE_TYPE", "filesystem"),
            ("CACHE_DIR", "/var/cache/app"),
            ("CACHE_THRESHOLD", "500"),
            ("CACHE_BUS_POLL_MS", "25"),
        ]))
        .unwrap();
        assert_eq!(c.cache_dir(), Some(Path::new("/var/cache/app")));
        assert_eq!(c.cache_threshold(), 500);
        assert_eq!(c.shared().bus_poll_interval, Duration::from_millis(25));
        let err = Config::builder()
            .cache_type(CacheType::Filesystem)
            .try_build()
            .unwrap_err();
        assert_eq!(err.variable(), "cache_dir");
    }

    #[test]
    fn a_bad_threshold_or_poll_interval_names_its_variable() {
        for (var, bad) in [
            ("CACHE_THRESHOLD", "0"),
            ("CACHE_THRESHOLD", "-1"),
            ("CACHE_THRESHOLD", "many"),
            ("CACHE_BUS_POLL_MS", "0"),
            ("CACHE_BUS_POLL_MS", "1s"),
            ("CACHE_BUS_POLL_MS", "3600001"),
            ("CACHE_BUS_POLL_MS", "18446744073709551615"),
        ] {
            let err = Config::from_lookup(|n| (n == var).then(|| bad.to_string())).unwrap_err();
            assert_eq!(err.variable(), var, "{bad}");
        }
        assert_eq!(Config::default().cache_threshold(), DEFAULT_THRESHOLD);
        assert_eq!(
            Config::default().shared().bus_poll_interval,
            crate::shared::DEFAULT_BUS_POLL_INTERVAL
        );
    }

    #[test]
    fn memcached_servers_are_a_comma_separated_list_of_host_port() {
        let c = Config::from_lookup(env(&[(
            "CACHE_MEMCACHED_SERVERS",
            " 10.0.0.1:11211, cache.internal:11212 ",
        )]))
        .unwrap();
        assert_eq!(
            c.memcached_servers(),
            ["10.0.0.1:11211", "cache.internal:11212"]
        );
        assert_eq!(
            Config::default().memcached_servers(),
            [DEFAULT_MEMCACHED_SERVER]
        );
        for bad in [
            "10.0.0.1",
            "host:port",
            "a:11211,,b:11211",
            ":11211",
            "h:0",
            "h:70000",
        ] {
            let err =
                Config::from_lookup(|n| (n == "CACHE_MEMCACHED_SERVERS").then(|| bad.to_string()))
                    .unwrap_err();
            assert_eq!(err.variable(), "CACHE_MEMCACHED_SERVERS", "{bad}");
        }
        let err = Config::builder()
            .memcached_servers(["nope"])
            .try_build()
            .unwrap_err();
        assert_eq!(err.variable(), "memcached_servers");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_needs_its_path() {
        let err = Config::from_lookup(env(&[("CACHE_TYPE", "sqlite")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_SQLITE_PATH");
        let c = Config::from_lookup(env(&[
            ("CACHE_TYPE", "sqlite"),
            ("CACHE_SQLITE_PATH", "/tmp/cache.db"),
        ]))
        .unwrap();
        assert_eq!(c.cache_type(), CacheType::Sqlite);
        assert_eq!(c.sqlite_path(), Some(Path::new("/tmp/cache.db")));
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn sqlite_and_memcached_without_their_features_name_the_feature() {
        let msg = "sqlite".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("enable the `sqlite` cargo feature"), "{msg}");
    }

    #[cfg(feature = "memcached")]
    #[test]
    fn memcached_is_a_cache_type_with_the_feature() {
        assert_eq!(
            "memcached".parse::<CacheType>().unwrap(),
            CacheType::Memcached
        );
        let msg = "memcache".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("did you mean `memcached`?"), "{msg}");
    }

    #[cfg(feature = "redis-cluster")]
    #[test]
    fn redis_cluster_reads_its_seed_nodes_and_normalizes_bare_addresses() {
        let c = Config::from_lookup(env(&[
            ("CACHE_TYPE", "redis-cluster"),
            (
                "CACHE_REDIS_NODES",
                " 10.0.0.1:7000, redis://:pw@10.0.0.2:7001 ,redis://10.0.0.3:7002/",
            ),
        ]))
        .unwrap();
        assert_eq!(c.cache_type(), CacheType::RedisCluster);
        assert!(c.cache_type().is_shared());
        assert_eq!(
            c.redis_nodes(),
            [
                "redis://10.0.0.1:7000",
                "redis://:pw@10.0.0.2:7001",
                "redis://10.0.0.3:7002/"
            ]
        );
        let c = Config::builder()
            .cache_type(CacheType::RedisCluster)
            .redis_nodes(["h1:7000", "h2:7000"])
            .try_build()
            .unwrap();
        assert_eq!(c.redis_nodes(), ["redis://h1:7000", "redis://h2:7000"]);
    }

    #[cfg(feature = "redis-cluster")]
    #[test]
    fn redis_cluster_without_nodes_or_with_bad_nodes_names_the_variable() {
        let err = Config::from_lookup(env(&[("CACHE_TYPE", "redis-cluster")])).unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_NODES");
        assert!(
            err.to_string().contains("needs the cluster's seed nodes"),
            "{err}"
        );
        for bad in [
            "h1:7000,,h2:7000",
            "http://h1:7000",
            "unix:///tmp/redis.sock",
            "redis://h1:7000/3",
            "redis://:a@h1:7000,redis://:b@h2:7000",
            "h1 h2:7000",
            "redis://:7000",
        ] {
            let err = Config::from_lookup(|n| match n {
                "CACHE_TYPE" => Some("redis-cluster".into()),
                "CACHE_REDIS_NODES" => Some(bad.into()),
                _ => None,
            })
            .unwrap_err();
            assert_eq!(err.variable(), "CACHE_REDIS_NODES", "{bad}: {err}");
        }
        let err = Config::builder()
            .cache_type(CacheType::RedisCluster)
            .try_build()
            .unwrap_err();
        assert_eq!(err.variable(), "redis_nodes");
        let err = Config::builder()
            .redis_nodes(["http://h:1"])
            .try_build()
            .unwrap_err();
        assert_eq!(err.variable(), "redis_nodes");
        let msg = "cluster".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("did you mean `redis-cluster`?"), "{msg}");
    }

    #[cfg(not(feature = "redis-cluster"))]
    #[test]
    fn redis_cluster_without_its_feature_names_the_feature() {
        let msg = "redis-cluster"
            .parse::<CacheType>()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("enable the `redis-cluster` cargo feature"),
            "{msg}"
        );
    }

    #[test]
    fn near_miss_cache_types_get_a_hint() {
        let msg = "memory".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("did you mean `simple`?"), "{msg}");
        let msg = "none".parse::<CacheType>().unwrap_err().to_string();
        assert!(msg.contains("did you mean `null`?"), "{msg}");
    }
}
