//! `rediss://` for Redis and Redis Cluster: the rustls crypto provider, a
//! private CA, a client certificate for mutual TLS, and a clear ERROR when
//! a handshake fails.
//!
//! redis-rs builds rustls with no crypto provider of its own, and rustls
//! panics at the first connection when no provider is installed and none
//! can be chosen from its crate features: in a consumer's build, where no
//! other crate happens to turn one on, every connection would panic on the
//! I/O thread. The `tls` feature therefore brings rustls with `ring` and
//! installs it as the process default before the first connection (an
//! application that installed its own keeps it).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use redis::{Client, RedisError};

use crate::config::{redact_passwords, RedisTls};
use crate::shared::{ErrorKind, SharedError};

/// Installs the `ring` provider as rustls's process default, once.
#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: the application installed a provider first; that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn config_error(message: String) -> SharedError {
    tracing::error!("layercache: {message}; the shared tier stays off");
    SharedError::new(ErrorKind::Connection, message)
}

/// The PEM files of `tls`, read, for redis-rs; `None` without any.
#[cfg(feature = "tls")]
pub(crate) fn certificates(tls: &RedisTls) -> Result<Option<redis::TlsCertificates>, SharedError> {
    if !tls.is_configured() {
        return Ok(None);
    }
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            config_error(format!(
                "cannot read the Redis {what} {}: {e}",
                path.display()
            ))
        })
    };
    let root_cert = match &tls.ca_cert {
        Some(p) => Some(read(p, "CA certificate (CACHE_REDIS_CA_CERT)")?),
        None => None,
    };
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert, "client certificate (CACHE_REDIS_CLIENT_CERT)")?,
            client_key: read(key, "client key (CACHE_REDIS_CLIENT_KEY)")?,
        }),
        (None, None) => None,
        _ => {
            return Err(config_error(
                "mutual TLS needs both CACHE_REDIS_CLIENT_CERT and CACHE_REDIS_CLIENT_KEY".into(),
            ))
        }
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A client for `url` with the certificates of `tls` when it is `rediss://`.
pub(crate) fn client(url: &str, tls: &RedisTls) -> Result<Client, SharedError> {
    let invalid = |e: RedisError| {
        config_error(format!(
            "invalid Redis URL {}: {}",
            redact_passwords(url),
            redact_passwords(&e.to_string())
        ))
    };
    if !url.starts_with("rediss://") {
        if tls.is_configured() {
            tracing::warn!(url = %redact_passwords(url), "layercache: CACHE_REDIS_CA_CERT / CLIENT_CERT / CLIENT_KEY are set but the URL is not rediss://; the connection is not encrypted");
        }
        return Client::open(url).map_err(invalid);
    }
    #[cfg(feature = "tls")]
    {
        install_crypto_provider();
        if url.contains("#insecure") {
            tracing::warn!(url = %redact_passwords(url), "layercache: rediss://…#insecure does not verify the server's certificate; set CACHE_REDIS_CA_CERT instead");
        }
        match certificates(tls)? {
            Some(certs) => Client::build_with_tls(url, certs).map_err(invalid),
            None => Client::open(url).map_err(invalid),
        }
    }
    #[cfg(not(feature = "tls"))]
    Err(config_error(format!(
        "{} is rediss:// but layercache was built without its `tls` feature",
        redact_passwords(url)
    )))
}

/// Whether `err` is a failed TLS handshake (an unknown CA, a rejected
/// client certificate, a server that does not speak TLS).
fn is_tls_failure(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "tls",
        "alert",
        "corrupt message",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Logs a failed TLS handshake at ERROR, at most once per 10 s: calls
/// fail open (they run the function) and would otherwise only be counted.
pub(crate) fn report(err: &RedisError) {
    if !is_tls_failure(err) {
        return;
    }
    static START: OnceLock<Instant> = OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 10_001;
    let last = LAST_MS.load(Relaxed);
    if now.saturating_sub(last) > 10_000
        && LAST_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        tracing::error!(
            err = %redact_passwords(&err.to_string()),
            "layercache: TLS connection to Redis failed (check CACHE_REDIS_CA_CERT, CACHE_REDIS_CLIENT_CERT and CACHE_REDIS_CLIENT_KEY); calls run without the shared tier"
        );
    }
}
