//! Errors of the parsers and of the header codec.

use thiserror::Error;

/// Why a parser refused the bytes at the front of its buffer.
///
/// Every variant is fatal for the connection; [`ProtoError::err_text`] tells which `-ERR`
/// (if any) nats-server sends before it closes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The verb is not one this protocol knows (or a verb that takes arguments is not
    /// followed by a space or tab).
    #[error("unknown protocol operation")]
    UnknownOp,
    /// The control line's arguments are longer than the max control line.
    #[error("maximum control line exceeded")]
    MaxControlLine,
    /// A message is larger than the max payload (detected on the control line, before the
    /// body is buffered).
    #[error("maximum payload violation: {size} > {max}")]
    MaxPayload {
        /// The size the control line announced.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// Wrong number of arguments, or a size that is not a decimal number of at most 9 digits.
    #[error("invalid arguments for {op}")]
    InvalidArgs {
        /// The verb whose arguments were wrong (upper case).
        op: &'static str,
    },
    /// A payload was not followed by exactly `\r\n` (usually a wrong byte count).
    #[error("payload not followed by CRLF")]
    MissingCrlf,
    /// A header size larger than the total size.
    #[error("header size larger than total size")]
    HeaderSize,
    /// A `CONNECT` or `INFO` document that is not valid JSON or has a field of the wrong type.
    #[error("invalid json: {0}")]
    Json(String),
}

impl ProtoError {
    /// The exact text (without the single quotes) of the `-ERR` nats-server sends for this
    /// error before closing, or `None` when it closes silently.
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            Self::UnknownOp | Self::MissingCrlf => Some("Unknown Protocol Operation"),
            Self::MaxControlLine => Some("maximum control line exceeded"),
            Self::MaxPayload { .. } => Some("Maximum Payload Violation"),
            Self::InvalidArgs { .. } | Self::HeaderSize | Self::Json(_) => None,
        }
    }
}

impl From<serde_json::Error> for ProtoError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}

/// Why a `NATS/1.0` header block, or a header name or value, was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    MissingVersion,
    /// The status after `NATS/1.0` is not a three-digit code.
    #[error("invalid status code")]
    InvalidStatus,
    /// A header line without a `:`.
    #[error("header line without a colon")]
    MissingColon,
    /// An empty header name, or one with whitespace, control characters or `:`.
    #[error("invalid header name")]
    InvalidName,
    /// A header value (or status description) containing CR or LF.
    #[error("invalid header value")]
    InvalidValue,
    /// The block does not end with an empty line (`\r\n\r\n`), or has bytes after it.
    #[error("header block not terminated by an empty line")]
    MissingTerminator,
    /// A name, value or description that is not UTF-8.
    #[error("header block is not utf-8")]
    NotUtf8,
}
