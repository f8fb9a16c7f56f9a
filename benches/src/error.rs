//! The one error type of the load tool.

use std::io;

use thiserror::Error;

/// Why a benchmark run failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A socket or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The server sent something the client cannot parse.
    #[error("protocol error from the server: {0}")]
    Protocol(String),
    /// The server sent `-ERR`.
    #[error("server error: {0}")]
    Server(String),
    /// The server closed the connection.
    #[error("the server closed the connection ({0})")]
    Closed(String),
    /// A message was lost, duplicated or reordered: the run is invalid.
    #[error("SEQUENCE ERROR: {0}")]
    Sequence(String),
    /// Something did not happen within its deadline.
    #[error("timeout: {0}")]
    Timeout(String),
    /// Bad command-line arguments or configuration.
    #[error("usage: {0}")]
    Usage(String),
}

impl BenchError {
    /// An [`BenchError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Names the party (`publisher 0`, ...) a connection-level error happened to.
    pub fn context(self, who: &str) -> Self {
        match self {
            Self::Closed(m) => Self::Closed(format!("{who}: {m}")),
            Self::Timeout(m) => Self::Timeout(format!("{who}: {m}")),
            Self::Server(m) => Self::Server(format!("{m} (to {who})")),
            Self::Io { context, source } => Self::Io {
                context: format!("{who}: {context}"),
                source,
            },
            other => other,
        }
    }

    /// True for a [`BenchError::Sequence`] error.
    pub fn is_sequence(&self) -> bool {
        matches!(self, Self::Sequence(_))
    }
}

/// The load tool's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
