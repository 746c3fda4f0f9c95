//! The backends a [`Config`] can name ([`CacheType`], each name written
//! once) and the checks of each backend's settings: Redis URLs, TLS files
//! and cluster seed nodes, memcached servers, the filesystem and SQLite
//! locations. Opening the store they describe is
//! `shared::open`'s job.

use std::fmt;

use super::{Config, ConfigError, RedisTls};

/// Which tiers serve cached calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CacheType {
    /// In-process only (`CACHE_TYPE=simple`, the default).
    #[default]
    Simple,
    /// Caching off: every call runs the function and counts as a miss
    /// (`CACHE_TYPE=null`), for tests and for ruling the cache out.
    Null,
    /// In-process tier in front of Redis (`CACHE_TYPE=redis`, cargo
    /// feature `redis`), at [`Config::redis_url`].
    #[cfg(feature = "redis")]
    Redis,
    /// In-process tier in front of a directory (`CACHE_TYPE=filesystem`,
    /// `CACHE_DIR`, `CACHE_THRESHOLD`): processes of one machine share it.
    Filesystem,
    /// In-process tier in front of a SQLite database
    /// (`CACHE_TYPE=sqlite`, `CACHE_SQLITE_PATH`; cargo feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// In-process tier in front of memcached (`CACHE_TYPE=memcached`,
    /// `CACHE_MEMCACHED_SERVERS`; cargo feature `memcached`).
    #[cfg(feature = "memcached")]
    Memcached,
    /// In-process tier in front of a Redis Cluster
    /// (`CACHE_TYPE=redis-cluster`, `CACHE_REDIS_NODES`; cargo feature
    /// `redis-cluster`), at [`Config::redis_nodes`].
    #[cfg(feature = "redis-cluster")]
    RedisCluster,
}

impl CacheType {
    /// Each backend's name, written once: parsing and display both use it.
    const NAMES: &'static [(&'static str, CacheType)] = &[
        ("simple", CacheType::Simple),
        ("null", CacheType::Null),
        #[cfg(feature = "redis")]
        ("redis", CacheType::Redis),
        ("filesystem", CacheType::Filesystem),
        #[cfg(feature = "sqlite")]
        ("sqlite", CacheType::Sqlite),
        #[cfg(feature = "memcached")]
        ("memcached", CacheType::Memcached),
        #[cfg(feature = "redis-cluster")]
        ("redis-cluster", CacheType::RedisCluster),
    ];

    /// What `CACHE_TYPE` accepts in this build: "`simple`, `null` or `redis`".
    fn expected() -> String {
        let names: Vec<String> = CacheType::NAMES
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect();
        let (last, rest) = names.split_last().expect("never empty");
        format!("{} or {last}", rest.join(", "))
    }

    /// The name used in `CACHE_TYPE`.
    pub fn as_str(self) -> &'static str {
        CacheType::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("simple", |(name, _)| name)
    }

    /// Whether this type has a shared tier.
    pub fn is_shared(self) -> bool {
        !matches!(self, CacheType::Simple | CacheType::Null)
    }
}

