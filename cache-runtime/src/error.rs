//! What can go wrong with a shared operation: a value type below every
//! tier, so that metrics can count failures by kind without knowing the
//! stores.

/// What went wrong with a shared operation, as counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation took longer than the tier's timeout.
    Timeout,
    /// The connection could not be made or was lost.
    Connection,
    /// The server answered with an error.
    Server,
    /// Bytes under one of our keys did not verify or decode, or the key
    /// holds something the store cannot read as a value (Redis
    /// `WRONGTYPE`, a directory in a file's place): a miss for that key
    /// alone, overwritten by the next write, never a breaker failure.
    Corrupt,
    /// A value larger than the size limit was not written.
    Oversize,
    /// The circuit breaker was open: the store was not asked.
    Skipped,
    /// A value could not be encoded.
    Encode,
}

impl ErrorKind {
    /// A short name (`timeout`, `connection`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Server => "server",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Oversize => "oversize",
            ErrorKind::Skipped => "skipped",
            ErrorKind::Encode => "encode",
        }
    }

    /// Whether this failure says the store is unhealthy (feeds the breaker).
    pub(crate) fn is_health_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Server
        )
    }
}

/// A failed shared operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared tier {}: {message}", kind.as_str())]
pub struct SharedError {
    /// What kind of failure it was.
    pub kind: ErrorKind,
    /// What the store said.
    pub message: String,
}

impl SharedError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SharedError {
        SharedError {
            kind,
            message: message.into(),
        }
    }
}
