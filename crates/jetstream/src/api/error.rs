//! JetStream API errors: nats-server's codes (`server/errors.json`), which clients branch on by
//! `err_code`.

use serde::Serialize;

/// An API error as the JSON response carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{description} ({err_code})")]
pub struct ApiError {
    /// The HTTP-like status.
    pub code: u16,
    /// JetStream's own error code.
    pub err_code: u16,
    /// What went wrong, in nats-server's words.
    pub description: String,
}

impl ApiError {
    pub(crate) fn new(code: u16, err_code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            err_code,
            description: description.into(),
        }
    }

    pub(crate) fn stream_not_found() -> Self {
        Self::new(404, 10059, "stream not found")
    }
    pub(crate) fn no_message_found() -> Self {
        Self::new(404, 10037, "no message found")
    }
    pub(crate) fn consumer_not_found() -> Self {
        Self::new(404, 10014, "consumer not found")
    }
    pub(crate) fn stream_name_exists() -> Self {
        Self::new(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }
    pub(crate) fn subjects_overlap() -> Self {
        Self::new(400, 10065, "subjects overlap with an existing stream")
    }
    pub(crate) fn stream_name_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }
    pub(crate) fn invalid_json(err: impl std::fmt::Display) -> Self {
        Self::new(400, 10025, format!("invalid JSON: {err}"))
    }
    pub(crate) fn bad_request() -> Self {
        Self::new(400, 10003, "bad request")
    }
    pub(crate) fn invalid_config(what: impl std::fmt::Display) -> Self {
        Self::new(500, 10052, format!("{what}"))
    }
    pub(crate) fn update_failed(what: impl std::fmt::Display) -> Self {
        Self::new(500, 10052, format!("{what}"))
    }
    pub(crate) fn stream_name_required() -> Self {
        Self::new(400, 10003, "bad request")
    }
    pub(crate) fn invalid_stream_name() -> Self {
        Self::new(400, 10128, "Stream name can not contain path separators")
    }
    pub(crate) fn message_too_large() -> Self {
        Self::new(400, 10054, "message size exceeds maximum allowed")
    }
    pub(crate) fn message_ttl_invalid() -> Self {
        Self::new(400, 10165, "invalid per-message TTL")
    }
    pub(crate) fn message_ttl_disabled() -> Self {
        Self::new(400, 10166, "per-message TTL is disabled")
    }
    pub(crate) fn store_failed(what: impl std::fmt::Display) -> Self {
        Self::new(503, 10077, format!("{what}"))
    }
    pub(crate) fn wrong_last_sequence(seq: u64) -> Self {
        Self::new(400, 10071, format!("wrong last sequence: {seq}"))
    }
    pub(crate) fn wrong_last_msg_id(id: &str) -> Self {
        Self::new(400, 10070, format!("wrong last msg ID: {id}"))
    }
    pub(crate) fn wrong_stream() -> Self {
        Self::new(400, 10060, "expected stream does not match")
    }
    pub(crate) fn sealed() -> Self {
        Self::new(400, 10109, "invalid operation on sealed stream")
    }
    pub(crate) fn purge_denied() -> Self {
        Self::new(500, 10110, "stream purge not permitted")
    }
    pub(crate) fn delete_denied() -> Self {
        Self::new(500, 10057, "message delete not permitted")
    }
    pub(crate) fn rollup_not_allowed() -> Self {
        Self::new(500, 10111, "rollup not permitted")
    }
    pub(crate) fn delete_failed(what: impl std::fmt::Display) -> Self {
        Self::new(500, 10057, format!("{what}"))
    }
    pub(crate) fn memory_resources() -> Self {
        Self::new(500, 10028, "insufficient memory resources available")
    }
    pub(crate) fn storage_resources() -> Self {
        Self::new(500, 10047, "insufficient storage resources available")
    }
    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        Self::new(500, 10051, format!("{what}"))
    }
}
