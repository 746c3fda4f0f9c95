//! Where the Redis server is: `CACHE_REDIS_URL`, or the guide's separate
//! `CACHE_REDIS_HOST`, `CACHE_REDIS_PORT`, `CACHE_REDIS_DB` and
//! `CACHE_REDIS_PASSWORD`, from which a URL is built. One or the other:
//! both would leave it unclear which server is meant.

use super::backends::validate_redis_url;
use super::{parse_u64, ConfigError};

/// The parts that stand in for `CACHE_REDIS_URL`, in URL order.
pub(super) const PARTS: [&str; 4] = [
    "CACHE_REDIS_HOST",
    "CACHE_REDIS_PORT",
    "CACHE_REDIS_DB",
    "CACHE_REDIS_PASSWORD",
];

/// The host a URL built from parts uses when `CACHE_REDIS_HOST` is not set
/// (the host of [`DEFAULT_REDIS_URL`](super::DEFAULT_REDIS_URL)).
const DEFAULT_HOST: &str = "127.0.0.1";

/// The Redis URL the variables describe, checked; `None` when none is set.
pub(super) fn redis_url(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let url = get("CACHE_REDIS_URL");
    let [host, port, db, password] = PARTS.map(get);
    if let Some(url) = url {
        if let Some(part) = [&host, &port, &db, &password]
            .iter()
            .zip(PARTS)
            .find_map(|(v, name)| v.is_some().then_some(name))
        {
            return Err(ConfigError::invalid(
                "CACHE_REDIS_URL",
                &url,
                format!("{part} is set as well (in the environment or the profile file): give either CACHE_REDIS_URL or CACHE_REDIS_HOST / _PORT / _DB / _PASSWORD, not both"),
            ));
        }
        return validate_redis_url("CACHE_REDIS_URL", url.trim()).map(Some);
    }
    if host.is_none() && port.is_none() && db.is_none() && password.is_none() {
        return Ok(None);
    }
    let host = match host {
        Some(h) => check_host(h.trim())?,
        None => DEFAULT_HOST.to_string(),
    };
    let port = match port {
        Some(p) => match parse_u64("CACHE_REDIS_PORT", &p, "a port number from 1 to 65535")? {
            n @ 1..=65535 => n,
            _ => {
                return Err(ConfigError::invalid(
                    "CACHE_REDIS_PORT",
                    &p,
                    "expected a port number from 1 to 65535",
                ))
            }
        },
        None => 6379,
    };
    let db = match db {
        Some(d) => match parse_u64("CACHE_REDIS_DB", &d, "a database number (0, 1, ...)")? {
            n if i64::try_from(n).is_ok() => n,
            _ => {
                return Err(ConfigError::invalid(
                    "CACHE_REDIS_DB",
                    &d,
                    "expected a database number (0, 1, ...)",
                ))
            }
        },
        None => 0,
    };
    // The password is never trimmed (spaces may be part of it) and never echoed.
    let auth = password.map_or_else(String::new, |pw| format!(":{}@", percent_encode(&pw)));
    let url = format!("redis://{auth}{host}:{port}/{db}");
    validate_redis_url("CACHE_REDIS_HOST", &url).map(Some)
}

/// A host name or an IP address (IPv6 gets its brackets).
fn check_host(host: &str) -> Result<String, ConfigError> {
    if host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#' | ','))
    {
        return Err(ConfigError::invalid(
            "CACHE_REDIS_HOST",
            host,
            "expected a host name or IP address, like `redis.internal` or `10.0.0.5` (a URL goes in CACHE_REDIS_URL)",
        ));
    }
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    })
}

/// Everything but RFC 3986's unreserved characters escaped, so a password
/// holding `@`, `:` or `/` stays one password (redis-rs decodes it).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_guides_host_port_db_and_password_build_the_redis_url() {
        let c = from(&[
            ("CACHE_REDIS_HOST", "redis.internal"),
            ("CACHE_REDIS_PORT", "6380"),
            ("CACHE_REDIS_DB", "2"),
            ("CACHE_REDIS_PASSWORD", "pw"),
        ])
        .unwrap();
        assert_eq!(c.redis_url(), "redis://:pw@redis.internal:6380/2");
    }

    #[test]
    fn missing_parts_take_the_defaults_so_a_password_alone_is_enough() {
        let c = from(&[("CACHE_REDIS_PASSWORD", "pw")]).unwrap();
        assert_eq!(c.redis_url(), "redis://:pw@127.0.0.1:6379/0");
        let c = from(&[("CACHE_REDIS_HOST", "::1")]).unwrap();
        assert_eq!(c.redis_url(), "redis://[::1]:6379/0");
    }

    #[test]
    fn a_password_with_url_characters_is_escaped_and_never_shown() {
        let secret = "p@ss:w/rd %#?";
        let c = from(&[("CACHE_REDIS_PASSWORD", secret)]).unwrap();
        assert_eq!(
            c.redis_url(),
            "redis://:p%40ss%3Aw%2Frd%20%25%23%3F@127.0.0.1:6379/0"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("p@ss"),
            "{shown}"
        );
        #[cfg(feature = "redis")]
        {
            use redis::IntoConnectionInfo as _;
            let info = c.redis_url().into_connection_info().unwrap();
            assert_eq!(info.redis_settings().password(), Some(secret));
        }
    }

    #[test]
    fn a_url_and_parts_together_are_an_error_naming_both_without_the_password() {
        let err = from(&[
            ("CACHE_REDIS_URL", "redis://:s3cret@h:1/"),
            ("CACHE_REDIS_PORT", "6380"),
        ])
        .unwrap_err();
        assert_eq!(err.variable(), "CACHE_REDIS_URL");
        let msg = err.to_string();
        assert!(msg.contains("CACHE_REDIS_PORT is set as well"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn bad_parts_name_their_variable_and_never_echo_the_password() {
        for (var, bad) in [
            ("CACHE_REDIS_PORT", "0"),
            ("CACHE_REDIS_PORT", "65536"),
            ("CACHE_REDIS_PORT", "http"),
            ("CACHE_REDIS_DB", "-1"),
            ("CACHE_REDIS_HOST", "redis://h"),
            ("CACHE_REDIS_HOST", "a b"),
        ] {
            let err = from(&[(var, bad), ("CACHE_REDIS_PASSWORD", "s3cret")]).unwrap_err();
            assert_eq!(err.variable(), var, "{bad}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}
