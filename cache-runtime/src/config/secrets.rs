//! TLS material for Redis and Redis Cluster, and keeping passwords out of
//! logs, errors and `Debug` output.

use std::fmt;
use std::path::PathBuf;

/// Certificates for `rediss://` connections to Redis and Redis Cluster
/// (cargo feature `tls`): a private CA to trust instead of the public
/// roots, and a client certificate and key for mutual TLS. Files are PEM.
///
/// From the environment: `CACHE_REDIS_CA_CERT`, `CACHE_REDIS_CLIENT_CERT`,
/// `CACHE_REDIS_CLIENT_KEY` (the last two together or not at all).
///
/// ```
/// use layercache_runtime::{Config, RedisTls};
///
/// let config = Config::builder()
///     .redis_url("rediss://app:secret@redis.internal:6380/")
///     .redis_tls(RedisTls {
///         ca_cert: Some("/etc/ssl/redis-ca.pem".into()),
///         client_cert: Some("/etc/ssl/app.pem".into()),
///         client_key: Some("/etc/ssl/app.key".into()),
///     })
///     .build();
/// assert!(config.redis_tls().is_configured());
/// // The password never shows in Debug output.
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA bundle to verify the server with (`CACHE_REDIS_CA_CERT`);
    /// the public web roots when `None`.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain for mutual TLS (`CACHE_REDIS_CLIENT_CERT`).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (`CACHE_REDIS_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
}

impl RedisTls {
    /// Whether any file is set.
    pub fn is_configured(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// `text` with the password of every `scheme://user:password@` URL in it
/// replaced by `***`.
pub(crate) fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at a path, a separator between URLs, or quoting.
        let end = tail
            .find(['/', ',', '"', '\'', ' ', '\n'])
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(amp) => {
                let userinfo = &authority[..amp];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    // `redis://password@host`: redis-rs reads it as a user name; hide it too.
                    None if !userinfo.is_empty() => out.push_str("***"),
                    None => {}
                }
                out.push_str(&authority[amp..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Shows a URL without its password.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_passwords(self.0), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn from(vars: &[(&str, &str)]) -> Result<Config, crate::ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn a_bad_redis_url_is_reported_without_its_password() {
        let err = from(&[("CACHE_REDIS_URL", "ftp://app:s3cret@h:1/")]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_URL");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = from(&[
            ("CACHE_TYPE", "redis-cluster"),
            (
                "CACHE_REDIS_NODES",
                "redis://app:s3cret@h:1,ftp://app:s3cret@h:2",
            ),
        ])
        .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn tls_files_are_checked_at_start_up_naming_the_variable() {
        let err = from(&[("CACHE_REDIS_CA_CERT", "/nonexistent/ca.pem")]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_CA_CERT");
        let me = std::env::current_exe().unwrap().display().to_string();
        let err = from(&[("CACHE_REDIS_CLIENT_CERT", me.as_str())]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_CLIENT_KEY");
        let config = from(&[
            ("CACHE_REDIS_CA_CERT", me.as_str()),
            ("CACHE_REDIS_CLIENT_CERT", me.as_str()),
            ("CACHE_REDIS_CLIENT_KEY", me.as_str()),
        ])
        .unwrap();
        assert_eq!(
            config.redis_tls().ca_cert.as_deref(),
            Some(std::path::Path::new(&me))
        );
    }

    #[test]
    fn passwords_are_hidden_in_every_url_of_a_text() {
        assert_eq!(
            redact_passwords("rediss://app:pw@h:1/0 and redis://:x@h2:2,redis://h3:3"),
            "rediss://app:***@h:1/0 and redis://:***@h2:2,redis://h3:3"
        );
        assert_eq!(redact_passwords("redis://secret@h"), "redis://***@h");
        assert_eq!(redact_passwords("no url"), "no url");
        assert_eq!(
            redact_passwords("\"redis://u:p@q@h:1\""),
            "\"redis://u:***@h:1\""
        );
    }
}
