//! Errors of the sublist.

use thiserror::Error;

/// Why a sublist operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SublistError {
    /// The subject is empty, has an empty token, or has `>` before its last token (the broker answers
    /// `-ERR 'Invalid Subject'`).
    #[error("invalid subject")]
    InvalidSubject,
    /// The queue group name is empty.
    #[error("invalid queue name")]
    InvalidQueue,
    /// No such subscription (already removed, or the handle is from another sublist).
    #[error("subscription not found")]
    NotFound,
}