impl std::str::FromStr for CacheType {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        if let Some((_, t)) = CacheType::NAMES.iter().find(|(n, _)| *n == wanted) {
            return Ok(*t);
        }
        let expected = CacheType::expected();
        let reason = match wanted.as_str() {
            "redis" | "sqlite" | "memcached" | "redis-cluster" => format!("the `{wanted}` backend is not in this build of layercache: enable the `{wanted}` cargo feature; expected {expected}"),
            "rediss" | "redis-tls" => format!("expected {expected} (TLS is chosen by a `rediss://` CACHE_REDIS_URL, with the `tls` feature)"),
            "rediscluster" | "redis_cluster" | "cluster" | "redis-clusters" => {
                format!("expected {expected} (did you mean `redis-cluster`?)")
            }
            "memory" | "inmemory" | "in-memory" | "local" | "simplecache" => {
                format!("expected {expected} (did you mean `simple`?)")
            }
            "none" | "off" | "disabled" | "nullcache" => {
                format!("expected {expected} (did you mean `null`?)")
            }
            "rediscache" => format!("expected {expected} (did you mean `redis`?)"),
            "memcache" | "memcachedcache" => format!("expected {expected} (did you mean `memcached`?)"),
            "file" | "files" | "fs" | "filesystemcache" | "disk" => {
                format!("expected {expected} (did you mean `filesystem`?)")
            }
            "sqlite3" | "database" | "db" | "sql" => format!("expected {expected} (did you mean `sqlite`?)"),
            _ => format!("expected {expected}"),
        };
        Err(ConfigError::invalid("CACHE_TYPE", s, reason))
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client certificate and key come together; every file named must be
/// readable now, so a typo fails at start-up with its variable named.
pub(super) fn check_redis_tls(tls: &RedisTls, names: [&'static str; 3]) -> Result<(), ConfigError> {
    let files = [&tls.ca_cert, &tls.client_cert, &tls.client_key];
    for (file, variable) in files.into_iter().zip(names) {
        if let Some(path) = file {
            if let Err(e) = std::fs::metadata(path) {
                return Err(ConfigError::invalid(
                    variable,
                    &path.display().to_string(),
                    format!("cannot read the PEM file: {e}"),
                ));
            }
        }
    }
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        let missing = if tls.client_cert.is_some() {
            names[2]
        } else {
            names[1]
        };
        return Err(ConfigError::invalid(
            missing,
            "",
            format!("mutual TLS needs both {} and {}", names[1], names[2]),
        ));
    }
    Ok(())
}

pub(super) const TLS_VARIABLES: [&str; 3] = [
    "CACHE_REDIS_CA_CERT",
    "CACHE_REDIS_CLIENT_CERT",
    "CACHE_REDIS_CLIENT_KEY",
];
pub(super) const TLS_FIELDS: [&str; 3] = [
    "redis_tls.ca_cert",
    "redis_tls.client_cert",
    "redis_tls.client_key",
];

/// A Redis Cluster without seed nodes would silently share nothing.
pub(super) fn check_redis_nodes(
    config: &Config,
    variable: &'static str,
) -> Result<(), ConfigError> {
    #[cfg(feature = "redis-cluster")]
    if config.cache_type == CacheType::RedisCluster && config.redis_nodes.is_empty() {
        return Err(ConfigError::invalid(
            variable,
            "",
            "CACHE_TYPE=redis-cluster needs the cluster's seed nodes, e.g. `redis://10.0.0.1:6379,redis://10.0.0.2:6379`",
        ));
    }
    let _ = (config, variable);
    Ok(())
}

/// `redis://host:port,host:port`: each seed node a Redis URL (a bare
/// `host:port` gets `redis://`), none empty, no database but 0 (a cluster
/// has only that one), no Unix socket.
pub(super) fn parse_redis_nodes(
    variable: &'static str,
    value: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut nodes = Vec::new();
    for part in value.split(',') {
        let node = part.trim();
        if node.is_empty() || node.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                variable,
                value,
                format!("{node:?} is not a node; expected a comma-separated list like `redis://10.0.0.1:6379,redis://10.0.0.2:6379` (or `host:port,host:port`)"),
            ));
        }
        let url = if node.contains("://") {
            node.to_string()
        } else {
            format!("redis://{node}")
        };
        let scheme = url.split("://").next().unwrap_or("");
        if !matches!(scheme, "redis" | "rediss") {
            return Err(ConfigError::invalid(
                variable,
                value,
                format!("{node:?}: a cluster node is a `redis://[user[:password]@]host:port` URL (or `rediss://` with the `tls` feature), not a Unix socket or another scheme"),
            ));
        }
        let url = validate_redis_url(variable, &url).map_err(|e| {
            let reason = match e {
                ConfigError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            ConfigError::invalid(variable, value, format!("{node:?}: {reason}"))
        })?;
        let host = url
            .split("://")
            .nth(1)
            .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
            .and_then(|hostport| hostport.split('/').next())
            .unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(ConfigError::invalid(
                variable,
                value,
                format!("{node:?} names no host"),
            ));
        }
        #[cfg(feature = "redis")]
        {
            use redis::IntoConnectionInfo as _;
            let db = url
                .as_str()
                .into_connection_info()
                .map(|info| info.redis_settings().db())
                .unwrap_or(0);
            if db != 0 {
                return Err(ConfigError::invalid(
                    variable,
                    value,
                    format!("{node:?} names database {db}; a Redis Cluster has only database 0"),
                ));
            }
        }
        nodes.push(url);
    }
    // Seeds that disagree on password, user or TLS are refused by the client.
    #[cfg(feature = "redis-cluster")]
    if let Err(e) = redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str)) {
        return Err(ConfigError::invalid(variable, value, e.to_string()));
    }
    Ok(nodes)
}

/// A backend that keeps its data in a file or directory needs to be told
/// where: without it, a service would silently share nothing.
pub(super) fn check_backend_location(
    config: &Config,
    dir_variable: &'static str,
    sqlite_variable: &'static str,
) -> Result<(), ConfigError> {
    match config.cache_type {
        CacheType::Filesystem if config.cache_dir.is_none() => Err(ConfigError::invalid(
            dir_variable,
            "",
            "CACHE_TYPE=filesystem needs the directory to keep entries in",
        )),
        #[cfg(feature = "sqlite")]
        CacheType::Sqlite if config.sqlite_path.is_none() => Err(ConfigError::invalid(
            sqlite_variable,
            "",
            "CACHE_TYPE=sqlite needs the database file to keep entries in",
        )),
        _ => {
            let _ = sqlite_variable;
            Ok(())
        }
    }
}

/// `host:port,host:port`: each server checked, none empty.
pub(super) fn parse_servers(
    variable: &'static str,
    value: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut servers = Vec::new();
    for part in value.split(',') {
        let server = part.trim();
        let port_ok = server.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || server.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                variable,
                value,
                format!("{server:?} is not a `host:port` server; expected a comma-separated list like `10.0.0.1:11211,10.0.0.2:11211`"),
            ));
        }
        servers.push(server.to_string());
    }
    Ok(servers)
}

/// Checks the scheme (and, with the `redis` feature, the whole URL) so a
/// typo fails at start-up with the variable named, not at the first call.
pub(super) fn validate_redis_url(variable: &'static str, url: &str) -> Result<String, ConfigError> {
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "redis" | "redis+unix" | "unix" => {}
        "rediss" if cfg!(feature = "tls") => {}
        "rediss" => {
            return Err(ConfigError::invalid(
                variable,
                url,
                "`rediss://` needs the `tls` cargo feature of layercache",
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                variable,
                url,
                "expected a `redis://[user[:password]@]host[:port][/db]` URL (or `rediss://` with the `tls` feature)",
            ))
        }
    }
    #[cfg(feature = "redis")]
    if let Err(e) = redis::Client::open(url) {
        return Err(ConfigError::invalid(variable, url, e.to_string()));
    }
    Ok(url.to_string())
}
